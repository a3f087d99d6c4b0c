//! Whose analytics a request reads, from its key's [`Role`] and its `?site=`: a site's read key
//! reads its own site; an operator key the site `?site=` names, or every site at once; without
//! sites, the whole data, as before sites existed. And `GET /analytics/sites`, the sites a key may
//! read, for the dashboard's name and picker.
//!
//! `?site=` is parsed, never escaped ([`SiteId::parse`]): anything that is not a site id is 400
//! `invalid_query` naming the parameter, before any site is looked up. A read key naming another
//! site gets 403 whether that site exists or not, so a key cannot probe for other sites; an
//! operator naming a site that is not configured gets 404.

use std::sync::Arc;

use axum::Extension;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::super::ApiError;
use crate::access::{Access, Role};
use crate::analytics::query::Totals;
use crate::site::SiteId;

/// What an ingest key gets from the analytics routes.
const INGEST_KEY: &str =
    "an ingest key sends records (POST /logs); the site's read key reads its analytics";
/// What a read key naming another site gets, whether that site exists or not.
const OTHER_SITE: &str = "a site's read key reads that site's analytics only";

/// The `site` query parameter, which every analytics route takes.
#[derive(Debug, Deserialize)]
pub(in crate::http) struct SiteParam {
    pub site: Option<String>,
}

/// A site as the answers name it.
#[derive(Debug, Clone, Serialize)]
pub(in crate::http) struct SiteName {
    pub id: SiteId,
    pub name: String,
}

/// A site's own totals in an answer over every site.
#[derive(Debug, Serialize)]
pub(in crate::http) struct SiteTotals {
    #[serde(flatten)]
    pub site: SiteName,
    #[serde(flatten)]
    pub totals: Totals,
}

/// Whose data a request reads.
#[derive(Debug)]
pub(in crate::http) enum Scope {
    /// One root: a site's (`Some`), or the whole data without sites (`None`).
    One(Option<SiteId>),
    /// Every configured site, in the sites file's order (an operator without `?site=`).
    Every(Vec<SiteName>),
}

impl Scope {
    /// Whose data `role` reads when asking for `site` (the `?site=` value), with `access` the
    /// keys and sites in force when the request arrived.
    pub fn of(role: &Role, access: &Access, site: Option<&str>) -> Result<Scope, ApiError> {
        let named = site.map(parse).transpose()?;
        match role {
            Role::Ingest(_) => Err(ApiError::Forbidden(INGEST_KEY)),
            Role::Read(own) => match named {
                Some(named) if named != *own => Err(ApiError::Forbidden(OTHER_SITE)),
                _ => Ok(Scope::One(Some(own.clone()))),
            },
            Role::Operator if !access.has_sites() => match named {
                Some(_) => Err(ApiError::BadQuery(
                    "site: this service has no sites (sites.file is not set)".into(),
                )),
                None => Ok(Scope::One(None)),
            },
            Role::Operator => match named {
                Some(named) if access.site(&named).is_none() => Err(ApiError::NotFound(format!(
                    "no site {named:?} is configured"
                ))),
                Some(named) => Ok(Scope::One(Some(named))),
                None => Ok(Scope::Every(names(access))),
            },
        }
    }

    /// The roots read: one, or every site's.
    pub fn roots(&self) -> Vec<Option<SiteId>> {
        match self {
            Scope::One(root) => vec![root.clone()],
            Scope::Every(sites) => sites.iter().map(|site| Some(site.id.clone())).collect(),
        }
    }

    /// Each site's totals, for an answer over every site (`None` for one root).
    pub fn per_site(&self, totals: Vec<Totals>) -> Option<Vec<SiteTotals>> {
        let Scope::Every(sites) = self else {
            return None;
        };
        let per_site = sites.iter().cloned().zip(totals);
        Some(
            per_site
                .map(|(site, totals)| SiteTotals { site, totals })
                .collect(),
        )
    }
}

/// `?site=` as a site id, or 400 `invalid_query` saying what a site id is.
fn parse(site: &str) -> Result<SiteId, ApiError> {
    SiteId::parse(site).map_err(|e| ApiError::BadQuery(format!("site: {site:?} {e}")))
}

/// The configured sites' ids and names, in the file's order.
fn names(access: &Access) -> Vec<SiteName> {
    (access.sites().iter())
        .map(|site| SiteName {
            id: site.id.clone(),
            name: site.name.clone(),
        })
        .collect()
}

/// The `site` parameter of a request, or 400 `invalid_query` (a repeated `site` is refused).
pub(in crate::http) fn site_param(
    params: Result<Query<SiteParam>, QueryRejection>,
) -> Result<Option<String>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadQuery(e.body_text()))?;
    Ok(params.site)
}

/// `GET /analytics/sites`: the sites the key reads (`id`, `name`), and whether it may read every
/// site at once (`"allSites": true`, an operator: the dashboard then offers a picker). Without
/// sites, none, for an operator.
pub(in crate::http) async fn get_sites(
    Extension(role): Extension<Role>,
    Extension(access): Extension<Arc<Access>>,
) -> Result<Response, ApiError> {
    let sites = match Scope::of(&role, &access, None)? {
        Scope::Every(sites) => sites,
        Scope::One(None) => Vec::new(),
        Scope::One(Some(own)) => names(&access)
            .into_iter()
            .filter(|site| site.id == own)
            .collect(),
    };
    let all_sites = role == Role::Operator;
    Ok(axum::Json(json!({ "sites": sites, "allSites": all_sites })).into_response())
}
