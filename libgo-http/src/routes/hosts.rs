//! Hosts: other machines' engines, added at run time and kept in the database so that
//! every replica (and the next start) connects the same ones; and moving instances
//! between hosts.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use libgo::{HostConfig, TlsFiles};
use libgo_core::hosts::{DEFAULT_POOL, LOCAL_HOST};
use libgo_core::{
    ComputePool, ComputePoolSpec, EvacuateRequest, Host, HostMembership, MigrateRequest, Page,
    PoolStatus, ResourceUsage, paginate,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;

use super::instances::{accepted, created};
use super::{PageQuery, Router};
use crate::auth::Caller;
use crate::db::ConfigTable;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;
use crate::tasks::Task;

type S = State<Arc<AppState>>;

/// How long adding a host waits for its engines.
const ADD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// TLS material of a host's Docker: each PEM text, or a path to a PEM file on the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DockerTlsRequest {
    /// The CA that signed the daemon's certificate.
    pub ca: String,
    /// LibGo's client certificate.
    pub cert: String,
    /// Its private key.
    pub key: String,
}

/// A host to add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HostRequest {
    /// Name, DNS-label-like; its backends are `NAME-docker` and `NAME-kvm`.
    #[schema(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", max_length = 63)]
    pub name: String,
    /// Its Docker: `tcp://ADDR:PORT`.
    #[serde(default)]
    pub docker: Option<String>,
    /// TLS for its Docker (a daemon started with `--tlsverify`).
    #[serde(default)]
    pub docker_tls: Option<DockerTlsRequest>,
    /// Its libvirt: `qemu+tcp://ADDR/system`, `qemu+tls://…`, `qemu+ssh://…` (libvirt's TLS
    /// uses libvirt's own pki paths on the server).
    #[serde(default)]
    pub libvirt: Option<String>,
    /// Compute pool (`default`).
    #[serde(default)]
    pub pool: Option<String>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Whether new instances may be placed on it (`true`).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Where the other hosts' QEMU reaches this one's for a migration; the address in
    /// `libvirt` when absent.
    #[serde(default)]
    pub migration_address: Option<String>,
}

/// Changes to a host.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HostPatch {
    /// `false` stops placement on it (its instances stay).
    pub enabled: Option<bool>,
    /// Another compute pool.
    pub pool: Option<String>,
    /// New labels (replacing the old).
    pub labels: Option<BTreeMap<String, String>>,
    /// Another migration address.
    pub migration_address: Option<String>,
}

/// `?force=`.
#[derive(Debug, Clone, Copy, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ForceQuery {
    /// Forget a host that still has instances (they are left on its engines).
    #[serde(default)]
    pub force: bool,
}

/// Marks a host (or `pool:NAME`) as being changed by this replica while alive, so that the
/// database sync does not undo a change half made.
struct Busy<'a>(&'a AppState, String);

impl<'a> Busy<'a> {
    fn new(state: &'a AppState, key: String) -> Self {
        state.set_host_busy(&key, true);
        Busy(state, key)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.set_host_busy(&self.1, false);
    }
}

/// Writes a PEM given as text into the host's directory (0600) and answers its path; a
/// path is answered as it is.
async fn pem_file(state: &AppState, host: &str, name: &str, value: &str) -> ApiResult<String> {
    if !value.trim_start().starts_with("-----BEGIN") {
        if value.is_empty() || !value.starts_with('/') {
            return Err(ApiError::invalid(format!(
                "dockerTls.{name}: give PEM text or an absolute path on the server"
            )));
        }
        return Ok(value.to_string());
    }
    let dir = state.config.data_dir.join("hosts").join(host);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(ApiError::internal)?;
    let path = dir.join(format!("{name}.pem"));
    let write = {
        let (path, value) = (path.clone(), value.to_string());
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)?;
            f.write_all(value.as_bytes())?;
            f.sync_all()
        })
    };
    write
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(path.to_string_lossy().into_owned())
}

