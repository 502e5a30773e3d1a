//! The [`Emulator`] handle: shared state behind short-lived std locks (never held across
//! `.await`), plus the runtime tables (tokens, OAuth codes, limits, faults, push hub).

use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::clock::Clock;
use crate::error::EmulatorError;
use crate::faults::Faults;
use crate::generate::{self, GenerateSpec};
use crate::index::TenantIndex;
use crate::limits::Limiter;
use crate::push::Hub;
use crate::runtime::Runtime;
use crate::state::{State, Tenant};

/// The state plus its derived indexes, kept in step.
#[derive(Debug, Default)]
pub struct World {
    pub state: State,
    pub index: Vec<TenantIndex>,
}

impl World {
    pub fn new(state: State) -> Self {
        let index = state.tenants.iter().map(TenantIndex::build).collect();
        Self { state, index }
    }

    /// Rebuilds the index of one tenant after a mutation, returning the previous one.
    pub fn reindex(&mut self, tenant: usize) -> TenantIndex {
        let new = self
            .state
            .tenants
            .get(tenant)
            .map(TenantIndex::build)
            .unwrap_or_default();
        match self.index.get_mut(tenant) {
            Some(slot) => std::mem::replace(slot, new),
            None => {
                self.index.push(new);
                TenantIndex::default()
            }
        }
    }

    pub fn tenant(&self, i: usize) -> Option<(&Tenant, &TenantIndex)> {
        Some((self.state.tenants.get(i)?, self.index.get(i)?))
    }
}

pub(crate) struct Inner {
    pub world: RwLock<World>,
    pub rt: Mutex<Runtime>,
    pub limiter: Mutex<Limiter>,
    pub faults: Mutex<Faults>,
    pub hub: Hub,
    pub ws: crate::ws::WsHub,
    pub clock: Clock,
}

/// A cheaply cloneable handle to one emulated Feishu platform.
#[derive(Clone)]
pub struct Emulator {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Emulator")
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Emulator {
    pub fn new(state: State) -> Self {
        let seed = state.settings.seed;
        Self {
            inner: Arc::new(Inner {
                world: RwLock::new(World::new(state)),
                rt: Mutex::new(Runtime::default()),
                limiter: Mutex::new(Limiter::default()),
                faults: Mutex::new(Faults::new(seed)),
                hub: Hub::new(seed),
                ws: Default::default(),
                clock: Clock::default(),
            }),
        }
    }

    /// An emulator serving a generated organisation and the demo app.
    pub fn generate(spec: GenerateSpec) -> Self {
        Self::new(generate::generate(spec))
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, World> {
        self.inner.world.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, World> {
        self.inner.world.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn rt(&self) -> MutexGuard<'_, Runtime> {
        lock(&self.inner.rt)
    }

    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// Moves the emulator's clock forward (token, code and uuid expiry).
    pub fn advance_clock(&self, by: std::time::Duration) {
        self.inner.clock.advance(by);
    }

    /// A copy of the whole state (for saving or inspection).
    pub fn snapshot(&self) -> State {
        self.read().state.clone()
    }

    /// Replaces the whole state; runtime tables (tokens, codes, limits) are cleared.
    pub fn load(&self, state: State) {
        *self.write() = World::new(state);
        *self.rt() = Runtime::default();
        *lock(&self.inner.limiter) = Limiter::default();
    }

    pub fn save(&self, path: &std::path::Path) -> anyhow::Result<()> {
        self.snapshot().save(path)
    }

    pub fn settings(&self) -> crate::state::Settings {
        self.read().state.settings.clone()
    }

    /// Replaces the settings (token lifetime, event time factor, shares, rate-limit scale).
    pub fn set_settings(&self, s: crate::state::Settings) -> Result<(), EmulatorError> {
        if !(s.rate_limit_scale > 0.0 && s.rate_limit_scale.is_finite()) {
            return Err(EmulatorError::Invalid(
                "rate_limit_scale must be a positive number (limits cannot be switched off)".into(),
            ));
        }
        if !(s.event_time_factor >= 0.0 && s.event_time_factor.is_finite()) {
            return Err(EmulatorError::Invalid(
                "event_time_factor must be >= 0".into(),
            ));
        }
        for (name, v) in [
            ("duplicate_share", s.duplicate_share),
            ("reorder_share", s.reorder_share),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(EmulatorError::Invalid(format!(
                    "{name} must be within 0..=1"
                )));
            }
        }
        if s.token_reissue_below_secs > s.token_lifetime_secs {
            return Err(EmulatorError::Invalid(
                "token_reissue_below_secs must not exceed token_lifetime_secs".into(),
            ));
        }
        self.write().state.settings = s;
        *lock(&self.inner.limiter) = Limiter::default();
        Ok(())
    }

    /// The app's record (credentials, URLs, scope).
    pub fn app(&self, app_id: &str) -> Option<crate::state::App> {
        let w = self.read();
        w.state.tenants.iter().find_map(|t| t.app(app_id).cloned())
    }

    /// The first app of the first tenant (the demo app for generated states).
    pub fn default_app(&self) -> Option<crate::state::App> {
        let w = self.read();
        w.state
            .tenants
            .first()
            .and_then(|t| t.apps.first().cloned())
    }

    /// A canonical dump of the derived tables (members, counts, visible sets, lookups), to
    /// check that incremental index updates equal a rebuild.
    #[doc(hidden)]
    pub fn index_fingerprint(&self) -> String {
        use std::collections::BTreeMap;
        let w = self.read();
        let mut out = String::new();
        for ix in &w.index {
            fn sorted(m: &std::collections::HashMap<String, String>) -> BTreeMap<&String, &String> {
                m.iter().collect()
            }
            let members: BTreeMap<_, _> =
                ix.members.iter().filter(|(_, v)| !v.is_empty()).collect();
            let counts: BTreeMap<_, _> = ix.counts.iter().collect();
            let opens: BTreeMap<_, _> = ix.user_by_open.iter().collect();
            let vis = |m: &std::collections::HashMap<String, crate::index::Visible>| {
                m.iter()
                    .map(|(k, v)| {
                        let mut u: Vec<_> = v.users.iter().collect();
                        u.sort();
                        let mut d: Vec<_> = v.departments.iter().collect();
                        d.sort();
                        (k.clone(), format!("{} {u:?} {d:?}", v.all))
                    })
                    .collect::<BTreeMap<_, _>>()
            };
            out.push_str(&format!(
                "{members:?}\n{counts:?}\n{opens:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n",
                sorted(&ix.user_by_union),
                sorted(&ix.user_by_email),
                sorted(&ix.user_by_mobile),
                vis(&ix.scope),
                vis(&ix.availability)
            ));
        }
        out
    }

    /// The open_id that `app_id` sees for a tenant `user_id`.
    pub fn open_id(&self, app_id: &str, user_id: &str) -> String {
        crate::ids::open_id(app_id, user_id)
    }
}
