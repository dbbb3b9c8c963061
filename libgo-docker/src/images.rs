//! Images: the `Images` trait on Docker.

use std::path::Path;

use async_trait::async_trait;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{
    BuildImageOptions, CreateImageOptions, ListImagesOptions, PruneImagesOptions, PushImageOptions,
    RemoveImageOptions, TagImageOptions,
};
use bytes::Bytes;
use chrono::DateTime;
use futures::StreamExt;
use libgo_core::{
    BuildSpec, Error, ErrorKind, ExportFormat, ExportResult, ExportSpec, Image, ImageKind, Images,
    Progress, ProgressSink, PruneReport, RegistryAuth, Result, validate,
};

use crate::{DockerBackend, convert, stream_error_kind};

/// Bytes of build output kept for the error of a failing build: its last lines.
const BUILD_OUTPUT_KEPT: usize = 64 * 1024;

/// Drops the front of `text` so that at most `max` bytes (on a character boundary) remain.
fn keep_tail(text: &mut String, max: usize) {
    if text.len() > max {
        let mut cut = text.len() - max;
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        text.drain(..cut);
    }
}

fn credentials(auth: Option<&RegistryAuth>) -> Option<DockerCredentials> {
    auth.map(|a| DockerCredentials {
        username: Some(a.username.clone()),
        password: Some(a.password.clone()),
        serveraddress: a.server.clone(),
        ..Default::default()
    })
}

fn percent(current: Option<i64>, total: Option<i64>) -> Option<f64> {
    match (current, total) {
        (Some(c), Some(t)) if t > 0 => Some((c as f64 / t as f64 * 100.0).clamp(0.0, 100.0)),
        _ => None,
    }
}

impl DockerBackend {
    fn image_from_inspect(&self, i: bollard::models::ImageInspect) -> Image {
        Image {
            id: i.id.unwrap_or_default(),
            tags: i.repo_tags.unwrap_or_default(),
            kind: ImageKind::Container,
            backend: self.name.clone(),
            size_bytes: i.size.unwrap_or(0).max(0) as u64,
            created_at: i.created,
            labels: i
                .config
                .and_then(|c| c.labels)
                .unwrap_or_default()
                .into_iter()
                .collect(),
            format: None,
        }
    }

    /// Turns an error dockerd put inside a progress stream into a LibGo error.
    fn stream_error(&self, e: bollard::errors::Error, what: &str) -> Error {
        match e {
            bollard::errors::Error::DockerStreamError { error } => {
                Error::new(stream_error_kind(&error), format!("{what}: {error}"))
                    .with_context("backend", self.name.clone())
            }
            other => self.error(other),
        }
    }
}

#[async_trait]
impl Images for DockerBackend {
    async fn image_list(&self) -> Result<Vec<Image>> {
        let docker = self.docker().await?;
        let images = docker
            .list_images(Some(ListImagesOptions::default()))
            .await
            .map_err(|e| self.error(e))?;
        Ok(images
            .into_iter()
            .map(|i| Image {
                id: i.id,
                tags: i
                    .repo_tags
                    .into_iter()
                    .filter(|t| t != "<none>:<none>")
                    .collect(),
                kind: ImageKind::Container,
                backend: self.name.clone(),
                size_bytes: i.size.max(0) as u64,
                created_at: DateTime::from_timestamp(i.created, 0),
                labels: i.labels.into_iter().collect(),
                format: None,
            })
            .collect())
    }

    async fn image_inspect(&self, id: &str) -> Result<Image> {
        validate::image_reference(id)?;
        let docker = self.docker().await?;
        let image = docker
            .inspect_image(id)
            .await
            .map_err(|e| no_such_image(self.error(e), id))?;
        Ok(self.image_from_inspect(image))
    }

    async fn image_pull(
        &self,
        reference: &str,
        auth: Option<&RegistryAuth>,
        progress: ProgressSink,
    ) -> Result<Image> {
        validate::image_reference(reference)?;
        let docker = self.docker().await?;
        let (repo, tag) = convert::split_reference(reference);
        let options = CreateImageOptions {
            from_image: Some(repo.clone()),
            tag: (!tag.is_empty()).then_some(tag.clone()),
            ..Default::default()
        };
        let mut stream = docker.create_image(Some(options), None, credentials(auth));
        while let Some(info) = stream.next().await {
            let info = info.map_err(|e| self.stream_error(e, &format!("pull {reference}")))?;
            if let Some(detail) = info.error_detail {
                let message = detail.message.unwrap_or_default();
                return Err(Error::new(
                    stream_error_kind(&message),
                    format!("pull {reference}: {message}"),
                ));
            }
            let p = info.progress_detail.unwrap_or_default();
            progress.report(Progress {
                percent: percent(p.current, p.total),
                message: info.status.unwrap_or_default(),
                id: info.id,
            });
        }
        let pulled = if tag.is_empty() {
            repo
        } else {
            format!("{repo}:{tag}")
        };
        self.image_inspect(&pulled).await
    }

    async fn image_push(
        &self,
        reference: &str,
        auth: Option<&RegistryAuth>,
        progress: ProgressSink,
    ) -> Result<()> {
        validate::image_reference(reference)?;
        let docker = self.docker().await?;
        // A missing image is NotFound before any registry is contacted.
        docker
            .inspect_image(reference)
            .await
            .map_err(|e| self.error(e).with_context("image", reference))?;
        let (repo, tag) = convert::split_reference(reference);
        let mut stream = docker.push_image(
            &repo,
            Some(PushImageOptions {
                tag: Some(tag),
                platform: None,
            }),
            credentials(auth),
        );
        while let Some(info) = stream.next().await {
            let info = info.map_err(|e| self.stream_error(e, &format!("push {reference}")))?;
            if let Some(detail) = info.error_detail {
                let message = detail.message.unwrap_or_default();
                return Err(Error::new(
                    stream_error_kind(&message),
                    format!("push {reference}: {message}"),
                ));
            }
            let p = info.progress_detail.unwrap_or_default();
            progress.report(Progress {
                percent: percent(p.current, p.total),
                message: info.status.unwrap_or_default(),
                id: None,
            });
        }
        Ok(())
    }

