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
    // (scripts/gen-bindings.py).
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
        libgo_core::BuildSpec,
        libgo_core::BatchReport,
        libgo_core::MigrationReport,
        libgo_core::MigrationKind
    )),
    tags(
        (name = "auth", description = "Login"),
        (name = "instances", description = "VMs and containers through one set of verbs"),
        (name = "containers", description = "Containers (accepts seed 001's request shapes)"),
        (name = "vms", description = "Virtual machines"),
        (name = "snapshots", description = "Instance snapshots"),
        (name = "disks", description = "A VM's disks and CD-ROM media"),
        (name = "images", description = "Container images and VM base images"),
        (name = "networks", description = "Networks"),
        (name = "address-pools", description = "Address pools: addresses handed out to instances from ranges (Nano's)"),
        (name = "volumes", description = "Volumes"),
        (name = "storage-pools", description = "libvirt storage pools"),
        (name = "templates", description = "VM templates"),
        (name = "tasks", description = "Long-running work"),
        (name = "events", description = "WebSocket events"),
        (name = "users", description = "Users (admin)"),
        (name = "api-keys", description = "API keys"),
        (name = "sessions", description = "Login sessions"),
        (name = "audit", description = "Audit log (admin)"),
        (name = "roles", description = "Custom roles: sets of the routes' permissions (admin)"),
        (name = "groups", description = "Groups of users and their instances (admin)"),
        (name = "system", description = "Health, metrics and backends"),
        (name = "monitoring", description = "Webhooks, alert rules and stats history"),
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
    for (path, item) in api.paths.paths.iter_mut() {
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
            for param in op.parameters.iter_mut().flatten() {
                bound_parameter(path, param);
            }
        }
    }
    flatten_all_of(components, "AlertRule");
    for (name, schema) in components.schemas.iter_mut() {
        if name == "PortsInput" {
            bound_port_map(schema);
        }
        if let RefOr::T(utoipa::openapi::schema::Schema::Object(object)) = schema {
            bound_maps(object);
            if let Some(rule) = conditional_rule(name) {
                // JSON Schema's if/then/else, which the type generators (openapi-typescript,
                // gen-bindings.py) leave alone; utoipa has no field for it but the map it
                // flattens into the object for extensions.
                object
                    .extensions
                    .get_or_insert_with(Default::default)
                    .extend(rule);
            }
            for (_, field, pattern) in FIELD_PATTERNS.iter().filter(|(n, _, _)| n == name) {
                if let Some(RefOr::T(utoipa::openapi::schema::Schema::Object(f))) =
                    object.properties.get_mut(*field)
                {
                    f.pattern = Some(pattern.to_string());
                }
            }
            for (_, field, pattern) in ITEM_PATTERNS.iter().filter(|(n, _, _)| n == name) {
                if let Some(RefOr::T(utoipa::openapi::schema::Schema::Array(a))) =
                    object.properties.get_mut(*field)
                    && let utoipa::openapi::schema::ArrayItems::RefOrSchema(item) = &mut a.items
                    && let RefOr::T(utoipa::openapi::schema::Schema::Object(item)) = item.as_mut()
                {
                    item.pattern = Some(pattern.to_string());
                }
            }
            for (_, field, min, max) in FIELD_ITEMS.iter().filter(|(n, _, _, _)| n == name) {
                if let Some(RefOr::T(utoipa::openapi::schema::Schema::Array(a))) =
                    object.properties.get_mut(*field)
                {
                    a.min_items = Some(*min);
                    a.max_items = Some(*max);
                    if *field == "events" {
                        a.items = utoipa::openapi::schema::ArrayItems::RefOrSchema(Box::new(
                            RefOr::T(utoipa::openapi::schema::Schema::Object(
                                utoipa::openapi::schema::ObjectBuilder::new()
                                    .schema_type(utoipa::openapi::Type::String)
                                    .enum_values(Some(crate::webhooks::event_words()))
                                    .build(),
                            )),
                        ));
                    }
                }
            }
        }
    }
}

