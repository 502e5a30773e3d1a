//! The admin web page: one HTML document with a small script and style sheet, compiled into
//! the binary (no CDN at run time). It talks to the admin API with the session cookie (or the
//! bootstrap token kept in the tab's sessionStorage).

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::Inner;

const HTML: &str = include_str!("../assets/console.html");
const JS: &str = include_str!("../assets/console.js");
const CSS: &str = include_str!("../assets/console.css");

pub fn routes(cfg: &mut web::ServiceConfig, inner: Arc<Inner>) {
    let data = web::Data::new(inner);
    cfg.service(web::resource("/console").route(web::get().to(page)))
        .service(web::resource("/console/").route(web::get().to(page)))
        .service(
            web::resource("/console/app.js").route(
                web::get().to(|| async { asset("application/javascript; charset=utf-8", JS) }),
            ),
        )
        .service(
            web::resource("/console/app.css")
                .route(web::get().to(|| async { asset("text/css; charset=utf-8", CSS) })),
        )
        .service(
            web::resource("/console/login-options")
                .app_data(data)
                .route(web::get().to(login_options)),
        );
}

fn asset(ct: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ct)
        .insert_header(("Cache-Control", "no-cache"))
        .body(body)
}

async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header((
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
        ))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(HTML)
}

/// Public: the apps a person can log in with (QR login on), to build the login screen.
async fn login_options(inner: web::Data<Arc<Inner>>) -> HttpResponse {
    let items: Vec<_> = inner
        .apps
        .all()
        .iter()
        .filter(|b| b.enabled && b.qr_login_enabled)
        .map(|b| json!({"app_id": b.app_id, "team_name": b.team_name}))
        .collect();
    HttpResponse::Ok().json(json!({ "items": items }))
}
