//! The web console: the build of `libgo-web/` (in `libgo-http/web/`, made by
//! `bash scripts/web.sh build`), embedded in the binary and served at `/`.
//!
//! Paths under `/assets/` are content-hashed by the build, so they are cached for a year;
//! `index.html` is never cached, so a new server version is picked up at the next load.
//! Any other `GET` a browser makes for a page (it accepts `text/html`) outside the API gets
//! `index.html`, so the console's own paths (`/instances/web`) survive a reload.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(rust_embed::RustEmbed)]
#[folder = "web/"]
#[exclude = "source-hash"]
struct Assets;

/// What the console's pages may load: only this server (scripts, styles, the API and its
/// WebSockets), images from blobs (screenshots), no frames.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data: blob:; font-src 'self'; connect-src 'self' ws: wss:; \
     object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// Whether `path` belongs to the API or the server's own documents, never to the console.
fn is_api(path: &str) -> bool {
    path.starts_with("/api/")
        || path == "/api"
        || path.starts_with("/swagger")
        || matches!(
            path,
            "/openapi.json" | "/health" | "/metrics" | "/login" | "/logout"
        )
}

fn asset(path: &str) -> Option<Response> {
    let file = Assets::get(path)?;
    let mime = file.metadata.mimetype();
    let cache = if path.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut resp = (StatusCode::OK, Body::from(file.data.into_owned())).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(mime) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&format!("\"{}\"", hex_prefix(&file.metadata.sha256_hash())))
            .unwrap_or(HeaderValue::from_static("\"0\"")),
    );
    secure(h);
    Some(resp)
}

fn hex_prefix(hash: &[u8; 32]) -> String {
    hash[..12].iter().map(|b| format!("{b:02x}")).collect()
}

fn secure(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// The console's answer to a request no API route took, or `None` (the caller answers
/// 404 in the error shape).
pub fn serve(method: &Method, path: &str, headers: &HeaderMap) -> Option<Response> {
    if (method != Method::GET && method != Method::HEAD) || is_api(path) {
        return None;
    }
    let file = path.trim_start_matches('/');
    if !file.is_empty()
        && let Some(resp) = asset(file)
    {
        return Some(resp);
    }
    // A missing asset is a 404, not the page (a stale tab asking for an old chunk).
    if file.is_empty() || (!file.starts_with("assets/") && wants_html(headers)) {
        return asset("index.html");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_assets_are_served_and_the_api_is_not() {
        let html = {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, HeaderValue::from_static("text/html"));
            h
        };
        let page = serve(&Method::GET, "/", &HeaderMap::new()).expect("index");
        assert_eq!(page.headers()[header::CONTENT_TYPE], "text/html");
        assert_eq!(page.headers()[header::CACHE_CONTROL], "no-cache");
        assert!(serve(&Method::GET, "/instances/web", &html).is_some());
        assert!(serve(&Method::GET, "/instances/web", &HeaderMap::new()).is_none());
        assert!(serve(&Method::GET, "/api/v1/nope", &html).is_none());
        assert!(serve(&Method::GET, "/assets/gone-123.js", &html).is_none());
        assert!(serve(&Method::POST, "/", &html).is_none());
        assert!(serve(&Method::GET, "/favicon.svg", &HeaderMap::new()).is_some());
    }
}
