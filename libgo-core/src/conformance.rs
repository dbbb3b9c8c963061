//! The conformance suite: plain async test functions over `&dyn Backend` that every backend
//! runs against its real engine.
//!
//! A backend's test file provides a setup function and expands [`conformance_tests!`]:
//!
//! ```text
//! async fn setup() -> (std::sync::Arc<dyn libgo_core::Backend>, libgo_core::conformance::Fixture) {
//!     /* connect to the engine, describe a runnable instance */
//! }
//! libgo_core::conformance_tests!(setup);
//! ```
//!
//! Each test checks what a user would: the instance is really running, the log really has
//! the marker, the deleted instance is really gone. Where the backend lacks a capability the
//! test checks that the call answers `Unsupported` instead.
//!
//! [`conformance_tests!`]: crate::conformance_tests

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::error::{Error, ErrorKind, Result};
use crate::types::*;
use crate::{Backend, LibGo};

/// What a backend's tests tell the suite about their engine.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// An instance that keeps running once started and writes `log_marker` to its log soon
    /// after. Its name is replaced by each test.
    pub runnable: InstanceSpec,
    /// Text the runnable instance writes to its log after start.
    pub log_marker: String,
    /// An image that exists on the backend.
    pub image: String,
    /// A volume to create (its name is replaced).
    pub volume: VolumeSpec,
    /// A network to create (its name is replaced).
    pub network: NetworkSpec,
    /// Unique per run: every name the suite creates starts with it. Lowercase, short.
    pub prefix: String,
    /// A directory where exports may be written.
    pub scratch_dir: PathBuf,
    /// How long a started instance may take to print its marker.
    pub boot_timeout: Duration,
}

impl Fixture {
    fn name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }

    fn spec(&self, suffix: &str) -> InstanceSpec {
        let mut spec = self.runnable.clone();
        spec.name = self.name(suffix);
        spec
    }
}

fn check(cond: bool, what: impl Into<String>) -> Result<()> {
    if cond {
        Ok(())
    } else {
        Err(Error::internal(format!(
            "conformance check failed: {}",
            what.into()
        )))
    }
}

fn expect_kind<T: std::fmt::Debug>(r: Result<T>, kind: ErrorKind, what: &str) -> Result<()> {
    match r {
        Err(e) if e.kind() == kind => Ok(()),
        Err(e) => Err(Error::internal(format!(
            "{what}: expected {kind}, got error {e}"
        ))),
        Ok(v) => Err(Error::internal(format!(
            "{what}: expected {kind}, got Ok({v:?})"
        ))),
    }
}

/// Runs `body` and then deletes `names` (force), whatever the body's outcome.
async fn with_cleanup<F>(b: &dyn Backend, names: &[String], body: F) -> Result<()>
where
    F: std::future::Future<Output = Result<()>>,
{
    let outcome = body.await;
    for n in names {
        match b.delete(n, true).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(instance = %n, error = %e, "cleanup failed"),
        }
    }
    outcome
}

