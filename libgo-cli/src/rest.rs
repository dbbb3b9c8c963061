//! How an operation of the table (`libgo_bindings_common::OPERATIONS`) travels over the
//! REST API: its route, where each argument goes, and how the answer becomes the
//! operation's result. A test checks every route here against the server's OpenAPI
//! document, so a renamed route or parameter fails the build's tests, not a user.

use libgo::{Error, Result};
use reqwest::Method;
use serde_json::{Map, Value, json};

/// How the server's answer maps to the operation's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The body is the result.
    Body,
    /// No result (`null`).
    Unit,
    /// A `Page`: every page is fetched and the items are the result.
    AllPages,
    /// A `Page` of one request, as it is (the CLI reads `unavailable` from it).
    Page,
    /// A 202 with a task: it is followed to its end and its `result` is the result.
    Task,
    /// Newline-delimited JSON items until the server ends the answer (`follow=true`).
    Lines,
}

/// One HTTP request for an operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Verb.
    pub method: Method,
    /// The route as the OpenAPI document names it (`/api/v1/instances/{id}`).
    pub template: &'static str,
    /// The path with its parameters filled and escaped.
    pub path: String,
    /// Query parameters.
    pub query: Vec<(String, String)>,
    /// JSON body.
    pub body: Option<Value>,
    /// How to read the answer.
    pub answer: Answer,
}

fn take(args: &mut Map<String, Value>, name: &str) -> Option<Value> {
    args.remove(name).filter(|v| !v.is_null())
}

fn text(args: &mut Map<String, Value>, name: &str) -> Result<String> {
    match take(args, name) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(Error::invalid(format!(
            "`{name}` must be a string, not {other}"
        ))),
        None => Err(Error::invalid(format!("`{name}` is required"))),
    }
}