/// Stores a host's or a compute pool's configuration as JSON under `name`: a new row
/// (`new`; a taken name is a conflict) or a replacement (inserted when absent: the local
/// host and the default pool have no row until first changed).
async fn store<T: Serialize>(
    state: &AppState,
    table: ConfigTable,
    name: &str,
    config: &T,
    new: bool,
) -> ApiResult<()> {
    let json = serde_json::to_string(config).map_err(ApiError::internal)?;
    let done = if new {
        state.db.config_insert(table, name, &json).await?
    } else {
        state.db.config_update(table, name, &json).await?
            || state.db.config_insert(table, name, &json).await?
    };
    if !done {
        return Err(ApiError::conflict(format!("{name:?} exists already")));
    }
    Ok(())
}

/// The stored configuration of host `name`, or the local host's membership.
async fn stored(state: &AppState, name: &str) -> ApiResult<HostConfig> {
    let rows = state.db.config_list(ConfigTable::Hosts).await?;
    if let Some((_, json)) = rows.iter().find(|(n, _)| n == name) {
        return serde_json::from_str(json).map_err(ApiError::internal);
    }
    Ok(HostConfig {
        membership: state.libgo.host_membership(name)?,
        docker: None,
        docker_tls: None,
        libvirt: None,
    })
}

#[utoipa::path(get, path = "/api/v1/hosts", extensions(("x-libgo-access" = json!("viewer"))), tag = "hosts", params(PageQuery),
    responses((status = 200, description = "Hosts, `local` first: engines, capacity, use and instances", body = libgo_core::Page<Host>)))]
async fn list_hosts(State(state): S, Query(q): Query<PageQuery>) -> ApiResult<Json<Page<Host>>> {
    let page = q.get()?;
    Ok(Json(paginate(state.libgo.host_list().await?, page)))
}

#[utoipa::path(get, path = "/api/v1/hosts/{name}", extensions(("x-libgo-access" = json!("viewer"))), tag = "hosts",
    params(("name" = String, Path, description = "Host name")),
    responses((status = 200, description = "The host", body = Host)))]
async fn get_host(State(state): S, Path(name): Path<String>) -> ApiResult<Json<Host>> {
    Ok(Json(state.libgo.host(&name).await?))
}

#[utoipa::path(post, path = "/api/v1/hosts", extensions(("x-libgo-access" = json!("admin"))), tag = "hosts",
    request_body = HostRequest,
    responses((status = 201, description = "Added; its engines answered", body = Host),
        (status = 503, description = "An engine of the host does not answer; nothing was stored", body = crate::error::ErrorBody)))]
async fn add_host(State(state): S, Json(req): Json<HostRequest>) -> ApiResult<Response> {
    libgo_core::validate::name("host name", &req.name)?;
    let _busy = Busy::new(&state, req.name.clone());
    if req.name == LOCAL_HOST || state.libgo.host_membership(&req.name).is_ok() {
        return Err(ApiError::conflict(format!(
            "a host named {:?} exists already",
            req.name
        )));
    }
    let docker_tls = match &req.docker_tls {
        Some(t) => Some(TlsFiles {
            ca: pem_file(&state, &req.name, "ca", &t.ca).await?,
            cert: pem_file(&state, &req.name, "cert", &t.cert).await?,
            key: pem_file(&state, &req.name, "key", &t.key).await?,
        }),
        None => None,
    };
    let config = HostConfig {
        membership: HostMembership {
            name: req.name.clone(),
            pool: req.pool.unwrap_or_else(|| DEFAULT_POOL.into()),
            enabled: req.enabled.unwrap_or(true),
            labels: req.labels,
            migration_address: req.migration_address,
        },
        docker: req.docker,
        docker_tls,
        libvirt: req.libvirt,
    };
    libgo_core::validate::name("compute pool", &config.membership.pool)?;
    let engines = crate::backends::engine_config(&state.config);
    let added = tokio::time::timeout(
        ADD_TIMEOUT,
        libgo::add_host(&state.libgo, &engines, &config),
    )
    .await
    .unwrap_or_else(|_| {
        Err(libgo_core::Error::unavailable(format!(
            "the engines of host {:?} did not answer within {} s",
            req.name,
            ADD_TIMEOUT.as_secs()
        )))
    });
    if let Err(e) = added {
        let _ =
            tokio::fs::remove_dir_all(state.config.data_dir.join("hosts").join(&req.name)).await;
        return Err(e.into());
    }
    if let Err(e) = store(
        &state,
        ConfigTable::Hosts,
        &config.membership.name,
        &config,
        true,
    )
    .await
    {
        let _ = state.libgo.host_remove(&req.name);
        return Err(e);
    }
    for b in state.libgo.host_backends(&req.name) {
        crate::events::spawn_pump(state.clone(), b.name().to_string());
    }
    let host = state.libgo.host(&req.name).await?;
    Ok(created(format!("/api/v1/hosts/{}", host.name), host))
}

