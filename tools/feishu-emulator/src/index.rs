//! Lookup tables derived from a [`Tenant`]: the department tree, members, id maps and each
//! app's visible set (contact scope). Rebuilt after every mutation; never serialised.

use std::collections::{HashMap, HashSet};

use crate::ids;
use crate::state::{ContactScope, Tenant};

/// What one app may see of the organisation.
#[derive(Debug, Default, Clone)]
pub struct Visible {
    pub all: bool,
    pub departments: HashSet<String>,
    pub users: HashSet<String>,
}

impl Visible {
    pub fn department(&self, odid: &str) -> bool {
        if odid == "0" {
            return self.all;
        }
        self.all || self.departments.contains(odid)
    }

    pub fn user(&self, user_id: &str) -> bool {
        self.all || self.users.contains(user_id)
    }
}

/// Cache key of a rendered user object: (app_id, user_id_type, department_id_type, user_id).
pub type RenderKey = (String, u8, u8, String);

/// Derived tables of one tenant.
#[derive(Debug, Default)]
pub struct TenantIndex {
    /// Rendered user objects (compact JSON); emptied by every rebuild, i.e. every mutation.
    pub rendered: std::sync::Mutex<HashMap<RenderKey, std::sync::Arc<str>>>,
    /// parent open_department_id ("0" for the root) -> children, sorted by (order, id).
    pub children: HashMap<String, Vec<String>>,
    /// custom department_id -> open_department_id.
    pub dept_by_custom: HashMap<String, String>,
    /// open_department_id ("0" for root-direct members) -> active member user_ids, sorted.
    pub members: HashMap<String, Vec<String>>,
    /// open_id (of any app) -> (app_id, user_id).
    pub user_by_open: HashMap<String, (String, String)>,
    pub user_by_union: HashMap<String, String>,
    pub user_by_email: HashMap<String, String>,
    pub user_by_mobile: HashMap<String, String>,
    /// open_department_id -> (member_count incl. sub-departments, primary_member_count).
    pub counts: HashMap<String, (u64, u64)>,
    /// app_id -> contact-scope view.
    pub scope: HashMap<String, Visible>,
    /// app_id -> availability view.
    pub availability: HashMap<String, Visible>,
}

impl TenantIndex {
    pub fn build(t: &Tenant) -> Self {
        let mut ix = TenantIndex::default();
        let mut kids: HashMap<String, Vec<(i64, String)>> = HashMap::new();
        for d in t.departments.values() {
            kids.entry(d.parent.clone())
                .or_default()
                .push((d.order, d.open_department_id.clone()));
            ix.dept_by_custom
                .insert(d.department_id.clone(), d.open_department_id.clone());
        }
        for (k, mut v) in kids {
            v.sort();
            ix.children
                .insert(k, v.into_iter().map(|(_, id)| id).collect());
        }
        let mut members: HashMap<String, Vec<(i64, String)>> = HashMap::new();
        for u in t.users.values() {
            for app in &t.apps {
                ix.user_by_open.insert(
                    ids::open_id(&app.app_id, &u.user_id),
                    (app.app_id.clone(), u.user_id.clone()),
                );
            }
            ix.user_by_union
                .insert(t.union_id(&u.user_id), u.user_id.clone());
            if !u.email.is_empty() {
                ix.user_by_email.insert(u.email.clone(), u.user_id.clone());
            }
            if !u.mobile.is_empty() {
                ix.user_by_mobile
                    .insert(u.mobile.clone(), u.user_id.clone());
            }
            if u.status.is_resigned {
                continue;
            }
            for m in &u.departments {
                members
                    .entry(m.department.clone())
                    .or_default()
                    .push((m.user_order, u.user_id.clone()));
            }
        }
        for (k, mut v) in members {
            v.sort();
            ix.members
                .insert(k, v.into_iter().map(|(_, id)| id).collect());
        }
        ix.build_counts(t);
        for app in &t.apps {
            let s = ix.visible(&app.contact_scope);
            ix.scope.insert(app.app_id.clone(), s);
            let a = ix.visible(&app.availability);
            ix.availability.insert(app.app_id.clone(), a);
        }
        ix
    }

    fn build_counts(&mut self, t: &Tenant) {
        // Distinct active users in each subtree; primary = whose first department is there.
        let mut direct: HashMap<&str, u64> = HashMap::new();
        let mut primary: HashMap<&str, u64> = HashMap::new();
        for u in t.users.values().filter(|u| !u.status.is_resigned) {
            let mut seen: HashSet<&str> = HashSet::new();
            for m in &u.departments {
                let mut cur = m.department.as_str();
                while cur != "0" && seen.insert(cur) {
                    *direct.entry(cur).or_default() += 1;
                    cur = t.departments.get(cur).map_or("0", |d| d.parent.as_str());
                }
            }
            if let Some(m) = u.departments.first() {
                let mut cur = m.department.as_str();
                let mut guard = 0;
                while cur != "0" && guard < 10_000 {
                    *primary.entry(cur).or_default() += 1;
                    cur = t.departments.get(cur).map_or("0", |d| d.parent.as_str());
                    guard += 1;
                }
            }
        }
        for id in t.departments.keys() {
            let c = direct.get(id.as_str()).copied().unwrap_or(0);
            let p = primary.get(id.as_str()).copied().unwrap_or(0);
            self.counts.insert(id.clone(), (c, p));
        }
    }

    /// All departments under `root` (excluded), breadth first, in child order.
    pub fn descendants(&self, root: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut queue = std::collections::VecDeque::from([root.to_string()]);
        while let Some(cur) = queue.pop_front() {
            if let Some(kids) = self.children.get(&cur) {
                for k in kids {
                    out.push(k.clone());
                    queue.push_back(k.clone());
                }
            }
        }
        out
    }

    fn visible(&self, scope: &ContactScope) -> Visible {
        if scope.all {
            return Visible {
                all: true,
                ..Visible::default()
            };
        }
        let mut v = Visible::default();
        for d in &scope.department_ids {
            if v.departments.insert(d.clone()) {
                for x in self.descendants(d) {
                    v.departments.insert(x);
                }
            }
        }
        for d in &v.departments {
            if let Some(m) = self.members.get(d) {
                v.users.extend(m.iter().cloned());
            }
        }
        v.users.extend(scope.user_ids.iter().cloned());
        v
    }
}
