//! The embedded QR login (openapi.md §5.7): a stand-in for Feishu's QR SDK script, the
//! iframe page that "scans" as a chosen user and posts `{tmp_code}` to the parent window,
//! and the scan endpoint. The page then opens `authorize?...&tmp_code=`.

use actix_web::{web, HttpRequest, HttpResponse};
use rand::rngs::OsRng;
use serde_json::{json, Value};

use super::authen::html_escape;
use super::Query;
use crate::emulator::Emulator;
use crate::error::ApiError;
use crate::ids::random_alnum;

const TMP_CODE_TTL_MS: i64 = 180 * 1000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/obj/feishu-static/lark/passport/qrcode/LarkSSOSDKWebQRCode-1.0.3.js",
        web::get().to(qr_sdk),
    )
    .route("/suite/passport/sso/qr", web::get().to(qr_frame))
    .route("/suite/passport/sso/qr/scan", web::post().to(qr_scan));
}

/// The QR SDK stand-in: `QRLogin({id, goto, width, height})` embeds the emulator's QR frame
/// and recognises its messages (`matchOrigin`, `matchData`), like LarkSSOSDKWebQRCode 1.0.3.
async fn qr_sdk(req: HttpRequest) -> HttpResponse {
    let info = req.connection_info();
    let origin = format!("{}://{}", info.scheme(), info.host());
    let js = format!(
        r#"(function(){{
  var ORIGIN = {origin:?};
  window.QRLogin = function(opts) {{
    var el = document.getElementById(opts.id);
    var frame = document.createElement("iframe");
    frame.src = ORIGIN + "/suite/passport/sso/qr?goto=" + encodeURIComponent(opts.goto);
    frame.width = opts.width || "300"; frame.height = opts.height || "300";
    frame.setAttribute("frameborder", "0");
    if (opts.style) {{ frame.setAttribute("style", opts.style); }}
    if (el) {{ el.appendChild(frame); }}
    return {{
      matchOrigin: function(o) {{ return o === ORIGIN; }},
      matchData: function(d) {{ return !!d && typeof d === "object" && typeof d.tmp_code === "string"; }}
    }};
  }};
}})();
"#
    );
    HttpResponse::Ok()
        .content_type("application/javascript; charset=utf-8")
        .body(js)
}

/// The page inside the iframe: "scanning" as a user posts `{tmp_code}` to the parent.
async fn qr_frame(emu: web::Data<Emulator>, req: HttpRequest) -> HttpResponse {
    let auto = emu.qr_auto_user().unwrap_or_default();
    let q = Query::parse(&req);
    let goto = q.get("goto").unwrap_or("");
    let client_id = url::Url::parse(goto)
        .ok()
        .and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "client_id" || k == "app_id")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default();
    let tenant = emu.read().state.tenant_of_app(&client_id).unwrap_or(0);
    let mut buttons = String::new();
    {
        let w = emu.read();
        if let Some(t) = w.state.tenants.get(tenant) {
            for u in t.users.values().filter(|u| !u.status.is_resigned).take(50) {
                buttons.push_str(&format!(
                    "<button class=\"scan\" onclick=\"scan('{}')\">{}</button>\n",
                    html_escape(&u.user_id),
                    html_escape(&u.name)
                ));
            }
        }
    }
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(format!(
        r#"<!doctype html><html><body><div id="qr">[QR code — emulator: pick who scans]</div>{buttons}
<script>
function scan(uid) {{
  fetch("/suite/passport/sso/qr/scan", {{method: "POST", headers: {{"Content-Type": "application/json"}},
    body: JSON.stringify({{user_id: uid, client_id: {client_id:?}}})}})
    .then(function(r) {{ return r.json(); }})
    .then(function(d) {{ window.parent.postMessage({{tmp_code: d.tmp_code}}, "*"); }});
}}
var AUTO = {auto:?};
if (AUTO) {{ scan(AUTO); }}
</script></body></html>"#
    ))
}

async fn qr_scan(
    emu: web::Data<Emulator>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let user_id = body
        .get("user_id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let client_id = body.get("client_id").and_then(Value::as_str).unwrap_or("");
    let tmp = emu
        .qr_scan(client_id, &user_id)
        .map_err(|e| ApiError::new(400, 20008, e.to_string()))?;
    Ok(HttpResponse::Ok().json(json!({"tmp_code": tmp})))
}

impl Emulator {
    /// Simulates scanning the login QR code as `user_id`: returns the `tmp_code` the QR
    /// frame posts to the page (valid 180 s, single use).
    pub fn qr_scan(&self, app_id: &str, user_id: &str) -> Result<String, crate::EmulatorError> {
        let tenant = self.read().state.tenant_of_app(app_id).unwrap_or(0);
        let exists = self
            .read()
            .state
            .tenants
            .get(tenant)
            .is_some_and(|t| t.users.contains_key(user_id));
        if !exists {
            return Err(crate::EmulatorError::NotFound(format!("user {user_id}")));
        }
        let tmp = random_alnum(&mut OsRng, 32);
        let exp = self.clock().now_ms() + TMP_CODE_TTL_MS;
        self.rt()
            .tmp_codes
            .insert(tmp.clone(), (tenant, user_id.to_string(), exp));
        Ok(tmp)
    }

    /// The user the QR frame "scans" as automatically (browser tests).
    pub fn qr_auto_user(&self) -> Option<String> {
        self.rt().qr_auto_user.clone()
    }

    pub fn set_qr_auto_user(&self, user_id: Option<String>) {
        self.rt().qr_auto_user = user_id;
    }
}
