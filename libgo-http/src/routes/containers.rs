//! Kind-specific views: `/api/v1/containers` (accepting seed 001's request shapes) and
//! `/api/v1/vms`. Both are the unified instance API restricted to one kind.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use libgo_core::{
    Instance, InstanceKind, InstanceSpec, MountKind, MountSpec, Page, PortMapping, Protocol,
    RestartPolicy,
};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;

use super::Router;
use super::instances::{
    Action, ActionQuery, ForceQuery, GroupQuery, ListQuery, LogsQuery, act, check_host_privileges,
    created, get_of_kind, ownership, read_logs,
};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

/// Container list filters: the unified ones plus seed 001's `status`, `limit`, `offset`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ContainerListQuery {
    /// State filter (`running`, `exited`, `paused`, `stopped`…).
    pub status: Option<String>,
    /// State filter (unified name).
    pub state: Option<String>,
    /// Names containing this text.
    pub name: Option<String>,
    /// Only this backend.
    pub backend: Option<String>,
    /// Labels as `key=value`, comma-separated.
    pub label: Option<String>,
    /// Items to return (1–100), with `offset`.
    pub limit: Option<u32>,
    /// Items to skip, with `limit`.
    pub offset: Option<u32>,
    /// Page number, from 1.
    pub page: Option<u32>,
    /// Items per page, 1–100.
    pub page_size: Option<u32>,
}

async fn list_kind(
    state: &AppState,
    caller: &Caller,
    q: ContainerListQuery,
    kind: InstanceKind,
) -> ApiResult<Page<Instance>> {
    let mut filter = ListQuery {
        kind: None,
        state: q.status.or(q.state),
        name: q.name,
        backend: q.backend,
        label: q.label,
        page: None,
        page_size: None,
    }
    .filter(Some(kind))?;
    caller.scope_filter(&mut filter);
    if q.limit.is_some() || q.offset.is_some() {
        let limit = q.limit.unwrap_or(libgo_core::Pagination::DEFAULT_PAGE_SIZE);
        super::pagination(Some(1), Some(limit))?;
        let offset = q.offset.unwrap_or(0) as usize;
        let all = state.libgo.list_all(&filter).await?;
        let count = all.len();
        let items = all.into_iter().skip(offset).take(limit as usize).collect();
        return Ok(Page {
            items,
            count,
            page: u32::try_from(offset / limit as usize + 1).unwrap_or(u32::MAX),
            page_size: limit,
            unavailable: Vec::new(),
        });
    }
    let page = super::pagination(q.page, q.page_size)?;
    super::instances::list_page(state, &filter, page).await
}

/// A host port: a number, a string (`"8080"`, `"127.0.0.1:8080"`) or null.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum HostPort {
    /// Port number.
    Number(u16),
    /// `port` or `ip:port`.
    Text(String),
}

/// Published ports: seed 001's map (`{"80/tcp": 8080}`) or a list of port mappings.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum PortsInput {
    /// `{"80/tcp": 8080}`.
    #[schema(value_type = Object)]
    Map(BTreeMap<String, Option<HostPort>>),
    /// Unified form.
    List(Vec<PortMapping>),
}

/// A seed 001 volume entry: a host path (administrators only) or a named volume.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeedVolume {
    /// Host path to bind-mount.
    pub host_path: Option<String>,
    /// Named volume.
    #[serde(alias = "volume")]
    pub name: Option<String>,
    /// Path inside the container.
    pub container_path: String,
    /// Read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// A command as a string (split on whitespace) or a list.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum CommandInput {
    /// `"sleep 60"`.
    Line(String),
    /// `["sleep", "60"]`.
    Args(Vec<String>),
}

/// A container to create: seed 001's shape, plus the unified spec's fields.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContainerCreate {
    /// Name.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Published ports.
    pub ports: Option<PortsInput>,
    /// Environment (seed 001).
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Environment (unified).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Volumes (seed 001).
    #[serde(default)]
    pub volumes: Vec<SeedVolume>,
    /// Mounts (unified).
    #[serde(default)]
    pub mounts: Vec<MountSpec>,
    /// Command.
    pub command: Option<CommandInput>,
    /// Entry point.
    pub entrypoint: Option<Vec<String>>,
    /// Working directory.
    pub workdir: Option<String>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// CPU limit.
    #[schema(minimum = 1, maximum = 512)]
    pub cpus: Option<u32>,
    /// Memory limit in bytes.
    #[schema(minimum = 6291456, maximum = 4398046511104_u64)]
    pub memory_bytes: Option<u64>,
    /// Networks.
    #[serde(default)]
    pub networks: Vec<String>,
    /// Restart policy.
    pub restart_policy: Option<RestartPolicy>,
    /// Allocate a TTY.
    #[serde(default)]
    pub tty: bool,
    /// Privileged (administrators only).
    #[serde(default)]
    pub privileged: bool,
    /// Host devices (administrators only).
    #[serde(default)]
    pub devices: Vec<String>,
    /// Backend.
    pub backend: Option<String>,
    /// Start once created.
    #[serde(default)]
    pub start: bool,
}