#[utoipa::path(patch, path = "/api/v1/hosts/{name}", extensions(("x-libgo-access" = json!("admin"))), tag = "hosts",
    params(("name" = String, Path, description = "Host name")),
    request_body = HostPatch,
    responses((status = 200, description = "The host", body = Host)))]
async fn patch_host(
    State(state): S,
    Path(name): Path<String>,
    Json(patch): Json<HostPatch>,
) -> ApiResult<Json<Host>> {
    let _busy = Busy::new(&state, name.clone());
    let mut config = stored(&state, &name).await?;
    let m = &mut config.membership;
    if let Some(e) = patch.enabled {
        m.enabled = e;
    }
    if let Some(p) = patch.pool {
        libgo_core::validate::name("compute pool", &p)?;
        m.pool = p;
    }
    if let Some(l) = patch.labels {
        m.labels = l;
    }
    if let Some(a) = patch.migration_address {
        m.migration_address = Some(a);
    }
    state.libgo.host_set(config.membership.clone())?;
    store(
        &state,
        ConfigTable::Hosts,
        &config.membership.name,
        &config,
        false,
    )
    .await?;
    Ok(Json(state.libgo.host(&name).await?))
}

#[utoipa::path(delete, path = "/api/v1/hosts/{name}", extensions(("x-libgo-access" = json!("admin"))), tag = "hosts",
    params(("name" = String, Path, description = "Host name"), ForceQuery),
    responses((status = 204, description = "Forgotten (its engines and instances are left as they are)")))]
async fn delete_host(
    State(state): S,
    Path(name): Path<String>,
    Query(q): Query<ForceQuery>,
) -> ApiResult<axum::http::StatusCode> {
    let _busy = Busy::new(&state, name.clone());
    state.libgo.host_forget(&name, q.force).await?;
    state.db.config_delete(ConfigTable::Hosts, &name).await?;
    let _ = tokio::fs::remove_dir_all(state.config.data_dir.join("hosts").join(&name)).await;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/hosts/{name}/evacuate", extensions(("x-libgo-access" = json!("admin"))), tag = "hosts",
    params(("name" = String, Path, description = "Host name")),
    request_body = EvacuateRequest,
    responses((status = 202, description = "Evacuation task started (the host is disabled first); its result is a BatchReport, one item per instance", body = Task)))]
async fn evacuate_host(
    State(state): S,
    caller: Caller,
    Path(name): Path<String>,
    Json(req): Json<EvacuateRequest>,
) -> ApiResult<Response> {
    let _busy = Busy::new(&state, name.clone());
    let mut config = stored(&state, &name).await?;
    config.membership.enabled = false;
    state.libgo.host_set(config.membership.clone())?;
    store(
        &state,
        ConfigTable::Hosts,
        &config.membership.name,
        &config,
        false,
    )
    .await?;
    let libgo = state.libgo.clone();
    let task = state
        .tasks
        .spawn(
            "host.evacuate",
            Some(name.clone()),
            &caller.username,
            move |ctx| async move {
                let r = libgo.evacuate(&name, &req, ctx.sink()).await?;
                Ok(serde_json::to_value(r).unwrap_or_default())
            },
        )
        .await?;
    Ok(accepted(task))
}

#[utoipa::path(post, path = "/api/v1/instances/{id}/migrate", extensions(("x-libgo-access" = json!("operator"))), tag = "instances",
    params(("id" = String, Path, description = "Instance id or name")),
    request_body = MigrateRequest,
    responses((status = 202, description = "Migration task started; its result is a MigrationReport", body = Task)))]
