//! The directory's records and how Feishu's objects (from events and from the contact API,
//! which share field names) merge onto them: present fields overwrite, absent fields keep
//! their value (Feishu leaves out fields the app has no field scope for, and `old_object`
//! holds only changed fields).

use bridge_contracts::v1 as pb;
use bridge_feishu::api::contact::{Department as FDept, User as FUser};
use bridge_store::entity::{department, membership, user};
use chrono::Utc;

/// A user's place in a department, as Feishu lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub department: String,
    pub user_order: Option<i64>,
    pub department_order: Option<i64>,
    pub is_primary: bool,
}

/// The user's departments from a Feishu user object: `department_ids` (API objects), else
/// `orders` (event objects, whose `department_ids` Feishu documents as never filled); None
/// when the object says nothing about departments.
pub fn places(u: &FUser) -> Option<Vec<Place>> {
    let orders = u.orders.as_deref().unwrap_or_default();
    let ids: Vec<String> = match (&u.department_ids, orders.is_empty()) {
        (Some(ids), _) => ids.clone(),
        (None, false) => orders
            .iter()
            .filter_map(|o| o.department_id.clone())
            .collect(),
        (None, true) => return None,
    };
    let primary = orders
        .iter()
        .find(|o| o.is_primary_dept == Some(true))
        .and_then(|o| o.department_id.clone())
        .or_else(|| ids.first().cloned());
    let mut out: Vec<Place> = Vec::with_capacity(ids.len());
    for id in ids {
        if out.iter().any(|p| p.department == id) {
            continue;
        }
        let o = orders
            .iter()
            .find(|o| o.department_id.as_deref() == Some(id.as_str()));
        out.push(Place {
            is_primary: primary.as_deref() == Some(id.as_str()),
            user_order: o.and_then(|o| o.user_order),
            department_order: o.and_then(|o| o.department_order),
            department: id,
        });
    }
    Some(out)
}

pub fn empty_user(app_id: &str, open_id: &str) -> user::Model {
    user::Model {
        app_id: app_id.into(),
        open_id: open_id.into(),
        union_id: None,
        user_id: None,
        name: None,
        en_name: None,
        nickname: None,
        email: None,
        enterprise_email: None,
        mobile: None,
        avatar: None,
        gender: None,
        is_frozen: false,
        is_resigned: false,
        is_activated: false,
        is_exited: false,
        is_unjoin: false,
        employee_no: None,
        employee_type: None,
        job_title: None,
        leader_user_id: None,
        city: None,
        country: None,
        work_station: None,
        join_time: None,
        custom_attrs: None,
        is_tenant_manager: false,
        deleted: false,
        version: 0,
        updated_at: Utc::now(),
    }
}

pub fn empty_department(app_id: &str, id: &str) -> department::Model {
    department::Model {
        app_id: app_id.into(),
        open_department_id: id.into(),
        department_id: None,
        parent_id: None,
        name: None,
        i18n_name: None,
        sort_order: None,
        leader_user_id: None,
        leaders: None,
        chat_id: None,
        member_count: None,
        deleted: false,
        placeholder: true,
        version: 0,
        updated_at: Utc::now(),
    }
}

macro_rules! merge {
    ($changed:ident, $row:ident . $field:ident, $value:expr, $name:literal) => {
        if let Some(v) = $value {
            if $row.$field.as_ref() != Some(&v) {
                $row.$field = Some(v);
                $changed.push($name);
            }
        }
    };
}

macro_rules! merge_flag {
    ($changed:ident, $row:ident . $field:ident, $value:expr, $name:literal) => {
        if $row.$field != $value {
            $row.$field = $value;
            $changed.push($name);
        }
    };
}

fn json<T: serde::Serialize>(v: &Option<T>) -> Option<String> {
    v.as_ref().and_then(|v| serde_json::to_string(v).ok())
}

