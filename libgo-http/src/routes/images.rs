//! `/api/v1/images`: list, inspect, pull, build, tag, push, remove, prune.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use libgo_core::{
    BuildSpec, ExportFormat, ExportSpec, Image, On, Page, PruneReport, RegistryAuth,
    RegistryOptions,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;

use super::instances::accepted;
use super::{BackendQuery, PageQuery, Router};
use crate::auth::{Caller, Role};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;
use crate::tasks::Task;

#[utoipa::path(get, path = "/api/v1/images", extensions(("x-libgo-access" = json!("viewer"))), tag = "images",
    params(PageQuery),
    responses((status = 200, description = "Images of every backend", body = libgo_core::Page<libgo_core::Image>)))]
async fn list_images(
    State(state): State<Arc<AppState>>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<Image>>> {
    Ok(Json(state.libgo.image_page(q.get()?).await?))
}

#[utoipa::path(get, path = "/api/v1/images/{id}", extensions(("x-libgo-access" = json!("viewer"))), tag = "images",
    params(("id" = String, Path, description = "Image id or reference (URL-encode '/')"), BackendQuery),
    responses((status = 200, description = "The image", body = libgo_core::Image)))]
async fn get_image(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<BackendQuery>,
) -> ApiResult<Json<Image>> {
    Ok(Json(
        state
            .libgo
            .image_inspect(&id, On::maybe(q.backend.as_deref()))
            .await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/images/{id}", extensions(("x-libgo-access" = json!("operator"))), tag = "images",
    params(("id" = String, Path, description = "Image id or reference (URL-encode '/')"), BackendQuery),
    responses((status = 204, description = "Removed")))]
async fn delete_image(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<BackendQuery>,
) -> ApiResult<StatusCode> {
    state
        .libgo
        .image_remove(
            &id,
            libgo_core::ImageRemoveOptions {
                backend: q.backend,
                force: q.force,
            },
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Registry credentials (never stored nor logged).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthInput {
    /// User.
    pub username: String,
    /// Password or token.
    pub password: String,
    /// Registry.
    pub server: Option<String>,
}

impl From<AuthInput> for RegistryAuth {
    fn from(a: AuthInput) -> Self {
        RegistryAuth {
            username: a.username,
            password: a.password,
            server: a.server,
        }
    }
}

/// A pull: seed 001's `{name, tag}` or a full `reference`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PullRequest {
    /// Repository (seed 001), e.g. `busybox`.
    pub name: Option<String>,
    /// Tag (seed 001); `latest` when absent.
    pub tag: Option<String>,
    /// Full reference, e.g. `127.0.0.1:5000/busybox:1`.
    pub reference: Option<String>,
    /// Backend.
    pub backend: Option<String>,
    /// Registry credentials.
    pub auth: Option<AuthInput>,
}

#[utoipa::path(post, path = "/api/v1/images/pull", extensions(("x-libgo-access" = json!("operator"))), tag = "images",
    request_body = PullRequest,
    responses((status = 202, description = "Pull task started; Location names it", body = Task)))]
async fn pull_image(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(req): Json<PullRequest>,
) -> ApiResult<Response> {
    let reference = match (req.reference, req.name) {
        (Some(_), None) if req.tag.is_some() => {
            return Err(
                ApiError::invalid("a tag goes with name; a reference carries its own tag")
                    .with_field("tag"),
            );
        }
        (Some(r), None) => r,
        (None, Some(n)) => format!("{n}:{}", req.tag.as_deref().unwrap_or("latest")),
        _ => return Err(ApiError::invalid("give either reference or name (and tag)")),
    };
    libgo_core::validate::user_image_reference(&reference)?;
    let libgo = state.libgo.clone();
    let auth = req.auth.map(RegistryAuth::from);
    let backend = req.backend;
    let r = reference.clone();
    let task = state
        .tasks
        .spawn(
            "image.pull",
            Some(reference),
            &caller.username,
            move |ctx| async move {
                let image = libgo
                    .image_pull(
                        &r,
                        &RegistryOptions {
                            backend: (backend.as_deref()).map(str::to_string),
                            auth: (auth.as_ref()).cloned(),
                        },
                        ctx.sink(),
                    )
                    .await?;
                Ok(serde_json::to_value(image).unwrap_or_default())
            },
        )
        .await?;
    Ok(accepted(task))
}