async fn migrate_instance(
    State(state): S,
    caller: Caller,
    Path(id): Path<String>,
    Json(req): Json<MigrateRequest>,
) -> ApiResult<Response> {
    super::instances::require_for_host_access(&state, &caller, &id).await?;
    let i = state.libgo.check_migration(&id, &req).await?;
    let libgo = state.libgo.clone();
    let instance_id = i.id.clone();
    let task = state
        .tasks
        .spawn(
            "instance.migrate",
            Some(i.name.clone()),
            &caller.username,
            move |ctx| async move {
                ctx.progress(Some(0.0), format!("moving to host {}", req.host));
                let r = libgo.migrate(&instance_id, &req, ctx.sink()).await?;
                Ok(serde_json::to_value(r).unwrap_or_default())
            },
        )
        .await?;
    Ok(accepted(task))
}

#[utoipa::path(get, path = "/api/v1/migrations", extensions(("x-libgo-access" = json!("viewer"))), tag = "hosts", params(PageQuery),
    responses((status = 200, description = "Migration tasks, newest first: the caller's own (every user's for administrators)", body = libgo_core::Page<Task>)))]
async fn list_migrations(
    State(state): S,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<Task>>> {
    let page = q.get()?;
    let mut all = state.tasks.list(None, Some("instance.migrate")).await?;
    all.retain(|t| t.visible_to(&caller));
    Ok(Json(paginate(all, page)))
}

// ---- compute pools and the zone ----

/// Changes to a compute pool.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ComputePoolPatch {
    /// `false` stops placement in it.
    pub enabled: Option<bool>,
    /// See `ComputePoolSpec.failover`.
    pub failover: Option<bool>,
    /// See `ComputePoolSpec.network`; `""` removes it.
    pub network: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/compute-pools", extensions(("x-libgo-access" = json!("viewer"))), tag = "hosts", params(PageQuery),
    responses((status = 200, description = "Compute pools, `default` first, with their hosts", body = libgo_core::Page<ComputePool>)))]
async fn list_compute_pools(
    State(state): S,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<ComputePool>>> {
    let page = q.get()?;
    Ok(Json(paginate(state.libgo.compute_pools(), page)))
}

#[utoipa::path(post, path = "/api/v1/compute-pools", extensions(("x-libgo-access" = json!("admin"))), tag = "hosts",
    request_body = ComputePoolSpec,
    responses((status = 201, description = "Created", body = ComputePool)))]
async fn create_compute_pool(
    State(state): S,
    Json(spec): Json<ComputePoolSpec>,
) -> ApiResult<Response> {
    libgo_core::validate::name("compute pool", &spec.name)?;
    address_pool_exists(&state, spec.network.as_deref()).await?;
    let _busy = Busy::new(&state, format!("pool:{}", spec.name));
    if state.libgo.compute_pool(&spec.name).is_ok() {
        return Err(ApiError::conflict(format!(
            "a compute pool named {:?} exists already",
            spec.name
        )));
    }
    state.libgo.pool_set(&spec)?;
    if let Err(e) = store(&state, ConfigTable::ComputePools, &spec.name, &spec, true).await {
        let _ = state.libgo.pool_remove(&spec.name);
        return Err(e);
    }
    let pool = state.libgo.compute_pool(&spec.name)?;
    Ok(created(
        format!("/api/v1/compute-pools/{}", pool.name),
        pool,
    ))
}

/// 400 unless address pool `name` (when given) exists.
async fn address_pool_exists(state: &AppState, name: Option<&str>) -> ApiResult<()> {
    if let Some(n) = name
        && crate::addresses::stored(&state.db, n).await?.is_none()
    {
        return Err(ApiError::invalid(format!("no address pool {n:?}")).with_field("network"));
    }
    Ok(())
}

#[utoipa::path(get, path = "/api/v1/compute-pools/{name}", extensions(("x-libgo-access" = json!("viewer"))), tag = "hosts",
    params(("name" = String, Path, description = "Pool name")),
    responses((status = 200, description = "The pool", body = ComputePool)))]
async fn get_compute_pool(
    State(state): S,
    Path(name): Path<String>,
) -> ApiResult<Json<ComputePool>> {
    Ok(Json(state.libgo.compute_pool(&name)?))
}

