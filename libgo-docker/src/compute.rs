//! Containers: the `Compute` trait on Docker.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use bollard::container::LogOutput;
use bollard::exec::{ResizeExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{ContainerUpdateBody, ExecConfig, ImageSummary, NetworkConnectRequest};
use bollard::query_parameters::{
    AttachContainerOptions, CommitContainerOptions, CreateContainerOptions, EventsOptions,
    InspectContainerOptions, KillContainerOptions, ListContainersOptions, ListImagesOptions,
    LogsOptions, RemoveContainerOptions, RemoveImageOptions, RenameContainerOptions,
    RestartContainerOptions, StartContainerOptions, StatsOptions, StopContainerOptions,
};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use libgo_core::{
    BoxStream, Compute, ConsoleSession, Error, ErrorKind, Event, ExecControl, ExecResult,
    ExecSession, ExecSpec, ExportFormat, ExportResult, ExportSpec, Instance, InstanceFilter,
    InstanceKind, InstanceSpec, InstanceState, LogEntry, LogOptions, LogStream, Progress,
    ProgressSink, ResourceUpdate, Result, Snapshot, SnapshotSpec, Stats, StopOptions, validate,
};
use tokio::io::AsyncWriteExt;

use crate::convert;
use crate::{
    DockerBackend, LABEL_SNAPSHOT_CURRENT, LABEL_SNAPSHOT_NAME, LABEL_SNAPSHOT_OF,
    LABEL_SNAPSHOT_PARENT, SNAPSHOT_REPO,
};

/// Default grace period of a stop, as `docker stop`.
const DEFAULT_STOP_SECS: u64 = 10;

/// An attached exec: its id, its output and its standard input.
type AttachedExec = (
    String,
    std::pin::Pin<
        Box<
            dyn futures::Stream<Item = std::result::Result<LogOutput, bollard::errors::Error>>
                + Send,
        >,
    >,
    std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
);

impl DockerBackend {
    /// Creates and starts `spec` in container `id` attached (stdin too when `stdin`), as
    /// `exec`, interactive exec and the console's shell all do.
    async fn start_exec_attached(
        &self,
        id: &str,
        spec: &ExecSpec,
        stdin: bool,
    ) -> Result<AttachedExec> {
        let docker = self.docker().await?;
        let created = docker
            .create_exec(
                id,
                ExecConfig {
                    attach_stdin: Some(stdin),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(spec.tty),
                    env: (!spec.env.is_empty())
                        .then(|| spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
                    cmd: Some(spec.command.clone()),
                    user: spec.user.clone(),
                    working_dir: spec.workdir.clone(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| self.error(e).with_context("instance", id))?;
        let started = docker
            .start_exec(
                &created.id,
                Some(StartExecOptions {
                    detach: false,
                    tty: spec.tty,
                    output_capacity: None,
                }),
            )
            .await
            .map_err(|e| self.error(e).with_context("instance", id))?;
        match started {
            StartExecResults::Attached { output, input } => Ok((created.id, output, input)),
            StartExecResults::Detached => Err(Error::internal("dockerd detached an attached exec")),
        }
    }

    pub(crate) async fn inspect(&self, id: &str) -> Result<Instance> {
        // Docker answers some names it cannot hold (`/a"b`) with a bare 500; no container
        // has such a name or id, so it is simply not there.
        let plain = id.strip_prefix('/').unwrap_or(id);
        let possible = plain
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
            && plain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !possible {
            return Err(
                Error::not_found(format!("no container {id:?}")).with_context("instance", id)
            );
        }
        let docker = self.docker().await?;
        let c = docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| self.error(e).with_context("instance", id))?;
        Ok(convert::from_inspect(&self.name, c))
    }

    /// Waits until the container is no longer running (kill and stop return before that).
    async fn wait_not_running(&self, id: &str) -> Result<()> {
        for _ in 0..100 {
            if self.inspect(id).await?.state != InstanceState::Running {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(Error::new(
            ErrorKind::Timeout,
            format!("container {id} still running 10 s after being killed"),
        ))
    }

    /// Removes a container that a failed create left, logging (not returning) a failure.
    async fn discard(&self, id: &str) {
        if let Ok(docker) = self.docker().await
            && let Err(e) = docker
                .remove_container(
                    id,
                    Some(RemoveContainerOptions {
                        force: true,
                        v: false,
                        link: false,
                    }),
                )
                .await
        {
            tracing::warn!(container = id, error = %e, "could not remove a half-created container");
        }
    }

    async fn create_container(&self, spec: &InstanceSpec) -> Result<String> {
        let docker = self.docker().await?;
        // Docker accepts a connection to a missing network on a created container; check
        // them all first so that a typo creates nothing.
        for network in &spec.networks {
            libgo_core::Networks::network_inspect(self, network).await?;
        }
        let created = docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(spec.name.clone()),
                    platform: String::new(),
                }),
                convert::create_body(spec),
            )
            .await
            .map_err(|e| self.error(e).with_context("instance", spec.name.clone()))?;
        let id = created.id;
        let rest = async {
            for network in spec.networks.iter().skip(1) {
                docker
                    .connect_network(
                        network,
                        NetworkConnectRequest {
                            container: id.clone(),
                            endpoint_config: convert::endpoint(spec, network),
                        },
                    )
                    .await
                    .map_err(|e| self.error(e).with_context("network", network.clone()))?;
            }
            if spec.start {
                docker
                    .start_container(&id, None::<StartContainerOptions>)
                    .await
                    .map_err(|e| self.error(e))?;
            }
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = rest {
            self.discard(&id).await;
            return Err(e);
        }
        Ok(id)
    }

    fn snapshot_ref(name: &str, snapshot: &str) -> String {
        format!("{SNAPSHOT_REPO}/{name}:{snapshot}")
    }

    /// The snapshot images of an instance, with each snapshot's name.
    async fn snapshot_summaries(&self, instance_name: &str) -> Result<Vec<(String, ImageSummary)>> {
        let docker = self.docker().await?;
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_SNAPSHOT_OF}={instance_name}")],
        )]);
        let images = docker
            .list_images(Some(ListImagesOptions {
                all: false,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|e| self.error(e))?;
        Ok(images
            .into_iter()
            .filter_map(|i| {
                let name = i.labels.get(LABEL_SNAPSHOT_NAME)?.clone();
                // A deleted snapshot's image can live on, untagged, under a reverted
                // container; only the tag makes it a snapshot.
                i.repo_tags
                    .contains(&Self::snapshot_ref(instance_name, &name))
                    .then_some((name, i))
            })
            .collect())
    }

    async fn snapshot_images(&self, instance_name: &str) -> Result<Vec<Snapshot>> {
        let docker = self.docker().await?;
        let mut snapshots: Vec<Snapshot> = self
            .snapshot_summaries(instance_name)
            .await?
            .into_iter()
            .map(|(name, i)| Snapshot {
                name,
                instance_id: instance_name.to_string(),
                created_at: DateTime::from_timestamp(i.created, 0),
                description: None,
                includes_memory: false,
                parent: i.labels.get(LABEL_SNAPSHOT_PARENT).cloned(),
                current: false,
                reference: Some(i.id),
            })
            .collect();
        for s in &mut snapshots {
            if let Some(reference) = &s.reference
                && let Ok(image) = docker.inspect_image(reference).await
            {
                s.description = image.comment.filter(|c| !c.is_empty());
                s.created_at = image.created.or(s.created_at);
            }
        }
        snapshots.sort_by_key(|s| s.created_at);
        Ok(snapshots)
    }

    /// Replaces a container by a new one with its whole configuration, networks and name,
    /// made from `image` (a snapshot's, or an image for a reinstall), with `set_labels`
    /// changed (`None` removes one); started again if it ran. The new one is made beside
    /// the old first, so a failure leaves the old container untouched.
    async fn recreate(
        &self,
        id: &str,
        old: bollard::models::ContainerInspectResponse,
        image: String,
        set_labels: &[(&str, Option<&str>)],
    ) -> Result<()> {
        let docker = self.docker().await?;
        let name = old
            .name
            .clone()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string();
        let old_id = old.id.clone().unwrap_or_default();
        let was_running = old.state.as_ref().and_then(|s| s.running) == Some(true);
        // The new container gets the old one's whole configuration, with the new image.
        let mut config = old.config.clone().unwrap_or_default();
        config.image = Some(image);
        let labels = config.labels.get_or_insert_with(Default::default);
        for (k, v) in set_labels {
            match v {
                Some(v) => labels.insert(k.to_string(), v.to_string()),
                None => labels.remove(*k),
            };
        }
        let networks = old
            .network_settings
            .as_ref()
            .and_then(|s| s.networks.clone())
            .unwrap_or_default();
        let host_config = old.host_config.clone();
        let primary = old
            .host_config
            .as_ref()
            .and_then(|h| h.network_mode.clone())
            .unwrap_or_default();
        // A static address (an address pool's) stays the container's: its endpoint's IPAM
        // settings go to the new one.
        let endpoint = |network: &str| {
            networks
                .get(network)
                .and_then(|e| e.ipam_config.clone())
                .map(|ipam| bollard::models::EndpointSettings {
                    ipam_config: Some(ipam),
                    ..Default::default()
                })
        };
        let networking_config = endpoint(&primary).map(|e| bollard::models::NetworkingConfig {
            endpoints_config: Some(HashMap::from([(primary.clone(), e)])),
        });
        let body = bollard::models::ContainerCreateBody {
            hostname: config.hostname,
            domainname: config.domainname,
            user: config.user,
            exposed_ports: config.exposed_ports,
            tty: config.tty,
            open_stdin: config.open_stdin,
            env: config.env,
            cmd: config.cmd,
            image: config.image,
            working_dir: config.working_dir,
            entrypoint: config.entrypoint,
            labels: config.labels,
            stop_signal: config.stop_signal,
            stop_timeout: config.stop_timeout,
            host_config,
            networking_config,
            ..Default::default()
        };
        // Create beside the old one first, so a failure leaves the old container untouched.
        let temp = format!("{name}-revert-{}", uuid::Uuid::new_v4().simple());
        let created = docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(temp.clone()),
                    platform: String::new(),
                }),
                body,
            )
            .await
            .map_err(|e| self.error(e).with_context("instance", id))?;
        let swap = async {
            for network in networks.keys().filter(|n| **n != primary) {
                docker
                    .connect_network(
                        network,
                        NetworkConnectRequest {
                            container: created.id.clone(),
                            endpoint_config: endpoint(network),
                        },
                    )
                    .await
                    .map_err(|e| self.error(e))?;
            }
            docker
                .remove_container(
                    &old_id,
                    Some(RemoveContainerOptions {
                        force: true,
                        v: false,
                        link: false,
                    }),
                )
                .await
                .map_err(|e| self.error(e))?;
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = swap {
            self.discard(&created.id).await;
            return Err(e);
        }
        docker
            .rename_container(&created.id, RenameContainerOptions { name: name.clone() })
            .await
            .map_err(|e| self.error(e).with_context("instance", name.clone()))?;
        if was_running {
            docker
                .start_container(&created.id, None::<StartContainerOptions>)
                .await
                .map_err(|e| self.error(e).with_context("instance", name))?;
        }
        Ok(())
    }

    /// The instance's snapshots, the current one marked (see [`mark_current`]).
    async fn snapshot_tree(&self, instance: &Instance) -> Result<Vec<Snapshot>> {
        let mut list = self.snapshot_images(&instance.name).await?;
        mark_current(
            &mut list,
            instance.created_at,
            instance
                .labels
                .get(LABEL_SNAPSHOT_CURRENT)
                .map(String::as_str),
        );
        for s in &mut list {
            s.instance_id = instance.id.clone();
        }
        Ok(list)
    }

    pub(crate) async fn write_stream_to_file(
        &self,
        mut stream: impl futures::Stream<Item = std::result::Result<Bytes, bollard::errors::Error>>
        + Unpin,
        spec: &ExportSpec,
        progress: &ProgressSink,
    ) -> Result<ExportResult> {
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&spec.destination)
            .await?;
        let mut written: u64 = 0;
        let mut reported: u64 = 0;
        let outcome = async {
            progress.report(Progress {
                percent: Some(0.0),
                message: format!("exporting to {}", spec.destination.display()),
                id: None,
            });
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| self.error(e))?;
                file.write_all(&chunk).await?;
                written += chunk.len() as u64;
                if written - reported >= 8 << 20 {
                    reported = written;
                    progress.report(Progress {
                        percent: None,
                        message: format!("{written} bytes written"),
                        id: None,
                    });
                }
            }
            file.flush().await?;
            file.sync_all().await?;
            progress.report(Progress {
                percent: Some(100.0),
                message: format!("{written} bytes written"),
                id: None,
            });
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = outcome {
            drop(file);
            let _ = tokio::fs::remove_file(&spec.destination).await;
            return Err(e);
        }
        Ok(ExportResult {
            path: spec.destination.clone(),
            format: spec.format,
            size_bytes: written,
        })
    }

    async fn stats_sample(&self, id: &str) -> Result<Stats> {
        let docker = self.docker().await?;
        let instance = self.inspect(id).await?;
        if instance.state != InstanceState::Running && instance.state != InstanceState::Paused {
            return Err(Error::conflict(format!(
                "instance {} is {}: stats need a running instance",
                instance.name,
                instance.state.as_str()
            )));
        }
        let sample = docker
            .stats(
                &instance.id,
                Some(StatsOptions {
                    stream: false,
                    one_shot: true,
                }),
            )
            .next()
            .await
            .ok_or_else(|| Error::internal("dockerd sent no stats sample"))?
            .map_err(|e| self.error(e))?;
        let mut stats = convert::stats(&sample);
        let (cpu, system, online) = convert::cpu_times(&sample);
        let previous = self
            .cpu_samples
            .lock()
            .map_err(|_| Error::internal("stats cache poisoned"))?
            .insert(instance.id.clone(), (cpu, system, stats.timestamp));
        stats.cpu_percent = match previous {
            Some((pcpu, psys, at))
                if stats.timestamp - at < chrono::Duration::seconds(60) && psys < system =>
            {
                convert::cpu_percent_between((pcpu, psys), (cpu, system, online))
            }
            // No recent sample: the average since start, like `ps` reports %CPU.
            _ => {
                let started = docker
                    .inspect_container(&instance.id, None::<InspectContainerOptions>)
                    .await
                    .ok()
                    .and_then(|c| c.state)
                    .and_then(|s| s.started_at)
                    .and_then(|t| DateTime::parse_from_rfc3339(&t).ok());
                match started {
                    Some(t) => {
                        let elapsed = (stats.timestamp - t.with_timezone(&Utc))
                            .num_nanoseconds()
                            .unwrap_or(0);
                        if elapsed > 0 {
                            cpu as f64 / elapsed as f64 * 100.0
                        } else {
                            0.0
                        }
                    }
                    None => 0.0,
                }
            }
        };
        Ok(stats)
    }
}

