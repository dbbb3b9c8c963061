//! Moving a container to another dockerd: an honest cold move. Docker cannot move a live
//! container, so it is stopped, its filesystem committed to an image, the image streamed to
//! the other daemon, its named volumes copied there through the archive API, and the
//! container recreated with the same configuration and name (and started if it ran); then
//! the source container goes, with those of its volumes no other container uses (Docker
//! refuses to remove a volume in use). A failure before the new container exists undoes
//! what was done and starts the source again.

use std::collections::HashMap;
use std::time::Instant;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, NetworkingConfig, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CommitContainerOptions, CreateContainerOptions, DownloadFromContainerOptions,
    ImportImageOptions, InspectContainerOptions, RemoveContainerOptions, RemoveImageOptions,
    StartContainerOptions, StopContainerOptions, UploadToContainerOptions,
};
use futures::StreamExt;
use libgo_core::{
    Compute, Error, ErrorKind, MigrationKind, MigrationReport, Progress, ProgressSink, Result,
};

use crate::{DockerBackend, LABEL_IMAGE};

/// Where a copied volume is mounted in the helper containers that carry its data.
const VOLUME_MOUNT: &str = "/libgo-move-volume";

/// Moves container `id` from `source` to `target`.
pub(crate) async fn move_container(
    source: &DockerBackend,
    id: &str,
    target: &DockerBackend,
    progress: ProgressSink,
) -> Result<MigrationReport> {
    let started = Instant::now();
    let src = source.docker().await?;
    let dst = target.docker().await?;
    let c = src
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .map_err(|e| source.error(e).with_context("instance", id))?;
    let name = c
        .name
        .as_deref()
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_string();
    let cid = c.id.clone().unwrap_or_default();
    let report = |p: f64, m: String| {
        progress.report(Progress {
            percent: Some(p),
            message: m,
            id: None,
        })
    };

    // Everything that could refuse the move is checked before the container stops.
    match target.get(&name).await {
        Ok(_) => {
            return Err(Error::conflict(format!(
                "a container named {name:?} exists on backend {:?} already",
                target.name
            )));
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let networks = user_networks(&c);
    for n in &networks {
        if dst.inspect_network(n, None).await.is_err() {
            return Err(Error::conflict(format!(
                "network {n:?} does not exist on backend {:?}: create it there first",
                target.name
            )));
        }
    }
    let volumes = named_volumes(&c);
    for v in &volumes {
        if dst.inspect_volume(v).await.is_ok() {
            return Err(Error::conflict(format!(
                "volume {v:?} exists on backend {:?} already; its data would be mixed",
                target.name
            )));
        }
    }

    let was_running = c.state.as_ref().and_then(|s| s.running).unwrap_or(false);
    if was_running {
        report(5.0, format!("stopping {name}"));
        src.stop_container(
            &cid,
            Some(StopContainerOptions {
                t: Some(10),
                ..Default::default()
            }),
        )
        .await
        .map_err(|e| source.error(e))?;
    }
    let mut undo = Undo {
        src: src.clone(),
        dst: dst.clone(),
        source_id: cid.clone(),
        restart_source: was_running,
        images: Vec::new(),
        target_images: Vec::new(),
        volumes: Vec::new(),
        containers: Vec::new(),
    };
    match copy_and_recreate(
        source, target, &c, &name, &networks, &volumes, &mut undo, &report,
    )
    .await
    {
        Ok(new_id) => {
            if was_running {
                report(90.0, format!("starting {name} on {}", target.name));
                if let Err(e) = dst
                    .start_container(&new_id, None::<StartContainerOptions>)
                    .await
                {
                    // The copy exists: undo it, so that the source (started again) stays
                    // the only one.
                    let _ = dst
                        .remove_container(
                            &new_id,
                            Some(RemoveContainerOptions {
                                force: true,
                                ..Default::default()
                            }),
                        )
                        .await;
                    undo.run().await;
                    return Err(target.error(e).with_context("instance", name));
                }
            }
            // The move is done: the source container, its commit and its volumes go (a
            // volume another container uses stays: Docker refuses to remove it).
            if let Err(e) = src
                .remove_container(
                    &cid,
                    Some(RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    }),
                )
                .await
            {
                tracing::warn!(instance = %name, error = %e, "source container left after the move");
            }
            for image in &undo.images {
                let _ = src
                    .remove_image(image, None::<RemoveImageOptions>, None)
                    .await;
            }
            for v in &volumes {
                if let Err(e) = src
                    .remove_volume(v, None::<bollard::query_parameters::RemoveVolumeOptions>)
                    .await
                {
                    tracing::info!(volume = %v, error = %e, "source volume kept after the move");
                }
            }
            let instance = target.get(&new_id).await?;
            report(100.0, format!("{name} runs on {}", target.name));
            Ok(MigrationReport {
                instance,
                kind: MigrationKind::Move,
                from_backend: source.name.clone(),
                to_backend: target.name.clone(),
                elapsed_ms: started.elapsed().as_millis() as u64,
                downtime_ms: was_running.then(|| started.elapsed().as_millis() as u64),
                transferred_bytes: None,
            })
        }
        Err(e) => {
            undo.run().await;
            Err(e.with_context("instance", name))
        }
    }
}

/// Commits, transfers the image and the volumes, and creates the container on the target;
/// answers its id. Everything it makes is recorded in `undo`.
#[allow(clippy::too_many_arguments)]
async fn copy_and_recreate(
    source: &DockerBackend,
    target: &DockerBackend,
    c: &ContainerInspectResponse,
    name: &str,
    networks: &[String],
    volumes: &[String],
    undo: &mut Undo,
    report: &(dyn Fn(f64, String) + Send + Sync),
) -> Result<String> {
    let (src, dst) = (&undo.src.clone(), &undo.dst.clone());
    let cid = c.id.clone().unwrap_or_default();
    let tag = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let repo = format!("libgo-move/{name}");
    let image = format!("{repo}:{tag}");
    report(15.0, format!("committing {name}"));
    src.commit_container(
        CommitContainerOptions {
            container: Some(cid.clone()),
            repo: Some(repo),
            tag: Some(tag),
            author: Some("libgo".into()),
            pause: false,
            ..Default::default()
        },
        bollard::models::ContainerConfig::default(),
    )
    .await
    .map_err(|e| source.error(e))?;
    undo.images.push(image.clone());

    report(25.0, format!("copying image {image} to {}", target.name));
    undo.target_images.push(image.clone());
    let mut load = dst.import_image_stream(
        ImportImageOptions {
            quiet: true,
            ..Default::default()
        },
        src.export_image(&image),
        None,
    );
    while let Some(step) = load.next().await {
        let step = step.map_err(|e| target.error(e))?;
        if let Some(err) = step.error_detail.and_then(|d| d.message) {
            return Err(Error::internal(format!("loading the image failed: {err}")));
        }
    }

    for (i, v) in volumes.iter().enumerate() {
        report(
            50.0 + 30.0 * i as f64 / volumes.len().max(1) as f64,
            format!("copying volume {v}"),
        );
        copy_volume(source, target, v, &image, undo).await?;
    }

    report(85.0, format!("creating {name} on {}", target.name));
    let mut config = c.config.clone().unwrap_or_default();
    let mut labels = config.labels.take().unwrap_or_default();
    // The instance still says what it was made from, not the commit that carried it.
    labels
        .entry(LABEL_IMAGE.to_string())
        .or_insert_with(|| config.image.clone().unwrap_or_default());
    let body = ContainerCreateBody {
        hostname: config.hostname.take(),
        domainname: config.domainname.take(),
        user: config.user.take(),
        exposed_ports: config.exposed_ports.take(),
        tty: config.tty,
        open_stdin: config.open_stdin,
        stdin_once: config.stdin_once,
        env: config.env.take(),
        cmd: config.cmd.take(),
        healthcheck: config.healthcheck.take(),
        image: Some(image.clone()),
        volumes: config.volumes.take(),
        working_dir: config.working_dir.take(),
        entrypoint: config.entrypoint.take(),
        labels: Some(labels),
        stop_signal: config.stop_signal.take(),
        stop_timeout: config.stop_timeout,
        host_config: c.host_config.clone(),
        networking_config: (!networks.is_empty()).then(|| NetworkingConfig {
            endpoints_config: Some(
                networks
                    .iter()
                    .map(|n| (n.clone(), Default::default()))
                    .collect(),
            ),
        }),
        ..Default::default()
    };
    let created = dst
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.to_string()),
                ..Default::default()
            }),
            body,
        )
        .await
        .map_err(|e| target.error(e))?;
    // From here the image is the new container's.
    undo.target_images.clear();
    Ok(created.id)
}

