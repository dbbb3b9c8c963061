//! Request bodies written to files as they arrive (volume uploads, build contexts): a large
//! body never sits in the server's memory.

use axum::body::Body;
use axum::http::{HeaderMap, header};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::error::{ApiError, ApiResult, payload_too_large};
use crate::state::AppState;

/// A spooled body; the file goes however the request or task holding it ends.
pub struct SpoolFile(std::path::PathBuf);

impl SpoolFile {
    /// Where the body is.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.0.display(), error = %e, "cannot remove a spooled body");
        }
    }
}

/// Writes the request body to a new file under `<data dir>/<dir>`, chunk by chunk, up to
/// `build_body_limit_bytes` (413 past it, 400 with `when_empty` when there is nothing).
pub async fn spool(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    dir: &str,
    when_empty: &str,
) -> ApiResult<SpoolFile> {
    let limit = state.config.build_body_limit_bytes as u64;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(payload_too_large());
    }
    let dir = state.config.data_dir.join(dir);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(ApiError::internal)?;
    let file = SpoolFile(dir.join(uuid::Uuid::new_v4().simple().to_string()));
    let mut out = tokio::fs::File::create(&file.0)
        .await
        .map_err(ApiError::internal)?;
    let mut stream = body.into_data_stream();
    let mut written = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::invalid(format!("cannot read the body: {e}")))?;
        written += chunk.len() as u64;
        if written > limit {
            return Err(payload_too_large());
        }
        out.write_all(&chunk).await.map_err(ApiError::internal)?;
    }
    out.flush().await.map_err(ApiError::internal)?;
    if written == 0 {
        return Err(ApiError::invalid(when_empty));
    }
    Ok(file)
}