/// Moves argument `from` to `to`: what the table calls `from`, the route calls `to`.
fn rename(args: &mut Map<String, Value>, from: &str, to: &str) {
    if let Some(v) = args.remove(from) {
        args.insert(to.to_string(), v);
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Builds a request: path parameters are taken from `args` by name, `query` lists the
/// arguments (or fields of `spread`, an object argument) that go in the query string.
struct Builder {
    method: Method,
    template: &'static str,
    path: String,
    query: Vec<(String, String)>,
    body: Option<Value>,
    answer: Answer,
}

impl Builder {
    fn new(
        method: Method,
        template: &'static str,
        args: &mut Map<String, Value>,
    ) -> Result<Builder> {
        let mut path = String::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            let close = rest[open..]
                .find('}')
                .map(|c| open + c)
                .ok_or_else(|| Error::internal(format!("bad route template {template}")))?;
            path.push_str(&rest[..open]);
            let value = text(args, &rest[open + 1..close])?;
            path.push_str(&escape(&value));
            rest = &rest[close + 1..];
        }
        path.push_str(rest);
        Ok(Builder {
            method,
            template,
            path,
            query: Vec::new(),
            body: None,
            answer: Answer::Body,
        })
    }

    fn query(mut self, args: &mut Map<String, Value>, names: &[(&str, &str)]) -> Self {
        for (arg, param) in names {
            if let Some(v) = take(args, arg) {
                self.query.push(((*param).to_string(), scalar(&v)));
            }
        }
        self
    }

    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    fn answer(mut self, answer: Answer) -> Self {
        self.answer = answer;
        self
    }

    fn done(self) -> Route {
        Route {
            method: self.method,
            template: self.template,
            path: self.path,
            query: self.query,
            body: self.body,
            answer: self.answer,
        }
    }
}

/// Percent-escapes one path segment (ids may hold `:` `/` `@` of image references).
pub fn escape(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The spread object argument `name` as a map (empty when absent).
fn object(args: &mut Map<String, Value>, name: &str) -> Map<String, Value> {
    match take(args, name) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// The request for operation `op` with `args` (the table's JSON arguments).
pub fn route(op: &str, args: &Value) -> Result<Route> {
    use Method as M;
    let mut a = match args {
        Value::Object(m) => m.clone(),
        Value::Null => Map::new(),
        _ => return Err(Error::invalid("arguments must be an object")),
    };
    let a = &mut a;
    let r = match op {
        "list" => {
            let mut filter = object(a, "filter");
            let labels = match filter.remove("labels") {
                Some(Value::Object(l)) if !l.is_empty() => Some(Value::String(
                    l.iter()
                        .map(|(k, v)| format!("{k}={}", scalar(v)))
                        .collect::<Vec<_>>()
                        .join(","),
                )),
                _ => None,
            };
            let mut f = filter;
            if let Some(l) = labels {
                f.insert("label".into(), l);
            }
            a.extend(f);
            Builder::new(M::GET, "/api/v1/instances", a)?
                .query(
                    a,
                    &[
                        ("kind", "kind"),
                        ("state", "state"),
                        ("name", "name"),
                        ("backend", "backend"),
                        ("label", "label"),
                        ("page", "page"),
                        ("pageSize", "pageSize"),
                    ],
                )
                .answer(Answer::Page)
        }
        "get" => Builder::new(M::GET, "/api/v1/instances/{id}", a)?,
        "create" => {
            let spec = take(a, "spec").unwrap_or(Value::Null);
            Builder::new(M::POST, "/api/v1/instances", a)?.body(spec)
        }
        "create_batch" => {
            let batch = take(a, "batch").unwrap_or(Value::Null);
            Builder::new(M::POST, "/api/v1/instances/batch", a)?
                .body(batch)
                .answer(Answer::Task)
        }
        "start" | "pause" | "resume" | "stop" | "restart" | "kill" => {
            let id = text(a, "id")?;
            let mut options = object(a, "options");
            a.insert("id".into(), Value::String(id));
            a.insert("action".into(), Value::String(op.into()));
            if let Some(t) = options.remove("timeoutSecs") {
                a.insert("timeout".into(), t);
            }
            if let Some(f) = options.remove("force") {
                a.insert("force".into(), f);
            }
            Builder::new(M::POST, "/api/v1/instances/{id}/{action}", a)?
                .query(
                    a,
                    &[
                        ("timeout", "timeout"),
                        ("force", "force"),
                        ("signal", "signal"),
                    ],
                )
                .answer(Answer::Unit)
        }
        "delete" => Builder::new(M::DELETE, "/api/v1/instances/{id}", a)?
            .query(a, &[("force", "force")])
            .answer(Answer::Unit),
        "exec" => {
            let spec = take(a, "spec").unwrap_or(Value::Null);
            Builder::new(M::POST, "/api/v1/instances/{id}/exec", a)?.body(spec)
        }
        "logs" => {
            let options = object(a, "options");
            a.extend(options);
            let follow = a.remove("follow").is_some_and(|f| f == Value::Bool(true));
            let b = Builder::new(M::GET, "/api/v1/instances/{id}/logs", a)?.query(
                a,
                &[
                    ("tail", "tail"),
                    ("since", "since"),
                    ("until", "until"),
                    ("timestamps", "timestamps"),
                ],
            );
            if follow {
                let mut b = b.answer(Answer::Lines);
                b.query.push(("follow".into(), "true".into()));
                b
            } else {
                b.answer(Answer::AllPages)
            }
        }
        "stats" => Builder::new(M::GET, "/api/v1/instances/{id}/stats", a)?,
        "snapshot_create" => {
            let spec = take(a, "spec").unwrap_or(Value::Null);
            Builder::new(M::POST, "/api/v1/instances/{id}/snapshots", a)?.body(spec)
        }
        "reinstall" => {
            let spec = take(a, "spec").unwrap_or(Value::Null);
            Builder::new(M::POST, "/api/v1/instances/{id}/reinstall", a)?
                .body(spec)
                .answer(Answer::Task)
        }
        "guest_password" => {
            let password = take(a, "password").unwrap_or(Value::Null);
            Builder::new(M::PUT, "/api/v1/instances/{id}/guest/password", a)?
                .body(password)
                .answer(Answer::Unit)
        }
        "disk_list" => Builder::new(M::GET, "/api/v1/instances/{id}/disks", a)?,
        "disk_attach" => {
            let disk = take(a, "disk").unwrap_or(Value::Null);
            Builder::new(M::POST, "/api/v1/instances/{id}/disks", a)?.body(disk)
        }
        "disk_detach" => Builder::new(M::DELETE, "/api/v1/instances/{id}/disks/{target}", a)?
            .answer(Answer::Unit),
        "disk_resize" => {
            let resize = take(a, "resize").unwrap_or(Value::Null);
            Builder::new(M::POST, "/api/v1/instances/{id}/disks/{target}/resize", a)?.body(resize)
        }
        "media_insert" => {
            let media = take(a, "media").unwrap_or(Value::Null);
            Builder::new(M::POST, "/api/v1/instances/{id}/media", a)?.body(media)
        }
        "media_eject" => {
            Builder::new(M::DELETE, "/api/v1/instances/{id}/media", a)?.answer(Answer::Unit)
        }
        "snapshot_list" => {
            Builder::new(M::GET, "/api/v1/instances/{id}/snapshots", a)?.answer(Answer::AllPages)
        }
        "snapshot_get" => {
            rename(a, "snapshot", "name");
            Builder::new(M::GET, "/api/v1/instances/{id}/snapshots/{name}", a)?
        }
        "snapshot_revert" => {
            rename(a, "snapshot", "name");
            Builder::new(M::POST, "/api/v1/instances/{id}/snapshots/{name}/revert", a)?
                .answer(Answer::Unit)
        }
        "snapshot_delete" => {
            rename(a, "snapshot", "name");
            Builder::new(M::DELETE, "/api/v1/instances/{id}/snapshots/{name}", a)?
                .answer(Answer::Unit)
        }
        "image_list" => Builder::new(M::GET, "/api/v1/images", a)?.answer(Answer::AllPages),
        "image_pull" => {
            let body = Value::Object(std::mem::take(a));
            Builder::new(M::POST, "/api/v1/images/pull", a)?
                .body(body)
                .answer(Answer::Task)
        }
        "image_push" => {
            rename(a, "reference", "id");
            let body = Value::Object(
                [("backend", take(a, "backend")), ("auth", take(a, "auth"))]
                    .into_iter()
                    .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
                    .collect(),
            );
            Builder::new(M::POST, "/api/v1/images/{id}/push", a)?
                .body(body)
                .answer(Answer::Task)
        }
        "image_tag" => {
            rename(a, "source", "id");
            let body = Value::Object(
                [
                    ("target", take(a, "target")),
                    ("backend", take(a, "backend")),
                ]
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
                .collect(),
            );
            Builder::new(M::POST, "/api/v1/images/{id}/tag", a)?.body(body)
        }
        "image_remove" => Builder::new(M::DELETE, "/api/v1/images/{id}", a)?
            .query(a, &[("backend", "backend"), ("force", "force")])
            .answer(Answer::Unit),
        "network_list" => Builder::new(M::GET, "/api/v1/networks", a)?.answer(Answer::AllPages),
        "network_create" => {
            let spec = take(a, "spec").unwrap_or(Value::Null);
            Builder::new(M::POST, "/api/v1/networks", a)?.body(spec)
        }
        "network_delete" => Builder::new(M::DELETE, "/api/v1/networks/{id}", a)?
            .query(a, &[("backend", "backend")])
            .answer(Answer::Unit),
        "network_inspect" => {
            Builder::new(M::GET, "/api/v1/networks/{id}", a)?.query(a, &[("backend", "backend")])
        }
        "network_connect" | "network_disconnect" => {
            rename(a, "network", "id");
            let instance = take(a, "instance").unwrap_or(Value::Null);
            let action = op.trim_start_matches("network_").to_string();
            a.insert("action".into(), Value::String(action));
            Builder::new(M::POST, "/api/v1/networks/{id}/{action}", a)?
                .body(json!({ "instance": instance }))
                .answer(Answer::Unit)
        }
        "volume_inspect" => {
            Builder::new(M::GET, "/api/v1/volumes/{name}", a)?.query(a, &[("backend", "backend")])
        }
        "volume_resize" => {
            let size = take(a, "sizeBytes").unwrap_or(Value::Null);
            Builder::new(M::POST, "/api/v1/volumes/{name}/resize", a)?
                .query(a, &[("backend", "backend")])
                .body(json!({ "sizeBytes": size }))
        }
        "volume_clone" => {
            rename(a, "source", "name");
            let target = take(a, "target").unwrap_or(Value::Null);
            Builder::new(M::POST, "/api/v1/volumes/{name}/clone", a)?
                .query(a, &[("backend", "backend")])
                .body(json!({ "target": target }))
        }
        "template_get" => {
            Builder::new(M::GET, "/api/v1/templates/{name}", a)?.query(a, &[("backend", "backend")])
        }
        "template_create" => {
            let template = take(a, "template").unwrap_or(Value::Null);
            Builder::new(M::POST, "/api/v1/templates", a)?
                .query(a, &[("backend", "backend")])
                .body(template)
        }
        "template_delete" => Builder::new(M::DELETE, "/api/v1/templates/{name}", a)?
            .query(a, &[("backend", "backend")])
            .answer(Answer::Unit),
        "pool_inspect" => Builder::new(M::GET, "/api/v1/storage-pools/{name}", a)?
            .query(a, &[("backend", "backend")]),
        "volume_list" => Builder::new(M::GET, "/api/v1/volumes", a)?.answer(Answer::AllPages),
        "volume_create" => {
            let spec = take(a, "spec").unwrap_or(Value::Null);
            Builder::new(M::POST, "/api/v1/volumes", a)?.body(spec)
        }
        "volume_delete" => Builder::new(M::DELETE, "/api/v1/volumes/{name}", a)?
            .query(a, &[("backend", "backend"), ("force", "force")])
            .answer(Answer::Unit),
        "pool_list" => Builder::new(M::GET, "/api/v1/storage-pools", a)?.answer(Answer::AllPages),
        "host_list" => Builder::new(M::GET, "/api/v1/hosts", a)?.answer(Answer::AllPages),
        "update" => {
            let body = take(a, "update").unwrap_or(Value::Null);
            Builder::new(M::PATCH, "/api/v1/instances/{id}", a)?.body(body)
        }
        "host_get" => Builder::new(M::GET, "/api/v1/hosts/{name}", a)?,
        "compute_pool_list" => {
            Builder::new(M::GET, "/api/v1/compute-pools", a)?.answer(Answer::AllPages)
        }
        "zone_status" => Builder::new(M::GET, "/api/v1/zone/status", a)?,
        "migrate" => {
            let body = take(a, "request").unwrap_or(Value::Null);
            Builder::new(M::POST, "/api/v1/instances/{id}/migrate", a)?
                .body(body)
                .answer(Answer::Task)
        }
        "template_list" => Builder::new(M::GET, "/api/v1/templates", a)?.answer(Answer::AllPages),
        other => {
            return Err(Error::unsupported(format!(
                "{other} is not available against a remote server yet"
            )));
        }
    };
    if let Some((name, _)) = a.iter().find(|(_, v)| !v.is_null()) {
        return Err(Error::invalid(format!(
            "{op}: `{name}` has no place in the request"
        )));
    }
    Ok(r.done())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn path_parameters_are_escaped_and_leftovers_refused() {
        let r = route(
            "image_remove",
            &json!({"id": "127.0.0.1:5000/busybox:1", "force": true}),
        )
        .unwrap();
        assert_eq!(r.path, "/api/v1/images/127.0.0.1%3A5000%2Fbusybox%3A1");
        assert_eq!(r.query, vec![("force".to_string(), "true".to_string())]);
        let e = route("get", &json!({"id": "x", "bogus": 1})).unwrap_err();
        assert!(e.message().contains("bogus"), "{e}");
    }

    /// Every operation the CLI sends to a server, with arguments that use every parameter.
    fn samples() -> Vec<(&'static str, Value)> {
        vec![
            (
                "list",
                json!({"filter": {"kind": "vm", "state": "running", "name": "a",
                "backend": "kvm", "labels": {"k": "v"}}, "page": 1, "pageSize": 10}),
            ),
            ("get", json!({"id": "a"})),
            (
                "create_batch",
                json!({"batch": {"spec": {"name": "a"}, "count": 2}}),
            ),
            ("create", json!({"spec": {"name": "a"}})),
            ("start", json!({"id": "a"})),
            ("pause", json!({"id": "a"})),
            ("resume", json!({"id": "a"})),
            (
                "stop",
                json!({"id": "a", "options": {"timeoutSecs": 1, "force": true}}),
            ),
            ("restart", json!({"id": "a", "options": {"timeoutSecs": 1}})),
            ("kill", json!({"id": "a", "signal": "TERM"})),
            ("delete", json!({"id": "a", "force": true})),
            ("exec", json!({"id": "a", "spec": {"command": ["true"]}})),
            (
                "logs",
                json!({"id": "a", "options": {"tail": 1, "since": "2026-01-01T00:00:00Z",
                "until": "2026-01-02T00:00:00Z", "timestamps": true}}),
            ),
            (
                "logs",
                json!({"id": "a", "options": {"tail": 1, "follow": true}}),
            ),
            ("stats", json!({"id": "a"})),
            ("snapshot_create", json!({"id": "a", "spec": {"name": "s"}})),
            ("snapshot_list", json!({"id": "a"})),
            ("snapshot_revert", json!({"id": "a", "snapshot": "s"})),
            ("snapshot_delete", json!({"id": "a", "snapshot": "s"})),
            ("image_list", json!({})),
            (
                "image_pull",
                json!({"reference": "busybox", "backend": "docker"}),
            ),
            (
                "image_tag",
                json!({"source": "a", "target": "b", "backend": "docker"}),
            ),
            (
                "image_remove",
                json!({"id": "a", "backend": "docker", "force": true}),
            ),
            ("network_list", json!({})),
            ("network_create", json!({"spec": {"name": "n"}})),
            ("network_delete", json!({"id": "n", "backend": "kvm"})),
            ("network_inspect", json!({"id": "n", "backend": "kvm"})),
            ("network_connect", json!({"network": "n", "instance": "a"})),
            (
                "network_disconnect",
                json!({"network": "n", "instance": "a"}),
            ),
            ("volume_inspect", json!({"name": "v", "backend": "kvm"})),
            (
                "volume_resize",
                json!({"name": "v", "sizeBytes": 1, "backend": "kvm"}),
            ),
            (
                "volume_clone",
                json!({"source": "v", "target": "w", "backend": "kvm"}),
            ),
            ("template_get", json!({"name": "t", "backend": "kvm"})),
            (
                "template_create",
                json!({"template": {"name": "t"}, "backend": "kvm"}),
            ),
            ("template_delete", json!({"name": "t", "backend": "kvm"})),
            ("pool_inspect", json!({"name": "p", "backend": "kvm"})),
            ("volume_list", json!({})),
            ("volume_create", json!({"spec": {"name": "v"}})),
            (
                "volume_delete",
                json!({"name": "v", "backend": "kvm", "force": true}),
            ),
            ("pool_list", json!({})),
            ("host_list", json!({})),
            ("update", json!({"id": "web", "update": {"name": "web2"}})),
            ("host_get", json!({"name": "h2"})),
            ("compute_pool_list", json!({})),
            ("zone_status", json!({})),
            (
                "migrate",
                json!({"id": "vm1", "request": {"host": "h2", "live": true}}),
            ),
            ("template_list", json!({})),
        ]
    }

    #[test]
    fn every_route_is_in_the_servers_openapi_document_and_every_op_in_the_table() {
        let doc: Value = serde_json::from_str(include_str!("../../libgo-http/openapi.json"))
            .expect("openapi.json");
        for (op, args) in samples() {
            assert!(
                libgo_bindings_common::OPERATIONS
                    .iter()
                    .any(|o| o.name == op),
                "{op} is not an operation of the table"
            );
            let r = route(op, &args).unwrap_or_else(|e| panic!("{op}: {e}"));
            let method = r.method.as_str().to_ascii_lowercase();
            let spec = &doc["paths"][r.template][&method];
            assert!(
                spec.is_object(),
                "{op}: {} {} is not in the API",
                r.method,
                r.template
            );
            let params: Vec<&str> = spec["parameters"]
                .as_array()
                .map(|a| a.iter().filter_map(|p| p["name"].as_str()).collect())
                .unwrap_or_default();
            for (name, _) in &r.query {
                assert!(
                    params.contains(&name.as_str()),
                    "{op}: no query parameter {name}"
                );
            }
            if matches!(r.answer, Answer::AllPages) {
                assert!(
                    params.contains(&"page") && params.contains(&"pageSize"),
                    "{op}"
                );
            }
            // A paginated answer is read page by page (or, followed, as its NDJSON stream);
            // anything else is not.
            let answer_ref =
                spec["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
                    .as_str()
                    .unwrap_or_default();
            assert_eq!(
                answer_ref.starts_with("#/components/schemas/Page_"),
                matches!(r.answer, Answer::AllPages | Answer::Page | Answer::Lines),
                "{op}: the server answers {answer_ref:?}, read as {:?}",
                r.answer
            );
            assert_eq!(
                r.body.is_some(),
                spec["requestBody"].is_object(),
                "{op}: a body where the API has none, or none where it wants one"
            );
        }
    }
}