fn parse_ports(p: PortsInput) -> ApiResult<Vec<PortMapping>> {
    match p {
        PortsInput::List(l) => Ok(l),
        PortsInput::Map(m) => m
            .into_iter()
            .map(|(k, v)| {
                let (port, proto) = k.split_once('/').unwrap_or((&k, "tcp"));
                let container_port = port
                    .parse()
                    .map_err(|_| ApiError::invalid(format!("port {k:?} is not a port number")))?;
                let protocol = match proto {
                    "tcp" => Protocol::Tcp,
                    "udp" => Protocol::Udp,
                    other => return Err(ApiError::invalid(format!("unknown protocol {other:?}"))),
                };
                let (host_ip, host_port) = match v {
                    None => (None, None),
                    Some(HostPort::Number(n)) => (None, Some(n)),
                    Some(HostPort::Text(t)) => {
                        let (ip, port) = match t.rsplit_once(':') {
                            Some((ip, port)) => (Some(ip.to_string()), port),
                            None => (None, t.as_str()),
                        };
                        let port = port.parse().map_err(|_| {
                            ApiError::invalid(format!("host port {t:?} is not a port number"))
                        })?;
                        (ip, Some(port))
                    }
                };
                Ok(PortMapping {
                    container_port,
                    host_port,
                    host_ip,
                    protocol,
                })
            })
            .collect(),
    }
}

impl ContainerCreate {
    /// The unified spec.
    pub fn into_spec(self) -> ApiResult<InstanceSpec> {
        let mut env = self.environment;
        env.extend(self.env);
        let mut mounts = self.mounts;
        for v in self.volumes {
            let (kind, source) = match (v.host_path, v.name) {
                (Some(h), None) => (MountKind::Bind, h),
                (None, Some(n)) => (MountKind::Volume, n),
                _ => {
                    return Err(ApiError::invalid(
                        "a volume needs exactly one of host_path and name",
                    ));
                }
            };
            mounts.push(MountSpec {
                kind,
                source,
                target: v.container_path,
                read_only: v.read_only,
            });
        }
        let command = match self.command {
            None => Vec::new(),
            Some(CommandInput::Args(a)) => a,
            Some(CommandInput::Line(l)) => l.split_whitespace().map(str::to_string).collect(),
        };
        Ok(InstanceSpec {
            name: self.name,
            kind: Some(InstanceKind::Container),
            backend: self.backend,
            image: Some(self.image),
            cpus: self.cpus,
            memory_bytes: self.memory_bytes,
            networks: self.networks,
            ports: self.ports.map(parse_ports).transpose()?.unwrap_or_default(),
            env,
            mounts,
            command,
            entrypoint: self.entrypoint,
            workdir: self.workdir,
            tty: self.tty,
            labels: self.labels,
            restart_policy: self.restart_policy,
            privileged: self.privileged,
            devices: self.devices,
            start: self.start,
            ..Default::default()
        })
    }
}

#[utoipa::path(get, path = "/api/v1/containers", extensions(("x-libgo-access" = json!("viewer"))), tag = "containers",
    params(ContainerListQuery),
    responses((status = 200, description = "One page of containers", body = libgo_core::Page<libgo_core::Instance>)))]
async fn list_containers(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<ContainerListQuery>,
) -> ApiResult<Json<Page<Instance>>> {
    Ok(Json(
        list_kind(&state, &caller, q, InstanceKind::Container).await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/containers", extensions(("x-libgo-access" = json!("operator"))), tag = "containers",
    params(GroupQuery), request_body = ContainerCreate,
    responses((status = 201, description = "Created", body = libgo_core::Instance)))]
async fn create_container(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(g): Query<GroupQuery>,
    Json(req): Json<ContainerCreate>,
) -> ApiResult<Response> {
    let spec = req.into_spec()?;
    let owner = ownership(&state, &caller, g.group).await?;
    check_host_privileges(&state, &caller, &spec).await?;
    let i = state.libgo.create_owned(&spec, &owner).await?;
    Ok(created(format!("/api/v1/containers/{}", i.id), i))
}

#[utoipa::path(get, path = "/api/v1/vms", extensions(("x-libgo-access" = json!("viewer"))), tag = "vms",
    params(ContainerListQuery),
    responses((status = 200, description = "One page of VMs", body = libgo_core::Page<libgo_core::Instance>)))]
async fn list_vms(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<ContainerListQuery>,
) -> ApiResult<Json<Page<Instance>>> {
    Ok(Json(list_kind(&state, &caller, q, InstanceKind::Vm).await?))
}

#[utoipa::path(post, path = "/api/v1/vms", extensions(("x-libgo-access" = json!("operator"))), tag = "vms",
    params(GroupQuery), request_body = libgo_core::InstanceSpec,
    responses((status = 201, description = "Created", body = libgo_core::Instance)))]
