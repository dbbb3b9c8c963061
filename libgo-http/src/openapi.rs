//! The OpenAPI document: generated from the handlers' annotations (utoipa), with security
//! schemes and the error responses every operation can give.

use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder, SecurityRequirement};

use crate::error::ErrorBody;

/// Raw bytes: a disk image, a tar archive.
// Described as `type: string, format: binary`, as OpenAPI describes file uploads, not as
// the array of integers a `Vec<u8>` would give.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // only described, never built: handlers stream the body
pub struct Binary(Vec<u8>);

/// The document's fixed parts; the paths come from the routers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "LibGo API",
        description = "One REST API for KVM virtual machines and Docker containers. Every \
                       endpoint but /health and /login needs `Authorization: Bearer <token>` \
                       (from POST /login) or `X-API-Key`. Errors are always \
                       `{status, code, message}`; lists take `page` and `pageSize` (max 100) \
                       and answer `{items, count, page, pageSize}`.",
        license(name = "Apache-2.0")
    ),
    // The core's types that no route carries as a body are listed too: the document is the
    // one catalogue of LibGo's data that the bindings' types are generated from
    // (scripts/gen-binding-types.py).
    components(schemas(
        ErrorBody,
        crate::routes::instances::Action,
        crate::routes::resources::NetworkAction,
        crate::routes::resources::PoolAction,
        libgo_core::InstanceFilter,
        libgo_core::EventFilter,
        libgo_core::StopOptions,
        libgo_core::LogOptions,
        libgo_core::ExportSpec,
        libgo_core::ExportResult,
        libgo_core::Progress,
        libgo_core::VncDisplay,
        libgo_core::RegistryAuth,
        libgo_core::BuildSpec
    )),
    tags(
        (name = "auth", description = "Login"),
        (name = "instances", description = "VMs and containers through one set of verbs"),
        (name = "containers", description = "Containers (accepts seed 001's request shapes)"),
        (name = "vms", description = "Virtual machines"),
        (name = "snapshots", description = "Instance snapshots"),
        (name = "images", description = "Container images and VM base images"),
        (name = "networks", description = "Networks"),
        (name = "volumes", description = "Volumes"),
        (name = "storage-pools", description = "libvirt storage pools"),
        (name = "templates", description = "VM templates"),
        (name = "tasks", description = "Long-running work"),
        (name = "events", description = "WebSocket events"),
        (name = "users", description = "Users (admin)"),
        (name = "api-keys", description = "API keys"),
        (name = "sessions", description = "Login sessions"),
        (name = "audit", description = "Audit log (admin)"),
        (name = "system", description = "Health, metrics and backends"),
    )
)]
pub struct ApiDoc;

/// Adds security schemes, the default security requirement and the error responses.
pub fn finish(api: &mut utoipa::openapi::OpenApi) {
    let components = api.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .build(),
        ),
    );
    components.add_security_scheme(
        "apiKey",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
    );
    let error = ResponseBuilder::new()
        .description("An error: {status, code, message}")
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    "ErrorBody",
                ))))
                .build(),
        )
        .build();
    components
        .responses
        .insert("Error".to_string(), RefOr::T(error));
    api.security = Some(vec![
        SecurityRequirement::new("bearer", Vec::<String>::new()),
        SecurityRequirement::new("apiKey", Vec::<String>::new()),
    ]);
    let error_ref = || RefOr::Ref(utoipa::openapi::Ref::new("#/components/responses/Error"));
    for item in api.paths.paths.values_mut() {
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in ops.into_iter().flatten() {
            let public = op
                .security
                .as_ref()
                .is_some_and(|s| s.iter().all(|r| *r == SecurityRequirement::default()));
            // Every operation may meet a conflict with an object's state, a capability its
            // backend lacks (501 UNSUPPORTED), an engine that is down or slow (503, 504),
            // and the limits on bodies and media types.
            let mut codes = vec![
                "400", "404", "409", "413", "415", "429", "500", "501", "503", "504",
            ];
            let is_login = op
                .operation_id
                .as_deref()
                .is_some_and(|id| id.starts_with("login"));
            if !public || is_login {
                codes.push("401");
            }
            if !public {
                codes.push("403");
            }
            for code in codes {
                op.responses
                    .responses
                    .entry(code.to_string())
                    .or_insert_with(error_ref);
            }
        }
    }
}