/// Applies Feishu's user object onto `row`; returns the names of the fields that changed.
pub fn merge_user(row: &mut user::Model, u: &FUser) -> Vec<&'static str> {
    let mut c = Vec::new();
    merge!(c, row.union_id, u.union_id.clone(), "union_id");
    merge!(c, row.user_id, u.user_id.clone(), "user_id");
    merge!(c, row.name, u.name.clone(), "name");
    merge!(c, row.en_name, u.en_name.clone(), "en_name");
    merge!(c, row.nickname, u.nickname.clone(), "nickname");
    merge!(c, row.email, u.email.clone(), "email");
    merge!(
        c,
        row.enterprise_email,
        u.enterprise_email.clone(),
        "enterprise_email"
    );
    merge!(c, row.mobile, u.mobile.clone(), "mobile");
    merge!(c, row.avatar, json(&u.avatar), "avatar");
    merge!(c, row.gender, u.gender.map(|g| g as i32), "gender");
    merge!(c, row.employee_no, u.employee_no.clone(), "employee_no");
    merge!(
        c,
        row.employee_type,
        u.employee_type.map(|t| t as i32),
        "employee_type"
    );
    merge!(c, row.job_title, u.job_title.clone(), "job_title");
    merge!(
        c,
        row.leader_user_id,
        u.leader_user_id.clone(),
        "leader_user_id"
    );
    merge!(c, row.city, u.city.clone(), "city");
    merge!(c, row.country, u.country.clone(), "country");
    merge!(c, row.work_station, u.work_station.clone(), "work_station");
    merge!(c, row.join_time, u.join_time, "join_time");
    merge!(c, row.custom_attrs, json(&u.custom_attrs), "custom_attrs");
    if let Some(s) = &u.status {
        merge_flag!(c, row.is_frozen, s.is_frozen, "is_frozen");
        merge_flag!(c, row.is_resigned, s.is_resigned, "is_resigned");
        merge_flag!(c, row.is_activated, s.is_activated, "is_activated");
        merge_flag!(c, row.is_exited, s.is_exited, "is_exited");
        merge_flag!(c, row.is_unjoin, s.is_unjoin, "is_unjoin");
    }
    if let Some(m) = u.is_tenant_manager {
        merge_flag!(c, row.is_tenant_manager, m, "is_tenant_manager");
    }
    c
}

/// Applies Feishu's department object onto `row`; returns the names of changed fields.
pub fn merge_department(row: &mut department::Model, d: &FDept) -> Vec<&'static str> {
    let mut c = Vec::new();
    merge!(
        c,
        row.department_id,
        d.department_id.clone(),
        "department_id"
    );
    merge!(
        c,
        row.parent_id,
        d.parent_department_id.clone(),
        "parent_department_id"
    );
    merge!(c, row.name, d.name.clone(), "name");
    merge!(c, row.i18n_name, json(&d.i18n_name), "i18n_name");
    merge!(c, row.sort_order, d.order, "order");
    merge!(
        c,
        row.leader_user_id,
        d.leader_user_id.clone(),
        "leader_user_id"
    );
    merge!(c, row.leaders, json(&d.leaders), "leaders");
    merge!(c, row.chat_id, d.chat_id.clone(), "chat_id");
    if d.member_count.is_some() {
        row.member_count = d.member_count;
    }
    c
}

fn s(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

pub fn user_pb(row: &user::Model, places: &[membership::Model]) -> pb::User {
    let avatar_url = row
        .avatar
        .as_deref()
        .and_then(|a| serde_json::from_str::<serde_json::Value>(a).ok())
        .and_then(|v| {
            v.get("avatar_240")
                .and_then(|x| x.as_str())
                .map(str::to_string)
        })
        .unwrap_or_default();
    pb::User {
        open_id: row.open_id.clone(),
        union_id: s(&row.union_id),
        user_id: s(&row.user_id),
        name: s(&row.name),
        en_name: s(&row.en_name),
        nickname: s(&row.nickname),
        email: s(&row.email),
        enterprise_email: s(&row.enterprise_email),
        mobile: s(&row.mobile),
        avatar_url,
        gender: row.gender.unwrap_or(0),
        is_frozen: row.is_frozen,
        is_resigned: row.is_resigned,
        is_activated: row.is_activated,
        is_exited: row.is_exited,
        is_unjoin: row.is_unjoin,
        employee_no: s(&row.employee_no),
        employee_type: row.employee_type.unwrap_or(0),
        job_title: s(&row.job_title),
        leader_user_id: s(&row.leader_user_id),
        city: s(&row.city),
        country: s(&row.country),
        work_station: s(&row.work_station),
        join_time: row.join_time.unwrap_or(0),
        custom_attrs_json: s(&row.custom_attrs),
        department_ids: ordered_departments(places),
        deleted: row.deleted,
    }
}

/// Department ids, primary first, then in the order stored.
pub fn ordered_departments(places: &[membership::Model]) -> Vec<String> {
    let mut v: Vec<&membership::Model> = places.iter().collect();
    v.sort_by_key(|m| !m.is_primary);
    v.into_iter()
        .map(|m| m.open_department_id.clone())
        .collect()
}

pub fn department_pb(row: &department::Model) -> pb::Department {
    let i18n: Option<bridge_feishu::api::contact::I18nName> = row
        .i18n_name
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok());
    let leaders: Vec<bridge_feishu::api::contact::DepartmentLeader> = row
        .leaders
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default();
    pb::Department {
        open_department_id: row.open_department_id.clone(),
        department_id: s(&row.department_id),
        parent_open_department_id: s(&row.parent_id),
        name: s(&row.name),
        i18n_name: i18n.map(|i| pb::I18nName {
            zh_cn: i.zh_cn.unwrap_or_default(),
            en_us: i.en_us.unwrap_or_default(),
            ja_jp: i.ja_jp.unwrap_or_default(),
        }),
        order: row.sort_order.unwrap_or(0),
        leader_user_id: s(&row.leader_user_id),
        leader_user_ids: leaders.into_iter().filter_map(|l| l.leader_id).collect(),
        chat_id: s(&row.chat_id),
        deleted: row.deleted,
    }
}

