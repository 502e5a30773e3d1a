//! Deterministic generation of an organisation (ChaCha RNG seeded from the spec), and the
//! demo tenant/app with fixed credentials.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::ids;
use crate::state::{
    App, Chat, ContactScope, Department, I18nName, Leader, Membership, State, Tenant, User,
    UserStatus,
};

/// Fixed credentials of the demo app, so code and the CLI agree without configuration.
pub mod demo {
    pub const TENANT_KEY: &str = "2ed263bf32cf1651";
    pub const TENANT_NAME: &str = "Demo Tenant";
    pub const APP_ID: &str = "cli_a5f2c9e3d8b04f17";
    pub const APP_SECRET: &str = "dG9vbGluZy1kZW1vLWFwcC1zZWNyZXQx";
    pub const ENCRYPT_KEY: &str = "demo-encrypt-key-0123456789abcdef";
    pub const VERIFICATION_TOKEN: &str = "v3rIfIcAtIoNtOkEnDeMo0123456789ab";
    pub const APP_NAME: &str = "feishu-bridge demo";
}

/// The size and seed of a generated organisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerateSpec {
    pub users: usize,
    pub departments: usize,
    pub seed: u64,
}

impl std::str::FromStr for GenerateSpec {
    type Err = anyhow::Error;

    /// Parses `users=N,departments=M,seed=S` (any order; seed defaults to 0).
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let mut spec = GenerateSpec {
            users: 0,
            departments: 0,
            seed: 0,
        };
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("expected key=value, got {part:?}"))?;
            match k.trim() {
                "users" => spec.users = v.trim().parse()?,
                "departments" => spec.departments = v.trim().parse()?,
                "seed" => spec.seed = v.trim().parse()?,
                other => anyhow::bail!("unknown key {other:?} (users, departments, seed)"),
            }
        }
        Ok(spec)
    }
}

/// The demo app with its fixed credentials, contact scope and availability = all members.
pub fn demo_app() -> App {
    App {
        app_id: demo::APP_ID.into(),
        app_secret: demo::APP_SECRET.into(),
        app_name: demo::APP_NAME.into(),
        encrypt_key: Some(demo::ENCRYPT_KEY.into()),
        verification_token: demo::VERIFICATION_TOKEN.into(),
        event_request_url: None,
        callback_url: None,
        redirect_urls: vec![],
        contact_scope: ContactScope::all(),
        availability: ContactScope::all(),
        admins: vec![],
        bot_enabled: true,
        scopes: default_scopes(),
        creator_id: None,
    }
}