/// The rules between a body's fields that the server enforces ("exactly one of",
/// "this only with that"), as JSON Schema `if`/`then`/`else` on the schema `name`. A field
/// counts as given when present and not null, as serde reads it.
fn conditional_rule(name: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    use serde_json::json;
    // Absent or null passes `{"properties": {f: null}}`; `given` needs a non-null value.
    let absent = |fields: &[&str]| {
        let properties: serde_json::Map<_, _> = fields
            .iter()
            .map(|f| (f.to_string(), json!({"type": "null"})))
            .collect();
        json!({ "properties": properties })
    };
    let given = |field: &str| json!({"required": [field], "properties": {field: {"not": {"type": "null"}}}});
    let rule = match name {
        // libgo_core::validate::disk_attach: exactly one of volume and sizeBytes.
        // A new blank disk is no ISO; an existing volume has its own format and pool.
        "DiskAttach" => json!({
            "if": absent(&["volume"]),
            "then": {
                "required": ["sizeBytes"],
                "properties": {
                    "sizeBytes": {"not": {"type": "null"}},
                    "format": {"not": {"const": "iso"}},
                },
            },
            "else": absent(&["sizeBytes", "format", "pool"]),
        }),
        // libgo_core::validate::instance_spec: exactly one of sizeBytes (a blank disk),
        // baseImage (an overlay, sizeBytes optional) and volume.
        "DiskSpec" => json!({
            "if": absent(&["volume"]),
            "then": {"if": absent(&["baseImage"]), "then": given("sizeBytes")},
            "else": absent(&["sizeBytes", "baseImage"]),
        }),
        // LibGo::create: without a backend the kind says where it goes; with one, no host
        // or pool to place it by.
        // And a container needs an image.
        "InstanceSpec" => json!({
            "if": absent(&["backend"]),
            "then": {
                "required": ["kind"],
                "properties": {"kind": {"not": {"type": "null"}}},
                "if": {"properties": {"kind": {"const": "container"}}},
                "then": given("image"),
            },
            "else": absent(&["host", "pool"]),
        }),
        // POST /api/v1/images/pull: a reference, or a name with an optional tag.
        "PullRequest" => json!({
            "if": absent(&["reference"]),
            "then": given("name"),
            "else": absent(&["name", "tag"]),
        }),
        // libgo_core::validate's mount rule: a bind mount's source is a host path, a
        // volume mount's a volume name (volume is the default kind).
        "MountSpec" => json!({
            "if": {"required": ["kind"], "properties": {"kind": {"const": "bind"}}},
            "then": {"properties": {"source": {"pattern": ABSOLUTE_PATH_PATTERN}}},
            "else": {
                "if": {"required": ["kind"], "properties": {"kind": {"const": "tmpfs"}}},
                "else": {"properties": {"source": {"pattern": VOLUME_NAME_PATTERN}}},
            },
        }),
        // alerts::check: a state rule names a state, compares with == or !=, and has no
        // threshold; a cpu or memory rule has a threshold from 0 to 1000000 and no state.
        // Instances by id or by labels, not both.
        "AlertSpec" => json!({
            "if": {"properties": {"metric": {"const": "state"}}},
            "then": {
                "required": ["state"],
                "properties": {
                    "state": {"not": {"type": "null"}},
                    "threshold": {"type": "null"},
                    "op": {"enum": ["==", "!="]},
                },
                "if": absent(&["instance"]),
                "else": absent(&["label"]),
            },
            "else": {
                "required": ["threshold"],
                "properties": {
                    "threshold": {"type": "number", "minimum": 0, "maximum": 1_000_000},
                    "state": {"type": "null"},
                },
                "if": absent(&["instance"]),
                "else": absent(&["label"]),
            },
        }),
        // libgo::HostConfig: a host has a Docker address, a libvirt one, or both.
        "HostRequest" => json!({
            "if": absent(&["docker"]),
            "then": given("libvirt"),
        }),
        // A seed 001 volume: a host path or a named volume.
        "SeedVolume" => json!({
            "if": absent(&["host_path"]),
            "then": given("name"),
            "else": absent(&["name"]),
        }),
        _ => return None,
    };
    match rule {
        serde_json::Value::Object(map) => Some(map),
        _ => None,
    }
}