pub fn membership_pb(m: &membership::Model) -> pb::Membership {
    pb::Membership {
        open_id: m.open_id.clone(),
        open_department_id: m.open_department_id.clone(),
        user_order: m.user_order.unwrap_or(0),
        department_order: m.department_order.unwrap_or(0),
        is_primary: m.is_primary,
    }
}

/// A department as the read API shows it.
pub fn department_pb_json(d: &department::Model) -> serde_json::Value {
    let p = department_pb(d);
    serde_json::json!({
        "open_department_id": p.open_department_id,
        "department_id": p.department_id,
        "parent_department_id": p.parent_open_department_id,
        "name": p.name,
        "i18n_name": p.i18n_name.map(|i| serde_json::json!({"zh_cn": i.zh_cn, "en_us": i.en_us, "ja_jp": i.ja_jp})),
        "order": p.order,
        "leader_user_id": p.leader_user_id,
        "leader_user_ids": p.leader_user_ids,
        "chat_id": p.chat_id,
        "member_count": d.member_count,
    })
}

/// A user as the read API shows it.
pub fn user_json(u: &user::Model, places: &[membership::Model]) -> serde_json::Value {
    let p = user_pb(u, places);
    serde_json::json!({
        "open_id": p.open_id, "union_id": p.union_id, "user_id": p.user_id,
        "name": p.name, "en_name": p.en_name, "nickname": p.nickname,
        "email": p.email, "enterprise_email": p.enterprise_email, "mobile": p.mobile,
        "avatar_url": p.avatar_url, "gender": p.gender,
        "status": {"is_frozen": p.is_frozen, "is_resigned": p.is_resigned, "is_activated": p.is_activated, "is_exited": p.is_exited, "is_unjoin": p.is_unjoin},
        "employee_no": p.employee_no, "employee_type": p.employee_type, "job_title": p.job_title,
        "leader_user_id": p.leader_user_id, "city": p.city, "country": p.country,
        "work_station": p.work_station, "join_time": p.join_time,
        "is_tenant_manager": u.is_tenant_manager,
        "custom_attrs": serde_json::from_str::<serde_json::Value>(&p.custom_attrs_json).ok(),
        "department_ids": p.department_ids,
        "memberships": places.iter().map(|m| serde_json::json!({
            "open_department_id": m.open_department_id, "user_order": m.user_order,
            "department_order": m.department_order, "is_primary": m.is_primary,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(json: serde_json::Value) -> FUser {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn absent_fields_keep_their_value() {
        let mut row = empty_user("cli_a", "ou_1");
        let c = merge_user(
            &mut row,
            &user(serde_json::json!({"name": "A", "email": "a@x", "mobile": "1"})),
        );
        assert_eq!(c, vec!["name", "email", "mobile"]);
        let c = merge_user(&mut row, &user(serde_json::json!({"name": "B"})));
        assert_eq!(c, vec!["name"]);
        assert_eq!(row.email.as_deref(), Some("a@x"));
        assert_eq!(row.mobile.as_deref(), Some("1"));
        assert!(merge_user(&mut row, &user(serde_json::json!({"name": "B"}))).is_empty());
    }

    #[test]
    fn places_from_ids_or_orders() {
        let u = user(serde_json::json!({"orders": [
            {"department_id": "od-2", "user_order": 3, "department_order": 1, "is_primary_dept": false},
            {"department_id": "od-1", "user_order": 0, "department_order": 0, "is_primary_dept": true}
        ]}));
        let p = places(&u).unwrap();
        assert_eq!(p.len(), 2);
        assert!(p[1].is_primary && p[1].department == "od-1");
        assert_eq!(p[0].user_order, Some(3));
        assert!(places(&user(serde_json::json!({"name": "x"}))).is_none());
        let p = places(&user(serde_json::json!({"department_ids": ["0", "od-9"]}))).unwrap();
        assert!(p[0].is_primary && !p[1].is_primary);
    }
}
