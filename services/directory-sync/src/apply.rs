//! Applying changes inside one database transaction: version checks (an older change never
//! overwrites a newer state; deletions leave tombstones), merges, memberships, placeholders
//! for departments not seen yet, and the org-change outbox rows, all committed together.

use std::collections::{HashMap, HashSet};

use bridge_contracts::v1::{org_change, Action, Entity, OrgChange};
use bridge_feishu::api::contact::{Department as FDept, User as FUser};
use bridge_store::entity::{department, membership, outbox, user};
use chrono::Utc;
use prost::Message as _;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, IntoActiveModel, QueryFilter,
    QuerySelect, Set,
};

use crate::model::{self, Place};

/// What caused a change.
#[derive(Debug, Clone)]
pub enum Cause {
    Event(String),
    Sync(String),
}

/// One user for [`Applier::upsert_users_bulk`].
pub struct BulkUser<'u> {
    pub user: &'u FUser,
    /// The user's departments when known; None leaves memberships as they are.
    pub places: Option<Vec<Place>>,
    pub version: i64,
    pub cause: Cause,
}

/// Counts of what an apply did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    pub created: u64,
    pub updated: u64,
    pub deleted: u64,
    pub unchanged: u64,
    /// Skipped because the stored state is newer (or a tombstone as new).
    pub stale: u64,
}

/// One transaction's worth of changes for one app at one version.
pub struct Applier<'a> {
    pub txn: &'a DatabaseTransaction,
    pub app_id: &'a str,
    pub version: i64,
    pub cause: Cause,
    pub users: Tally,
    pub departments: Tally,
    pub memberships: Tally,
    /// Outbox rows held back to be written in one statement (bulk paths only).
    buffer: Option<Vec<outbox::ActiveModel>>,
}

pub type DbResult<T> = Result<T, sea_orm::DbErr>;

impl<'a> Applier<'a> {
    pub fn new(txn: &'a DatabaseTransaction, app_id: &'a str, version: i64, cause: Cause) -> Self {
        Self {
            txn,
            app_id,
            version,
            cause,
            users: Tally::default(),
            departments: Tally::default(),
            memberships: Tally::default(),
            buffer: None,
        }
    }

    async fn load_user(&self, open_id: &str) -> DbResult<Option<user::Model>> {
        user::Entity::find_by_id((self.app_id.to_string(), open_id.to_string()))
            .lock_exclusive()
            .one(self.txn)
            .await
    }

    async fn load_department(&self, id: &str) -> DbResult<Option<department::Model>> {
        department::Entity::find_by_id((self.app_id.to_string(), id.to_string()))
            .lock_exclusive()
            .one(self.txn)
            .await
    }

    async fn memberships_of(&self, open_id: &str) -> DbResult<Vec<membership::Model>> {
        membership::Entity::find()
            .filter(membership::Column::AppId.eq(self.app_id))
            .filter(membership::Column::OpenId.eq(open_id))
            .all(self.txn)
            .await
    }

    async fn save_user(&self, existed: bool, row: user::Model) -> DbResult<()> {
        let am = row.into_active_model().reset_all();
        if existed {
            am.update(self.txn).await?;
        } else {
            am.insert(self.txn).await?;
        }
        Ok(())
    }

    async fn save_department(&self, existed: bool, row: department::Model) -> DbResult<()> {
        let am = row.into_active_model().reset_all();
        if existed {
            am.update(self.txn).await?;
        } else {
            am.insert(self.txn).await?;
        }
        Ok(())
    }