#[async_trait]
impl Compute for DockerBackend {
    async fn create(&self, spec: &InstanceSpec) -> Result<Instance> {
        let kind = spec.kind.unwrap_or(InstanceKind::Container);
        if kind != InstanceKind::Container {
            return Err(Error::unsupported(
                "the Docker backend creates containers only",
            ));
        }
        validate::owned_instance_spec(spec, kind)?;
        let id = self.create_container(spec).await?;
        self.inspect(&id).await
    }

    async fn get(&self, id: &str) -> Result<Instance> {
        self.inspect(id).await
    }

    async fn list(&self, filter: &InstanceFilter) -> Result<Vec<Instance>> {
        let docker = self.docker().await?;
        let mut filters = HashMap::new();
        if !filter.labels.is_empty() {
            filters.insert(
                "label".to_string(),
                filter
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>(),
            );
        }
        let containers = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: (!filters.is_empty()).then_some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|e| self.error(e))?;
        Ok(containers
            .into_iter()
            .map(|c| convert::from_summary(&self.name, c))
            .filter(|i| filter.matches(i))
            .collect())
    }

    async fn changes(
        &self,
        cursor: Option<&libgo_core::ChangeCursor>,
    ) -> Result<libgo_core::Changes> {
        let Some(socket) = self.endpoint.strip_prefix("unix://") else {
            return Err(Error::unsupported(
                "a change feed needs dockerd's clock: only over a local socket",
            ));
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::unsupported("a change feed needs a Tokio runtime"));
        }
        let daemon = crate::feed::Daemon {
            docker: self.docker().await?,
            socket,
            watch: &self.restart_watch,
        };
        crate::feed::changes(&daemon, cursor)
            .await
            .map_err(|e| e.with_context("backend", self.name.clone()))
    }

    async fn list_ids(&self, ids: &BTreeSet<String>) -> Result<Vec<Instance>> {
        let docker = self.docker().await?;
        let containers = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(HashMap::from([(
                    "id".to_string(),
                    ids.iter().cloned().collect::<Vec<_>>(),
                )])),
                ..Default::default()
            }))
            .await
            .map_err(|e| self.error(e))?;
        Ok(containers
            .into_iter()
            .map(|c| convert::from_summary(&self.name, c))
            // dockerd matches ids by prefix; keep exact ones.
            .filter(|i| ids.contains(&i.id))
            .collect())
    }

    async fn start(&self, id: &str) -> Result<()> {
        let docker = self.docker().await?;
        match docker
            .start_container(id, None::<StartContainerOptions>)
            .await
        {
            Ok(()) => Ok(()),
            // 304: already running. Starting is idempotent, as with `docker start`.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(self.error(e).with_context("instance", id)),
        }
    }

    async fn stop(&self, id: &str, options: StopOptions) -> Result<()> {
        let docker = self.docker().await?;
        if options.force {
            let instance = self.inspect(id).await?;
            if instance.state == InstanceState::Stopped {
                return Ok(());
            }
            docker
                .kill_container(
                    &instance.id,
                    Some(KillContainerOptions {
                        signal: "SIGKILL".into(),
                    }),
                )
                .await
                .map_err(|e| self.error(e).with_context("instance", id))?;
            return self.wait_not_running(&instance.id).await;
        }
        let secs = options.timeout_secs.unwrap_or(DEFAULT_STOP_SECS);
        match docker
            .stop_container(
                id,
                Some(StopContainerOptions {
                    t: Some(i32::try_from(secs).unwrap_or(i32::MAX)),
                    signal: None,
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(self.error(e).with_context("instance", id)),
        }
    }

    async fn restart(&self, id: &str, options: StopOptions) -> Result<()> {
        let docker = self.docker().await?;
        let secs = if options.force {
            0
        } else {
            options.timeout_secs.unwrap_or(DEFAULT_STOP_SECS)
        };
        docker
            .restart_container(
                id,
                Some(RestartContainerOptions {
                    t: Some(i32::try_from(secs).unwrap_or(i32::MAX)),
                    signal: None,
                }),
            )
            .await
            .map_err(|e| self.error(e).with_context("instance", id))
    }

    async fn kill(&self, id: &str, signal: Option<&str>) -> Result<()> {
        let signal = signal.unwrap_or("SIGKILL");
        if signal.is_empty()
            || signal.len() > 16
            || !signal
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+')
        {
            return Err(Error::invalid(format!(
                "signal {signal:?} is not a signal name"
            )));
        }
        let docker = self.docker().await?;
        docker
            .kill_container(
                id,
                Some(KillContainerOptions {
                    signal: signal.to_string(),
                }),
            )
            .await
            .map_err(|e| self.error(e).with_context("instance", id))
    }

    async fn pause(&self, id: &str) -> Result<()> {
        let docker = self.docker().await?;
        docker
            .pause_container(id)
            .await
            .map_err(|e| self.error(e).with_context("instance", id))
    }

    async fn resume(&self, id: &str) -> Result<()> {
        let docker = self.docker().await?;
        docker
            .unpause_container(id)
            .await
            .map_err(|e| self.error(e).with_context("instance", id))
    }

    async fn delete(&self, id: &str, force: bool) -> Result<()> {
        let docker = self.docker().await?;
        let instance = self.inspect(id).await?;
        // Snapshots belong to the instance and go with it; look them up meanwhile.
        let (removed, snapshots) = tokio::join!(
            docker.remove_container(
                &instance.id,
                Some(RemoveContainerOptions {
                    force,
                    v: false,
                    link: false,
                }),
            ),
            self.snapshot_summaries(&instance.name)
        );
        removed.map_err(|e| self.error(e).with_context("instance", id))?;
        self.cpu_samples
            .lock()
            .map_err(|_| Error::internal("stats cache poisoned"))?
            .remove(&instance.id);
        for (snapshot, _) in snapshots? {
            let reference = Self::snapshot_ref(&instance.name, &snapshot);
            if let Err(e) = docker
                .remove_image(
                    &reference,
                    Some(RemoveImageOptions {
                        force: true,
                        ..Default::default()
                    }),
                    None,
                )
                .await
            {
                tracing::warn!(image = %reference, error = %e, "could not remove a snapshot image");
            }
        }
        Ok(())
    }

    async fn update(&self, id: &str, update: ResourceUpdate) -> Result<Instance> {
        if let Some(c) = update.cpus {
            validate::cpus(c)?;
        }
        if let Some(m) = update.memory_bytes {
            validate::memory(m)?;
        }
        if update.boot.is_some() {
            return Err(Error::unsupported("a container has no boot order").with_field("boot"));
        }
        if update.autostart.is_some() {
            return Err(Error::unsupported(
                "a container starts with Docker by its restartPolicy, not autostart",
            )
            .with_context("field", "autostart"));
        }
        let docker = self.docker().await?;
        // Resolved first: a rename changes what the caller's name finds.
        let id = self.inspect(id).await?.id;
        let body = ContainerUpdateBody {
            nano_cpus: update.cpus.map(|c| i64::from(c) * 1_000_000_000),
            memory: update.memory_bytes.map(|m| m as i64),
            // Docker refuses a memory limit above an earlier swap limit; keep swap at twice
            // memory, the default `docker run -m` gives.
            memory_swap: update.memory_bytes.map(|m| (m as i64).saturating_mul(2)),
            restart_policy: update.restart_policy.map(convert::restart_policy),
            ..Default::default()
        };
        if body != ContainerUpdateBody::default() {
            docker
                .update_container(&id, body)
                .await
                .map_err(|e| self.error(e).with_context("instance", id.clone()))?;
        }
        if let Some(name) = &update.name {
            docker
                .rename_container(&id, RenameContainerOptions { name: name.clone() })
                .await
                .map_err(|e| self.error(e).with_context("instance", id.clone()))?;
        }
        self.inspect(&id).await
    }

    async fn stats(&self, id: &str) -> Result<Stats> {
        self.stats_sample(id).await
    }

    async fn stats_stream(&self, id: &str) -> Result<BoxStream<Stats>> {
        let docker = self.docker().await?.clone();
        let instance = self.inspect(id).await?;
        let backend = self.name.clone();
        let stream = docker
            .stats(
                &instance.id,
                Some(StatsOptions {
                    stream: true,
                    one_shot: false,
                }),
            )
            .map(move |sample| {
                let sample = sample
                    .map_err(|e| crate::map_error(e).with_context("backend", backend.clone()))?;
                let mut stats = convert::stats(&sample);
                let now = convert::cpu_times(&sample);
                if let Some(pre) = &sample.precpu_stats {
                    let pre_usage = pre
                        .cpu_usage
                        .as_ref()
                        .and_then(|u| u.total_usage)
                        .unwrap_or(0);
                    let pre_system = pre.system_cpu_usage.unwrap_or(0);
                    stats.cpu_percent = convert::cpu_percent_between((pre_usage, pre_system), now);
                }
                Ok(stats)
            });
        Ok(Box::pin(stream))
    }

    async fn logs(&self, id: &str, options: LogOptions) -> Result<BoxStream<LogEntry>> {
        let docker = self.docker().await?.clone();
        let instance = self.inspect(id).await?;
        let mut options = options;
        if options.follow && options.tail == Some(0) && options.since.is_none() {
            // Only new lines: the request goes out when the stream is first polled, so
            // "new" is pinned to this call by time instead.
            options.since = Some(Utc::now());
            options.tail = None;
        }
        // Docker takes whole seconds; the exact bounds are applied to each line below.
        let since = options.since.map_or(0, |t| t.timestamp());
        let until = options.until.map_or(0, |t| {
            t.timestamp() + i64::from(t.timestamp_subsec_nanos() > 0)
        });
        let query = LogsOptions {
            follow: options.follow,
            stdout: true,
            stderr: true,
            since: i32::try_from(since).unwrap_or(i32::MAX),
            until: i32::try_from(until).unwrap_or(i32::MAX),
            timestamps: true,
            tail: options
                .tail
                .map_or_else(|| "all".to_string(), |t| t.to_string()),
        };
        let backend = self.name.clone();
        let stream = docker
            .logs(&instance.id, Some(query))
            .map_err(move |e| crate::map_error(e).with_context("backend", backend.clone()))
            .try_filter_map(move |chunk| {
                let (stream, bytes) = match chunk {
                    LogOutput::StdOut { message } => (LogStream::Stdout, message),
                    LogOutput::StdErr { message } => (LogStream::Stderr, message),
                    LogOutput::Console { message } => (LogStream::Stdout, message),
                    LogOutput::StdIn { .. } => return futures::future::ready(Ok(None)),
                };
                let text = String::from_utf8_lossy(&bytes);
                let (timestamp, rest) = convert::split_timestamp(&text);
                let inside = timestamp.is_none_or(|t| {
                    options.since.is_none_or(|s| t >= s) && options.until.is_none_or(|u| t < u)
                });
                let entry = inside.then(|| LogEntry {
                    stream,
                    timestamp,
                    message: if options.timestamps {
                        text.to_string()
                    } else {
                        rest.to_string()
                    },
                });
                futures::future::ready(Ok(entry))
            });
        Ok(Box::pin(stream))
    }

    async fn exec(&self, id: &str, spec: &ExecSpec) -> Result<ExecResult> {
        validate::exec_spec(spec)?;
        let docker = self.docker().await?;
        let (exec_id, mut output, _) = self.start_exec_attached(id, spec, false).await?;
        let limit = usize::try_from(spec.output_limit()).unwrap_or(usize::MAX);
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let mut truncated = false;
        // Keep at most `limit` bytes per stream; past that, stop reading and close the
        // attach stream, so that no caller can make this process hold unbounded output.
        let keep = |buf: &mut Vec<u8>, message: &[u8], truncated: &mut bool| {
            let room = limit.saturating_sub(buf.len());
            buf.extend_from_slice(&message[..message.len().min(room)]);
            *truncated |= message.len() > room;
        };
        while let Some(chunk) = output.next().await {
            match chunk.map_err(|e| self.error(e))? {
                LogOutput::StdErr { message } => keep(&mut stderr, &message, &mut truncated),
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    keep(&mut stdout, &message, &mut truncated)
                }
                LogOutput::StdIn { .. } => {}
            }
            if truncated {
                break;
            }
        }
        // Closing the attach stream ends a command cut off at the limit (SIGPIPE).
        drop(output);
        let mut exit_code = None;
        for attempt in 0..20 {
            let inspected = docker
                .inspect_exec(&exec_id)
                .await
                .map_err(|e| self.error(e))?;
            if inspected.running != Some(true) {
                exit_code = inspected.exit_code;
                break;
            }
            if !truncated || attempt == 19 {
                break;
            }
            // The command gets SIGPIPE at its next write into the closed stream.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let exit_code = match exit_code {
            Some(c) => c,
            None if truncated => -1,
            None => {
                return Err(Error::internal(
                    "dockerd reported no exit code for the exec",
                ));
            }
        };
        // Valid UTF-8 (the usual case) becomes a String without a copy.
        let text = |b: Vec<u8>| {
            String::from_utf8(b)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
        };
        Ok(ExecResult {
            exit_code,
            stdout: text(stdout),
            stderr: text(stderr),
            truncated,
        })
    }

    async fn exec_interactive(&self, id: &str, spec: &ExecSpec) -> Result<ExecSession> {
        validate::exec_spec(spec)?;
        let docker = self.docker().await?;
        let (exec_id, output, input) = self.start_exec_attached(id, spec, true).await?;
        let backend = self.name.clone();
        let output = output.filter_map(move |chunk| {
            futures::future::ready(match chunk {
                Ok(LogOutput::StdErr { message }) => Some(Ok((LogStream::Stderr, message))),
                Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                    Some(Ok((LogStream::Stdout, message)))
                }
                Ok(LogOutput::StdIn { .. }) => None,
                Err(e) => Some(Err(
                    crate::map_error(e).with_context("backend", backend.clone())
                )),
            })
        });
        Ok(ExecSession {
            output: Box::pin(output),
            input,
            control: std::sync::Arc::new(DockerExec {
                docker: docker.clone(),
                exec_id,
                backend: self.name.clone(),
            }),
        })
    }

    async fn host_access(&self, id: &str) -> Result<Vec<libgo_core::HostAccess>> {
        let docker = self.docker().await?;
        let c = docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| self.error(e).with_context("instance", id))?;
        let mut out = convert::host_access(&c.host_config.unwrap_or_default());
        // A network with a host-attached driver (macvlan, ipvlan) puts it on a host NIC.
        let networks = c
            .network_settings
            .and_then(|s| s.networks)
            .unwrap_or_default();
        for name in networks.keys() {
            if matches!(name.as_str(), "host" | "none" | "bridge") {
                continue;
            }
            match libgo_core::Networks::network_inspect(self, name).await {
                Ok(n) if n.host_attached => {
                    out.push(libgo_core::HostAccess::HostNetwork(name.clone()));
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn console(&self, id: &str) -> Result<ConsoleSession> {
        let docker = self.docker().await?;
        let c = docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| self.error(e).with_context("instance", id))?;
        let config = c.config.unwrap_or_default();
        let instance_id = c.id.unwrap_or_default();
        let (output, input) = if config.tty == Some(true) && config.open_stdin == Some(true) {
            // The main process has a terminal: attach to it, as `docker attach`.
            let attached = docker
                .attach_container(
                    &instance_id,
                    Some(AttachContainerOptions {
                        stdin: true,
                        stdout: true,
                        stderr: true,
                        stream: true,
                        logs: false,
                        detach_keys: None,
                    }),
                )
                .await
                .map_err(|e| self.error(e))?;
            (attached.output, attached.input)
        } else {
            // Otherwise an interactive shell, as `docker exec -it … sh`.
            let shell = ExecSpec {
                command: vec!["/bin/sh".into()],
                tty: true,
                ..Default::default()
            };
            let (_, output, input) = self.start_exec_attached(&instance_id, &shell, true).await?;
            (output, input)
        };
        let backend = self.name.clone();
        let output = output.map(move |chunk| {
            chunk
                .map(LogOutput::into_bytes)
                .map_err(|e| crate::map_error(e).with_context("backend", backend.clone()))
        });
        Ok(ConsoleSession {
            output: Box::pin(output),
            input,
        })
    }

    async fn reinstall(&self, id: &str, spec: &libgo_core::ReinstallSpec) -> Result<Instance> {
        let old = self
            .docker()
            .await?
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| self.error(e).with_context("instance", id))?;
        let labels = old
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        let image = spec
            .image
            .clone()
            .or_else(|| labels.get(crate::LABEL_IMAGE).cloned())
            .or_else(|| old.config.as_ref().and_then(|c| c.image.clone()))
            .ok_or_else(|| {
                Error::invalid("the container names no image to reinstall from: give image")
                    .with_field("image")
            })?;
        self.docker()
            .await?
            .inspect_image(&image)
            .await
            .map_err(|e| self.error(e).with_field("image"))?;
        let name = old
            .name
            .clone()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string();
        self.recreate(
            id,
            old,
            image.clone(),
            &[
                (crate::LABEL_IMAGE, Some(&image)),
                (LABEL_SNAPSHOT_CURRENT, None),
            ],
        )
        .await?;
        self.inspect(&name).await
    }

    async fn guest_password(&self, id: &str, _password: &libgo_core::GuestPassword) -> Result<()> {
        let _ = id;
        Err(Error::unsupported(
            "a container has no guest agent: run chpasswd in it with exec",
        ))
    }

    async fn disk_attach(
        &self,
        id: &str,
        _disk: &libgo_core::DiskAttach,
    ) -> Result<libgo_core::AttachedDisk> {
        let _ = id;
        Err(Error::unsupported(
            "Docker cannot add mounts to an existing container: create a new container with \
             the volume in its mounts",
        ))
    }

    async fn snapshot_create(&self, id: &str, spec: &SnapshotSpec) -> Result<Snapshot> {
        validate::snapshot_spec(spec)?;
        let docker = self.docker().await?;
        let instance = self.inspect(id).await?;
        if self
            .snapshot_images(&instance.name)
            .await?
            .iter()
            .any(|s| s.name == spec.name)
        {
            return Err(Error::conflict(format!(
                "instance {} has a snapshot named {:?} already",
                instance.name, spec.name
            )));
        }
        let parent = self
            .snapshot_tree(&instance)
            .await?
            .into_iter()
            .find(|s| s.current)
            .map(|s| s.name);
        // Names are validated DNS labels, so they are safe inside a LABEL instruction.
        let mut changes = format!(
            "LABEL {LABEL_SNAPSHOT_OF}={} {LABEL_SNAPSHOT_NAME}={}",
            instance.name, spec.name
        );
        if let Some(p) = &parent {
            changes.push_str(&format!(" {LABEL_SNAPSHOT_PARENT}={p}"));
        }
        let committed = docker
            .commit_container(
                CommitContainerOptions {
                    container: Some(instance.id.clone()),
                    repo: Some(format!("{SNAPSHOT_REPO}/{}", instance.name)),
                    tag: Some(spec.name.clone()),
                    comment: spec.description.clone(),
                    author: Some("libgo".into()),
                    pause: true,
                    changes: Some(changes),
                },
                bollard::models::ContainerConfig::default(),
            )
            .await
            .map_err(|e| self.error(e).with_context("instance", id))?;
        Ok(Snapshot {
            name: spec.name.clone(),
            instance_id: instance.id,
            created_at: Some(Utc::now()),
            description: spec.description.clone(),
            includes_memory: false,
            reference: Some(committed.id),
            parent,
            current: true,
        })
    }

    async fn snapshot_list(&self, id: &str) -> Result<Vec<Snapshot>> {
        let instance = self.inspect(id).await?;
        self.snapshot_tree(&instance).await
    }

    async fn snapshot_revert(&self, id: &str, snapshot: &str) -> Result<()> {
        validate::name("snapshot name", snapshot)?;
        let old = self
            .docker()
            .await?
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| self.error(e).with_context("instance", id))?;
        let name = old
            .name
            .clone()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string();
        if !self
            .snapshot_images(&name)
            .await?
            .iter()
            .any(|s| s.name == snapshot)
        {
            return Err(Error::not_found(format!(
                "instance {name} has no snapshot {snapshot:?}"
            )));
        }
        self.recreate(
            id,
            old,
            Self::snapshot_ref(&name, snapshot),
            &[(LABEL_SNAPSHOT_CURRENT, Some(snapshot))],
        )
        .await
    }

    async fn snapshot_delete(&self, id: &str, snapshot: &str) -> Result<()> {
        validate::name("snapshot name", snapshot)?;
        let docker = self.docker().await?;
        let instance = self.inspect(id).await?;
        if !self
            .snapshot_images(&instance.name)
            .await?
            .iter()
            .any(|s| s.name == snapshot)
        {
            return Err(Error::not_found(format!(
                "instance {} has no snapshot {snapshot:?}",
                instance.name
            )));
        }
        let reference = Self::snapshot_ref(&instance.name, snapshot);
        // Force: a reverted container runs from this image, and Docker keeps the layers
        // it uses; only the name goes.
        docker
            .remove_image(
                &reference,
                Some(RemoveImageOptions {
                    force: true,
                    ..Default::default()
                }),
                None,
            )
            .await
            .map_err(|e| self.error(e).with_context("snapshot", snapshot))?;
        Ok(())
    }

    async fn export(
        &self,
        id: &str,
        spec: &ExportSpec,
        progress: ProgressSink,
    ) -> Result<ExportResult> {
        validate::export_spec(spec)?;
        let docker = self.docker().await?;
        let instance = self.inspect(id).await?;
        match spec.format {
            ExportFormat::Tar => {
                let stream = docker.export_container(&instance.id);
                self.write_stream_to_file(Box::pin(stream), spec, &progress)
                    .await
            }
            ExportFormat::ImageTar => {
                let c = docker
                    .inspect_container(&instance.id, None::<InspectContainerOptions>)
                    .await
                    .map_err(|e| self.error(e))?;
                let image = c
                    .image
                    .ok_or_else(|| Error::internal("container has no image id"))?;
                let stream = docker.export_image(&image);
                self.write_stream_to_file(Box::pin(stream), spec, &progress)
                    .await
            }
            other => Err(Error::unsupported(format!(
                "containers export as tar or image-tar, not {other:?}"
            ))),
        }
    }

    async fn migrate(
        &self,
        id: &str,
        target: std::sync::Arc<dyn libgo_core::Backend>,
        _spec: &libgo_core::MigrationSpec,
        progress: ProgressSink,
    ) -> Result<libgo_core::MigrationReport> {
        let target = target
            .as_any()
            .downcast_ref::<DockerBackend>()
            .ok_or_else(|| Error::unsupported("a container can only move to another Docker"))?;
        crate::migrate::move_container(self, id, target, progress).await
    }

    async fn events(&self) -> Result<BoxStream<Event>> {
        let docker = self.docker().await?.clone();
        let backend = self.name.clone();
        let filters = HashMap::from([("type".to_string(), vec!["container".to_string()])]);
        // The request goes out when the stream is first polled; `since` makes it start at
        // this call instead, so nothing in between is lost.
        let now = Utc::now();
        let since = format!("{}.{:09}", now.timestamp(), now.timestamp_subsec_nanos());
        let stream = docker
            .events(Some(EventsOptions {
                since: Some(since),
                until: None,
                filters: Some(filters),
            }))
            .map_err({
                let backend = backend.clone();
                move |e| crate::map_error(e).with_context("backend", backend.clone())
            })
            .try_filter_map(move |m| {
                let event = (|| {
                    let action = convert::event_action(m.action.as_deref()?)?;
                    let actor = m.actor?;
                    let attributes = actor.attributes.unwrap_or_default();
                    let time = m
                        .time_nano
                        .map(DateTime::from_timestamp_nanos)
                        .or_else(|| m.time.and_then(|t| DateTime::from_timestamp(t, 0)))
                        .unwrap_or_else(Utc::now);
                    Some(Event {
                        time,
                        backend: backend.clone(),
                        kind: InstanceKind::Container,
                        instance_id: actor.id?,
                        instance_name: attributes.get("name").cloned(),
                        action,
                        attributes: attributes.into_iter().collect(),
                    })
                })();
                futures::future::ready(Ok(event))
            });
        Ok(Box::pin(stream))
    }
}