/// Options of a build; the body is the context as a tar archive.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BuildQuery {
    /// Tags, comma-separated.
    pub tags: Option<String>,
    /// Dockerfile path inside the context.
    pub dockerfile: Option<String>,
    /// Build arguments (`ARG`s) as a JSON object of strings, as Docker's `buildargs`:
    /// `{"VERSION": "1.2"}`.
    #[serde(rename = "buildArgs")]
    pub build_args: Option<String>,
    /// Backend.
    pub backend: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/images/build", extensions(("x-libgo-access" = json!("operator"))), tag = "images",
    params(BuildQuery),
    request_body(content = crate::openapi::Binary, content_type = "application/x-tar", description = "Build context"),
    responses((status = 202, description = "Build task started; Location names it", body = Task)))]
async fn build_image(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<BuildQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let tags: Vec<String> = q
        .tags
        .iter()
        .flat_map(|t| t.split(','))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    // Refuse bad tags and arguments before the body is read.
    for t in &tags {
        libgo_core::validate::user_image_reference(t)?;
    }
    let build_args: std::collections::BTreeMap<String, String> = match &q.build_args {
        Some(text) => serde_json::from_str(text).map_err(|e| {
            ApiError::invalid(format!(
                "buildArgs must be a JSON object of strings ({{\"KEY\": \"value\"}}): {e}"
            ))
            .with_field("buildArgs")
        })?,
        None => Default::default(),
    };
    // The context goes to a file as it arrives and from there to the engine as it is read.
    let context = crate::spool::spool(
        &state,
        &headers,
        body,
        "builds",
        "the body must be the build context as a tar",
    )
    .await?;
    let spec = BuildSpec {
        context_file: Some(context.path().to_path_buf()),
        dockerfile: q.dockerfile,
        tags,
        build_args,
        ..Default::default()
    };
    let libgo = state.libgo.clone();
    let target = spec.tags.first().cloned();
    let owner = caller.resource_owner();
    let task = state
        .tasks
        .spawn(
            "image.build",
            target,
            &caller.username,
            move |ctx| async move {
                let image = libgo
                    .image_build_owned(&spec, On::maybe(q.backend.as_deref()), ctx.sink(), &owner)
                    .await;
                // The spooled context lives until the build ends.
                drop(context);
                let image = image?;
                Ok(serde_json::to_value(image).unwrap_or_default())
            },
        )
        .await?;
    Ok(accepted(task))
}

/// A new reference for an image.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagRequest {
    /// New reference (`repo:tag`).
    pub target: String,
    /// Backend.
    pub backend: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/images/{id}/tag", extensions(("x-libgo-access" = json!("operator"))), tag = "images",
    params(("id" = String, Path, description = "Image id or reference (URL-encode '/')")),
    request_body = TagRequest,
    responses((status = 201, description = "Tagged", body = libgo_core::Image)))]
async fn tag_image(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Json(req): Json<TagRequest>,
) -> ApiResult<(StatusCode, Json<Image>)> {
    state
        .libgo
        .image_tag(&id, &req.target, On::maybe(req.backend.as_deref()))
        .await?;
    let image = state
        .libgo
        .image_inspect(&req.target, On::maybe(req.backend.as_deref()))
        .await?;
    Ok((StatusCode::CREATED, Json(image)))
}

/// A push.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    /// Backend.
    pub backend: Option<String>,
    /// Registry credentials.
    pub auth: Option<AuthInput>,
}

#[utoipa::path(post, path = "/api/v1/images/{id}/push", extensions(("x-libgo-access" = json!("operator"))), tag = "images",
    params(("id" = String, Path, description = "Image reference to push (URL-encode '/')")),
    request_body = PushRequest,
    responses((status = 202, description = "Push task started; Location names it", body = Task)))]