    /// Writes one org-change message to the outbox (or holds it for a bulk write).
    async fn emit(
        &mut self,
        entity: Entity,
        action: Action,
        key: String,
        changed: Vec<String>,
        after: org_change::After,
    ) -> DbResult<()> {
        let now = Utc::now();
        let (noun, verb) = (entity_word(entity), action_word(action));
        let msg = OrgChange {
            app_id: self.app_id.to_string(),
            entity: entity as i32,
            action: action as i32,
            version: self.version,
            changed_fields: changed,
            cause: Some(match &self.cause {
                Cause::Event(id) => org_change::Cause::EventId(id.clone()),
                Cause::Sync(id) => org_change::Cause::SyncRunId(id.clone()),
            }),
            after: Some(after),
            sequence: 0,
            committed_at_ms: now.timestamp_millis(),
        };
        let row = outbox::ActiveModel {
            app_id: Set(self.app_id.to_string()),
            entity_key: Set(format!("{noun}:{key}")),
            routing_key: Set(format!("{}.{noun}.{verb}", self.app_id)),
            message_id: Set(uuid::Uuid::new_v4().to_string()),
            type_name: Set(OrgChange::FULL_NAME.to_string()),
            body: Set(msg.encode_to_vec()),
            created_at: Set(now),
            published_at: Set(None),
            ..Default::default()
        };
        match self.buffer.as_mut() {
            Some(b) => b.push(row),
            None => {
                row.insert(self.txn).await?;
            }
        }
        Ok(())
    }

    /// Applies a page of users from the contact API at this applier's version and cause.
    pub async fn sync_users(&mut self, users: &[FUser], known: &HashSet<String>) -> DbResult<()> {
        let items = users
            .iter()
            .map(|u| BulkUser {
                user: u,
                places: model::places(u),
                version: self.version,
                cause: self.cause.clone(),
            })
            .collect();
        self.upsert_users_bulk(items, known).await
    }

