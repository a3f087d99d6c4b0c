//! Who a bearer key is, and the set of keys in force: the operator keys (`auth.tokens`) and each
//! site's ingest and read keys (the sites file). The set is replaced whole at a reload
//! ([`AccessCell::replace`]); a request resolves its key once, against the set current when it
//! arrived, and keeps the [`Role`] it got until it is answered.
//!
//! Which role may use which group of routes is decided here, once ([`Access::admit`]), for the
//! HTTP layer's key check; what a reload does (and counts) is [`Reloader`]'s.

use std::sync::{Arc, RwLock};

use subtle::ConstantTimeEq;

use crate::config::{AuthConfig, Config, ConfigError, Protected, Site, Sites};
use crate::site::SiteId;

mod reload;

pub use reload::{ReloadError, Reloader};

/// A group of routes behind the key check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteGroup {
    /// `POST /logs`.
    Ingest,
    /// `/analytics*` (what the dashboard reads).
    Analytics,
    /// `/metrics`.
    Metrics,
    /// `/admin/*`: operator only, whenever any key is configured.
    Admin,
}

/// Why a request may not use a group of routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No key, or none in force (401).
    Unauthorized,
    /// A key in force whose role may not use the group; says which key would (403).
    Forbidden(&'static str),
}

/// What a key may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// `auth.tokens`: reads every site (and, with no sites configured, ingests as today).
    Operator,
    /// A site's ingest key: `POST /logs` for that site, nothing else.
    Ingest(SiteId),
    /// A site's read key: that site's analytics and dashboard, nothing else.
    Read(SiteId),
}

impl Role {
    /// The site a site key belongs to; `None` for an operator.
    pub fn site(&self) -> Option<&SiteId> {
        match self {
            Role::Operator => None,
            Role::Ingest(site) | Role::Read(site) => Some(site),
        }
    }
}

/// The keys in force, and the sites they name.
pub struct Access {
    auth: AuthConfig,
    sites: Option<Sites>,
    /// Every key with its role, operator keys first.
    keys: Vec<(Vec<u8>, Role)>,
}

impl Access {
    /// The keys `config` names, with the sites file read and validated (see [`Sites::load`]).
    pub fn load(config: &Config) -> Result<Access, ConfigError> {
        Ok(Access::new(config.auth.clone(), Sites::load(config)?))
    }

    /// The keys of `auth` and `sites`.
    pub fn new(auth: AuthConfig, sites: Option<Sites>) -> Access {
        let operator =
            (auth.tokens.iter()).map(|token| (token.as_bytes().to_vec(), Role::Operator));
        let of_sites = sites.iter().flat_map(|sites| &sites.list).flat_map(|site| {
            let ingest = (site.ingest_keys.iter())
                .map(|k| (k.as_bytes().to_vec(), Role::Ingest(site.id.clone())));
            let read = (site.read_keys.iter())
                .map(|k| (k.as_bytes().to_vec(), Role::Read(site.id.clone())));
            ingest.chain(read)
        });
        let keys = operator.chain(of_sites).collect();
        Access { auth, sites, keys }
    }

    /// Whether sites are configured (`sites.file`): then every record belongs to one.
    pub fn has_sites(&self) -> bool {
        self.sites.is_some()
    }

    /// The configured sites, in the file's order (none without sites).
    pub fn sites(&self) -> &[Site] {
        self.sites.as_ref().map_or(&[], |sites| &sites.list)
    }

    /// The site with id `id`, if configured.
    pub fn site(&self, id: &SiteId) -> Option<&Site> {
        self.sites.as_ref().and_then(|sites| sites.get(id))
    }

    /// The roots of the data in force: each configured site's (`Some(id)`), or the whole data
    /// (`None`) without sites.
    pub fn roots(&self) -> Vec<Option<SiteId>> {
        if self.has_sites() {
            self.sites()
                .iter()
                .map(|site| Some(site.id.clone()))
                .collect()
        } else {
            vec![None]
        }
    }

    /// Whether requests to `routes` need a key: with sites, ingest and analytics always do (the
    /// key says whose data it is); otherwise as `auth.protect` says, when tokens are set.
    pub fn protects(&self, routes: Protected) -> bool {
        (self.has_sites() && routes != Protected::Metrics) || self.auth.protects(routes)
    }