async fn push_image(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(req): Json<PushRequest>,
) -> ApiResult<Response> {
    libgo_core::validate::image_reference(&id)?;
    let libgo = state.libgo.clone();
    let auth = req.auth.map(RegistryAuth::from);
    let r = id.clone();
    let task = state
        .tasks
        .spawn(
            "image.push",
            Some(id),
            &caller.username,
            move |ctx| async move {
                libgo
                    .image_push(
                        &r,
                        &RegistryOptions {
                            backend: (req.backend.as_deref()).map(str::to_string),
                            auth: (auth.as_ref()).cloned(),
                        },
                        ctx.sink(),
                    )
                    .await?;
                Ok(serde_json::json!({"reference": r}))
            },
        )
        .await?;
    Ok(accepted(task))
}

/// An image save (`docker save`): a tar of the image with its layers.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SaveRequest {
    /// Backend.
    pub backend: Option<String>,
    /// File to write (administrators only); a new file in the server's export directory
    /// (`<data dir>/exports`) when absent.
    pub destination: Option<String>,
}

/// A file name made of the characters of `reference` that are safe in one.
fn file_stem(reference: &str) -> String {
    let stem: String = reference
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    stem.trim_start_matches('.').to_string()
}

#[utoipa::path(post, path = "/api/v1/images/{id}/save", extensions(("x-libgo-access" = json!("operator"))), tag = "images",
    params(("id" = String, Path, description = "Image id or reference (URL-encode '/')")),
    request_body = SaveRequest,
    responses((status = 202, description = "Save task started; Location names it. The finished \
        task's result is an ExportResult: the tar's path on the server, format and size", body = Task)))]
async fn save_image(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(req): Json<SaveRequest>,
) -> ApiResult<Response> {
    // Fail fast on an unknown image, before a task exists.
    let image = state
        .libgo
        .image_inspect(&id, On::maybe(req.backend.as_deref()))
        .await?;
    let destination = match req.destination {
        Some(d) => {
            caller.require(Role::Admin).map_err(|_| {
                ApiError::forbidden("only administrators may choose a save destination")
            })?;
            std::path::PathBuf::from(d)
        }
        None => {
            let dir = state.config.data_dir.join("exports");
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(ApiError::internal)?;
            dir.join(format!(
                "{}-{}.tar",
                file_stem(image.tags.first().unwrap_or(&image.id)),
                uuid::Uuid::new_v4().simple()
            ))
        }
    };
    libgo_core::validate::export_spec(&ExportSpec {
        format: ExportFormat::ImageTar,
        destination: destination.clone(),
    })?;
    let libgo = state.libgo.clone();
    let backend = Some(image.backend.clone());
    let task = state
        .tasks
        .spawn(
            "image.save",
            Some(id.clone()),
            &caller.username,
            move |ctx| async move {
                ctx.progress(
                    Some(0.0),
                    format!("saving {id} to {}", destination.display()),
                );
                let r = libgo
                    .image_save(&id, &destination, On::maybe(backend.as_deref()))
                    .await?;
                Ok(serde_json::to_value(r).unwrap_or_default())
            },
        )
        .await?;
    Ok(accepted(task))
}

#[utoipa::path(post, path = "/api/v1/images/prune", extensions(("x-libgo-access" = json!("operator"))), tag = "images",
    params(BackendQuery),
    responses((status = 200, description = "What was removed", body = libgo_core::PruneReport)))]
async fn prune_images(
    State(state): State<Arc<AppState>>,
    Query(q): Query<BackendQuery>,
) -> ApiResult<Json<PruneReport>> {
    Ok(Json(
        state
            .libgo
            .image_prune(On::maybe(q.backend.as_deref()))
            .await?,
    ))
}

/// The image routes.
pub fn router() -> Router {
    Router::new()
        .routes(routes!(list_images))
        .routes(routes!(get_image, delete_image))
        .routes(routes!(pull_image))
        .routes(routes!(build_image))
        .routes(routes!(tag_image))
        .routes(routes!(push_image))
        .routes(routes!(prune_images))
        .routes(routes!(save_image))
}

#[cfg(test)]
mod tests {
    use super::file_stem;

    #[test]
    fn save_file_names_are_plain() {
        assert_eq!(
            file_stem("127.0.0.1:5000/libgo/busybox:1"),
            "127.0.0.1_5000_libgo_busybox_1"
        );
        assert_eq!(file_stem("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(file_stem("sha256:abc"), "sha256_abc");
    }
}