    /// Applies users (distinct open_ids, each with its own version and cause) in a few
    /// statements: the rows and their memberships are read at once, new rows, memberships and
    /// outbox messages are written at once, and unchanged rows only get their new version.
    /// `known` holds departments that exist; others become placeholders.
    pub async fn upsert_users_bulk(
        &mut self,
        items: Vec<BulkUser<'_>>,
        known: &HashSet<String>,
    ) -> DbResult<()> {
        let (own_version, own_cause) = (self.version, self.cause.clone());
        let ids: Vec<String> = items
            .iter()
            .filter_map(|i| i.user.open_id.clone())
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let mut existing: HashMap<String, user::Model> = user::Entity::find()
            .filter(user::Column::AppId.eq(self.app_id))
            .filter(user::Column::OpenId.is_in(ids.clone()))
            .lock_exclusive()
            .all(self.txn)
            .await?
            .into_iter()
            .map(|u| (u.open_id.clone(), u))
            .collect();
        let mut current: HashMap<String, Vec<membership::Model>> = HashMap::new();
        for m in membership::Entity::find()
            .filter(membership::Column::AppId.eq(self.app_id))
            .filter(membership::Column::OpenId.is_in(ids))
            .all(self.txn)
            .await?
        {
            current.entry(m.open_id.clone()).or_default().push(m);
        }
        self.buffer = Some(Vec::new());
        let mut new_users = Vec::new();
        let mut new_memberships = Vec::new();
        let mut untouched: Vec<(i64, String)> = Vec::new();
        for item in items {
            let u = item.user;
            let Some(open_id) = u.open_id.clone() else {
                continue;
            };
            self.version = item.version;
            self.cause = item.cause;
            let before = existing.remove(&open_id);
            if before
                .as_ref()
                .is_some_and(|b| supersedes(b.version, b.deleted, self.version))
            {
                self.users.stale += 1;
                continue;
            }
            let existed = before.is_some();
            let was_live = before.as_ref().is_some_and(|b| !b.deleted);
            let mut row = before.unwrap_or_else(|| model::empty_user(self.app_id, &open_id));
            let mut changed: Vec<String> = model::merge_user(&mut row, u)
                .into_iter()
                .map(String::from)
                .collect();
            if row.deleted {
                changed.push("deleted".into());
            }
            row.deleted = false;
            row.version = self.version;
            row.updated_at = Utc::now();
            let have = current.remove(&open_id).unwrap_or_default();
            let mut after_places = have.clone();
            if let Some(places) = item.places {
                let unknown: Vec<String> = places
                    .iter()
                    .map(|p| p.department.clone())
                    .filter(|d| d != "0" && !known.contains(d))
                    .collect();
                self.ensure_departments(unknown.iter()).await?;
                let wanted: Vec<membership::Model> = places
                    .iter()
                    .map(|p| membership::Model {
                        app_id: self.app_id.to_string(),
                        open_id: open_id.clone(),
                        open_department_id: p.department.clone(),
                        user_order: p.user_order,
                        department_order: p.department_order,
                        is_primary: p.is_primary,
                    })
                    .collect();
                let as_set = |v: &[membership::Model]| {
                    let mut v = v.to_vec();
                    v.sort_by(|a, b| a.open_department_id.cmp(&b.open_department_id));
                    v
                };
                if as_set(&wanted) != as_set(&have) {
                    let wanted_places = places.clone();
                    if have.is_empty() {
                        // The common case in a first sync: only inserts, written in bulk.
                        for m in &wanted {
                            let key = format!("{open_id}:{}", m.open_department_id);
                            self.memberships.created += 1;
                            self.emit(
                                Entity::Membership,
                                Action::Created,
                                key,
                                vec![],
                                org_change::After::Membership(model::membership_pb(m)),
                            )
                            .await?;
                            new_memberships.push(m.clone().into_active_model());
                        }
                    } else {
                        self.set_memberships(&open_id, &have, &wanted_places)
                            .await?;
                    }
                    changed.push("department_ids".into());
                    after_places = wanted;
                }
            }
            let pb_user = model::user_pb(&row, &after_places);
            if !existed {
                new_users.push(row.into_active_model().reset_all());
            } else if changed.is_empty() {
                untouched.push((self.version, open_id.clone()));
            } else {
                row.into_active_model().reset_all().update(self.txn).await?;
            }
            if !was_live {
                self.users.created += 1;
                self.emit(
                    Entity::User,
                    Action::Created,
                    open_id,
                    vec![],
                    org_change::After::User(pb_user),
                )
                .await?;
            } else if !changed.is_empty() {
                self.users.updated += 1;
                self.emit(
                    Entity::User,
                    Action::Updated,
                    open_id,
                    changed,
                    org_change::After::User(pb_user),
                )
                .await?;
            } else {
                self.users.unchanged += 1;
            }
        }
        if !new_users.is_empty() {
            user::Entity::insert_many(new_users).exec(self.txn).await?;
        }
        if !new_memberships.is_empty() {
            membership::Entity::insert_many(new_memberships)
                .exec(self.txn)
                .await?;
        }
        // Seen unchanged: still at the new version, so a later-arriving older event does not
        // apply. Grouped by version (one statement for a whole sync page).
        untouched.sort();
        for group in untouched.chunk_by(|a, b| a.0 == b.0) {
            let version = group[0].0;
            user::Entity::update_many()
                .col_expr(
                    user::Column::Version,
                    sea_orm::sea_query::Expr::value(version),
                )
                .filter(user::Column::AppId.eq(self.app_id))
                .filter(user::Column::OpenId.is_in(group.iter().map(|(_, id)| id.clone())))
                .filter(user::Column::Version.lt(version))
                .exec(self.txn)
                .await?;
        }
        self.version = own_version;
        self.cause = own_cause;
        if let Some(rows) = self.buffer.take().filter(|r| !r.is_empty()) {
            outbox::Entity::insert_many(rows).exec(self.txn).await?;
        }
        Ok(())
    }

    /// Makes sure departments referenced by id exist, as placeholders when unknown.
    async fn ensure_departments(&mut self, ids: impl Iterator<Item = &String>) -> DbResult<()> {
        for id in ids {
            if id == "0" || id.is_empty() {
                continue;
            }
            let known = department::Entity::find_by_id((self.app_id.to_string(), id.clone()))
                .one(self.txn)
                .await?
                .is_some();
            if !known {
                let mut row = model::empty_department(self.app_id, id);
                row.updated_at = Utc::now();
                // A concurrent transaction may be creating the same department: then theirs
                // stands (a placeholder carries nothing to lose).
                department::Entity::insert(row.into_active_model().reset_all())
                    .on_conflict(
                        sea_orm::sea_query::OnConflict::columns([
                            department::Column::AppId,
                            department::Column::OpenDepartmentId,
                        ])
                        .do_nothing()
                        .to_owned(),
                    )
                    .exec_without_returning(self.txn)
                    .await?;
            }
        }
        Ok(())
    }