    /// The role a request presenting `presented` (its bearer token, if any) has on `group`, or
    /// why it has none. A group that needs no key (no tokens and no sites, or not in
    /// `auth.protect`) is used as the operator, as before keys; otherwise the key must be in
    /// force and its role allowed on the group: with sites, only an ingest key sends (for its
    /// site), only read and operator keys read analytics, and only operator keys read a
    /// protected `/metrics` (it carries every site's labels) or reload.
    pub fn admit(&self, group: RouteGroup, presented: Option<&[u8]>) -> Result<Role, Denied> {
        let needs_key = match group {
            RouteGroup::Ingest => self.protects(Protected::Ingest),
            RouteGroup::Analytics => self.protects(Protected::Analytics),
            RouteGroup::Metrics => self.protects(Protected::Metrics),
            RouteGroup::Admin => !self.keys.is_empty() || self.has_sites(),
        };
        if !needs_key {
            return Ok(Role::Operator);
        }
        let role = (presented.and_then(|key| self.resolve(key))).ok_or(Denied::Unauthorized)?;
        match (group, &role) {
            (RouteGroup::Ingest, Role::Ingest(_))
            | (RouteGroup::Analytics, Role::Read(_) | Role::Operator)
            | (RouteGroup::Metrics | RouteGroup::Admin, Role::Operator) => Ok(role),
            // Without sites, every key is an operator key and sends, as before sites.
            (RouteGroup::Ingest, Role::Operator) if !self.has_sites() => Ok(role),
            (RouteGroup::Ingest, Role::Operator) => Err(Denied::Forbidden(
                "an operator key reads every site but sends for none: send records with the \
                 site's ingest key",
            )),
            (RouteGroup::Ingest, Role::Read(_)) => Err(Denied::Forbidden(
                "a read key cannot send records: send them with the site's ingest key",
            )),
            (RouteGroup::Analytics, Role::Ingest(_)) => Err(Denied::Forbidden(
                "an ingest key cannot read analytics: read them with the site's read key",
            )),
            (RouteGroup::Metrics, _) => Err(Denied::Forbidden(
                "/metrics carries every site's figures: read it with an operator key \
                 (auth.tokens)",
            )),
            (RouteGroup::Admin, _) => Err(Denied::Forbidden(
                "only an operator key (auth.tokens) may administer the service",
            )),
        }
    }

    /// The role of the presented key, if it is one in force. Every key is compared, in constant
    /// time, so the answer time does not reveal how much of a guess matched, nor which key.
    pub fn resolve(&self, presented: &[u8]) -> Option<Role> {
        let mut found = None;
        for (key, role) in &self.keys {
            if bool::from(key.as_slice().ct_eq(presented)) {
                found = Some(role.clone());
            }
        }
        found
    }
}

/// The keys in force, replaced whole at a reload.
pub struct AccessCell(RwLock<Arc<Access>>);

impl AccessCell {
    pub fn new(access: Access) -> AccessCell {
        AccessCell(RwLock::new(Arc::new(access)))
    }

    /// The set in force now; a request holds it until it is answered.
    pub fn current(&self) -> Arc<Access> {
        self.0.read().expect("access lock").clone()
    }

    /// Puts `access` in force for requests that arrive from now on.
    pub fn replace(&self, access: Access) {
        *self.0.write().expect("access lock") = Arc::new(access);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(sites: &str) -> (Config, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sites.yaml");
        std::fs::write(&file, sites).unwrap();
        let mut config = Config::default();
        config.auth.tokens = vec!["op".to_owned()];
        config.sites.file = file;
        (config, dir)
    }

    fn site(id: &str) -> SiteId {
        SiteId::parse(id).unwrap()
    }

    #[test]
    fn each_key_resolves_to_its_role_and_nothing_else_does() {
        let (config, _dir) = config(
            "sites:\n- id: a\n  ingestKeys: [a-in]\n  readKeys: [a-read]\n\
             - id: b\n  ingestKeys: [b-in]\n",
        );
        let access = Access::load(&config).unwrap();
        assert_eq!(access.resolve(b"op"), Some(Role::Operator));
        assert_eq!(access.resolve(b"a-in"), Some(Role::Ingest(site("a"))));
        assert_eq!(access.resolve(b"a-read"), Some(Role::Read(site("a"))));
        assert_eq!(access.resolve(b"b-in"), Some(Role::Ingest(site("b"))));
        for wrong in [&b""[..], b"a-i", b"a-inn", b"A-IN", b"b-read"] {
            assert_eq!(access.resolve(wrong), None, "{wrong:?}");
        }
        assert_eq!(access.sites().len(), 2);
        assert!(access.site(&site("b")).is_some() && access.site(&site("c")).is_none());
    }

    #[test]
    fn with_sites_ingest_and_analytics_always_need_a_key() {
        let (mut config, _dir) = config("sites: []\n");
        config.auth.tokens.clear();
        config.auth.protect.clear();
        let access = Access::load(&config).unwrap();
        assert!(access.protects(Protected::Ingest) && access.protects(Protected::Analytics));
        assert!(
            !access.protects(Protected::Metrics),
            "metrics as auth.protect says"
        );
        let without = Access::new(config.auth.clone(), None);
        assert!(
            !without.protects(Protected::Ingest),
            "no tokens, no sites: open, as today"
        );
    }

    #[test]
    fn a_replaced_set_serves_new_requests_while_a_held_one_is_unchanged() {
        let (config, _dir) = config("sites:\n- id: a\n  ingestKeys: [a-in]\n");
        let cell = AccessCell::new(Access::load(&config).unwrap());
        let held = cell.current();
        cell.replace(Access::new(config.auth.clone(), None));
        assert_eq!(held.resolve(b"a-in"), Some(Role::Ingest(site("a"))));
        assert_eq!(cell.current().resolve(b"a-in"), None);
    }
}
