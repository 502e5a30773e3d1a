//! Secrets at rest and the cached binding lookup, on PostgreSQL and SQLite.

use std::time::Duration;

use bridge_store::apps::BindingInput;
use bridge_store::{AppRegistry, Domain, MasterKey};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use secrecy::{ExposeSecret, SecretString};

use crate::helpers::{fresh_database, random_app_id};

fn input(app_id: &str, secret: &str) -> BindingInput {
    BindingInput {
        app_id: app_id.into(),
        app_secret: SecretString::from(secret.to_string()),
        encrypt_key: Some(SecretString::from("encrypt-key-value".to_string())),
        verification_token: SecretString::from("token-value".to_string()),
        team_name: "Team".into(),
        domain: Domain::Lark,
        enabled: true,
        qr_login_enabled: true,
        delivery: bridge_store::Delivery::Both,
    }
}

async fn raw_secret_columns(db: &DatabaseConnection, app_id: &str) -> String {
    let row = db
        .query_one(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT app_secret, encrypt_key, verification_token FROM app_bindings WHERE app_id = '{app_id}'"),
        ))
        .await
        .unwrap()
        .unwrap();
    let a: String = row.try_get("", "app_secret").unwrap();
    let b: Option<String> = row.try_get("", "encrypt_key").unwrap();
    let c: String = row.try_get("", "verification_token").unwrap();
    format!("{a} {} {c}", b.unwrap_or_default())
}

async fn secrets_and_refresh(url: &str) {
    let key_b64 = MasterKey::generate_base64();
    let key = MasterKey::from_base64(&key_b64).unwrap();
    let db = bridge_store::connect(url, 2, true).await.unwrap();
    key.verify_against(&db).await.unwrap();
    let reg = AppRegistry::load(db.clone(), key.clone()).await.unwrap();
    let app_id = random_app_id();
    assert!(reg.upsert(&input(&app_id, "the-app-secret")).await.unwrap());
    assert!(
        !reg.upsert(&input(&app_id, "the-app-secret")).await.unwrap(),
        "unchanged input writes nothing"
    );

    let raw = raw_secret_columns(&db, &app_id).await;
    for plain in ["the-app-secret", "encrypt-key-value", "token-value"] {
        assert!(!raw.contains(plain), "{plain} stored in clear: {raw}");
    }
    let b = reg.get(&app_id).unwrap();
    assert_eq!(b.app_secret.expose_secret(), "the-app-secret");
    assert_eq!(b.domain, Domain::Lark);
    let dbg = format!("{b:?}");
    for plain in ["the-app-secret", "encrypt-key-value", "token-value"] {
        assert!(!dbg.contains(plain), "{plain} in Debug output: {dbg}");
    }

    // A second instance (another replica) sees a change made by the first within a refresh.
    let other = AppRegistry::load(db.clone(), key.clone()).await.unwrap();
    let stop = tokio::sync::oneshot::channel::<()>();
    other.spawn_refresher(Duration::from_millis(50), async move {
        let _ = stop.1.await;
    });
    reg.upsert(&input(&app_id, "rotated-secret")).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while other.get(&app_id).unwrap().app_secret.expose_secret() != "rotated-secret" {
        assert!(tokio::time::Instant::now() < deadline, "change not noticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reg.delete(&app_id).await.unwrap();
    assert!(reg.get(&app_id).is_none());

    // The wrong master key is refused with a clear error.
    let wrong = MasterKey::from_base64(&MasterKey::generate_base64()).unwrap();
    let e = wrong.verify_against(&db).await.unwrap_err().to_string();
    assert!(e.contains("security.master_key"), "{e}");
    let _ = stop.0.send(());
}

#[tokio::test]
async fn secrets_on_postgres() {
    secrets_and_refresh(&fresh_database().await).await;
}

#[tokio::test]
async fn secrets_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    secrets_and_refresh(&format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("s.sqlite").display()
    ))
    .await;
}

/// Replicas started together on an empty PostgreSQL database each migrate it
/// (`database.auto_migrate`): they take turns instead of failing on each other's tables.
#[tokio::test]
async fn replicas_migrating_at_once_all_start() {
    let url = fresh_database().await;
    let starts = (0..4).map(|_| bridge_store::connect(&url, 2, true));
    for (i, r) in futures_util::future::join_all(starts)
        .await
        .into_iter()
        .enumerate()
    {
        if let Err(e) = r {
            panic!("replica {i} failed to start: {e:#}");
        }
    }
    let db = bridge_store::connect(&url, 1, false).await.unwrap();
    let row = db
        .query_one(Statement::from_string(
            db.get_database_backend(),
            "SELECT count(*) AS n, count(DISTINCT version) AS d FROM seaql_migrations".to_string(),
        ))
        .await
        .unwrap()
        .unwrap();
    let (n, d): (i64, i64) = (row.try_get("", "n").unwrap(), row.try_get("", "d").unwrap());
    assert!(n > 0, "the migrations ran");
    assert_eq!(n, d, "each migration recorded once");
}