/// Body fields held to the core's rules for their kind of name: (schema, field, pattern).
const FIELD_PATTERNS: &[(&str, &str, &str)] = &[
    ("PullRequest", "reference", IMAGE_ID_PATTERN),
    ("AlertSpec", "instance", OBJECT_ID_PATTERN),
    ("HostRequest", "docker", "^(tcp|unix)://"),
    ("HostRequest", "libvirt", HOST_LIBVIRT_PATTERN),
    ("HostRequest", "pool", NAME_PATTERN),
    ("InstanceSpec", "image", IMAGE_ID_PATTERN),
    ("InstanceSpec", "cdrom", IMAGE_ID_PATTERN),
    ("InstanceSpec", "template", NAME_PATTERN),
    ("DiskAttach", "pool", NAME_PATTERN),
    ("NetworkAttach", "instance", OBJECT_ID_PATTERN),
    ("SeedVolume", "host_path", ABSOLUTE_PATH_PATTERN),
    ("SeedVolume", "name", VOLUME_NAME_PATTERN),
    ("SeedVolume", "container_path", ABSOLUTE_PATH_PATTERN),
    ("PullRequest", "name", IMAGE_ID_PATTERN),
    ("PullRequest", "tag", IMAGE_TAG_PATTERN),
    ("TagRequest", "target", IMAGE_ID_PATTERN),
    ("VolumeSpec", "name", VOLUME_NAME_PATTERN),
    ("CloneRequest", "target", VOLUME_NAME_PATTERN),
    ("DiskAttach", "volume", VOLUME_NAME_PATTERN),
    ("MediaInsert", "image", VOLUME_NAME_PATTERN),
    ("AlertSpec", "name", NAME_PATTERN),
    ("ContainerCreate", "name", NAME_PATTERN),
    ("MigrateRequest", "host", NAME_PATTERN),
    ("GuestPassword", "user", GUEST_USER_PATTERN),
    ("GuestPassword", "password", GUEST_PASSWORD_PATTERN),
    ("WebhookSpec", "url", WEBHOOK_URL_PATTERN),
    ("ContainerCreate", "image", IMAGE_ID_PATTERN),
    ("ContainerCreate", "workdir", ABSOLUTE_PATH_PATTERN),
    ("InstanceSpec", "workdir", ABSOLUTE_PATH_PATTERN),
    ("ExecSpec", "workdir", ABSOLUTE_PATH_PATTERN),
    ("MountSpec", "target", ABSOLUTE_PATH_PATTERN),
    ("NetworkSpec", "driver", NAME_PATTERN),
    ("NetworkSpec", "subnet", CIDR_PATTERN),
];

/// Arrays of strings whose items are held to a rule: (schema, field, pattern).
const ITEM_PATTERNS: &[(&str, &str, &str)] = &[
    ("InstanceSpec", "devices", ABSOLUTE_PATH_PATTERN),
    ("ContainerCreate", "devices", ABSOLUTE_PATH_PATTERN),
    ("InstanceSpec", "networks", NAME_PATTERN),
    ("ContainerCreate", "networks", NAME_PATTERN),
];

/// Arrays held to the core's bounds: (schema, field, fewest items, most items).
const FIELD_ITEMS: &[(&str, &str, usize, usize)] = &[
    (
        "BatchDelete",
        "ids",
        1,
        libgo_core::BatchSpec::MAX_COUNT as usize,
    ),
    ("ExecSpec", "command", 1, 4096),
    ("WebhookSpec", "events", 1, 32),
    ("WebhookPatch", "events", 1, 32),
];

/// Another host's libvirt ([`libgo_core::validate::host_libvirt_uri`], which also holds
/// its parameters to a list): qemu over a network transport with an authority, or test.
const HOST_LIBVIRT_PATTERN: &str = "^(qemu(\\+(tcp|tls|ssh|libssh|libssh2))?://[^/?#\\s]+|test(\\+(tcp|tls|ssh|libssh|libssh2))?://)";

/// A tag joined to a name with `:` ([`libgo_core::validate::image_reference`] on the whole).
const IMAGE_TAG_PATTERN: &str = "^[!-~]{0,128}$";