/// Resize and exit code of one Docker exec.
struct DockerExec {
    docker: bollard::Docker,
    exec_id: String,
    backend: String,
}

#[async_trait]
impl ExecControl for DockerExec {
    async fn resize(&self, rows: u16, columns: u16) -> Result<()> {
        self.docker
            .resize_exec(
                &self.exec_id,
                ResizeExecOptions {
                    height: rows,
                    width: columns,
                },
            )
            .await
            .map_err(|e| crate::map_error(e).with_context("backend", self.backend.clone()))
    }

    async fn exit_code(&self) -> Result<Option<i64>> {
        let inspected = self
            .docker
            .inspect_exec(&self.exec_id)
            .await
            .map_err(|e| crate::map_error(e).with_context("backend", self.backend.clone()))?;
        Ok(match inspected.running {
            Some(false) => inspected.exit_code,
            _ => None,
        })
    }
}

/// Marks the current snapshot as libvirt keeps it: the last one taken or reverted to. Docker
/// keeps no such pointer, so it is read from times: a snapshot taken since the container
/// was made (a revert makes a new container) is newer than any revert; otherwise the
/// container's `reverted_to` label names it.
fn mark_current(
    list: &mut [Snapshot],
    container_created: Option<DateTime<Utc>>,
    reverted_to: Option<&str>,
) {
    let newest_since = list
        .iter()
        .enumerate()
        .filter(|(_, s)| match (s.created_at, container_created) {
            (Some(t), Some(c)) => t >= c,
            _ => false,
        })
        .max_by_key(|(_, s)| s.created_at)
        .map(|(i, _)| i);
    let current = newest_since
        .or_else(|| reverted_to.and_then(|name| list.iter().position(|s| s.name == name)));
    for (i, s) in list.iter_mut().enumerate() {
        s.current = Some(i) == current;
    }
}