    /// Replaces a user's memberships with `places`; returns whether anything changed.
    async fn set_memberships(
        &mut self,
        open_id: &str,
        current: &[membership::Model],
        places: &[Place],
    ) -> DbResult<bool> {
        let mut changed = false;
        let wanted: HashMap<&str, &Place> =
            places.iter().map(|p| (p.department.as_str(), p)).collect();
        for m in current {
            if !wanted.contains_key(m.open_department_id.as_str()) {
                membership::Entity::delete_by_id((
                    self.app_id.to_string(),
                    open_id.to_string(),
                    m.open_department_id.clone(),
                ))
                .exec(self.txn)
                .await?;
                self.memberships.deleted += 1;
                changed = true;
                let key = format!("{open_id}:{}", m.open_department_id);
                self.emit(
                    Entity::Membership,
                    Action::Deleted,
                    key,
                    vec![],
                    org_change::After::Membership(model::membership_pb(m)),
                )
                .await?;
            }
        }
        for p in places {
            let row = membership::Model {
                app_id: self.app_id.to_string(),
                open_id: open_id.to_string(),
                open_department_id: p.department.clone(),
                user_order: p.user_order,
                department_order: p.department_order,
                is_primary: p.is_primary,
            };
            let key = format!("{open_id}:{}", p.department);
            let action = match current
                .iter()
                .find(|m| m.open_department_id == p.department)
            {
                Some(m) if *m == row => continue,
                Some(_) => {
                    row.clone()
                        .into_active_model()
                        .reset_all()
                        .update(self.txn)
                        .await?;
                    self.memberships.updated += 1;
                    Action::Updated
                }
                None => {
                    row.clone()
                        .into_active_model()
                        .reset_all()
                        .insert(self.txn)
                        .await?;
                    self.memberships.created += 1;
                    Action::Created
                }
            };
            changed = true;
            self.emit(
                Entity::Membership,
                action,
                key,
                vec![],
                org_change::After::Membership(model::membership_pb(&row)),
            )
            .await?;
        }
        Ok(changed)
    }

    /// Marks a user deleted (a tombstone, even for a user never seen, so a late older event
    /// cannot bring them back).
    pub async fn delete_user(&mut self, open_id: &str) -> DbResult<()> {
        let before = self.load_user(open_id).await?;
        if before.as_ref().is_some_and(|b| b.version > self.version) {
            self.users.stale += 1;
            return Ok(());
        }
        let existed = before.is_some();
        let was_live = before.as_ref().is_some_and(|b| !b.deleted);
        let mut row = before.unwrap_or_else(|| model::empty_user(self.app_id, open_id));
        row.deleted = true;
        row.version = self.version;
        row.updated_at = Utc::now();
        let memberships = self.memberships_of(open_id).await?;
        self.set_memberships(open_id, &memberships, &[]).await?;
        let pb_user = model::user_pb(&row, &memberships);
        self.save_user(existed, row).await?;
        if was_live {
            self.users.deleted += 1;
            self.emit(
                Entity::User,
                Action::Deleted,
                open_id.to_string(),
                vec![],
                org_change::After::User(pb_user),
            )
            .await?;
        }
        Ok(())
    }

