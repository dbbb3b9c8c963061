//! The OpenAPI document: served, complete, valid (by an external validator) and unchanged
//! from the committed snapshot.

mod common;

use reqwest::StatusCode;
use serde_json::Value;

const SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).expect("json") + "\n"
}

#[tokio::test]
async fn document_is_served_valid_and_unchanged() {
    let s = common::start(false, |_| {}).await;
    let r = s
        .client
        .get(s.url("/openapi.json"))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::OK);
    let served: Value = r.json().await.expect("json");
    let built = serde_json::to_value(libgo_http::openapi()).expect("doc");
    assert_eq!(served, built, "the served document is the library's");
    assert!(
        served["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3."))
    );

    // Swagger UI works offline (vendored assets).
    let r = s
        .client
        .get(s.url("/swagger/index.html"))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.expect("html").contains("swagger"));
    let r = s
        .client
        .get(s.url("/swagger/swagger-ui-bundle.js"))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::OK);
    // …and shows the document the server serves.
    let r = s
        .client
        .get(s.url("/swagger/swagger-initializer.js"))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.text()
            .await
            .expect("js")
            .contains(r#""url": "/openapi.json""#)
    );

    // Complete: every operation documents its errors with the error schema.
    let paths = served["paths"].as_object().expect("paths");
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("item") {
            let responses = op["responses"].as_object().expect("responses");
            for code in ["400", "404", "500"] {
                assert!(responses.contains_key(code), "{method} {path} lacks {code}");
            }
        }
    }
    for needed in [
        "/api/v1/instances",
        "/api/v1/containers",
        "/api/v1/vms",
        "/api/v1/images/pull",
        "/api/v1/tasks/{id}",
        "/api/v1/events",
        "/api/v1/audit",
        "/api/v1/api-keys",
        "/api/v1/storage-pools",
        "/api/v1/instances/{id}/console",
        "/metrics",
        "/health",
        "/login",
    ] {
        assert!(paths.contains_key(needed), "{needed} documented");
    }
    assert!(served["components"]["schemas"]["ErrorBody"].is_object());
    assert!(served["components"]["securitySchemes"]["bearer"].is_object());

    // Valid, by openapi-spec-validator (installed by scripts/test-tools.sh).
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, pretty(&served)).expect("write");
    let out = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "openapi-spec-validator rejected the document (install it with scripts/test-tools.sh):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Unchanged: regenerate the snapshot with UPDATE_OPENAPI=1 when a change is intended.
    let text = pretty(&served);
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(SNAPSHOT, &text).expect("write snapshot");
    }
    let committed = std::fs::read_to_string(SNAPSHOT).unwrap_or_default();
    assert!(
        committed == text,
        "the OpenAPI document changed; review and run UPDATE_OPENAPI=1 cargo test -p libgo-http --test openapi_doc"
    );
    s.stop().await;
}