async fn wait_state(
    b: &dyn Backend,
    id: &str,
    want: InstanceState,
    within: Duration,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let state = b.get(id).await?.state;
        if state == want {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(Error::internal(format!(
                "instance {id} stayed {state:?}, expected {want:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn collect_logs(b: &dyn Backend, id: &str, options: LogOptions) -> Result<String> {
    let mut stream = b.logs(id, options).await?;
    let mut text = String::new();
    while let Some(entry) = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .map_err(|_| Error::internal("log stream did not end"))?
    {
        text.push_str(&entry?.message);
    }
    Ok(text)
}

async fn wait_log(b: &dyn Backend, id: &str, marker: &str, within: Duration) -> Result<String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let text = collect_logs(b, id, LogOptions::default()).await?;
        if text.contains(marker) {
            return Ok(text);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(Error::internal(format!(
                "marker {marker:?} not in the log of {id} after {within:?}; log: {text:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Create, get by id and name, list, start, pause, resume, restart, stop, delete.
pub async fn instance_lifecycle(b: &dyn Backend, fx: &Fixture) -> Result<()> {
    let name = fx.name("life");
    with_cleanup(b, std::slice::from_ref(&name), async {
        let created = b.create(&fx.spec("life")).await?;
        check(created.name == name, "created instance has its name")?;
        check(created.backend == b.name(), "instance names its backend")?;
        check(
            created.state == InstanceState::Stopped,
            format!("new instance is stopped, got {:?}", created.state),
        )?;
        check(b.get(&created.id).await?.name == name, "get by id")?;
        check(b.get(&name).await?.id == created.id, "get by name")?;
        let listed = b.list(&InstanceFilter::default()).await?;
        check(
            listed.iter().any(|i| i.id == created.id),
            "list has the new instance",
        )?;

        b.start(&name).await?;
        wait_state(b, &name, InstanceState::Running, fx.boot_timeout).await?;
        if b.capabilities().pause {
            b.pause(&name).await?;
            check(b.get(&name).await?.state == InstanceState::Paused, "paused")?;
            b.resume(&name).await?;
            check(
                b.get(&name).await?.state == InstanceState::Running,
                "resumed",
            )?;
        } else {
            expect_kind(b.pause(&name).await, ErrorKind::Unsupported, "pause")?;
        }
        b.restart(
            &name,
            StopOptions {
                timeout_secs: Some(2),
                force: false,
            },
        )
        .await?;
        wait_state(b, &name, InstanceState::Running, fx.boot_timeout).await?;
        expect_kind(
            b.delete(&name, false).await,
            ErrorKind::Conflict,
            "delete running without force",
        )?;
        check(
            b.get(&name).await.is_ok(),
            "refused delete leaves the instance",
        )?;
        b.stop(
            &name,
            StopOptions {
                timeout_secs: Some(2),
                force: false,
            },
        )
        .await?;
        wait_state(b, &name, InstanceState::Stopped, Duration::from_secs(30)).await?;
        b.start(&name).await?;
        wait_state(b, &name, InstanceState::Running, fx.boot_timeout).await?;
        b.stop(
            &name,
            StopOptions {
                timeout_secs: None,
                force: true,
            },
        )
        .await?;
        wait_state(b, &name, InstanceState::Stopped, Duration::from_secs(30)).await?;
        b.delete(&name, false).await?;
        expect_kind(b.get(&name).await, ErrorKind::NotFound, "get after delete")?;
        let listed = b.list(&InstanceFilter::default()).await?;
        check(
            !listed.iter().any(|i| i.id == created.id),
            "list drops the deleted instance",
        )
    })
    .await
}

/// One rule for every backend, through the facade: a state verb whose target state the
/// instance is already in succeeds (start when running, stop when stopped, pause when
/// paused, resume when running); one that cannot reach it is a conflict (pause when
/// stopped); delete when gone is `NotFound`.
pub async fn idempotent_verbs(b: Arc<dyn Backend>, fx: &Fixture) -> Result<()> {
    let name = fx.name("idem");
    let libgo = LibGo::new();
    libgo.register(b.clone())?;
    with_cleanup(&*b, std::slice::from_ref(&name), async {
        libgo.create(&fx.spec("idem")).await?;
        let quick = StopOptions {
            timeout_secs: None,
            force: true,
        };
        libgo.stop(&name, quick).await?;
        check(
            libgo.get(&name).await?.state == InstanceState::Stopped,
            "stop when stopped succeeds and leaves it stopped",
        )?;
        if b.capabilities().pause {
            expect_kind(
                libgo.resume(&name).await,
                ErrorKind::Conflict,
                "resume when stopped",
            )?;
        }
        libgo.start(&name).await?;
        wait_state(&*b, &name, InstanceState::Running, fx.boot_timeout).await?;
        libgo.start(&name).await?;
        libgo.resume(&name).await?;
        check(
            libgo.get(&name).await?.state == InstanceState::Running,
            "start and resume when running succeed and leave it running",
        )?;
        if b.capabilities().pause {
            libgo.pause(&name).await?;
            libgo.pause(&name).await?;
            check(
                libgo.get(&name).await?.state == InstanceState::Paused,
                "pause when paused succeeds",
            )?;
            libgo.resume(&name).await?;
        }
        libgo.stop(&name, quick).await?;
        wait_state(&*b, &name, InstanceState::Stopped, Duration::from_secs(30)).await?;
        libgo.stop(&name, quick).await?;
        if b.capabilities().pause {
            expect_kind(
                libgo.pause(&name).await,
                ErrorKind::Conflict,
                "pause when stopped",
            )?;
        }
        libgo.delete(&name, DeleteOptions::default()).await?;
        expect_kind(
            libgo.delete(&name, DeleteOptions::default()).await,
            ErrorKind::NotFound,
            "delete when gone",
        )
    })
    .await
}

/// Bad specs are refused with the right kind and create nothing.
pub async fn bad_input(b: &dyn Backend, fx: &Fixture) -> Result<()> {
    // Every bad spec carries this label, so that whatever one wrongly created is found
    // even while other tests run.
    let marker = ("libgo-conformance-bad".to_string(), fx.prefix.clone());
    let mine = InstanceFilter {
        labels: [marker.clone()].into(),
        ..Default::default()
    };
    let bad_spec = || {
        let mut spec = fx.spec("bad");
        spec.labels.insert(marker.0.clone(), marker.1.clone());
        spec
    };
    let before = b.list(&mine).await?.len();
    let bad_names = [
        "",
        "UPPER",
        "has space",
        "a<b>&'\"",
        "-dash",
        &"x".repeat(64),
    ];
    for n in bad_names {
        let mut spec = bad_spec();
        spec.name = n.to_string();
        expect_kind(
            b.create(&spec).await,
            ErrorKind::InvalidInput,
            &format!("name {n:?}"),
        )?;
    }
    let mut spec = bad_spec();
    spec.cpus = Some(0);
    expect_kind(b.create(&spec).await, ErrorKind::InvalidInput, "cpus 0")?;
    let mut spec = bad_spec();
    spec.memory_bytes = Some(1 << 60);
    expect_kind(
        b.create(&spec).await,
        ErrorKind::InvalidInput,
        "absurd memory",
    )?;
    let mut spec = bad_spec();
    spec.memory_bytes = Some(1024);
    expect_kind(
        b.create(&spec).await,
        ErrorKind::InvalidInput,
        "tiny memory",
    )?;
    let mut spec = bad_spec();
    spec.labels.insert("bad key".into(), "v".into());
    expect_kind(
        b.create(&spec).await,
        ErrorKind::InvalidInput,
        "label key with a space",
    )?;
    let mut spec = bad_spec();
    spec.image = Some(format!("{}-no-such-image:none", fx.prefix));
    spec.disks
        .iter_mut()
        .filter(|d| d.base_image.is_some())
        .for_each(|d| {
            d.base_image = Some(format!("{}-no-such-image.qcow2", fx.prefix));
        });
    expect_kind(b.create(&spec).await, ErrorKind::NotFound, "missing image")?;
    expect_kind(
        b.get(&fx.name("bad")).await,
        ErrorKind::NotFound,
        "nothing left after a missing image",
    )?;

    // A duplicate name is a conflict and leaves the first instance alone.
    let name = fx.name("dup");
    with_cleanup(b, std::slice::from_ref(&name), async {
        let first = b.create(&fx.spec("dup")).await?;
        expect_kind(
            b.create(&fx.spec("dup")).await,
            ErrorKind::Conflict,
            "duplicate name",
        )?;
        check(
            b.get(&name).await?.id == first.id,
            "the first instance survives a duplicate",
        )?;
        Ok(())
    })
    .await?;
    let after = b.list(&mine).await?.len();
    check(
        after == before,
        format!("bad input created nothing ({before} before, {after} after)"),
    )
}

/// Calls on missing objects answer NotFound.
pub async fn missing_objects(b: &dyn Backend, fx: &Fixture) -> Result<()> {
    let ghost = fx.name("ghost");
    expect_kind(b.get(&ghost).await, ErrorKind::NotFound, "get")?;
    expect_kind(b.start(&ghost).await, ErrorKind::NotFound, "start")?;
    expect_kind(
        b.stop(&ghost, StopOptions::default()).await,
        ErrorKind::NotFound,
        "stop",
    )?;
    expect_kind(b.delete(&ghost, true).await, ErrorKind::NotFound, "delete")?;
    expect_kind(b.stats(&ghost).await, ErrorKind::NotFound, "stats")?;
    expect_kind(
        b.logs(&ghost, LogOptions::default()).await.map(|_| ()),
        ErrorKind::NotFound,
        "logs",
    )?;
    expect_kind(
        b.update(
            &ghost,
            ResourceUpdate {
                cpus: Some(1),
                memory_bytes: None,
                ..Default::default()
            },
        )
        .await,
        ErrorKind::NotFound,
        "update",
    )?;
    expect_kind(
        b.image_inspect(&format!("{ghost}:none")).await,
        ErrorKind::NotFound,
        "image",
    )?;
    let caps = b.capabilities();
    if caps.networks {
        expect_kind(
            b.network_inspect(&ghost).await,
            ErrorKind::NotFound,
            "network",
        )?;
    }
    if caps.volumes {
        expect_kind(
            b.volume_inspect(&ghost).await,
            ErrorKind::NotFound,
            "volume",
        )?;
    }
    if caps.snapshots {
        let name = fx.name("nosnap");
        with_cleanup(b, std::slice::from_ref(&name), async {
            b.create(&fx.spec("nosnap")).await?;
            expect_kind(
                b.snapshot_revert(&name, "no-such-snapshot").await,
                ErrorKind::NotFound,
                "revert missing snapshot",
            )?;
            expect_kind(
                b.snapshot_delete(&name, "no-such-snapshot").await,
                ErrorKind::NotFound,
                "delete missing snapshot",
            )
        })
        .await?;
    }
    Ok(())
}

/// Stats of a running instance, one-shot and streamed; logs with tail.
pub async fn stats_and_logs(b: &dyn Backend, fx: &Fixture) -> Result<()> {
    let name = fx.name("obs");
    with_cleanup(b, std::slice::from_ref(&name), async {
        b.create(&fx.spec("obs")).await?;
        b.start(&name).await?;
        let log = wait_log(b, &name, &fx.log_marker, fx.boot_timeout).await?;
        check(!log.is_empty(), "log has text")?;
        let tail = collect_logs(
            b,
            &name,
            LogOptions {
                tail: Some(1),
                ..Default::default()
            },
        )
        .await?;
        check(
            tail.lines().count() <= 1,
            format!("tail 1 gives at most one line, got {tail:?}"),
        )?;

        let s = b.stats(&name).await?;
        check(s.memory_bytes > 0, "a running instance uses memory")?;
        // Every running instance at once, where the engine can (keyed by id).
        match b.stats_all().await {
            Ok(all) => {
                let id = b.get(&name).await?.id;
                let one = all.get(&id);
                check(
                    one.is_some_and(|s| s.memory_bytes > 0 && s.memory_limit_bytes > 0),
                    format!("stats of every instance hold {id} with its memory, got {one:?}"),
                )?;
            }
            Err(e) if e.kind() == ErrorKind::Unsupported => {}
            Err(e) => return Err(e),
        }
        check(s.cpu_percent >= 0.0, "cpu percent is not negative")?;
        let age = chrono::Utc::now() - s.timestamp;
        check(age.num_seconds().abs() < 60, "stats timestamp is recent")?;
        let mut stream = b.stats_stream(&name).await?;
        let first = tokio::time::timeout(Duration::from_secs(15), stream.next())
            .await
            .map_err(|_| Error::internal("no stats sample within 15 s"))?;
        check(matches!(first, Some(Ok(_))), "stats stream yields a sample")?;
        Ok(())
    })
    .await
}

/// Exec: exit codes and output, or Unsupported.
pub async fn exec(b: &dyn Backend, fx: &Fixture) -> Result<()> {
    let name = fx.name("exec");
    with_cleanup(b, std::slice::from_ref(&name), async {
        b.create(&fx.spec("exec")).await?;
        b.start(&name).await?;
        wait_state(b, &name, InstanceState::Running, fx.boot_timeout).await?;
        let spec = ExecSpec {
            command: vec![
                "sh".into(),
                "-c".into(),
                "echo out-$GREETING; echo err >&2; exit 3".into(),
            ],
            env: [("GREETING".to_string(), "hello".to_string())].into(),
            ..Default::default()
        };
        if !b.capabilities().exec {
            return expect_kind(b.exec(&name, &spec).await, ErrorKind::Unsupported, "exec");
        }
        let r = b.exec(&name, &spec).await?;
        check(
            r.exit_code == 3,
            format!("exit code 3, got {}", r.exit_code),
        )?;
        check(
            r.stdout.trim() == "out-hello",
            format!("stdout {:?}", r.stdout),
        )?;
        check(r.stderr.trim() == "err", format!("stderr {:?}", r.stderr))?;
        let r = b
            .exec(
                &name,
                &ExecSpec {
                    command: vec!["pwd".into()],
                    workdir: Some("/bin".into()),
                    ..Default::default()
                },
            )
            .await?;
        check(
            r.exit_code == 0 && r.stdout.trim() == "/bin",
            format!("workdir: {r:?}"),
        )?;
        let missing = b
            .exec(
                &name,
                &ExecSpec {
                    command: vec!["/no/such/program".into()],
                    ..Default::default()
                },
            )
            .await;
        check(
            matches!(&missing, Ok(r) if r.exit_code != 0)
                || matches!(&missing, Err(e) if e.kind() == ErrorKind::InvalidInput),
            format!("a missing program fails: {missing:?}"),
        )
    })
    .await
}

/// Snapshots: create, list, revert (exec checks the content where exec works), delete.
pub async fn snapshots(b: &dyn Backend, fx: &Fixture) -> Result<()> {
    let name = fx.name("snap");
    with_cleanup(b, std::slice::from_ref(&name), async {
        b.create(&fx.spec("snap")).await?;
        let spec = SnapshotSpec {
            name: "first".into(),
            description: Some("conformance".into()),
        };
        let caps = b.capabilities();
        if !caps.snapshots {
            return expect_kind(
                b.snapshot_create(&name, &spec).await,
                ErrorKind::Unsupported,
                "snapshot",
            );
        }
        b.start(&name).await?;
        wait_state(b, &name, InstanceState::Running, fx.boot_timeout).await?;
        let write = |text: &'static str| ExecSpec {
            command: vec!["sh".into(), "-c".into(), format!("echo {text} > /probe")],
            ..Default::default()
        };
        if caps.exec {
            check(
                b.exec(&name, &write("before")).await?.exit_code == 0,
                "write before snapshot",
            )?;
        }
        let snap = b.snapshot_create(&name, &spec).await?;
        check(snap.name == "first", "snapshot keeps its name")?;
        expect_kind(
            b.snapshot_create(&name, &spec).await,
            ErrorKind::Conflict,
            "duplicate snapshot",
        )?;
        let list = b.snapshot_list(&name).await?;
        check(list.iter().any(|s| s.name == "first"), "snapshot listed")?;
        if caps.exec {
            check(
                b.exec(&name, &write("after")).await?.exit_code == 0,
                "write after snapshot",
            )?;
        }
        b.snapshot_revert(&name, "first").await?;
        if caps.exec {
            let state = b.get(&name).await?.state;
            if state != InstanceState::Running {
                b.start(&name).await?;
                wait_state(b, &name, InstanceState::Running, fx.boot_timeout).await?;
            }
            let r = b
                .exec(
                    &name,
                    &ExecSpec {
                        command: vec!["cat".into(), "/probe".into()],
                        ..Default::default()
                    },
                )
                .await?;
            check(
                r.stdout.trim() == "before",
                format!("revert restored the file, got {:?}", r.stdout),
            )?;
        }
        check(
            b.get(&name).await?.name == name,
            "reverted instance keeps its name",
        )?;
        b.snapshot_delete(&name, "first").await?;
        let list = b.snapshot_list(&name).await?;
        check(!list.iter().any(|s| s.name == "first"), "snapshot deleted")
    })
    .await
}

/// The snapshot tree (Nano): each snapshot names its parent (the current one when it was
/// taken); the current one is the last taken or reverted to; one is found by name.
pub async fn snapshot_tree(b: &dyn Backend, fx: &Fixture) -> Result<()> {
    if !b.capabilities().snapshots {
        return Ok(());
    }
    let name = fx.name("tree");
    with_cleanup(b, std::slice::from_ref(&name), async {
        b.create(&fx.spec("tree")).await?;
        let take = |snap: &'static str| SnapshotSpec {
            name: snap.into(),
            description: None,
        };
        let s1 = b.snapshot_create(&name, &take("s1")).await?;
        check(
            s1.parent.is_none(),
            format!("the first has no parent: {s1:?}"),
        )?;
        b.snapshot_create(&name, &take("s2")).await?;
        let s2 = b.snapshot_get(&name, "s2").await?;
        check(
            s2.parent.as_deref() == Some("s1") && s2.current,
            format!("s2 on s1, current: {s2:?}"),
        )?;
        check(
            !b.snapshot_get(&name, "s1").await?.current,
            "s1 no longer current",
        )?;
        b.snapshot_revert(&name, "s1").await?;
        check(
            b.snapshot_get(&name, "s1").await?.current,
            "reverted to: current",
        )?;
        b.snapshot_create(&name, &take("s3")).await?;
        let list = b.snapshot_list(&name).await?;
        let parent_of = |n: &str| {
            list.iter()
                .find(|s| s.name == n)
                .and_then(|s| s.parent.clone())
        };
        check(
            parent_of("s2").as_deref() == Some("s1") && parent_of("s3").as_deref() == Some("s1"),
            format!("two branches from s1: {list:?}"),
        )?;
        let current: Vec<&str> = list
            .iter()
            .filter(|s| s.current)
            .map(|s| s.name.as_str())
            .collect();
        check(
            current == ["s3"],
            format!("one current snapshot: {current:?}"),
        )?;
        expect_kind(
            b.snapshot_get(&name, "nope").await,
            ErrorKind::NotFound,
            "a snapshot that is not there",
        )
    })
    .await
}

/// Reinstall (Nano's reset system): rebuilt from its image with the same name, labels and
/// state; a container's files are gone; a missing image is refused and changes nothing.
pub async fn reinstall(b: &dyn Backend, fx: &Fixture) -> Result<()> {
    let name = fx.name("rei");
    with_cleanup(b, std::slice::from_ref(&name), async {
        let made = b.create(&fx.spec("rei")).await?;
        b.start(&name).await?;
        wait_state(b, &name, InstanceState::Running, fx.boot_timeout).await?;
        let container = made.kind == InstanceKind::Container;
        let sh = |cmd: &str| ExecSpec {
            command: vec!["sh".into(), "-c".into(), cmd.into()],
            ..Default::default()
        };
        if container {
            check(
                b.exec(&name, &sh("echo data > /probe")).await?.exit_code == 0,
                "write a file",
            )?;
        }
        let missing = ReinstallSpec {
            image: Some(format!("{}-no-such-image.qcow2", fx.prefix)),
        };
        expect_kind(
            b.reinstall(&name, &missing).await,
            ErrorKind::NotFound,
            "reinstall from a missing image",
        )?;
        let after = b.reinstall(&name, &ReinstallSpec::default()).await?;
        check(
            after.name == name && after.labels == made.labels,
            format!("same name and labels: {after:?}"),
        )?;
        wait_state(b, &name, InstanceState::Running, fx.boot_timeout).await?;
        if container {
            let r = b
                .exec(&name, &sh("test -e /probe && echo kept || echo gone"))
                .await?;
            check(r.stdout.trim() == "gone", format!("files reset: {r:?}"))?;
        }
        Ok(())
    })
    .await
}

/// Export to every format the backend claims; other formats are Unsupported.
pub async fn export(b: &dyn Backend, fx: &Fixture) -> Result<()> {
    let name = fx.name("exp");
    with_cleanup(b, std::slice::from_ref(&name), async {
        b.create(&fx.spec("exp")).await?;
        let formats = b.capabilities().export_formats;
        let all = [
            ExportFormat::Qcow2,
            ExportFormat::Vmdk,
            ExportFormat::Vdi,
            ExportFormat::Raw,
            ExportFormat::Ova,
            ExportFormat::Tar,
            ExportFormat::ImageTar,
        ];
        for format in all {
            let destination = fx.scratch_dir.join(format!("{name}-{format:?}.out"));
            let _ = std::fs::remove_file(&destination);
            let spec = ExportSpec {
                format,
                destination: destination.clone(),
            };
            if !formats.contains(&format) {
                expect_kind(
                    b.export(&name, &spec, ProgressSink::none()).await,
                    ErrorKind::Unsupported,
                    &format!("export {format:?}"),
                )?;
                continue;
            }
            let reports = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let counter = reports.clone();
            let sink = ProgressSink::new(move |_| {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            });
            let result = b.export(&name, &spec, sink).await?;
            let meta = std::fs::metadata(&destination)?;
            check(
                meta.len() > 0 && meta.len() == result.size_bytes,
                format!(
                    "{format:?} export wrote {} bytes, reported {}",
                    meta.len(),
                    result.size_bytes
                ),
            )?;
            check(
                reports.load(std::sync::atomic::Ordering::Relaxed) > 0,
                format!("{format:?} export reported progress"),
            )?;
            std::fs::remove_file(&destination)?;
        }
        Ok(())
    })
    .await
}

/// Images: the fixture image is listed and inspectable.
pub async fn images(b: &dyn Backend, fx: &Fixture) -> Result<()> {
    let image = b.image_inspect(&fx.image).await?;
    check(image.backend == b.name(), "image names its backend")?;
    let list = b.image_list().await?;
    check(list.iter().any(|i| i.id == image.id), "image listed")
}

/// Networks: create, inspect, list, duplicate, delete; or Unsupported.
pub async fn networks(b: &dyn Backend, fx: &Fixture) -> Result<()> {
    let mut spec = fx.network.clone();
    spec.name = fx.name("net");
    if !b.capabilities().networks {
        return expect_kind(
            b.network_create(&spec).await,
            ErrorKind::Unsupported,
            "network create",
        );
    }
    let created = b.network_create(&spec).await?;
    let outcome = async {
        check(created.name == spec.name, "network keeps its name")?;
        check(
            b.network_inspect(&spec.name).await?.id == created.id,
            "inspect by name",
        )?;
        check(
            b.network_list().await?.iter().any(|n| n.id == created.id),
            "network listed",
        )?;
        expect_kind(
            b.network_create(&spec).await,
            ErrorKind::Conflict,
            "duplicate network",
        )
    }
    .await;
    let deleted = b.network_delete(&created.id).await;
    outcome?;
    deleted?;
    expect_kind(
        b.network_inspect(&spec.name).await,
        ErrorKind::NotFound,
        "network after delete",
    )
}

/// Volumes: create, inspect, list, duplicate, delete; or Unsupported.
pub async fn volumes(b: &dyn Backend, fx: &Fixture) -> Result<()> {
    let mut spec = fx.volume.clone();
    spec.name = fx.name("vol");
    if !b.capabilities().volumes {
        return expect_kind(
            b.volume_create(&spec).await,
            ErrorKind::Unsupported,
            "volume create",
        );
    }
    let created = b.volume_create(&spec).await?;
    let outcome = async {
        check(created.name == spec.name, "volume keeps its name")?;
        check(
            b.volume_inspect(&spec.name).await?.name == spec.name,
            "inspect",
        )?;
        check(
            b.volume_list().await?.iter().any(|v| v.name == spec.name),
            "volume listed",
        )?;
        expect_kind(
            b.volume_create(&spec).await,
            ErrorKind::Conflict,
            "duplicate volume",
        )
    }
    .await;
    let deleted = b.volume_delete(&spec.name, false).await;
    outcome?;
    deleted?;
    expect_kind(
        b.volume_inspect(&spec.name).await,
        ErrorKind::NotFound,
        "volume after delete",
    )
}

/// Events: created, started, stopped or died, deleted — in that order — for one instance.
pub async fn events(b: &dyn Backend, fx: &Fixture) -> Result<()> {
    let name = fx.name("evt");
    let mut stream = b.events().await?;
    with_cleanup(b, std::slice::from_ref(&name), async {
        let created = b.create(&fx.spec("evt")).await?;
        b.start(&name).await?;
        wait_state(b, &name, InstanceState::Running, fx.boot_timeout).await?;
        b.stop(
            &name,
            StopOptions {
                timeout_secs: None,
                force: true,
            },
        )
        .await?;
        b.delete(&name, true).await?;
        let wanted = [
            EventAction::Created,
            EventAction::Started,
            EventAction::Stopped,
            EventAction::Deleted,
        ];
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while seen.last() != Some(&EventAction::Deleted) {
            let next = tokio::time::timeout_at(deadline, stream.next())
                .await
                .map_err(|_| {
                    Error::internal(format!(
                        "events so far {seen:?}, missing some of {wanted:?}"
                    ))
                })?;
            let Some(event) = next else { break };
            let event = event?;
            if event.instance_id == created.id {
                check(event.backend == b.name(), "event names its backend")?;
                let action = if event.action == EventAction::Died {
                    EventAction::Stopped
                } else {
                    event.action
                };
                if seen.last() != Some(&action) {
                    seen.push(action);
                }
            }
        }
        let in_order = wanted.iter().all(|w| seen.contains(w))
            && wanted.windows(2).all(|p| {
                seen.iter().position(|a| *a == p[0]) < seen.iter().position(|a| *a == p[1])
            });
        check(
            in_order,
            format!("events {seen:?} hold {wanted:?} in order"),
        )
    })
    .await
}

/// Resource updates show in `get`.
pub async fn update_resources(b: &dyn Backend, fx: &Fixture) -> Result<()> {
    let name = fx.name("upd");
    with_cleanup(b, std::slice::from_ref(&name), async {
        b.create(&fx.spec("upd")).await?;
        let memory = 96 * 1024 * 1024;
        let updated = b
            .update(
                &name,
                ResourceUpdate {
                    cpus: Some(1),
                    memory_bytes: Some(memory),
                    ..Default::default()
                },
            )
            .await?;
        check(
            updated.memory_bytes == Some(memory),
            format!("memory updated: {:?}", updated.memory_bytes),
        )?;
        check(
            b.get(&name).await?.memory_bytes == Some(memory),
            "get shows new memory",
        )?;
        expect_kind(
            b.update(
                &name,
                ResourceUpdate {
                    cpus: Some(0),
                    memory_bytes: None,
                    ..Default::default()
                },
            )
            .await,
            ErrorKind::InvalidInput,
            "cpus 0",
        )
    })
    .await
}

/// Rename (id kept, old name gone, a taken name refused) and how the instance starts by
/// itself: `autostart` for VMs, `restartPolicy` for containers, the other refused with
/// `UNSUPPORTED`, never ignored.
pub async fn rename_and_start_policy(b: &dyn Backend, fx: &Fixture) -> Result<()> {
    let name = fx.name("ren");
    let renamed = fx.name("ren2");
    let other = fx.name("ren3");
    with_cleanup(b, &[name.clone(), renamed.clone(), other.clone()], async {
        let made = b.create(&fx.spec("ren")).await?;
        let mut spec = fx.spec("ren3");
        spec.name = other.clone();
        b.create(&spec).await?;
        let update = |name: Option<&str>| ResourceUpdate {
            name: name.map(str::to_string),
            ..Default::default()
        };
        expect_kind(
            b.update(&name, update(Some(&other))).await,
            ErrorKind::Conflict,
            "rename to a taken name",
        )?;
        let after = b.update(&name, update(Some(&renamed))).await?;
        check(after.name == renamed, format!("renamed: {}", after.name))?;
        check(after.id == made.id, "the id stays")?;
        check(
            b.get(&renamed).await?.id == made.id,
            "found by the new name",
        )?;
        expect_kind(b.get(&name).await, ErrorKind::NotFound, "the old name")?;
        let vm = made.kind == InstanceKind::Vm;
        let autostart = ResourceUpdate {
            autostart: Some(true),
            ..Default::default()
        };
        let restart = ResourceUpdate {
            restart_policy: Some(RestartPolicy::UnlessStopped),
            ..Default::default()
        };
        let (supported, refused) = if vm {
            (autostart, restart)
        } else {
            (restart, autostart)
        };
        b.update(&renamed, supported).await?;
        expect_kind(
            b.update(&renamed, refused).await,
            ErrorKind::Unsupported,
            "the other kind's start setting",
        )?;
        if !vm {
            let boot = ResourceUpdate {
                boot: Some(vec![BootDevice::Disk]),
                ..Default::default()
            };
            expect_kind(
                b.update(&renamed, boot).await,
                ErrorKind::Unsupported,
                "a container's boot order",
            )?;
        }
        Ok(())
    })
    .await
}

/// Disks: a VM takes a new disk, grows it and lets it go (its volume stays); a container
/// answers UNSUPPORTED, never a silent no-op.
pub async fn disks(b: &dyn Backend, fx: &Fixture) -> Result<()> {
    let name = fx.name("dsk");
    with_cleanup(b, std::slice::from_ref(&name), async {
        let made = b.create(&fx.spec("dsk")).await?;
        let attach = DiskAttach {
            size_bytes: Some(16 << 20),
            ..Default::default()
        };
        let attached = b.disk_attach(&name, &attach).await;
        if made.kind == InstanceKind::Container {
            return expect_kind(attached, ErrorKind::Unsupported, "a container's disk");
        }
        let d = attached?;
        let targets = |list: Vec<AttachedDisk>| -> Vec<String> {
            list.into_iter().map(|d| d.target).collect()
        };
        check(
            targets(b.disk_list(&name).await?).contains(&d.target),
            format!("{} listed", d.target),
        )?;
        let grown = b
            .disk_resize(
                &name,
                &d.target,
                &DiskResize {
                    size_bytes: 32 << 20,
                    allow_shrink: false,
                },
            )
            .await?;
        check(
            grown.size_bytes == Some(32 << 20),
            format!("grown: {grown:?}"),
        )?;
        expect_kind(
            b.disk_detach(&name, "vdx").await,
            ErrorKind::NotFound,
            "detach a disk that is not there",
        )?;
        b.disk_detach(&name, &d.target).await?;
        check(
            !targets(b.disk_list(&name).await?).contains(&d.target),
            format!("{} detached", d.target),
        )?;
        let volume = d
            .volume
            .ok_or_else(|| Error::internal("the new disk names its volume"))?;
        b.volume_inspect(&volume).await?;
        b.volume_delete(&volume, false).await
    })
    .await
}

/// Filters on list, and the facade over this one backend: routing, pagination, conflicts.
pub async fn list_and_facade(b: Arc<dyn Backend>, fx: &Fixture) -> Result<()> {
    let (one, two) = (fx.name("lst-a"), fx.name("lst-b"));
    let names = [one.clone(), two.clone()];
    let libgo = LibGo::new();
    libgo.register(b.clone())?;
    with_cleanup(&*b, &names, async {
        let mut spec = fx.spec("lst-a");
        spec.labels
            .insert("libgo-conformance".into(), fx.prefix.clone());
        spec.labels.insert("role".into(), "a".into());
        let a = libgo.create(&spec).await?;
        let mut spec = fx.spec("lst-b");
        spec.labels
            .insert("libgo-conformance".into(), fx.prefix.clone());
        spec.labels.insert("role".into(), "b".into());
        libgo.create(&spec).await?;
        libgo.start(&two).await?;
        wait_state(&*b, &two, InstanceState::Running, fx.boot_timeout).await?;

        let mine = InstanceFilter {
            labels: [("libgo-conformance".to_string(), fx.prefix.clone())].into(),
            ..Default::default()
        };
        let all = libgo.list_all(&mine).await?;
        check(
            all.len() == 2,
            format!("label filter finds both, got {}", all.len()),
        )?;
        let only_a = InstanceFilter {
            labels: [("role".to_string(), "a".to_string())].into(),
            ..mine.clone()
        };
        let page = libgo.list(&only_a, Pagination::default()).await?;
        check(
            page.count == 1 && page.items[0].id == a.id,
            "label filter finds one",
        )?;
        let running = InstanceFilter {
            state: Some(InstanceState::Running),
            ..mine.clone()
        };
        let page = libgo.list(&running, Pagination::default()).await?;
        check(page.count == 1 && page.items[0].name == two, "state filter")?;
        let page = libgo
            .list(
                &mine,
                Pagination {
                    page: 2,
                    page_size: 1,
                },
            )
            .await?;
        check(
            page.count == 2 && page.items.len() == 1 && page.items[0].name == two,
            "second page of one",
        )?;
        expect_kind(
            libgo
                .list(
                    &mine,
                    Pagination {
                        page: 1,
                        page_size: 1000,
                    },
                )
                .await,
            ErrorKind::InvalidInput,
            "page size 1000",
        )?;
        let by_name = InstanceFilter {
            name: Some(fx.name("lst-")),
            ..Default::default()
        };
        check(libgo.list_all(&by_name).await?.len() == 2, "name filter")?;

        check(libgo.get(&one).await?.id == a.id, "facade get by name")?;
        check(libgo.get(&a.id).await?.name == one, "facade get by id")?;
        expect_kind(
            libgo.create(&fx.spec("lst-a")).await,
            ErrorKind::Conflict,
            "facade duplicate",
        )?;
        let mut nameless = fx.spec("lst-c");
        nameless.kind = None;
        nameless.backend = Some("no-such-backend".into());
        expect_kind(
            libgo.create(&nameless).await,
            ErrorKind::NotFound,
            "unknown backend",
        )?;
        libgo
            .stop(
                &two,
                StopOptions {
                    timeout_secs: None,
                    force: true,
                },
            )
            .await?;
        libgo.delete(&one, DeleteOptions::default()).await?;
        expect_kind(libgo.get(&one).await, ErrorKind::NotFound, "facade delete")
    })
    .await
}

/// Expands one `#[tokio::test]` per conformance test, each calling `$setup().await` for a
/// `(Arc<dyn Backend>, Fixture)`. A backend that cannot run some of them names them:
/// `conformance_tests!(setup, except [stats_and_logs])` (say why in the test file); every
/// other test of the suite is expanded, so a test added to the suite runs everywhere.
#[macro_export]
macro_rules! conformance_tests {
    ($setup:path $(, except [$($skip:ident),* $(,)?])?) => {
        $crate::__conformance_expand!($setup; [$($($skip),*)?]; $);
    };
}

/// The expansion behind [`conformance_tests!`] (`$d` is a `$` for the inner macro).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_expand {
    ($setup:path; [$($skip:ident),*]; $d:tt) => {
        macro_rules! __libgo_conformance_test {
            $( ($d kind:ident $skip) => {}; )*
            (by_ref $d name:ident) => {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $d name() {
                    let (backend, fixture) = $setup().await;
                    if let Err(e) = $crate::conformance::$d name(&*backend, &fixture).await {
                        panic!("conformance {}: {e}", stringify!($d name));
                    }
                }
            };
            (shared $d name:ident) => {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $d name() {
                    let (backend, fixture) = $setup().await;
                    if let Err(e) = $crate::conformance::$d name(backend, &fixture).await {
                        panic!("conformance {}: {e}", stringify!($d name));
                    }
                }
            };
        }
        __libgo_conformance_test!(by_ref instance_lifecycle);
        __libgo_conformance_test!(by_ref bad_input);
        __libgo_conformance_test!(by_ref missing_objects);
        __libgo_conformance_test!(by_ref stats_and_logs);
        __libgo_conformance_test!(by_ref exec);
        __libgo_conformance_test!(by_ref snapshots);
        __libgo_conformance_test!(by_ref export);
        __libgo_conformance_test!(by_ref images);
        __libgo_conformance_test!(by_ref networks);
        __libgo_conformance_test!(by_ref volumes);
        __libgo_conformance_test!(by_ref events);
        __libgo_conformance_test!(by_ref update_resources);
        __libgo_conformance_test!(by_ref rename_and_start_policy);
        __libgo_conformance_test!(by_ref disks);
        __libgo_conformance_test!(by_ref snapshot_tree);
        __libgo_conformance_test!(by_ref reinstall);
        __libgo_conformance_test!(shared list_and_facade);
        __libgo_conformance_test!(shared idempotent_verbs);
    };
}