#[utoipa::path(patch, path = "/api/v1/compute-pools/{name}", extensions(("x-libgo-access" = json!("admin"))), tag = "hosts",
    params(("name" = String, Path, description = "Pool name")),
    request_body = ComputePoolPatch,
    responses((status = 200, description = "The pool", body = ComputePool)))]
async fn patch_compute_pool(
    State(state): S,
    Path(name): Path<String>,
    Json(patch): Json<ComputePoolPatch>,
) -> ApiResult<Json<ComputePool>> {
    let _busy = Busy::new(&state, format!("pool:{name}"));
    let pool = state.libgo.compute_pool(&name)?;
    let spec = ComputePoolSpec {
        name: pool.name,
        enabled: patch.enabled.unwrap_or(pool.enabled),
        failover: patch.failover.unwrap_or(pool.failover),
        network: match patch.network {
            Some(n) if n.is_empty() => None,
            Some(n) => Some(n),
            None => pool.network,
        },
    };
    address_pool_exists(&state, spec.network.as_deref()).await?;
    state.libgo.pool_set(&spec)?;
    store(&state, ConfigTable::ComputePools, &spec.name, &spec, false).await?;
    Ok(Json(state.libgo.compute_pool(&name)?))
}

#[utoipa::path(delete, path = "/api/v1/compute-pools/{name}", extensions(("x-libgo-access" = json!("admin"))), tag = "hosts",
    params(("name" = String, Path, description = "Pool name")),
    responses((status = 204, description = "Deleted (it had no host)")))]
async fn delete_compute_pool(
    State(state): S,
    Path(name): Path<String>,
) -> ApiResult<axum::http::StatusCode> {
    let _busy = Busy::new(&state, format!("pool:{name}"));
    state.libgo.pool_remove(&name)?;
    state
        .db
        .config_delete(ConfigTable::ComputePools, &name)
        .await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/compute-pools/{name}/status", extensions(("x-libgo-access" = json!("viewer"))), tag = "hosts",
    params(("name" = String, Path, description = "Pool name")),
    responses((status = 200, description = "The pool's hosts, instances and resources together", body = PoolStatus)))]
async fn compute_pool_status(
    State(state): S,
    Path(name): Path<String>,
) -> ApiResult<Json<PoolStatus>> {
    Ok(Json(state.libgo.pool_status(&name).await?))
}

#[utoipa::path(get, path = "/api/v1/zone/status", extensions(("x-libgo-access" = json!("viewer"))), tag = "hosts",
    responses((status = 200, description = "Every pool and host together", body = PoolStatus)))]
async fn zone_status(State(state): S) -> ApiResult<Json<PoolStatus>> {
    Ok(Json(state.libgo.zone_status().await?))
}

/// `?host=`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScopeQuery {
    /// A host's name, or `zone` for every host; `local` when absent.
    pub host: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/metrics/resources", extensions(("x-libgo-access" = json!("viewer"))), tag = "hosts",
    params(ScopeQuery),
    responses((status = 200, description = "CPU, memory and storage use in percent, and network bytes, of one host or the zone", body = ResourceUsage)))]
async fn resource_usage(
    State(state): S,
    Query(q): Query<ScopeQuery>,
) -> ApiResult<Json<ResourceUsage>> {
    let scope = q.host.unwrap_or_else(|| LOCAL_HOST.to_string());
    let status = if scope == "zone" {
        state.libgo.zone_status().await?
    } else {
        let host = state.libgo.host(&scope).await?;
        PoolStatus::of(&scope, true, &[&host])
    };
    Ok(Json(ResourceUsage::of(&scope, &status)))
}

/// The routes.
pub fn router() -> Router {
    Router::new()
        .routes(routes!(list_hosts, add_host))
        .routes(routes!(get_host, patch_host, delete_host))
        .routes(routes!(evacuate_host))
        .routes(routes!(migrate_instance))
        .routes(routes!(list_migrations))
        .routes(routes!(list_compute_pools, create_compute_pool))
        .routes(routes!(
            get_compute_pool,
            patch_compute_pool,
            delete_compute_pool
        ))
        .routes(routes!(compute_pool_status))
        .routes(routes!(zone_status))
        .routes(routes!(resource_usage))
}
