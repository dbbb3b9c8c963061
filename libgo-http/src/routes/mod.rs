//! The HTTP routes, one module per resource, merged into one OpenAPI router.

use std::sync::Arc;

use libgo_core::{Pagination, validate};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;

use crate::error::ApiResult;
use crate::state::AppState;

pub mod addresses;
pub mod containers;
pub mod disks;
pub mod hosts;
pub mod images;
pub mod instances;
pub mod monitoring;
pub mod resources;
pub mod system;
pub mod tasks;
pub mod tenancy;
pub mod users;
pub mod ws;

/// The router type of every module.
pub type Router = OpenApiRouter<Arc<AppState>>;

/// Builds a checked page request from optional query values.
pub fn pagination(page: Option<u32>, page_size: Option<u32>) -> ApiResult<Pagination> {
    let p = Pagination {
        page: page.unwrap_or(1),
        page_size: page_size.unwrap_or(Pagination::DEFAULT_PAGE_SIZE),
    };
    validate::pagination(p)?;
    Ok(p)
}

/// `?page=&pageSize=`.
#[derive(Debug, Clone, Copy, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page number, from 1 (default 1).
    pub page: Option<u32>,
    /// Items per page, 1–100 (default 50).
    pub page_size: Option<u32>,
}

impl PageQuery {
    /// The checked page request.
    pub fn get(&self) -> ApiResult<Pagination> {
        pagination(self.page, self.page_size)
    }
}

/// `?backend=` for resources that live on one backend.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct BackendQuery {
    /// Backend name; found across backends when absent.
    pub backend: Option<String>,
    /// Force (delete operations).
    #[serde(default)]
    pub force: bool,
}

/// Every route of the API.
pub fn router() -> Router {
    OpenApiRouter::new()
        .merge(system::router())
        .merge(addresses::router())
        .merge(instances::router())
        .merge(containers::router())
        .merge(disks::router())
        .merge(hosts::router())
        .merge(images::router())
        .merge(monitoring::router())
        .merge(resources::router())
        .merge(tasks::router())
        .merge(tenancy::router())
        .merge(users::router())
        .merge(ws::router())
}
