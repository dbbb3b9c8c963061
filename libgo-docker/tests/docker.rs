//! Docker-specific behaviour, checked against the real dockerd the way a user would.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{IMAGE, REGISTRY, backend, docker_cli, runnable, unique};
use futures::StreamExt;
use libgo_core::{
    BuildSpec, Compute, ErrorKind, EventAction, ExecSpec, Images, InstanceSpec, InstanceState,
    LibGo, LogOptions, MountKind, MountSpec, NetworkSpec, Networks, ProgressSink, Result,
    StopOptions, VolumeSpec, Volumes,
};
use libgo_docker::{DockerBackend, DockerConfig};

fn sh(command: &str) -> ExecSpec {
    ExecSpec {
        command: vec!["sh".into(), "-c".into(), command.into()],
        ..Default::default()
    }
}

/// A tar archive with one regular file, written by hand: the format is simple and the
/// test then needs no extra crate.
fn tar_with(name: &str, body: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    header[100..108].copy_from_slice(b"0000644\0");
    header[108..116].copy_from_slice(b"0000000\0");
    header[116..124].copy_from_slice(b"0000000\0");
    header[124..136].copy_from_slice(format!("{:011o}\0", body.len()).as_bytes());
    header[136..148].copy_from_slice(b"00000000000\0");
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut tar = header.to_vec();
    tar.extend_from_slice(body);
    tar.resize(tar.len().div_ceil(512) * 512 + 1024, 0);
    tar
}

