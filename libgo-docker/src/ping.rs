//! The API version of a local dockerd, read the way Docker's own CLI reads it.
//!
//! bollard negotiates with `GET /version`, for which dockerd asks containerd and runc for
//! their versions (about 8 ms here, a tenth of a `docker ps -a` of 1,000 containers). `GET
//! /_ping` answers the same `Api-Version` header at once (under 1 ms).

use bollard::ClientVersion;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;

/// How long the ping may take before the caller negotiates the usual way: a socket that
/// accepts but never answers (systemd's `docker.socket` while dockerd fails to start) must
/// not hang the backend.
const PING_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The API version to speak with the dockerd on the unix socket at `path`: the
/// `Api-Version` it announces, or bollard's own when that is older (the rule of bollard's
/// `negotiate_version`). `None` when it cannot be read within [`PING_LIMIT`] (the caller
/// then negotiates the usual way, with its own timeout, which reports the error).
pub(crate) async fn unix_api_version(path: &str) -> Option<ClientVersion> {
    let server = tokio::time::timeout(PING_LIMIT, ping(path))
        .await
        .ok()
        .flatten()?;
    let ours = *bollard::API_DEFAULT_VERSION;
    Some(if server < ours { server } else { ours })
}

/// Aborts the connection's task when the ping ends or is dropped (timed out).
struct AbortOnDrop(tokio::task::JoinHandle<std::result::Result<(), hyper::Error>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn ping(path: &str) -> Option<ClientVersion> {
    let stream = tokio::net::UnixStream::connect(path).await.ok()?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    let _driver = AbortOnDrop(tokio::spawn(connection));
    let request = hyper::Request::get("/_ping")
        .header(hyper::header::HOST, "docker")
        .body(Empty::<Bytes>::new())
        .ok()?;
    let answer = sender.send_request(request).await.ok()?;
    if !answer.status().is_success() {
        return None;
    }
    parse(answer.headers().get("api-version")?.to_str().ok()?)
}

/// `"1.41"` → 1.41.
fn parse(text: &str) -> Option<ClientVersion> {
    let (major, minor) = text.trim().split_once('.')?;
    Some(ClientVersion {
        major_version: major.parse().ok()?,
        minor_version: minor.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_garbage_does_not() {
        let v = parse("1.41").map(|v| (v.major_version, v.minor_version));
        assert_eq!(v, Some((1, 41)));
        assert!(parse("1").is_none());
        assert!(parse("x.41").is_none());
        assert!(parse("").is_none());
    }

    #[tokio::test]
    async fn a_socket_that_never_answers_gives_up_in_time() {
        let path = std::env::temp_dir().join(format!("libgo-mute-{}.sock", uuid::Uuid::new_v4()));
        let listener = tokio::net::UnixListener::bind(&path).expect("bind");
        // Accepts and holds each connection, answering nothing.
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                open.push(conn);
            }
        });
        let asked = tokio::time::timeout(
            PING_LIMIT * 3,
            unix_api_version(&path.display().to_string()),
        )
        .await;
        held.abort();
        let _ = std::fs::remove_file(&path);
        assert!(
            matches!(asked, Ok(None)),
            "the ping must give up: {asked:?}"
        );
    }
}
