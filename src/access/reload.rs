//! Reloading the sites file while serving (`SIGHUP`, `POST /admin/reload`): the file is read and
//! validated whole with the configuration the service started with; a valid one is put in force
//! at once for requests that arrive afterwards (a request in flight keeps the set it started
//! with), an invalid one is refused with every problem named and the running set kept. Operator
//! keys (`auth.tokens`) are part of that configuration: they change only at a restart.

use std::sync::{Arc, Mutex};

use super::{Access, AccessCell};
use crate::config::{Config, ConfigError};
use crate::metrics::{Metrics, RELOAD_APPLIED, RELOAD_REFUSED};

/// Why a reload put nothing new in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(
        "sites.file is not set: there is no sites file to reload (operator keys, auth.tokens, \
         change only at a restart)"
    )]
    NoSitesFile,
    #[error("the sites file was refused, the running set is kept: {0}")]
    Invalid(ConfigError),
}

/// Reloads the keys in force from the sites file, logging and counting each reload.
pub struct Reloader {
    cell: Arc<AccessCell>,
    config: Config,
    metrics: Metrics,
    /// One reload at a time, so that the per-site series follow the set put in force last.
    reloading: Mutex<()>,
}

impl Reloader {
    /// A reloader of `cell` with the configuration the service started with; makes the per-site
    /// series of the sites in force now.
    pub fn new(cell: Arc<AccessCell>, config: &Config, metrics: Metrics) -> Reloader {
        let ids = site_ids(&cell.current());
        metrics.sites.configure(ids.iter().map(String::as_str), &[]);
        Reloader {
            cell,
            config: config.clone(),
            metrics,
            reloading: Mutex::new(()),
        }
    }

    /// The keys in force.
    pub fn cell(&self) -> &Arc<AccessCell> {
        &self.cell
    }

    /// Reads the sites file again and, if it is valid, puts it in force; returns how many sites
    /// it has. `by` says what asked (`SIGHUP`, `POST /admin/reload`), for the log.
    pub fn reload(&self, by: &'static str) -> Result<usize, ReloadError> {
        if !self.config.sites.enabled() {
            tracing::warn!(
                by,
                "reload asked, but sites.file is not set: nothing to reload"
            );
            return Err(ReloadError::NoSitesFile);
        }
        let _one_at_a_time = self.reloading.lock().expect("reload lock");
        let access = match Access::load(&self.config) {
            Ok(access) => access,
            Err(err) => {
                self.metrics
                    .sites
                    .reloads
                    .with_label_values(&[RELOAD_REFUSED])
                    .inc();
                tracing::error!(
                    by,
                    problems = ?err.problems(),
                    "sites file refused, the running set is kept"
                );
                return Err(ReloadError::Invalid(err));
            }
        };
        let before = site_ids(&self.cell.current());
        let after = site_ids(&access);
        let sites = after.len();
        self.cell.replace(access);
        let before: Vec<&str> = before.iter().map(String::as_str).collect();
        (self.metrics.sites).configure(after.iter().map(String::as_str), &before);
        (self.metrics.sites.reloads)
            .with_label_values(&[RELOAD_APPLIED])
            .inc();
        tracing::info!(by, sites, "sites file reloaded");
        Ok(sites)
    }
}

fn site_ids(access: &Access) -> Vec<String> {
    (access.sites().iter())
        .map(|site| site.id.to_string())
        .collect()
}
