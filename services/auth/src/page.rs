//! The two pages auth serves: the login page (Feishu's QR code and a plain link), and the page
//! that says why a login was refused.

use actix_web::HttpResponse;

use crate::error::Refusal;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A JSON string literal safe inside a `<script>` element.
fn js_string(s: &str) -> String {
    serde_json::to_string(s)
        .unwrap_or_else(|_| "\"\"".into())
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'PingFang SC','Microsoft YaHei',sans-serif;background:#f5f6f7;margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center}\
main{background:#fff;border-radius:12px;box-shadow:0 2px 12px rgba(0,0,0,.08);padding:32px 40px;text-align:center;max-width:420px}\
h1{font-size:20px;margin:0 0 8px}p{color:#555;line-height:1.5}#qr{min-height:300px;margin:16px auto}\
a.button{display:inline-block;margin-top:8px;padding:8px 20px;border-radius:6px;background:#3370ff;color:#fff;text-decoration:none}";

/// The login page: Feishu's QR SDK draws the code; when the phone confirms, the SDK's frame
/// posts a `tmp_code`, checked for origin and shape, and the page continues to the authorize
/// URL with it. The link does the same login without the QR code.
pub fn login_page(team: &str, authorize_url: &str, sdk_url: &str) -> HttpResponse {
    let nonce = crate::sessions::random_token(16);
    let title = if team.is_empty() {
        "Log in with Feishu".to_string()
    } else {
        format!("Log in to {}", escape(team))
    };
    let body = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{title}</title><style>{STYLE}</style></head>
<body><main>
<h1>{title}</h1>
<p>Scan the code with the Feishu app (扫码登录).</p>
<div id="qr"></div>
<p><a class="button" id="feishu-login" href="{href}">Log in with Feishu</a></p>
</main>
<script src="{sdk}"></script>
<script nonce="{nonce}">
(function () {{
  var goto = {goto_js};
  if (typeof window.QRLogin !== "function") {{ return; }}
  var qr = window.QRLogin({{ id: "qr", goto: goto, width: "300", height: "300" }});
  window.addEventListener("message", function (event) {{
    if (!qr.matchOrigin(event.origin)) {{ return; }}
    if (typeof qr.matchData === "function" && !qr.matchData(event.data)) {{ return; }}
    var tmp = event.data && typeof event.data === "object" ? event.data.tmp_code : event.data;
    if (typeof tmp !== "string" || !/^[A-Za-z0-9_-]{{1,256}}$/.test(tmp)) {{ return; }}
    window.location.href = goto + "&tmp_code=" + encodeURIComponent(tmp);
  }});
}})();
</script>
</body></html>"#,
        href = escape(authorize_url),
        sdk = escape(sdk_url),
        goto_js = js_string(authorize_url),
    );
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header((
            "Content-Security-Policy",
            format!(
                "script-src 'nonce-{nonce}' {}; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
                origin_of(sdk_url)
            ),
        ))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(body)
}

fn origin_of(u: &str) -> String {
    url::Url::parse(u)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default()
}

/// A refused login, in words a person understands, with the status and a stable code.
pub fn error_page(r: &Refusal) -> HttpResponse {
    let body = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{title}</title><style>{STYLE}</style></head>
<body><main><h1>{title}</h1><p id="detail">{detail}</p><p><small>code {code}</small></p></main></body></html>"#,
        title = escape(r.title),
        detail = escape(&r.detail),
        code = r.code,
    );
    HttpResponse::build(r.status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header((
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ))
        .body(body)
}