    /// Creates or updates a department from Feishu's object.
    pub async fn upsert_department(&mut self, d: &FDept) -> DbResult<()> {
        let Some(id) = d.open_department_id.clone().filter(|s| !s.is_empty()) else {
            return Ok(());
        };
        let before = self.load_department(&id).await?;
        if before
            .as_ref()
            .is_some_and(|b| supersedes(b.version, b.deleted, self.version))
        {
            self.departments.stale += 1;
            return Ok(());
        }
        let existed = before.is_some();
        let was_live = before
            .as_ref()
            .is_some_and(|b| !b.deleted && !b.placeholder);
        let mut row = before.unwrap_or_else(|| model::empty_department(self.app_id, &id));
        let changed: Vec<String> = model::merge_department(&mut row, d)
            .into_iter()
            .map(String::from)
            .collect();
        row.deleted = false;
        row.placeholder = false;
        row.version = self.version;
        row.updated_at = Utc::now();
        if let Some(parent) = &row.parent_id {
            let parent = parent.clone();
            self.ensure_departments(std::iter::once(&parent)).await?;
        }
        let pb_dept = model::department_pb(&row);
        self.save_department(existed, row).await?;
        if !was_live {
            self.departments.created += 1;
            self.emit(
                Entity::Department,
                Action::Created,
                id,
                vec![],
                org_change::After::Department(pb_dept),
            )
            .await
        } else if !changed.is_empty() {
            self.departments.updated += 1;
            self.emit(
                Entity::Department,
                Action::Updated,
                id,
                changed,
                org_change::After::Department(pb_dept),
            )
            .await
        } else {
            self.departments.unchanged += 1;
            Ok(())
        }
    }

    /// Marks a department deleted (a tombstone) and removes the memberships in it.
    pub async fn delete_department(&mut self, id: &str) -> DbResult<()> {
        let before = self.load_department(id).await?;
        if before.as_ref().is_some_and(|b| b.version > self.version) {
            self.departments.stale += 1;
            return Ok(());
        }
        let existed = before.is_some();
        let was_live = before
            .as_ref()
            .is_some_and(|b| !b.deleted && !b.placeholder);
        let mut row = before.unwrap_or_else(|| model::empty_department(self.app_id, id));
        row.deleted = true;
        row.placeholder = false;
        row.version = self.version;
        row.updated_at = Utc::now();
        let members = membership::Entity::find()
            .filter(membership::Column::AppId.eq(self.app_id))
            .filter(membership::Column::OpenDepartmentId.eq(id))
            .all(self.txn)
            .await?;
        for m in members {
            membership::Entity::delete_by_id((
                m.app_id.clone(),
                m.open_id.clone(),
                m.open_department_id.clone(),
            ))
            .exec(self.txn)
            .await?;
            self.memberships.deleted += 1;
            let key = format!("{}:{}", m.open_id, m.open_department_id);
            self.emit(
                Entity::Membership,
                Action::Deleted,
                key,
                vec![],
                org_change::After::Membership(model::membership_pb(&m)),
            )
            .await?;
        }
        let pb_dept = model::department_pb(&row);
        self.save_department(existed, row).await?;
        if was_live {
            self.departments.deleted += 1;
            self.emit(
                Entity::Department,
                Action::Deleted,
                id.to_string(),
                vec![],
                org_change::After::Department(pb_dept),
            )
            .await?;
        }
        Ok(())
    }
}

/// Whether a stored row (its version, and whether it is a tombstone) wins over a change at
/// `version`. Newer rows win. Feishu stamps separate events for one change (the mobile and the
/// email edits, say) with the same create_time, so a tie applies: those events touch different
/// fields and merge. Only a tombstone wins a tie, so a deletion is never undone by an update of
/// the same instant.
fn supersedes(stored: i64, deleted: bool, version: i64) -> bool {
    stored > version || (deleted && stored == version)
}

pub fn entity_word(e: Entity) -> &'static str {
    match e {
        Entity::User => "user",
        Entity::Department => "department",
        Entity::Membership => "membership",
        Entity::Unspecified => "unspecified",
    }
}

pub fn action_word(a: Action) -> &'static str {
    match a {
        Action::Created => "created",
        Action::Updated => "updated",
        Action::Deleted => "deleted",
        Action::Unspecified => "unspecified",
    }
}
