//! Lookup tables derived from a [`Tenant`]: the department tree, members, id maps and each
//! app's visible set (contact scope). Rebuilt after every mutation; never serialised.

use std::collections::{HashMap, HashSet};

use crate::ids;
use crate::state::{ContactScope, Tenant, User};

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
        // Departments become integer slots so the ancestor walks avoid string lookups.
        let pos: HashMap<&str, usize> = t
            .departments
            .keys()
            .enumerate()
            .map(|(i, k)| (k.as_str(), i))
            .collect();
        let parent: Vec<Option<usize>> = t
            .departments
            .values()
            .map(|d| pos.get(d.parent.as_str()).copied())
            .collect();
        let n = parent.len();
        let mut count = vec![0u64; n];
        let mut primary = vec![0u64; n];
        let mut seen: Vec<usize> = Vec::new();
        for u in t.users.values().filter(|u| !u.status.is_resigned) {
            seen.clear();
            for m in &u.departments {
                let mut cur = pos.get(m.department.as_str()).copied();
                while let Some(c) = cur {
                    if seen.contains(&c) {
                        break;
                    }
                    seen.push(c);
                    cur = parent[c];
                }
            }
            for &c in &seen {
                count[c] += 1;
            }
            let mut cur = u
                .departments
                .first()
                .and_then(|m| pos.get(m.department.as_str()).copied());
            let mut steps = 0;
            while let Some(c) = cur {
                if steps > n {
                    break;
                }
                primary[c] += 1;
                cur = parent[c];
                steps += 1;
            }
        }
        for (i, id) in t.departments.keys().enumerate() {
            self.counts.insert(id.clone(), (count[i], primary[i]));
        }
    }

    /// Updates the tables for one user's change without a rebuild (department visibility
    /// cannot change through a user mutation).
    pub fn user_changed(&mut self, t: &Tenant, before: Option<&User>, after: Option<&User>) {
        let uid = before
            .or(after)
            .map(|u| u.user_id.clone())
            .unwrap_or_default();
        if let Some(b) = before {
            self.unlink(t, b, -1);
        }
        if let Some(a) = after {
            self.unlink(t, a, 1);
        } else {
            for app in &t.apps {
                self.user_by_open.remove(&ids::open_id(&app.app_id, &uid));
            }
            self.user_by_union.remove(&t.union_id(&uid));
        }
        for app in &t.apps {
            for (scope, vis) in [
                (&app.contact_scope, self.scope.get_mut(&app.app_id)),
                (&app.availability, self.availability.get_mut(&app.app_id)),
            ] {
                let Some(vis) = vis else { continue };
                if vis.all {
                    continue;
                }
                vis.users.remove(&uid);
                let member = after.is_some_and(|u| {
                    !u.status.is_resigned
                        && u.departments
                            .iter()
                            .any(|m| vis.departments.contains(&m.department))
                });
                if member || scope.user_ids.contains(&uid) {
                    vis.users.insert(uid.clone());
                }
            }
        }
        crate::emulator::lock(&self.rendered).retain(|k, _| k.3 != uid);
    }

    /// Removes (`sign` -1) or adds (+1) a user's entries in the lookup, member and count tables.
    fn unlink(&mut self, t: &Tenant, u: &User, sign: i64) {
        let add = sign > 0;
        let uid = &u.user_id;
        if add {
            for app in &t.apps {
                self.user_by_open.insert(
                    ids::open_id(&app.app_id, uid),
                    (app.app_id.clone(), uid.clone()),
                );
            }
            self.user_by_union.insert(t.union_id(uid), uid.clone());
        }
        for (map, key) in [
            (&mut self.user_by_email, &u.email),
            (&mut self.user_by_mobile, &u.mobile),
        ] {
            if key.is_empty() {
                continue;
            }
            if add {
                map.insert(key.clone(), uid.clone());
            } else if map.get(key) == Some(uid) {
                map.remove(key);
            }
        }
        if u.status.is_resigned {
            return;
        }
        let mut seen: Vec<&str> = Vec::new();
        for m in &u.departments {
            let list = self.members.entry(m.department.clone()).or_default();
            list.retain(|x| x != uid);
            if add {
                list.push(uid.clone());
                let order = |id: &String| {
                    t.users
                        .get(id)
                        .and_then(|x| x.departments.iter().find(|n| n.department == m.department))
                        .map_or(0, |n| n.user_order)
                };
                list.sort_by(|a, b| (order(a), a).cmp(&(order(b), b)));
            }
            let mut cur = m.department.as_str();
            while cur != "0" && !seen.contains(&cur) {
                seen.push(cur);
                cur = t.departments.get(cur).map_or("0", |d| d.parent.as_str());
            }
        }
        for d in seen {
            if let Some(c) = self.counts.get_mut(d) {
                c.0 = c.0.saturating_add_signed(sign);
            }
        }
        let mut cur = u.departments.first().map_or("0", |m| m.department.as_str());
        let mut steps = 0;
        while cur != "0" && steps <= t.departments.len() {
            if let Some(c) = self.counts.get_mut(cur) {
                c.1 = c.1.saturating_add_signed(sign);
            }
            cur = t.departments.get(cur).map_or("0", |d| d.parent.as_str());
            steps += 1;
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