/// An absolute path ([`libgo_core::validate::absolute_path`] also refuses `..` components).
const ABSOLUTE_PATH_PATTERN: &str = "^/[^\\x00]*$";
/// A subnet in CIDR form, IPv4 or IPv6 ([`libgo_core::validate::cidr`] checks the numbers).
const CIDR_PATTERN: &str = "^[0-9A-Fa-f:.]+/[0-9]{1,3}$";
/// A guest password: no NUL or line break (and 1 to 256 bytes).
const GUEST_PASSWORD_PATTERN: &str = "^[^\\x00\\r\\n]{1,256}$";

/// A guest's user name ([`libgo_core::validate::guest_password`]).
const GUEST_USER_PATTERN: &str = "^[a-z_][a-z0-9_-]{0,31}$";
/// What every webhook URL starts with ([`crate::webhooks::check_url`] checks the rest: the
/// host's addresses, the length).
const WEBHOOK_URL_PATTERN: &str = "^https?://[A-Za-z0-9]";
/// A disk's device name ([`libgo_core::validate::disk_target`]).
const DISK_TARGET_PATTERN: &str = "^((vd|hd|sd)[a-z0-9]{1,6}|xvd[a-z0-9]{0,5})$";
/// Labels to match in a list's `label=` filter: `key=value`, comma-separated.
const LABEL_FILTER_PATTERN: &str = "^[^,=]*=[^,]*(,[^,=]*=[^,]*)*$";

/// A key of an environment ([`libgo_core::validate::env_key`]).
const ENV_KEY_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]*$";
/// A label key: 1 to 255 characters without spaces or NUL.
const LABEL_KEY_PATTERN: &str = "^[^\\s\\x00]{1,255}$";
/// A value that reaches an engine as a C string: no NUL.
const NO_NUL_PATTERN: &str = "^[^\\x00]*$";

/// The keys and values of every `env`, `environment` and `labels` map, held to
/// the core's rules for them, declared once here for every type that has such a map.
fn bound_maps(object: &mut utoipa::openapi::schema::Object) {
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, Type};
    let string = |pattern: &str| {
        Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(pattern))
                .build(),
        )
    };
    for (field, property) in object.properties.iter_mut() {
        let key = match field.as_str() {
            "env" | "environment" => ENV_KEY_PATTERN,
            "labels" => LABEL_KEY_PATTERN,
            _ => continue,
        };
        if let RefOr::T(Schema::Object(map)) = property
            && map.additional_properties.is_some()
        {
            map.property_names = Some(Box::new(string(key)));
            map.additional_properties = Some(Box::new(AdditionalProperties::RefOr(RefOr::T(
                string(NO_NUL_PATTERN),
            ))));
        }
    }
}

/// Replaces the `allOf` that `#[serde(flatten)]` gives `name` by one object with the
/// properties of all its parts: a part that refuses unknown fields (a request type reused
/// in a response) would otherwise refuse the other parts' fields.
fn flatten_all_of(components: &mut utoipa::openapi::Components, name: &str) {
    use utoipa::openapi::schema::{Object, Schema};
    let Some(RefOr::T(Schema::AllOf(all_of))) = components.schemas.get(name) else {
        return;
    };
    let mut merged = Object::new();
    merged.description.clone_from(&all_of.description);
    for part in &all_of.items {
        let part = match part {
            RefOr::Ref(r) => components
                .schemas
                .get(r.ref_location.trim_start_matches("#/components/schemas/")),
            inline => Some(inline),
        };
        if let Some(RefOr::T(Schema::Object(o))) = part {
            merged.properties.extend(o.properties.clone());
            merged.required.extend(o.required.iter().cloned());
        }
    }
    merged.schema_type = utoipa::openapi::Type::Object.into();
    let flattened = all_of.clone();
    components
        .schemas
        .insert(name.to_string(), RefOr::T(Schema::Object(merged)));
    // Generic wrappers (`Page<T>`) hold the allOf inline: they name the object instead.
    for schema in components.schemas.values_mut() {
        let RefOr::T(Schema::Object(o)) = schema else {
            continue;
        };
        for property in o.properties.values_mut() {
            if let RefOr::T(Schema::Array(a)) = property
                && let utoipa::openapi::schema::ArrayItems::RefOrSchema(item) = &mut a.items
                && matches!(item.as_ref(), RefOr::T(Schema::AllOf(x)) if *x == flattened)
            {
                **item = RefOr::Ref(utoipa::openapi::Ref::from_schema_name(name));
            }
        }
    }
}

