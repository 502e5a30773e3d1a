//! Turns a notification's targets into recipient records, once: chats and the replied-to
//! message are single sends; users are single sends when few, else batch_send chunks of at
//! most 200 ids. Departments are expanded to their members (sub-departments included) from
//! directory-sync's tables, so each member is tracked; a department the directory does not
//! know goes to batch_send as a department id and Feishu expands it. Users named several ways
//! get one message where the directory can tell they are the same person.

use std::collections::{HashMap, HashSet};

use bridge_store::entity::{
    department, membership, notification, notification_batch, notification_recipient as rcpt, user,
};
use chrono::Utc;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set, TransactionTrait,
};

use crate::message::Targets;
use crate::records::{self, B_PENDING, QUEUED};

/// One planned recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub kind: &'static str,
    pub target: String,
    pub chunk: Option<i32>,
}

/// Ids per IN (...) list.
const IN_CHUNK: usize = 1000;

/// Plans and records the recipients of `n`, unless done before. Returns the recipient count.
pub async fn plan(
    db: &sea_orm::DatabaseConnection,
    n: &notification::Model,
    batch_threshold: usize,
    batch_max: usize,
) -> Result<(), DbErr> {
    if n.planned {
        return Ok(());
    }
    let targets: Targets = serde_json::from_str(&n.targets).unwrap_or_default();
    let planned = resolve(
        db,
        &n.app_id,
        &targets,
        n.reply_to.as_deref(),
        batch_threshold,
        batch_max,
    )
    .await?;
    let txn = db.begin().await?;
    let now = Utc::now();
    let mut chunks: Vec<i32> = planned.iter().filter_map(|p| p.chunk).collect();
    chunks.sort_unstable();
    chunks.dedup();
    for rows in planned.chunks(IN_CHUNK) {
        let models = rows.iter().map(|p| rcpt::ActiveModel {
            notification_id: Set(n.id.clone()),
            kind: Set(p.kind.to_string()),
            target: Set(p.target.clone()),
            via: Set(if p.chunk.is_some() { "batch" } else { "single" }.to_string()),
            chunk: Set(p.chunk),
            status: Set(QUEUED.into()),
            message_id: Set(None),
            code: Set(None),
            msg: Set(None),
            attempts: Set(0),
            updated_at: Set(now),
            ..Default::default()
        });
        rcpt::Entity::insert_many(models)
            .on_conflict(
                OnConflict::columns([
                    rcpt::Column::NotificationId,
                    rcpt::Column::Kind,
                    rcpt::Column::Target,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
    }
    if !chunks.is_empty() {
        notification_batch::Entity::insert_many(chunks.iter().map(|c| {
            notification_batch::ActiveModel {
                notification_id: Set(n.id.clone()),
                chunk: Set(*c),
                batch_message_id: Set(None),
                status: Set(B_PENDING.into()),
                valid_count: Set(0),
                success_count: Set(0),
                polls: Set(0),
                created_at: Set(now),
                updated_at: Set(now),
            }
        }))
        .on_conflict(
            OnConflict::columns([
                notification_batch::Column::NotificationId,
                notification_batch::Column::Chunk,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
    }
    let total = planned.len() as i64;
    notification::Entity::update_many()
        .col_expr(
            notification::Column::Planned,
            sea_orm::sea_query::Expr::value(true),
        )
        .col_expr(
            notification::Column::Recipients,
            sea_orm::sea_query::Expr::value(total),
        )
        .col_expr(
            notification::Column::Status,
            sea_orm::sea_query::Expr::value(records::DELIVERING),
        )
        .col_expr(
            notification::Column::UpdatedAt,
            sea_orm::sea_query::Expr::value(now),
        )
        .filter(notification::Column::Id.eq(n.id.clone()))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    metrics::counter!("notifier_recipients_total").increment(total as u64);
    Ok(())
}

/// The directory's view of an app's users: open_ids by the other id kinds.
struct Directory {
    by_user_id: HashMap<String, String>,
    by_union_id: HashMap<String, String>,
    by_email: HashMap<String, String>,
}

async fn lookup_users(
    db: &impl ConnectionTrait,
    app_id: &str,
    t: &Targets,
) -> Result<Directory, DbErr> {
    let mut d = Directory {
        by_user_id: HashMap::new(),
        by_union_id: HashMap::new(),
        by_email: HashMap::new(),
    };
    for ids in t.user_ids.chunks(IN_CHUNK) {
        for u in live_users(app_id)
            .filter(user::Column::UserId.is_in(ids.iter().cloned()))
            .all(db)
            .await?
        {
            if let Some(k) = u.user_id.clone() {
                d.by_user_id.insert(k, u.open_id.clone());
            }
        }
    }
    for ids in t.union_ids.chunks(IN_CHUNK) {
        for u in live_users(app_id)
            .filter(user::Column::UnionId.is_in(ids.iter().cloned()))
            .all(db)
            .await?
        {
            if let Some(k) = u.union_id.clone() {
                d.by_union_id.insert(k, u.open_id.clone());
            }
        }
    }
    for ids in t.emails.chunks(IN_CHUNK) {
        let cond = sea_orm::Condition::any()
            .add(user::Column::Email.is_in(ids.iter().cloned()))
            .add(user::Column::EnterpriseEmail.is_in(ids.iter().cloned()));
        for u in live_users(app_id).filter(cond).all(db).await? {
            for e in [u.email.clone(), u.enterprise_email.clone()]
                .into_iter()
                .flatten()
            {
                d.by_email.insert(e, u.open_id.clone());
            }
        }
    }
    Ok(d)
}

fn live_users(app_id: &str) -> sea_orm::Select<user::Entity> {
    user::Entity::find()
        .filter(user::Column::AppId.eq(app_id))
        .filter(user::Column::Deleted.eq(false))
}

/// Members (open_ids) of the departments the directory knows, sub-departments included; and
/// the departments it does not know.
async fn expand_departments(
    db: &impl ConnectionTrait,
    app_id: &str,
    ids: &[String],
) -> Result<(Vec<String>, Vec<String>), DbErr> {
    if ids.is_empty() {
        return Ok((vec![], vec![]));
    }
    let all = department::Entity::find()
        .filter(department::Column::AppId.eq(app_id))
        .filter(department::Column::Deleted.eq(false))
        .all(db)
        .await?;
    let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut by_custom: HashMap<&str, &str> = HashMap::new();
    let mut known: HashSet<&str> = HashSet::new();
    for d in &all {
        known.insert(d.open_department_id.as_str());
        if let Some(c) = d.department_id.as_deref() {
            by_custom.insert(c, d.open_department_id.as_str());
        }
        children
            .entry(d.parent_id.as_deref().unwrap_or("0"))
            .or_default()
            .push(d.open_department_id.as_str());
    }
    let mut unknown = Vec::new();
    let mut subtree: HashSet<String> = HashSet::new();
    for id in ids {
        let root = if known.contains(id.as_str()) {
            Some(id.as_str())
        } else {
            by_custom.get(id.as_str()).copied()
        };
        let Some(root) = root else {
            unknown.push(id.clone());
            continue;
        };
        let mut stack = vec![root];
        while let Some(d) = stack.pop() {
            if subtree.insert(d.to_string()) {
                stack.extend(children.get(d).into_iter().flatten().copied());
            }
        }
    }
    let subtree: Vec<String> = subtree.into_iter().collect();
    let mut members: Vec<String> = Vec::new();
    for part in subtree.chunks(IN_CHUNK) {
        let rows: Vec<String> = membership::Entity::find()
            .filter(membership::Column::AppId.eq(app_id))
            .filter(membership::Column::OpenDepartmentId.is_in(part.iter().cloned()))
            .all(db)
            .await?
            .into_iter()
            .map(|m| m.open_id)
            .collect();
        members.extend(rows);
    }
    members.sort();
    members.dedup();
    // Only live users: resigned and deleted members would be refused by Feishu anyway.
    let mut live = Vec::with_capacity(members.len());
    for part in members.chunks(IN_CHUNK) {
        let rows = live_users(app_id)
            .filter(user::Column::IsResigned.eq(false))
            .filter(user::Column::OpenId.is_in(part.iter().cloned()))
            .all(db)
            .await?;
        live.extend(rows.into_iter().map(|u| u.open_id));
    }
    live.sort();
    Ok((live, unknown))
}

/// The recipients of `targets`.
pub async fn resolve(
    db: &impl ConnectionTrait,
    app_id: &str,
    targets: &Targets,
    reply_to: Option<&str>,
    batch_threshold: usize,
    batch_max: usize,
) -> Result<Vec<Planned>, DbErr> {
    let mut out = Vec::new();
    if let Some(m) = reply_to {
        out.push(Planned {
            kind: "reply",
            target: m.to_string(),
            chunk: None,
        });
    }
    for c in &targets.chat_ids {
        out.push(Planned {
            kind: "chat_id",
            target: c.clone(),
            chunk: None,
        });
    }
    let dir = lookup_users(db, app_id, targets).await?;
    let (members, unknown_depts) = expand_departments(db, app_id, &targets.department_ids).await?;
    // Everyone as (kind, id), one entry per person where the directory can tell.
    let mut seen: HashSet<String> = HashSet::new();
    let mut users: Vec<(&'static str, String)> = Vec::new();
    for id in &targets.open_ids {
        if seen.insert(id.clone()) {
            users.push(("open_id", id.clone()));
        }
    }
    for (kind, ids, map) in [
        ("user_id", &targets.user_ids, &dir.by_user_id),
        ("union_id", &targets.union_ids, &dir.by_union_id),
        ("email", &targets.emails, &dir.by_email),
    ] {
        for id in ids {
            match map.get(id) {
                Some(open) if !seen.insert(open.clone()) => {}
                _ => users.push((kind, id.clone())),
            }
        }
    }
    let batch = !targets.department_ids.is_empty() || users.len() > batch_threshold;
    if !batch {
        out.extend(users.into_iter().map(|(kind, target)| Planned {
            kind,
            target,
            chunk: None,
        }));
        return Ok(out);
    }
    for m in members {
        if seen.insert(m.clone()) {
            users.push(("open_id", m));
        }
    }
    // batch_send takes open_ids, user_ids, union_ids and department_ids; an email goes as the
    // open_id the directory knows, or as a single send (Feishu resolves it) otherwise.
    let mut lists: Vec<(&'static str, Vec<String>)> = vec![
        ("open_id", vec![]),
        ("user_id", vec![]),
        ("union_id", vec![]),
        ("department_id", unknown_depts),
    ];
    for (kind, id) in users {
        match kind {
            "email" => match dir.by_email.get(&id) {
                Some(open) => lists[0].1.push(open.clone()),
                None => out.push(Planned {
                    kind: "email",
                    target: id,
                    chunk: None,
                }),
            },
            "open_id" => lists[0].1.push(id),
            "user_id" => lists[1].1.push(id),
            _ => lists[2].1.push(id),
        }
    }
    let mut chunk = 0i32;
    for (kind, ids) in lists {
        let mut ids = ids;
        ids.dedup();
        for part in ids.chunks(batch_max.max(1)) {
            out.extend(part.iter().map(|id| Planned {
                kind,
                target: id.clone(),
                chunk: Some(chunk),
            }));
            chunk += 1;
        }
    }
    Ok(out)
}