#[tokio::test]
async fn build_push_and_pull_through_the_local_registry() -> Result<()> {
    let b = backend();
    let tag = unique("build");
    let local = format!("libgo-test/{tag}:v1");
    let remote = format!("{REGISTRY}/libgo-test/{tag}:v1");
    let dockerfile =
        format!("FROM {IMAGE}\nRUN echo built-by-libgo > /built\nLABEL test.libgo.test={tag}\n");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let seen = lines.clone();
    let built = b
        .image_build(
            &BuildSpec {
                context_tar: tar_with("Dockerfile", dockerfile.as_bytes()),
                tags: vec![local.clone()],
                ..Default::default()
            },
            ProgressSink::new(move |p| seen.lock().unwrap().push(p.message)),
        )
        .await?;
    assert!(built.tags.contains(&local), "{:?}", built.tags);
    assert_eq!(built.labels.get("test.libgo.test"), Some(&tag));
    assert!(
        !lines.lock().unwrap().is_empty(),
        "the build reported its steps"
    );

    b.image_tag(&local, &remote).await?;
    let pushed = Arc::new(Mutex::new(0usize));
    let counter = pushed.clone();
    b.image_push(
        &remote,
        None,
        ProgressSink::new(move |_| *counter.lock().unwrap() += 1),
    )
    .await?;
    assert!(*pushed.lock().unwrap() > 0, "push reported progress");
    let catalog = reqwest_like_get(&format!("http://{REGISTRY}/v2/libgo-test/{tag}/tags/list"));
    assert!(
        catalog.contains("v1"),
        "the registry has the tag: {catalog}"
    );

    // Remove it locally, then pull it back and run it.
    b.image_remove(&remote, false).await?;
    b.image_remove(&local, false).await?;
    assert_eq!(
        b.image_inspect(&remote).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let pulled = b.image_pull(&remote, None, ProgressSink::none()).await?;
    assert!(pulled.tags.contains(&remote));
    let mut spec = InstanceSpec::container(unique("pulled"), &remote);
    spec.command = vec!["cat".into(), "/built".into()];
    let c = b.create(&spec).await?;
    b.start(&c.id).await?;
    let logs = wait_for_log(&b, &c.id, "built-by-libgo").await;
    b.delete(&c.id, true).await?;
    b.image_remove(&remote, true).await?;
    assert!(logs.contains("built-by-libgo"), "{logs}");

    // A missing image is NotFound; a failing build is the input's fault.
    let missing = b
        .image_pull(
            &format!("{REGISTRY}/libgo-test/{tag}:nope"),
            None,
            ProgressSink::none(),
        )
        .await;
    assert_eq!(missing.unwrap_err().kind(), ErrorKind::NotFound);
    let broken = b
        .image_build(
            &BuildSpec {
                context_tar: tar_with(
                    "Dockerfile",
                    format!("FROM {IMAGE}\nRUN exit 7\n").as_bytes(),
                ),
                tags: vec![format!("libgo-test/{tag}:broken")],
                ..Default::default()
            },
            ProgressSink::none(),
        )
        .await;
    assert_eq!(broken.unwrap_err().kind(), ErrorKind::InvalidInput);
    Ok(())
}

/// A plain HTTP GET on loopback with the shell's wget-free tool: curl is installed with
/// the registry scripts.
fn reqwest_like_get(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-sf", url])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).to_string()
}

async fn wait_for_log(b: &DockerBackend, id: &str, marker: &str) -> String {
    for _ in 0..100 {
        let mut text = String::new();
        let mut s = b.logs(id, LogOptions::default()).await.expect("logs");
        while let Some(e) = s.next().await {
            text.push_str(&e.expect("log entry").message);
        }
        if text.contains(marker) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    String::new()
}

#[tokio::test]
async fn two_containers_on_one_network_reach_each_other() -> Result<()> {
    let b = backend();
    let net = unique("net");
    let network = b
        .network_create(&NetworkSpec {
            name: net.clone(),
            subnet: Some("10.231.0.0/24".into()),
            gateway: Some("10.231.0.1".into()),
            ..Default::default()
        })
        .await;
    // Another run may hold the subnet: fall back to Docker's choice.
    let network = match network {
        Ok(n) => n,
        Err(_) => {
            b.network_create(&NetworkSpec {
                name: net.clone(),
                ..Default::default()
            })
            .await?
        }
    };
    let (server, client) = (unique("srv"), unique("cli"));
    let outcome = async {
        let mut spec = runnable(&server);
        spec.networks = vec![net.clone()];
        spec.start = true;
        b.create(&spec).await?;
        let mut spec = runnable(&client);
        spec.start = true;
        b.create(&spec).await?;
        // Connected after the fact, as `docker network connect`.
        b.network_connect(&net, &client).await?;
        let inspected = b.network_inspect(&net).await?;
        assert_eq!(inspected.instances.len(), 2, "both containers on {net}");
        b.exec(
            &server,
            &sh("echo pong-from-server > /index.html; httpd -p 8080 -h /"),
        )
        .await?;
        let mut reply = String::new();
        for _ in 0..50 {
            let r = b
                .exec(
                    &client,
                    &sh(&format!("wget -q -O - http://{server}:8080/index.html")),
                )
                .await?;
            if r.exit_code == 0 {
                reply = r.stdout;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            reply.trim(),
            "pong-from-server",
            "the client reached the server by name"
        );
        b.network_disconnect(&net, &client).await?;
        // A container name Docker cannot parse is a missing instance, not a bare 500
        // (found by schemathesis).
        let odd = "/no\"such!container";
        // Docker itself answers this inspect with a bare 500.
        let e = b.get(odd).await.expect_err("no such container");
        assert_eq!(e.kind(), ErrorKind::NotFound, "get: {e}");
        for verb in ["connect", "disconnect"] {
            let e = if verb == "connect" {
                b.network_connect(&net, odd).await
            } else {
                b.network_disconnect(&net, odd).await
            }
            .expect_err("no such container");
            assert_eq!(e.kind(), ErrorKind::NotFound, "{verb}: {e}");
        }
        let r = b
            .exec(
                &client,
                &sh(&format!(
                    "wget -q -T 2 -O - http://{server}:8080/index.html"
                )),
            )
            .await?;
        assert_ne!(
            r.exit_code, 0,
            "after disconnect the server is out of reach"
        );
        Ok::<_, libgo_core::Error>(())
    }
    .await;
    b.delete(&server, true).await.ok();
    b.delete(&client, true).await.ok();
    b.network_delete(&network.id).await?;
    outcome
}

#[tokio::test]
async fn volume_data_outlives_the_container() -> Result<()> {
    let b = backend();
    let vol = unique("vol");
    b.volume_create(&VolumeSpec {
        name: vol.clone(),
        labels: BTreeMap::from([("test.libgo.test".into(), "1".into())]),
        ..Default::default()
    })
    .await?;
    let mount = MountSpec {
        kind: MountKind::Volume,
        source: vol.clone(),
        target: "/data".into(),
        read_only: false,
    };
    let (first, second) = (unique("writer"), unique("reader"));
    let outcome = async {
        let mut spec = runnable(&first);
        spec.mounts = vec![mount.clone()];
        spec.start = true;
        b.create(&spec).await?;
        assert_eq!(
            b.exec(&first, &sh("echo kept > /data/file"))
                .await?
                .exit_code,
            0
        );
        // The volume is in use: deleting it without force is refused.
        assert_eq!(
            b.volume_delete(&vol, false).await.unwrap_err().kind(),
            ErrorKind::Conflict
        );
        b.delete(&first, true).await?;
        let mut spec = runnable(&second);
        spec.mounts = vec![mount.clone()];
        spec.start = true;
        b.create(&spec).await?;
        let r = b.exec(&second, &sh("cat /data/file")).await?;
        assert_eq!(r.stdout.trim(), "kept");
        b.delete(&second, true).await
    }
    .await;
    b.delete(&first, true).await.ok();
    b.delete(&second, true).await.ok();
    b.volume_delete(&vol, false).await?;
    outcome
}

#[tokio::test]
async fn exec_exit_codes_and_logs_with_since_and_until() -> Result<()> {
    let b = backend();
    let name = unique("logs");
    let mut spec = InstanceSpec::container(&name, IMAGE);
    spec.command = vec![
        "sh".into(),
        "-c".into(),
        "echo first; sleep 2; echo second >&2; sleep 2; echo third; sleep 3600".into(),
    ];
    spec.start = true;
    let c = b.create(&spec).await?;
    let outcome = async {
        for code in [0, 1, 42, 255] {
            assert_eq!(
                b.exec(&name, &sh(&format!("exit {code}"))).await?.exit_code,
                code
            );
        }
        let tty = b
            .exec(
                &name,
                &ExecSpec {
                    tty: true,
                    ..sh("echo on-a-tty; tty")
                },
            )
            .await?;
        assert!(
            tty.stdout.contains("on-a-tty") && tty.stdout.contains("/dev/pts"),
            "{tty:?}"
        );
        wait_for_log(&b, &name, "third").await;
        let mut entries = Vec::new();
        let mut s = b.logs(&name, LogOptions::default()).await?;
        while let Some(e) = s.next().await {
            entries.push(e?);
        }
        let texts: Vec<_> = entries
            .iter()
            .map(|e| e.message.trim().to_string())
            .collect();
        assert_eq!(texts, ["first", "second", "third"]);
        assert_eq!(entries[1].stream, libgo_core::LogStream::Stderr);
        let t: Vec<_> = entries
            .iter()
            .map(|e| e.timestamp.expect("timestamp"))
            .collect();
        // Between the first and the third line: only the second.
        let middle = LogOptions {
            since: Some(t[0] + chrono::Duration::milliseconds(1)),
            until: Some(t[2]),
            ..Default::default()
        };
        let mut s = b.logs(&name, middle).await?;
        let mut got = Vec::new();
        while let Some(e) = s.next().await {
            got.push(e?.message.trim().to_string());
        }
        assert_eq!(got, ["second"]);
        let mut s = b
            .logs(
                &name,
                LogOptions {
                    tail: Some(1),
                    ..Default::default()
                },
            )
            .await?;
        let last = s.next().await.expect("one line")?;
        assert_eq!(last.message.trim(), "third");
        assert!(s.next().await.is_none());
        // Follow: a line printed later arrives on the open stream.
        let mut follow = b
            .logs(
                &name,
                LogOptions {
                    follow: true,
                    tail: Some(0),
                    ..Default::default()
                },
            )
            .await?;
        b.exec(&name, &sh("echo late-line > /proc/1/fd/1")).await?;
        let late = tokio::time::timeout(Duration::from_secs(10), follow.next())
            .await
            .expect("a followed line");
        assert_eq!(late.expect("entry")?.message.trim(), "late-line");
        Ok::<_, libgo_core::Error>(())
    }
    .await;
    b.delete(&c.id, true).await?;
    outcome
}

#[tokio::test]
async fn pause_really_freezes_the_process() -> Result<()> {
    let b = backend();
    let name = unique("frozen");
    let mut spec = InstanceSpec::container(&name, IMAGE);
    spec.command = vec![
        "sh".into(),
        "-c".into(),
        "i=0; while true; do i=$((i+1)); echo $i > /count; sleep 0.1; done".into(),
    ];
    spec.start = true;
    b.create(&spec).await?;
    let read = |b: Arc<DockerBackend>, name: String| async move {
        let r = b.exec(&name, &sh("cat /count")).await?;
        Ok::<u64, libgo_core::Error>(r.stdout.trim().parse().unwrap_or(0))
    };
    let outcome = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        b.pause(&name).await?;
        assert_eq!(b.get(&name).await?.state, InstanceState::Paused);
        // The engine's own view agrees.
        assert_eq!(
            docker_cli(&["inspect", "-f", "{{.State.Paused}}", &name]),
            "true"
        );
        // Exec into a frozen container is refused: it is really frozen.
        assert_eq!(
            b.exec(&name, &sh("true")).await.unwrap_err().kind(),
            ErrorKind::Conflict
        );
        let frozen_at = std::fs::read_to_string(format!(
            "/proc/{}/stat",
            docker_cli(&["inspect", "-f", "{{.State.Pid}}", &name])
        ))
        .ok();
        tokio::time::sleep(Duration::from_millis(800)).await;
        let still = std::fs::read_to_string(format!(
            "/proc/{}/stat",
            docker_cli(&["inspect", "-f", "{{.State.Pid}}", &name])
        ))
        .ok();
        // utime/stime of the shell stay put while frozen.
        let cpu = |s: &Option<String>| {
            s.as_ref().map(|s| {
                s.split_whitespace()
                    .skip(13)
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
        };
        assert_eq!(cpu(&frozen_at), cpu(&still), "no CPU time while paused");
        b.resume(&name).await?;
        let a = read(b.clone(), name.clone()).await?;
        tokio::time::sleep(Duration::from_millis(600)).await;
        let c = read(b.clone(), name.clone()).await?;
        assert!(c > a, "the counter moves again after resume ({a} → {c})");
        Ok::<_, libgo_core::Error>(())
    }
    .await;
    b.delete(&name, true).await?;
    outcome
}

#[tokio::test]
async fn events_include_changes_made_with_the_docker_cli() -> Result<()> {
    let libgo = LibGo::new();
    libgo.register(backend())?;
    let name = unique("outside");
    let mut events = libgo
        .events(libgo_core::EventFilter {
            instance: Some(name.clone()),
            ..Default::default()
        })
        .await?;
    docker_cli(&["run", "-d", "--name", &name, IMAGE, "sleep", "3600"]);
    docker_cli(&["stop", "-t", "0", &name]);
    docker_cli(&["rm", &name]);
    let mut seen = Vec::new();
    while seen.last() != Some(&EventAction::Deleted) {
        let e = tokio::time::timeout(Duration::from_secs(20), events.next())
            .await
            .unwrap_or_else(|_| panic!("events so far: {seen:?}"))
            .expect("stream open")?;
        assert_eq!(e.instance_name.as_deref(), Some(name.as_str()));
        seen.push(e.action);
    }
    for wanted in [
        EventAction::Created,
        EventAction::Started,
        EventAction::Died,
        EventAction::Stopped,
        EventAction::Deleted,
    ] {
        assert!(seen.contains(&wanted), "{wanted:?} in {seen:?}");
    }
    Ok(())
}

#[tokio::test]
async fn a_failed_create_leaves_nothing_behind() -> Result<()> {
    let b = backend();
    let name = unique("half");
    let mut spec = runnable(&name);
    spec.networks = vec!["bridge".into(), unique("no-such-net")];
    let err = b.create(&spec).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(b.get(&name).await.unwrap_err().kind(), ErrorKind::NotFound);
    assert!(docker_cli(&["ps", "-aq", "--filter", &format!("name=^{name}$")]).is_empty());
    // Ports that cannot be bound fail the start; the container is removed too.
    let mut spec = runnable(&name);
    spec.ports = vec![libgo_core::PortMapping {
        container_port: 80,
        host_port: Some(1),
        host_ip: Some("203.0.113.1".into()),
        protocol: Default::default(),
    }];
    spec.start = true;
    assert!(b.create(&spec).await.is_err());
    assert!(docker_cli(&["ps", "-aq", "--filter", &format!("name=^{name}$")]).is_empty());
    Ok(())
}

/// An id prefix that matches several containers is the caller's error (dockerd 20.10
/// answers it with a 500; the API fuzzer met it as one).
#[tokio::test]
async fn an_ambiguous_id_prefix_is_invalid_input() -> Result<()> {
    let b = backend();
    let mut made: Vec<(String, String)> = Vec::new();
    let mut shared = None;
    // Ids are random hex: among 17 containers two share a first digit.
    for _ in 0..17 {
        let name = unique("amb");
        let i = b.create(&runnable(&name)).await?;
        if let Some((_, other)) = made.iter().find(|(_, id)| id[..1] == i.id[..1]) {
            shared = Some(other[..1].to_string());
        }
        made.push((name, i.id));
        if shared.is_some() {
            break;
        }
    }
    let prefix = shared.expect("two ids share a first digit");
    let e = b.get(&prefix).await.unwrap_err();
    for (name, _) in &made {
        b.delete(name, Default::default()).await?;
    }
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    Ok(())
}

#[tokio::test]
async fn an_unreachable_engine_is_unavailable_and_health_says_so() {
    let gone = DockerBackend::connect(
        "gone",
        DockerConfig {
            host: Some("unix:///nonexistent/docker.sock".into()),
            timeout_secs: 5,
            tls: None,
        },
    )
    .expect("backend builds while the engine is down");
    let err = gone.list(&Default::default()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let health = libgo_core::Backend::health(&gone).await;
    assert!(!health.up);
    let tcp = DockerBackend::connect(
        "tcp",
        DockerConfig {
            host: Some("tcp://127.0.0.1:1".into()),
            timeout_secs: 5,
            tls: None,
        },
    )
    .expect("tcp backend");
    assert_eq!(
        tcp.get("x").await.unwrap_err().kind(),
        ErrorKind::Unavailable
    );
    assert_eq!(
        DockerBackend::connect(
            "bad",
            DockerConfig {
                host: Some("ftp://x".into()),
                timeout_secs: 5,
                tls: None,
            }
        )
        .unwrap_err()
        .kind(),
        ErrorKind::InvalidInput
    );
    // The live engine through an explicit DOCKER_HOST-style address.
    let live = DockerBackend::connect(
        "live",
        DockerConfig {
            host: Some("unix:///var/run/docker.sock".into()),
            timeout_secs: 5,
            tls: None,
        },
    )
    .expect("live");
    assert!(libgo_core::Backend::health(&live).await.up);
    let info = libgo_core::Backend::info(&live).await.expect("info");
    assert_eq!(info.engine, "docker");
    assert!(info.api_version.is_some());
}

#[tokio::test]
async fn export_writes_a_filesystem_tar_and_an_image_tar() -> Result<()> {
    let b = backend();
    let name = unique("export");
    let mut spec = runnable(&name);
    spec.start = true;
    b.create(&spec).await?;
    b.exec(&name, &sh("echo exported > /marker")).await?;
    let dir = std::env::temp_dir().join(unique("export"));
    std::fs::create_dir_all(&dir)?;
    let fs_tar = dir.join("fs.tar");
    let image_tar = dir.join("image.tar");
    let outcome = async {
        b.export(
            &name,
            &libgo_core::ExportSpec {
                format: libgo_core::ExportFormat::Tar,
                destination: fs_tar.clone(),
            },
            ProgressSink::none(),
        )
        .await?;
        let listing = Command::new("tar").args(["-tf"]).arg(&fs_tar).output()?;
        let listing = String::from_utf8_lossy(&listing.stdout).to_string();
        assert!(
            listing.lines().any(|l| l == "marker"),
            "the tar holds the file"
        );
        assert!(listing.lines().any(|l| l == "bin/busybox"));
        b.export(
            &name,
            &libgo_core::ExportSpec {
                format: libgo_core::ExportFormat::ImageTar,
                destination: image_tar.clone(),
            },
            ProgressSink::none(),
        )
        .await?;
        let listing = Command::new("tar").args(["-tf"]).arg(&image_tar).output()?;
        assert!(
            String::from_utf8_lossy(&listing.stdout)
                .lines()
                .any(|l| l == "manifest.json")
        );
        let again = b
            .export(
                &name,
                &libgo_core::ExportSpec {
                    format: libgo_core::ExportFormat::Tar,
                    destination: fs_tar.clone(),
                },
                ProgressSink::none(),
            )
            .await;
        assert_eq!(
            again.unwrap_err().kind(),
            ErrorKind::Conflict,
            "an existing file is not overwritten"
        );
        Ok::<_, libgo_core::Error>(())
    }
    .await;
    b.delete(&name, true).await?;
    std::fs::remove_dir_all(&dir)?;
    outcome
}

#[tokio::test]
async fn stop_with_timeout_then_force() -> Result<()> {
    let b = backend();
    let name = unique("stubborn");
    // Ignores TERM: a graceful stop must fall back to a kill after the timeout.
    let mut spec = InstanceSpec::container(&name, IMAGE);
    spec.command = vec![
        "sh".into(),
        "-c".into(),
        "trap '' TERM; while true; do sleep 1; done".into(),
    ];
    spec.start = true;
    b.create(&spec).await?;
    let started = std::time::Instant::now();
    b.stop(
        &name,
        StopOptions {
            timeout_secs: Some(1),
            force: false,
        },
    )
    .await?;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited for the grace period"
    );
    assert_eq!(b.get(&name).await?.state, InstanceState::Stopped);
    b.start(&name).await?;
    b.stop(
        &name,
        StopOptions {
            timeout_secs: None,
            force: true,
        },
    )
    .await?;
    assert_eq!(b.get(&name).await?.state, InstanceState::Stopped);
    assert_eq!(
        docker_cli(&["inspect", "-f", "{{.State.ExitCode}}", &name]),
        "137"
    );
    b.delete(&name, false).await
}

#[tokio::test]
async fn push_and_pull_with_credentials() -> Result<()> {
    let b = backend();
    let repo = format!("127.0.0.1:5001/libgo-test/{}", unique("auth"));
    let reference = format!("{repo}:v1");
    b.image_tag(IMAGE, &reference).await?;
    let outcome = async {
        let anonymous = b.image_push(&reference, None, ProgressSink::none()).await;
        let anonymous = anonymous.unwrap_err();
        assert_eq!(anonymous.kind(), ErrorKind::Unauthorized, "{anonymous}");
        let wrong = libgo_core::RegistryAuth {
            username: "libgo-test".into(),
            password: "wrong".into(),
            server: Some("127.0.0.1:5001".into()),
        };
        let denied = b
            .image_push(&reference, Some(&wrong), ProgressSink::none())
            .await
            .unwrap_err();
        assert_eq!(denied.kind(), ErrorKind::Unauthorized);
        assert!(
            !denied.to_string().contains("wrong"),
            "the password stays out of errors: {denied}"
        );
        let right = libgo_core::RegistryAuth {
            password: "libgo-test-secret".into(),
            ..wrong
        };
        assert!(
            !format!("{right:?}").contains("libgo-test-secret"),
            "Debug redacts the password"
        );
        b.image_push(&reference, Some(&right), ProgressSink::none())
            .await?;
        b.image_remove(&reference, false).await?;
        let denied = b
            .image_pull(&reference, None, ProgressSink::none())
            .await
            .unwrap_err();
        assert_eq!(denied.kind(), ErrorKind::Unauthorized, "{denied}");
        let pulled = b
            .image_pull(&reference, Some(&right), ProgressSink::none())
            .await?;
        assert!(pulled.tags.contains(&reference));
        Ok::<_, libgo_core::Error>(())
    }
    .await;
    b.image_remove(&reference, true).await.ok();
    outcome
}

#[tokio::test]
async fn console_is_an_interactive_shell() -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let b = backend();
    let name = unique("console");
    let mut spec = runnable(&name);
    spec.start = true;
    b.create(&spec).await?;
    let outcome = async {
        let mut console = b.console(&name).await?;
        console.input.write_all(b"echo console-$((6*7))\n").await?;
        console.input.flush().await?;
        let mut seen = String::new();
        while !seen.contains("console-42") {
            let chunk = tokio::time::timeout(Duration::from_secs(10), console.output.next())
                .await
                .unwrap_or_else(|_| panic!("no answer on the console; saw {seen:?}"))
                .expect("console open")?;
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        console.input.write_all(b"exit\n").await?;
        Ok::<_, libgo_core::Error>(())
    }
    .await;
    b.delete(&name, true).await?;
    outcome
}

#[tokio::test]
async fn create_honours_the_whole_spec() -> Result<()> {
    let b = backend();
    let name = unique("full");
    let mut spec = runnable(&name);
    spec.env = BTreeMap::from([("GREETING".into(), "hi there".into())]);
    spec.labels = BTreeMap::from([("test.libgo.test".into(), "full".into())]);
    spec.cpus = Some(1);
    spec.memory_bytes = Some(64 << 20);
    spec.restart_policy = Some(libgo_core::RestartPolicy::UnlessStopped);
    spec.ports = vec![libgo_core::PortMapping {
        container_port: 8080,
        host_port: None,
        host_ip: Some("127.0.0.1".into()),
        protocol: Default::default(),
    }];
    spec.mounts = vec![MountSpec {
        kind: MountKind::Tmpfs,
        source: String::new(),
        target: "/scratch".into(),
        read_only: false,
    }];
    spec.workdir = Some("/scratch".into());
    spec.start = true;
    let created = b.create(&spec).await?;
    let outcome = async {
        assert_eq!(created.state, InstanceState::Running);
        assert_eq!(created.cpus, Some(1.0));
        assert_eq!(created.memory_bytes, Some(64 << 20));
        assert_eq!(
            created.labels.get("test.libgo.test").map(String::as_str),
            Some("full")
        );
        assert_eq!(created.image.as_deref(), Some(IMAGE));
        let port = created
            .ports
            .first()
            .and_then(|p| p.host_port)
            .expect("a published port");
        assert_eq!(
            docker_cli(&["inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}", &name]),
            "unless-stopped"
        );
        let r = b
            .exec(
                &name,
                &sh("echo \"$GREETING\"; pwd; mount | grep -c ' /scratch type tmpfs'"),
            )
            .await?;
        assert_eq!(r.stdout, "hi there\n/scratch\n1\n");
        // The published port really answers from the host.
        b.exec(
            &name,
            &sh("echo published > /scratch/index.html; httpd -p 8080 -h /scratch"),
        )
        .await?;
        let mut body = String::new();
        for _ in 0..50 {
            body = reqwest_like_get(&format!("http://127.0.0.1:{port}/index.html"));
            if !body.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(body.trim(), "published");
        // kill with a signal: the trap makes TERM a clean exit.
        b.kill(&name, Some("SIGTERM")).await?;
        for _ in 0..50 {
            if b.get(&name).await?.state == InstanceState::Stopped {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let stopped = b.get(&name).await?;
        assert_eq!(stopped.state, InstanceState::Stopped);
        assert_eq!(stopped.exit_code, Some(0));
        assert_eq!(
            b.kill(&name, Some("KILL; rm -rf /"))
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput
        );
        Ok::<_, libgo_core::Error>(())
    }
    .await;
    b.delete(&name, true).await?;
    outcome
}

#[tokio::test]
async fn prune_removes_unused_images_and_volumes() -> Result<()> {
    let b = backend();
    let tag = format!("libgo-test/{}:v1", unique("prune"));
    // Build twice under one tag: the first image becomes dangling.
    let build = |content: &str| BuildSpec {
        context_tar: tar_with(
            "Dockerfile",
            format!("FROM {IMAGE}\nRUN echo {content} > /n\n").as_bytes(),
        ),
        tags: vec![tag.clone()],
        ..Default::default()
    };
    let first = b
        .image_build(&build("first"), ProgressSink::none())
        .await?
        .id;
    b.image_build(&build("second"), ProgressSink::none())
        .await?;
    let report = b.image_prune().await?;
    assert!(
        report.deleted.contains(&first),
        "{first} pruned: {report:?}"
    );
    assert_eq!(
        b.image_inspect(&first).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    b.image_remove(&tag, true).await?;
    let vol = unique("prunevol");
    b.volume_create(&VolumeSpec {
        name: vol.clone(),
        ..Default::default()
    })
    .await?;
    let report = b.volume_prune().await?;
    assert!(report.deleted.contains(&vol), "{report:?}");
    assert_eq!(
        b.volume_inspect(&vol).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    Ok(())
}

#[tokio::test]
async fn internal_networks_and_subnets_are_what_docker_reports() -> Result<()> {
    let b = backend();
    let name = unique("internal");
    let n = b
        .network_create(&NetworkSpec {
            name: name.clone(),
            internal: true,
            labels: BTreeMap::from([("test.libgo.test".into(), "1".into())]),
            ..Default::default()
        })
        .await?;
    let outcome = async {
        assert!(n.internal);
        assert_eq!(
            docker_cli(&[
                "network",
                "inspect",
                "-f",
                "{{.Internal}} {{.Driver}}",
                &name
            ]),
            "true bridge"
        );
        assert!(
            b.network_list()
                .await?
                .iter()
                .any(|x| x.name == name && x.internal)
        );
        let bad = b
            .network_create(&NetworkSpec {
                name: unique("bad"),
                subnet: Some("300.1.1.0/24".into()),
                ..Default::default()
            })
            .await;
        assert_eq!(bad.unwrap_err().kind(), ErrorKind::InvalidInput);
        Ok::<_, libgo_core::Error>(())
    }
    .await;
    b.network_delete(&name).await?;
    outcome
}

#[tokio::test]
async fn a_tcp_docker_host_reaches_the_engine() -> Result<()> {
    // dockerd listens on its Unix socket only; a loopback TCP forwarder stands in for a
    // `DOCKER_HOST=tcp://…` engine, with the real dockerd behind it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut server) =
                    tokio::net::UnixStream::connect("/var/run/docker.sock").await
                {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    let tcp = DockerBackend::connect(
        "tcp",
        DockerConfig {
            host: Some(format!("tcp://127.0.0.1:{port}")),
            timeout_secs: 30,
            tls: None,
        },
    )?;
    let info = libgo_core::Backend::info(&tcp).await?;
    assert_eq!(info.endpoint, format!("tcp://127.0.0.1:{port}"));
    let name = unique("tcp");
    let mut spec = runnable(&name);
    spec.start = true;
    let created = tcp.create(&spec).await?;
    let outcome = async {
        assert_eq!(created.state, InstanceState::Running);
        assert_eq!(
            backend().get(&name).await?.id,
            created.id,
            "the same engine"
        );
        assert_eq!(
            tcp.exec(&name, &sh("echo over-tcp")).await?.stdout.trim(),
            "over-tcp"
        );
        Ok::<_, libgo_core::Error>(())
    }
    .await;
    tcp.delete(&name, true).await?;
    outcome
}