/// Seed 001's port map (`{"80/tcp": 8080}`): each value a host port as a number, a string
/// (`"8080"`, `"127.0.0.1:8080"`) or null, as `HostPort` reads it.
fn bound_port_map(schema: &mut RefOr<utoipa::openapi::schema::Schema>) {
    use utoipa::openapi::schema::{
        AdditionalProperties, ObjectBuilder, OneOfBuilder, Schema, Type,
    };
    let RefOr::T(Schema::OneOf(one_of)) = schema else {
        return;
    };
    let port = OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .maximum(Some(65535)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^(.+:)?[0-9]{1,5}$")),
        )
        .build();
    for item in one_of.items.iter_mut() {
        if let RefOr::T(Schema::Object(map)) = item
            && map.schema_type == utoipa::openapi::schema::SchemaType::from(Type::Object)
        {
            map.property_names = Some(Box::new(Schema::Object(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^[0-9]{1,5}(/(tcp|udp))?$"))
                    .build(),
            )));
            map.additional_properties = Some(Box::new(AdditionalProperties::RefOr(RefOr::T(
                Schema::OneOf(port.clone()),
            ))));
        }
    }
}

/// What every id or name in a path is held to ([`libgo_core::validate::object_id`]):
/// printable ASCII without space, `#`, `%` or `?`.
const OBJECT_ID_PATTERN: &str = "^[!\"$&->@-~]+$";
/// An image id or reference in a path: an object id that is also an image reference
/// ([`libgo_core::validate::image_reference`]: not starting with `-`, `:`, `@` or `/`).
pub const IMAGE_ID_PATTERN: &str = "^[!\"$&-,.0-9;->A-~][!\"$&->@-~]{0,511}$";
/// A volume name ([`libgo_core::validate::volume_name`]), optionally after `pool/`.
pub const VOLUME_NAME_PATTERN: &str =
    "^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?/)?[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$";
/// A DNS-label-like name ([`libgo_core::validate::name`]).
pub const NAME_PATTERN: &str = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";

/// Path parameters held to more than an object id: (path prefix, parameter, pattern).
const PATH_PATTERNS: &[(&str, &str, &str)] = &[
    ("/api/v1/images/{id}", "id", IMAGE_ID_PATTERN),
    ("/api/v1/volumes/{name}", "name", VOLUME_NAME_PATTERN),
    (
        "/api/v1/instances/{id}/snapshots/{name}",
        "name",
        NAME_PATTERN,
    ),
    (
        "/api/v1/instances/{id}/disks/{target}",
        "target",
        DISK_TARGET_PATTERN,
    ),
];

/// The lists of instances, whose `kind`, `label` and `state` (or `status`) filters are
/// [`crate::routes::instances::ListQuery`]'s (states: [`libgo_core::InstanceState::WORDS`]).
fn path_lists_instances(path: &str) -> bool {
    matches!(
        path,
        "/api/v1/instances" | "/api/v1/vms" | "/api/v1/containers"
    )
}