    async fn image_build(&self, spec: &BuildSpec, progress: ProgressSink) -> Result<Image> {
        for t in &spec.tags {
            convert::tag_target(t)?;
        }
        let docker = self.docker().await?;
        let options = BuildImageOptions {
            dockerfile: spec
                .dockerfile
                .clone()
                .unwrap_or_else(|| "Dockerfile".into()),
            t: spec.tags.first().cloned(),
            rm: true,
            forcerm: true,
            buildargs: (!spec.build_args.is_empty())
                .then(|| spec.build_args.clone().into_iter().collect()),
            labels: (!spec.labels.is_empty()).then(|| spec.labels.clone().into_iter().collect()),
            ..Default::default()
        };
        // A context in a file is streamed as it is read: a large context never sits in memory.
        let body = match &spec.context_file {
            Some(path) => {
                let file = tokio::fs::File::open(path).await.map_err(|e| {
                    Error::invalid(format!(
                        "cannot read the build context {}: {e}",
                        path.display()
                    ))
                })?;
                bollard::body_try_stream(tokio_util::io::ReaderStream::new(file))
            }
            None => bollard::body_full(Bytes::from(spec.context_tar.clone())),
        };
        let mut stream = docker.build_image(options, None, Some(body));
        let mut image_id = None;
        let mut output = String::new();
        while let Some(info) = stream.next().await {
            let info = match info {
                Ok(i) => i,
                // A failing step is the build's input at fault, not the engine.
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    return Err(Error::invalid(format!("build failed: {error}\n{output}")));
                }
                Err(e) => return Err(self.error(e)),
            };
            if let Some(detail) = info.error_detail {
                return Err(Error::invalid(format!(
                    "build failed: {}\n{output}",
                    detail.message.unwrap_or_default()
                )));
            }
            if let Some(aux) = info.aux
                && let Some(id) = aux.id
            {
                image_id = Some(id);
            }
            if let Some(line) = info.stream {
                output.push_str(&line);
                keep_tail(&mut output, BUILD_OUTPUT_KEPT);
                progress.report(Progress {
                    percent: None,
                    message: line.trim_end().to_string(),
                    id: None,
                });
            }
        }
        let id = image_id
            .or_else(|| spec.tags.first().cloned())
            .ok_or_else(|| Error::internal("the build reported no image id"))?;
        for extra in spec.tags.iter().skip(1) {
            self.image_tag(&id, extra).await?;
        }
        self.image_inspect(&id).await
    }

    async fn image_tag(&self, source: &str, target: &str) -> Result<()> {
        validate::image_reference(source)?;
        convert::tag_target(target)?;
        let docker = self.docker().await?;
        let (repo, tag) = convert::split_reference(target);
        docker
            .tag_image(
                source,
                Some(TagImageOptions {
                    repo: Some(repo),
                    tag: Some(tag),
                }),
            )
            .await
            .map_err(|e| self.error(e).with_context("image", source))
    }

    async fn image_remove(&self, id: &str, force: bool) -> Result<()> {
        validate::image_reference(id)?;
        let docker = self.docker().await?;
        docker
            .remove_image(
                id,
                Some(RemoveImageOptions {
                    force,
                    ..Default::default()
                }),
                None,
            )
            .await
            .map_err(|e| no_such_image(self.error(e), id))?;
        Ok(())
    }

    async fn image_prune(&self) -> Result<PruneReport> {
        let docker = self.docker().await?;
        let pruned = docker
            .prune_images(None::<PruneImagesOptions>)
            .await
            .map_err(|e| self.error(e))?;
        Ok(PruneReport {
            deleted: pruned
                .images_deleted
                .unwrap_or_default()
                .into_iter()
                .filter_map(|i| i.deleted.or(i.untagged))
                .collect(),
            space_reclaimed_bytes: pruned.space_reclaimed.unwrap_or(0).max(0) as u64,
        })
    }

    async fn image_save(&self, id: &str, destination: &Path) -> Result<ExportResult> {
        validate::image_reference(id)?;
        let spec = ExportSpec {
            format: ExportFormat::ImageTar,
            destination: destination.to_path_buf(),
        };
        validate::export_spec(&spec)?;
        let docker = self.docker().await?;
        docker
            .inspect_image(id)
            .await
            .map_err(|e| no_such_image(self.error(e), id))?;
        let stream = docker.export_image(id);
        self.write_stream_to_file(Box::pin(stream), &spec, &ProgressSink::none())
            .await
    }
}

/// An id Docker cannot parse as a reference (`Web`, `a+b`) names no image it has: NotFound,
/// as for any other image it lacks; the same id may be a VM image's name on libvirt.
fn no_such_image(e: Error, id: &str) -> Error {
    if e.kind() == ErrorKind::InvalidInput && e.message().contains("invalid reference format") {
        Error::not_found(format!("no image {id:?}")).with_context("image", id)
    } else {
        e.with_context("image", id)
    }
}

#[cfg(test)]
mod tests {
    use super::keep_tail;

    #[test]
    fn build_output_keeps_its_last_bytes_on_a_character_boundary() {
        let mut text = "é".repeat(10);
        keep_tail(&mut text, 5);
        assert_eq!(text, "éé");
        let mut short = String::from("step 1");
        keep_tail(&mut short, 64);
        assert_eq!(short, "step 1");
    }
}