/// Copies named volume `v` from `source` to a new volume of that name on `target`, through
/// two helper containers (never started) of `image`, which both daemons have.
async fn copy_volume(
    source: &DockerBackend,
    target: &DockerBackend,
    v: &str,
    image: &str,
    undo: &mut Undo,
) -> Result<()> {
    let (src, dst) = (undo.src.clone(), undo.dst.clone());
    let info = src.inspect_volume(v).await.map_err(|e| source.error(e))?;
    dst.create_volume(VolumeCreateRequest {
        name: Some(v.to_string()),
        driver: Some(info.driver.clone()),
        labels: Some(info.labels.clone()),
        ..Default::default()
    })
    .await
    .map_err(|e| target.error(e))?;
    undo.volumes.push(v.to_string());
    let helper = |docker: &Docker| {
        let docker = docker.clone();
        let v = v.to_string();
        let image = image.to_string();
        async move {
            docker
                .create_container(
                    None::<CreateContainerOptions>,
                    ContainerCreateBody {
                        image: Some(image),
                        cmd: Some(vec!["true".into()]),
                        labels: Some(HashMap::from([(
                            "io.libgo.move-helper".to_string(),
                            "true".to_string(),
                        )])),
                        host_config: Some(bollard::models::HostConfig {
                            binds: Some(vec![format!("{v}:{VOLUME_MOUNT}")]),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                )
                .await
                .map(|r| r.id)
        }
    };
    let from = helper(&src).await.map_err(|e| source.error(e))?;
    undo.containers.push((true, from.clone()));
    let to = helper(&dst).await.map_err(|e| target.error(e))?;
    undo.containers.push((false, to.clone()));
    // The archive of the mount point holds the directory itself: unpacked at `/`, it
    // lands on the new volume.
    let mut failed = None;
    let tar = src
        .download_from_container(
            &from,
            Some(DownloadFromContainerOptions {
                path: VOLUME_MOUNT.into(),
            }),
        )
        .map(|chunk| chunk.map_err(std::io::Error::other));
    let body = bollard::body_try_stream(tar);
    if let Err(e) = dst
        .upload_to_container(
            &to,
            Some(UploadToContainerOptions {
                path: "/".into(),
                ..Default::default()
            }),
            body,
        )
        .await
    {
        failed = Some(target.error(e));
    }
    for (on_source, id) in undo.containers.drain(..) {
        let d = if on_source { &src } else { &dst };
        let _ = d
            .remove_container(
                &id,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
    }
    match failed {
        Some(e) => Err(e.with_context("volume", v)),
        None => Ok(()),
    }
}

/// The user-defined networks a container is on (the default ones exist everywhere).
fn user_networks(c: &ContainerInspectResponse) -> Vec<String> {
    let mut names: Vec<String> = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .map(|n| n.keys().cloned().collect())
        .unwrap_or_default();
    names.retain(|n| !["bridge", "host", "none"].contains(&n.as_str()));
    names.sort();
    names
}

/// The named volumes a container mounts.
fn named_volumes(c: &ContainerInspectResponse) -> Vec<String> {
    let mut names: Vec<String> = c
        .mounts
        .iter()
        .flatten()
        .filter(|m| m.typ.as_deref() == Some("volume"))
        .filter_map(|m| m.name.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// What a failed move undoes.
struct Undo {
    src: Docker,
    dst: Docker,
    source_id: String,
    restart_source: bool,
    /// Commits on the source.
    images: Vec<String>,
    /// Images loaded on the target that no container uses yet.
    target_images: Vec<String>,
    /// Volumes made on the target.
    volumes: Vec<String>,
    /// Helper containers: (on the source?, id).
    containers: Vec<(bool, String)>,
}

impl Undo {
    async fn run(self) {
        let force = || {
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            })
        };
        for (on_source, id) in &self.containers {
            let d = if *on_source { &self.src } else { &self.dst };
            let _ = d.remove_container(id, force()).await;
        }
        for v in &self.volumes {
            let _ = self
                .dst
                .remove_volume(v, None::<bollard::query_parameters::RemoveVolumeOptions>)
                .await;
        }
        for i in &self.target_images {
            let _ = self
                .dst
                .remove_image(i, None::<RemoveImageOptions>, None)
                .await;
        }
        for i in &self.images {
            let _ = self
                .src
                .remove_image(i, None::<RemoveImageOptions>, None)
                .await;
        }
        if self.restart_source
            && let Err(e) = self
                .src
                .start_container(&self.source_id, None::<StartContainerOptions>)
                .await
        {
            tracing::warn!(error = %e, "could not start the source container again after a failed move");
        }
    }
}
