//! application: is_user_admin, app info, contacts_range_configuration.

use feishu_emulator::demo;

use crate::helpers::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_check_and_app_info() {
    let app = TestApp::generated(20, 3, 1).await;
    let tok = app.tenant_token().await;
    let admin = app.emu.app(demo::APP_ID).unwrap().admins[0].clone();
    let open = app.emu.open_id(demo::APP_ID, &admin);
    let (s, v) = app
        .get(
            &tok,
            &format!("/open-apis/application/v3/is_user_admin?open_id={open}"),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["data"]["is_app_admin"], true);
    let other = app.emu.open_id(demo::APP_ID, "u0000009");
    let (_, v) = app
        .get(
            &tok,
            &format!("/open-apis/application/v3/is_user_admin?open_id={other}"),
        )
        .await;
    assert_eq!(v["data"]["is_app_admin"], false);
    let (_, v) = app
        .get(&tok, "/open-apis/application/v6/applications/me?lang=zh_cn")
        .await;
    assert_eq!(v["data"]["app"]["app_id"], demo::APP_ID);
    assert!(v["data"]["app"]["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["scope"] == "im:message"));
    assert!(v["data"]["app"]["redirect_urls"].is_array());
    let (s, v) = app
        .get(&tok, "/open-apis/application/v6/applications/me")
        .await;
    assert_eq!((s, v["code"].as_i64()), (400, Some(99992402)));
    let (_, v) = app
        .get(
            &tok,
            &format!(
                "/open-apis/application/v6/applications/{}/contacts_range_configuration",
                demo::APP_ID
            ),
        )
        .await;
    assert_eq!(v["data"]["contacts_range"]["contacts_scope_type"], "all");
    assert_eq!(v["data"]["has_more"], false);
}