/// States in the document the bounds the server holds parameters to, declared once here
/// for every route: pages from 1, page sizes up to [`libgo_core::Pagination::MAX_PAGE_SIZE`],
/// ids and names in paths as [`libgo_core::validate::object_id`] takes them (or stricter,
/// by [`PATH_PATTERNS`]).
fn bound_parameter(path: &str, param: &mut utoipa::openapi::path::Parameter) {
    use utoipa::Number;
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::schema::Schema;
    let Some(RefOr::T(Schema::Object(schema))) = param.schema.as_mut() else {
        return;
    };
    match (&param.parameter_in, param.name.as_str()) {
        (ParameterIn::Query, "page") => schema.minimum = Some(Number::UInt(1)),
        (ParameterIn::Query, "pageSize" | "limit") => {
            schema.minimum = Some(Number::UInt(1));
            schema.maximum = Some(Number::UInt(libgo_core::Pagination::MAX_PAGE_SIZE as usize));
        }
        (ParameterIn::Query, "kind") if path_lists_instances(path) => {
            schema.enum_values = Some(vec!["vm".into(), "container".into()]);
        }
        (ParameterIn::Query, "state" | "status") if path_lists_instances(path) => {
            schema.enum_values = Some(
                libgo_core::InstanceState::WORDS
                    .iter()
                    .map(|w| (*w).into())
                    .collect(),
            );
        }
        (ParameterIn::Query, "group") => schema.pattern = Some(NAME_PATTERN.to_string()),
        (ParameterIn::Query, "label") if path_lists_instances(path) => {
            schema.pattern = Some(LABEL_FILTER_PATTERN.to_string())
        }
        (ParameterIn::Path, _) if schema.enum_values.is_none() && schema.pattern.is_none() => {
            if matches!(
                schema.schema_type,
                utoipa::openapi::schema::SchemaType::Type(utoipa::openapi::Type::String)
            ) {
                let pattern = PATH_PATTERNS
                    .iter()
                    .find(|(prefix, name, _)| path.starts_with(prefix) && *name == param.name)
                    .map_or(OBJECT_ID_PATTERN, |(_, _, p)| p);
                schema.min_length = Some(1);
                schema.max_length = Some(512);
                schema.pattern = Some(pattern.to_string());
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use libgo_core::validate;

    /// Random short strings over ASCII (and a little beyond), biased towards the characters
    /// the rules are about.
    fn samples() -> Vec<String> {
        let alphabet: Vec<char> = (0x20u8..0x7f)
            .map(char::from)
            .chain(['\0', '\t', 'é', '.', '-', '/', 'a', 'z', '0', '_'])
            .collect();
        let mut rng = StdRng::seed_from_u64(20261203);
        (0..40_000)
            .map(|_| {
                let len = rng.gen_range(0..12);
                (0..len)
                    .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                    .collect()
            })
            .chain(
                [
                    "vda",
                    "vdaa",
                    "vd",
                    "vdA",
                    "vd-1",
                    "vdabcdef",
                    "vdabcdefg",
                    "xvd",
                    "xvda",
                    "xvdabcde",
                    "xvdabcdef",
                    "sdb",
                    "hdc",
                    "sd",
                    "root",
                    "_x",
                    "a-b",
                    "1root",
                    "Root",
                    "abcdefghijklmnopqrstuvwxyz012345",
                    "abcdefghijklmnopqrstuvwxyz0123456",
                ]
                .map(String::from),
            )
            .collect()
    }

    /// The patterns the document states are the rules the core applies: a value the
    /// document allows is one the server takes, and (where the rule is a pattern) the
    /// other way round, so that a client generated from the document is neither refused
    /// nor stricter than the server.
    type Rule = fn(&str) -> bool;

    #[test]
    fn stated_patterns_are_the_cores_rules() {
        let re = |p: &str| regex::Regex::new(p).expect("pattern");
        let checks: [(&str, regex::Regex, Rule); 7] = [
            ("disk target", re(DISK_TARGET_PATTERN), |v| {
                validate::disk_target(v).is_ok()
            }),
            ("guest user", re(GUEST_USER_PATTERN), |v| {
                validate::guest_password(&libgo_core::GuestPassword {
                    user: v.to_string(),
                    password: "pw".into(),
                    crypted: false,
                })
                .is_ok()
            }),
            ("name", re(NAME_PATTERN), |v| validate::name("n", v).is_ok()),
            ("volume", re(VOLUME_NAME_PATTERN), |v| {
                validate::volume_name(v).is_ok()
            }),
            ("env key", re(ENV_KEY_PATTERN), |v| {
                validate::env_key(v).is_ok()
            }),
            // A `..` component is refused besides what the pattern says.
            ("object id", re(OBJECT_ID_PATTERN), |v| {
                validate::object_id("o", v).is_ok() || v.split('/').any(|c| c == "..")
            }),
            ("image id", re(IMAGE_ID_PATTERN), |v| {
                validate::image_reference(v).is_ok()
                    && (validate::object_id("i", v).is_ok() || v.split('/').any(|c| c == ".."))
            }),
        ];
        for v in samples() {
            for (what, pattern, rule) in &checks {
                let stated = pattern.is_match(&v);
                assert!(
                    !stated || rule(&v),
                    "{what}: the document allows {v:?}, the core refuses it"
                );
                assert!(
                    stated || !rule(&v),
                    "{what}: the core takes {v:?}, the document refuses it"
                );
            }
        }
    }
}