async fn create_vm(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(g): Query<GroupQuery>,
    Json(mut spec): Json<InstanceSpec>,
) -> ApiResult<Response> {
    let owner = ownership(&state, &caller, g.group).await?;
    if spec.kind.is_some_and(|k| k != InstanceKind::Vm) {
        return Err(ApiError::invalid("kind must be \"vm\" on /api/v1/vms"));
    }
    spec.kind = Some(InstanceKind::Vm);
    check_host_privileges(&state, &caller, &spec).await?;
    let i = state.libgo.create_owned(&spec, &owner).await?;
    Ok(created(format!("/api/v1/vms/{}", i.id), i))
}

macro_rules! kind_routes {
    ($kind:expr, $tag:literal, $base:literal, $get:ident, $delete:ident, $action:ident, $logs:ident) => {
        #[utoipa::path(get, path = concat!($base, "/{id}"), extensions(("x-libgo-access" = json!("viewer"))), tag = $tag,
            params(("id" = String, Path, description = "Id or name")),
            responses((status = 200, description = "The instance", body = libgo_core::Instance)))]
        async fn $get(
            State(state): State<Arc<AppState>>,
            Path(id): Path<String>,
        ) -> ApiResult<Json<Instance>> {
            Ok(Json(get_of_kind(&state, &id, Some($kind)).await?))
        }

        #[utoipa::path(delete, path = concat!($base, "/{id}"), extensions(("x-libgo-access" = json!("operator"))), tag = $tag,
            params(("id" = String, Path, description = "Id or name"), ForceQuery),
            responses((status = 204, description = "Deleted")))]
        async fn $delete(
            State(state): State<Arc<AppState>>,
            Path(id): Path<String>,
            Query(q): Query<ForceQuery>,
        ) -> ApiResult<StatusCode> {
            let i = get_of_kind(&state, &id, Some($kind)).await?;
            state.libgo.delete(&i.id, libgo_core::DeleteOptions { force: q.force }).await?;
            Ok(StatusCode::NO_CONTENT)
        }

        #[utoipa::path(post, path = concat!($base, "/{id}/{action}"), extensions(("x-libgo-access" = json!("operator"))), tag = $tag,
            params(("id" = String, Path, description = "Id or name"),
                   ("action" = Action, Path, description = "start, stop, restart, pause, unpause, resume or kill"),
                   ActionQuery),
            responses((status = 200, description = "The instance after the action", body = libgo_core::Instance)))]
        async fn $action(
            State(state): State<Arc<AppState>>,
            Path((id, action)): Path<(String, Action)>,
            Query(q): Query<ActionQuery>,
        ) -> ApiResult<Json<Instance>> {
            Ok(Json(act(&state, &id, action, &q, Some($kind)).await?))
        }

        #[utoipa::path(get, path = concat!($base, "/{id}/logs"), extensions(("x-libgo-access" = json!("viewer"))), tag = $tag,
            params(("id" = String, Path, description = "Id or name"), LogsQuery),
            responses((status = 200, description = "Log lines", body = libgo_core::Page<libgo_core::LogEntry>)))]
        async fn $logs(
            State(state): State<Arc<AppState>>,
            caller: crate::auth::Caller,
            Path(id): Path<String>,
            Query(q): Query<LogsQuery>,
        ) -> ApiResult<Response> {
            read_logs(&state, &caller, &id, q, Some($kind)).await
        }
    };
}

kind_routes!(
    InstanceKind::Container,
    "containers",
    "/api/v1/containers",
    get_container,
    delete_container,
    container_action,
    container_logs
);
kind_routes!(
    InstanceKind::Vm,
    "vms",
    "/api/v1/vms",
    get_vm,
    delete_vm,
    vm_action,
    vm_logs
);

/// The kind-specific routes.
pub fn router() -> Router {
    Router::new()
        .routes(routes!(list_containers, create_container))
        .routes(routes!(get_container, delete_container))
        .routes(routes!(container_action))
        .routes(routes!(container_logs))
        .routes(routes!(list_vms, create_vm))
        .routes(routes!(get_vm, delete_vm))
        .routes(routes!(vm_action))
        .routes(routes!(vm_logs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_shape_becomes_a_spec() {
        let req: ContainerCreate = serde_json::from_value(serde_json::json!({
            "name": "test-container",
            "image": "nginx:latest",
            "ports": {"80/tcp": 8080, "53/udp": "127.0.0.1:5353", "9000": null},
            "environment": {"KEY": "value"},
            "volumes": [{"host_path": "/srv", "container_path": "/data"}]
        }))
        .expect("seed shape parses");
        let spec = req.into_spec().expect("valid");
        assert_eq!(spec.ports.len(), 3);
        assert!(
            spec.ports
                .iter()
                .any(|p| p.container_port == 80 && p.host_port == Some(8080))
        );
        assert!(
            spec.ports
                .iter()
                .any(|p| p.protocol == Protocol::Udp && p.host_ip.as_deref() == Some("127.0.0.1"))
        );
        assert_eq!(spec.env.get("KEY").map(String::as_str), Some("value"));
        assert!(spec.needs_host_privileges());
    }
}