#[cfg(test)]
mod snapshot_tree_tests {
    use super::*;

    fn snap(name: &str, secs: i64) -> Snapshot {
        Snapshot {
            name: name.into(),
            instance_id: String::new(),
            created_at: DateTime::from_timestamp(secs, 0),
            description: None,
            includes_memory: false,
            reference: None,
            parent: None,
            current: false,
        }
    }

    fn current(list: &[Snapshot]) -> Vec<&str> {
        list.iter()
            .filter(|s| s.current)
            .map(|s| s.name.as_str())
            .collect()
    }

    #[test]
    fn the_last_taken_or_reverted_to_is_current() {
        let t = |s| DateTime::from_timestamp(s, 0);
        let mut list = vec![snap("s1", 10), snap("s2", 20)];
        mark_current(&mut list, t(5), None);
        assert_eq!(
            current(&list),
            ["s2"],
            "the newest taken since the container"
        );
        mark_current(&mut list, t(30), Some("s1"));
        assert_eq!(
            current(&list),
            ["s1"],
            "reverted to s1 (a new container at 30)"
        );
        list.push(snap("s3", 40));
        mark_current(&mut list, t(30), Some("s1"));
        assert_eq!(current(&list), ["s3"], "taken after the revert");
        mark_current(&mut list, t(50), None);
        assert!(current(&list).is_empty(), "nothing since, no revert");
    }
}