/// The API scopes the demo app holds.
pub fn default_scopes() -> Vec<String> {
    [
        "contact:contact.base:readonly",
        "contact:contact:readonly_as_app",
        "contact:user.employee_id:readonly",
        "contact:user.email:readonly",
        "contact:user.phone:readonly",
        "contact:department.organize:readonly",
        "im:message",
        "im:message:send_as_bot",
        "im:message:send_multi_users",
        "im:message:send_multi_depts",
        "im:message.p2p_msg:readonly",
        "im:message.group_at_msg:readonly",
        "admin:app.admin:check",
        "application:application:self_manage",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

const SURNAMES: &[&str] = &[
    "Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Zhao", "Huang", "Zhou", "Wu", "Xu", "Sun", "Hu",
    "Zhu", "Gao", "Lin", "He", "Guo", "Ma", "Luo",
];
const GIVEN: &[&str] = &[
    "Wei", "Fang", "Na", "Min", "Jing", "Li", "Qiang", "Lei", "Jun", "Yang", "Yong", "Yan", "Jie",
    "Tao", "Ming", "Chao", "Xiu", "Hua", "Ping", "Gang", "Hui", "Xin", "Yu", "Bo",
];
const UNITS: &[&str] = &[
    "Engineering",
    "Sales",
    "Marketing",
    "Finance",
    "Operations",
    "Legal",
    "Support",
    "Research",
    "Design",
    "Platform",
    "Security",
    "Data",
    "Logistics",
    "Procurement",
    "HR",
];
const CITIES: &[&str] = &[
    "Beijing", "Shanghai", "Shenzhen", "Hangzhou", "Chengdu", "Wuhan",
];

/// Generates the demo tenant with `spec.users` users in `spec.departments` departments.
pub fn generate(spec: GenerateSpec) -> State {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut tenant = Tenant {
        tenant_key: demo::TENANT_KEY.into(),
        name: demo::TENANT_NAME.into(),
        apps: vec![demo_app()],
        ..Tenant::default()
    };
    let dept_ids = generate_departments(&mut rng, spec.departments, &mut tenant.departments);
    generate_users(&mut rng, spec.users, &dept_ids, &mut tenant.users);
    assign_leaders(&mut rng, &mut tenant);
    if let Some(first) = tenant.users.values_mut().next() {
        first.is_tenant_manager = true;
        let id = first.user_id.clone();
        tenant.apps[0].admins.push(id.clone());
        tenant.apps[0].creator_id = Some(id);
    }
    add_all_hands_chat(&mut rng, &mut tenant);
    State {
        tenants: vec![tenant],
        settings: Default::default(),
    }
}

/// The organisation of `make demo`: four departments and sixteen people with Chinese names and
/// English names; the first person (张伟 Zhang Wei) administers the demo app.
pub fn demo_state() -> State {
    const DEPARTMENTS: &[(&str, &str)] = &[
        ("研发部", "Engineering"),
        ("销售部", "Sales"),
        ("市场部", "Marketing"),
        ("财务部", "Finance"),
    ];
    const PEOPLE: &[(&str, &str)] = &[
        ("张伟", "Zhang Wei"),
        ("王芳", "Wang Fang"),
        ("李娜", "Li Na"),
        ("刘洋", "Liu Yang"),
        ("陈静", "Chen Jing"),
        ("杨磊", "Yang Lei"),
        ("赵敏", "Zhao Min"),
        ("黄勇", "Huang Yong"),
        ("周杰", "Zhou Jie"),
        ("吴婷", "Wu Ting"),
        ("徐强", "Xu Qiang"),
        ("孙丽", "Sun Li"),
        ("胡军", "Hu Jun"),
        ("朱琳", "Zhu Lin"),
        ("高翔", "Gao Xiang"),
        ("林峰", "Lin Feng"),
    ];
    let mut state = generate(GenerateSpec {
        users: PEOPLE.len(),
        departments: DEPARTMENTS.len(),
        seed: 7,
    });
    if let Some(t) = state.tenants.first_mut() {
        for (d, (zh, en)) in t.departments.values_mut().zip(DEPARTMENTS) {
            d.name = (*zh).into();
            d.i18n_name = I18nName {
                zh_cn: (*zh).into(),
                en_us: (*en).into(),
                ja_jp: (*en).into(),
            };
        }
        for (i, (u, (zh, en))) in t.users.values_mut().zip(PEOPLE).enumerate() {
            u.name = (*zh).into();
            u.en_name = (*en).into();
            u.email = format!("{}@example.com", en.to_lowercase().replace(' ', "."));
            u.status.is_frozen = false;
            u.status.is_resigned = false;
            if i == 0 {
                u.job_title = "CTO".into();
            }
        }
    }
    state
}

fn generate_departments(
    rng: &mut ChaCha8Rng,
    n: usize,
    out: &mut BTreeMap<String, Department>,
) -> Vec<String> {
    let top = n.clamp(1, 12).min(n);
    let mut ids: Vec<String> = Vec::with_capacity(n);
    for i in 0..n {
        let odid = ids::open_department_id(rng);
        let parent = if i < top {
            "0".to_string()
        } else {
            // Attach to a random earlier department: a tree of logarithmic depth.
            ids[rng.gen_range(0..i)].clone()
        };
        let unit = UNITS[rng.gen_range(0..UNITS.len())];
        let name = format!("{unit} {i}");
        let chat_id = if rng.gen_bool(0.1) {
            Some(ids::chat_id(rng))
        } else {
            None
        };
        out.insert(
            odid.clone(),
            Department {
                open_department_id: odid.clone(),
                department_id: format!("D{i:06}"),
                name: name.clone(),
                i18n_name: I18nName {
                    zh_cn: format!("部门 {i}"),
                    en_us: name,
                    ja_jp: format!("部署 {i}"),
                },
                parent,
                order: i as i64,
                leaders: vec![],
                chat_id,
            },
        );
        ids.push(odid);
    }
    ids
}

fn generate_users(
    rng: &mut ChaCha8Rng,
    n: usize,
    depts: &[String],
    out: &mut BTreeMap<String, User>,
) {
    for i in 0..n {
        let user_id = format!("u{i:07}");
        let surname = SURNAMES[rng.gen_range(0..SURNAMES.len())];
        let given = GIVEN[rng.gen_range(0..GIVEN.len())];
        let k = match rng.gen_range(0..100) {
            0..=79 => 1,
            80..=94 => 2,
            _ => 3,
        };
        let mut departments: Vec<Membership> = Vec::new();
        if depts.is_empty() {
            departments.push(Membership {
                department: "0".into(),
                user_order: 0,
                department_order: 0,
            });
        } else {
            for j in 0..k {
                let d = depts[rng.gen_range(0..depts.len())].clone();
                if departments.iter().all(|m| m.department != d) {
                    departments.push(Membership {
                        department: d,
                        user_order: rng.gen_range(0..1000),
                        department_order: j,
                    });
                }
            }
        }
        let status = UserStatus {
            is_frozen: rng.gen_bool(0.01),
            ..UserStatus::default()
        };
        out.insert(
            user_id.clone(),
            User {
                user_id,
                name: format!("{surname} {given} {i}"),
                en_name: format!("{given} {surname}"),
                nickname: String::new(),
                email: format!("user{i}@example.com"),
                enterprise_email: format!("user{i}@corp.example.com"),
                mobile: format!("+8613{:09}", rng.gen_range(0..1_000_000_000u64)),
                mobile_visible: true,
                gender: rng.gen_range(0..3),
                avatar_key: format!("v2_{}", ids::random_hex(rng, 24)),
                city: CITIES[rng.gen_range(0..CITIES.len())].into(),
                country: "CN".into(),
                work_station: format!("F{}-{:03}", rng.gen_range(1..30), rng.gen_range(0..500)),
                join_time: 1_500_000_000 + rng.gen_range(0..250_000_000),
                is_tenant_manager: false,
                employee_no: format!("E{i:07}"),
                employee_type: if rng.gen_bool(0.9) {
                    1
                } else {
                    rng.gen_range(2..6)
                },
                job_title: ["Engineer", "Manager", "Analyst", "Designer", "Specialist"]
                    [rng.gen_range(0..5)]
                .into(),
                leader_user_id: None,
                departments,
                status,
                job_level_id: String::new(),
                job_family_id: String::new(),
            },
        );
    }
}

fn assign_leaders(rng: &mut ChaCha8Rng, t: &mut Tenant) {
    let mut members: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for u in t.users.values() {
        if let Some(m) = u.departments.first() {
            members
                .entry(m.department.clone())
                .or_default()
                .push(u.user_id.clone());
        }
    }
    let mut leader_of: BTreeMap<String, String> = BTreeMap::new();
    for (d, ms) in &members {
        if let Some(dep) = t.departments.get_mut(d) {
            let leader = ms[rng.gen_range(0..ms.len())].clone();
            dep.leaders.push(Leader {
                leader_type: 1,
                user_id: leader.clone(),
            });
            leader_of.insert(d.clone(), leader);
        }
    }
    for u in t.users.values_mut() {
        if let Some(m) = u.departments.first() {
            if let Some(l) = leader_of.get(&m.department) {
                if *l != u.user_id {
                    u.leader_user_id = Some(l.clone());
                }
            }
        }
    }
}

fn add_all_hands_chat(rng: &mut ChaCha8Rng, t: &mut Tenant) {
    let chat_id = ids::chat_id(rng);
    let members: Vec<String> = t.users.keys().take(50).cloned().collect();
    t.chats.insert(
        chat_id.clone(),
        Chat {
            chat_id,
            name: "All hands".into(),
            chat_type: "group".into(),
            members,
            bots: vec![demo::APP_ID.into()],
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_org() {
        let spec = GenerateSpec {
            users: 200,
            departments: 20,
            seed: 7,
        };
        let a = generate(spec);
        let b = generate(spec);
        assert_eq!(a.to_json().ok(), b.to_json().ok());
        let c = generate(GenerateSpec { seed: 8, ..spec });
        assert_ne!(a.to_json().ok(), c.to_json().ok());
        assert_eq!(a.tenants[0].users.len(), 200);
        assert_eq!(a.tenants[0].departments.len(), 20);
    }

    #[test]
    fn spec_parses() {
        let s: GenerateSpec = "users=10,departments=2,seed=3"
            .parse()
            .unwrap_or(GenerateSpec {
                users: 0,
                departments: 0,
                seed: 0,
            });
        assert_eq!(
            s,
            GenerateSpec {
                users: 10,
                departments: 2,
                seed: 3
            }
        );
        assert!("users=x".parse::<GenerateSpec>().is_err());
    }
}
