//! The facade's inventory over the real dockerd: lists answered from memory after a change
//! check, exactly equal to the engine's own list after every kind of change, whoever made it.
//! A proxy in front of dockerd records what each list really asks the engine.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::{IMAGE, backend, docker_cli, unique};
use libgo_core::{Compute, Instance, InstanceFilter, InstanceState, LibGo, Result, Volumes};
use libgo_docker::{DockerBackend, DockerConfig};
use tokio::sync::watch;

/// Held by the tests on the shared dockerd: each counts what its lists ask, and the other's
/// image and volume changes would force full lists.
static SHARED_ENGINE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A Unix socket forwarding to dockerd's that records each request line and can cut every
/// connection at once, as a daemon going away would.
struct Proxy {
    path: std::path::PathBuf,
    requests: Arc<Mutex<Vec<String>>>,
    cut: watch::Sender<bool>,
}

impl Proxy {
    async fn start() -> Proxy {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let path = std::env::temp_dir().join(format!("{}.sock", unique("proxy")));
        let listener = tokio::net::UnixListener::bind(&path).expect("bind proxy");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (cut, cut_rx) = watch::channel(false);
        let log = requests.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let log = log.clone();
                let mut cut = cut_rx.clone();
                tokio::spawn(async move {
                    let server = tokio::net::UnixStream::connect("/var/run/docker.sock")
                        .await
                        .expect("dockerd");
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = async move {
                        let mut buf = vec![0u8; 65536];
                        while let Ok(n) = cr.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            let text = String::from_utf8_lossy(&buf[..n]);
                            log.lock().unwrap().extend(
                                text.lines()
                                    .filter(|l| l.ends_with(" HTTP/1.1"))
                                    .map(|l| l.to_string()),
                            );
                            if sw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    };
                    let down = async move {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    };
                    tokio::select! {
                        _ = async { tokio::join!(up, down) } => {}
                        _ = cut.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Proxy {
            path,
            requests,
            cut,
        }
    }

    fn backend(&self) -> Arc<DockerBackend> {
        Arc::new(
            DockerBackend::connect(
                "docker",
                DockerConfig {
                    host: Some(format!("unix://{}", self.path.display())),
                    timeout_secs: 30,
                    tls: None,
                },
            )
            .expect("proxied backend"),
        )
    }

    /// The request lines since the last call.
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        std::fs::remove_file(&self.path).ok();
    }
}

/// A `docker` command line and what the listed container must then show.
type Step = (Vec<String>, Box<dyn Fn(&Instance) -> bool>);

fn full_lists(requests: &[String]) -> usize {
    requests
        .iter()
        .filter(|r| r.contains("/containers/json") && !r.contains("filters="))
        .count()
}

fn id_lists(requests: &[String]) -> usize {
    requests
        .iter()
        .filter(|r| r.contains("/containers/json") && r.contains("filters="))
        .count()
}

fn change_checks(requests: &[String]) -> usize {
    requests
        .iter()
        .filter(|r| r.contains("/events?") && r.contains("until="))
        .count()
}

fn labelled(label: &str) -> InstanceFilter {
    InstanceFilter {
        labels: BTreeMap::from([("test.libgo.inventory".to_string(), label.to_string())]),
        ..Default::default()
    }
}

/// The facade's answer, and dockerd's own full list through the backend, for one label.
async fn both(libgo: &LibGo, label: &str) -> Result<(Vec<Instance>, Vec<Instance>)> {
    let ours = libgo.list_all(&labelled(label)).await?;
    let mut engine = backend().list(&labelled(label)).await?;
    engine.sort_by(|a, b| a.name.cmp(&b.name));
    // The facade says on which host each instance is; the engine's own list cannot.
    for i in &mut engine {
        i.host = libgo_core::LOCAL_HOST.into();
    }
    Ok((ours, engine))
}

#[tokio::test]
async fn lists_follow_every_change_from_memory() -> Result<()> {
    let _engine = SHARED_ENGINE.lock().await;
    let proxy = Proxy::start().await;
    let libgo = LibGo::new();
    libgo.register(proxy.backend())?;
    let label = unique("inv");
    let name = unique("inv-a");

    // The first list is the engine's own.
    libgo.list_all(&InstanceFilter::default()).await?;
    let first = proxy.take();
    assert_eq!(full_lists(&first), 1, "{first:?}");

    // Each check reads again the containers of the last 100 ms of events; past that, and
    // with nothing changed, a list is a change check and no list at all.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    libgo.list_all(&InstanceFilter::default()).await?;
    proxy.take();
    let (ours, engine) = both(&libgo, &label).await?;
    assert!(ours.is_empty() && engine.is_empty());
    let quiet = proxy.take();
    assert_eq!(change_checks(&quiet), 1, "{quiet:?}");
    assert_eq!(full_lists(&quiet) + id_lists(&quiet), 0, "{quiet:?}");

    // Created outside LibGo: read back by id alone.
    let id = docker_cli(&[
        "create",
        "--name",
        &name,
        "--label",
        &format!("test.libgo.inventory={label}"),
        IMAGE,
        "sh",
        "-c",
        "trap 'exit 0' TERM; while true; do sleep 1; done",
    ]);
    let (ours, engine) = both(&libgo, &label).await?;
    assert_eq!(ours, engine);
    assert_eq!(ours.len(), 1);
    assert_eq!(ours[0].id, id);
    assert_eq!(ours[0].state, InstanceState::Stopped);
    let after_create = proxy.take();
    assert_eq!(full_lists(&after_create), 0, "{after_create:?}");
    assert_eq!(id_lists(&after_create), 1, "{after_create:?}");

    // Started, renamed, attached to a network, paused, stopped: each one seen at once.
    let network = unique("inv-net");
    docker_cli(&["network", "create", &network]);
    let renamed = unique("inv-b");
    let steps: Vec<Step> = vec![
        (
            vec!["start".into(), name.clone()],
            Box::new(|i: &Instance| i.state == InstanceState::Running),
        ),
        (vec!["rename".into(), name.clone(), renamed.clone()], {
            let renamed = renamed.clone();
            Box::new(move |i: &Instance| i.name == renamed)
        }),
        (
            vec![
                "network".into(),
                "connect".into(),
                network.clone(),
                id.clone(),
            ],
            {
                let network = network.clone();
                Box::new(move |i: &Instance| i.networks.contains(&network))
            },
        ),
        (
            vec!["pause".into(), id.clone()],
            Box::new(|i: &Instance| i.state == InstanceState::Paused),
        ),
        (
            vec!["unpause".into(), id.clone()],
            Box::new(|i: &Instance| i.state == InstanceState::Running),
        ),
        (
            vec![
                "network".into(),
                "disconnect".into(),
                network.clone(),
                id.clone(),
            ],
            {
                let network = network.clone();
                Box::new(move |i: &Instance| !i.networks.contains(&network))
            },
        ),
        (
            vec!["stop".into(), "-t".into(), "0".into(), id.clone()],
            Box::new(|i: &Instance| i.state == InstanceState::Stopped),
        ),
    ];
    for (args, expected) in &steps {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker_cli(&args);
        let (ours, engine) = both(&libgo, &label).await?;
        assert_eq!(ours, engine, "after docker {args:?}");
        assert!(expected(&ours[0]), "after docker {args:?}: {:?}", ours[0]);
        let requests = proxy.take();
        assert_eq!(
            full_lists(&requests),
            0,
            "after docker {args:?}: {requests:?}"
        );
    }

    // An image change may touch any container's listed image: a full list.
    let tag = format!("{}:v1", unique("libgo-test/inv"));
    docker_cli(&["tag", IMAGE, &tag]);
    let (ours, engine) = both(&libgo, &label).await?;
    assert_eq!(ours, engine);
    assert_eq!(full_lists(&proxy.take()), 1, "after an image tag");
    docker_cli(&["rmi", &tag]);

    // More events than dockerd keeps: a full list, still exact.
    let b = backend();
    for i in 0..130 {
        let v = b
            .volume_create(&libgo_core::VolumeSpec {
                name: format!("{label}-{i}"),
                ..Default::default()
            })
            .await?;
        b.volume_delete(&v.name, false).await?;
    }
    docker_cli(&["start", &id]);
    let (ours, engine) = both(&libgo, &label).await?;
    assert_eq!(ours, engine);
    assert_eq!(ours[0].state, InstanceState::Running);
    assert_eq!(
        full_lists(&proxy.take()),
        1,
        "after an overrun of the event buffer"
    );

    // Removed outside LibGo: gone from the next answer.
    docker_cli(&["rm", "-f", &id]);
    docker_cli(&["network", "rm", &network]);
    let (ours, engine) = both(&libgo, &label).await?;
    assert!(ours.is_empty() && engine.is_empty(), "{ours:?}");
    Ok(())
}

#[tokio::test]
async fn concurrent_lists_share_change_checks() -> Result<()> {
    let _engine = SHARED_ENGINE.lock().await;
    let proxy = Proxy::start().await;
    let libgo = LibGo::new();
    libgo.register(proxy.backend())?;
    libgo.list_all(&InstanceFilter::default()).await?;
    proxy.take();
    let everything = InstanceFilter::default();
    let answers = futures::future::join_all((0..16).map(|_| libgo.list_all(&everything))).await;
    let answers: Vec<Vec<Instance>> = answers.into_iter().collect::<Result<_>>()?;
    assert!(answers.iter().all(|a| *a == answers[0]));
    let requests = proxy.take();
    // The first call checks; the 15 queued behind it share the one check that begins after
    // they all arrived.
    assert_eq!(change_checks(&requests), 2, "{requests:?}");
    assert_eq!(full_lists(&requests), 0, "{requests:?}");
    Ok(())
}

#[tokio::test]
async fn a_lost_engine_connection_forces_a_full_list() -> Result<()> {
    let _engine = SHARED_ENGINE.lock().await;
    let proxy = Proxy::start().await;
    let libgo = LibGo::new();
    libgo.register(proxy.backend())?;
    libgo.list_all(&InstanceFilter::default()).await?;
    libgo.list_all(&InstanceFilter::default()).await?;
    proxy.take();
    // What a dockerd restart does to its clients: every connection closes. Its event buffer
    // would start empty, so the feed must not be trusted across it.
    proxy.cut.send(true).expect("proxy running");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    proxy.cut.send(false).expect("proxy running");
    let label = unique("inv-cut");
    let name = unique("inv-cut");
    let id = docker_cli(&[
        "create",
        "--name",
        &name,
        "--label",
        &format!("test.libgo.inventory={label}"),
        IMAGE,
    ]);
    let (ours, engine) = both(&libgo, &label).await?;
    docker_cli(&["rm", "-f", &id]);
    assert_eq!(ours, engine);
    assert_eq!(ours.len(), 1);
    assert_eq!(full_lists(&proxy.take()), 1, "a full list after the cut");
    Ok(())
}

/// A dockerd of the test's own (own socket, data and exec roots and network namespace, no
/// bridge), so that a test can restart it without disturbing the others.
struct OwnDaemon {
    dir: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl OwnDaemon {
    fn socket(&self) -> String {
        format!("unix://{}/docker.sock", self.dir.display())
    }

    fn cli(&self, args: &[&str]) -> String {
        let host = self.socket();
        let mut all = vec!["-H", host.as_str()];
        all.extend_from_slice(args);
        docker_cli(&all)
    }

    fn start(dir: std::path::PathBuf) -> OwnDaemon {
        let mut daemon = OwnDaemon { dir, child: None };
        daemon.run();
        daemon
    }

    fn run(&mut self) {
        let d = &self.dir;
        let log = std::fs::File::create(d.join("dockerd.log")).expect("log file");
        // In a network namespace of its own: with `--bridge=none` dockerd deletes the host's
        // `docker0`, which the main dockerd needs.
        let child = Command::new("unshare")
            .args(["--net", "dockerd"])
            .args(["--data-root", &format!("{}/data", d.display())])
            .args(["--exec-root", &format!("{}/exec", d.display())])
            .args(["--pidfile", &format!("{}/dockerd.pid", d.display())])
            .args(["-H", &self.socket()])
            .args(["--bridge=none", "--iptables=false", "--ip-masq=false"])
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("dockerd");
        self.child = Some(child);
        for _ in 0..300 {
            let up = Command::new("docker")
                .args(["-H", &self.socket(), "version"])
                .output()
                .is_ok_and(|o| o.status.success());
            if up {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!(
            "own dockerd did not answer: {}",
            std::fs::read_to_string(d.join("dockerd.log")).unwrap_or_default()
        );
    }

    /// Stops dockerd as an init system would (SIGTERM, which also stops its containers).
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .expect("kill");
            child.wait().expect("dockerd exit");
        }
    }
}

impl Drop for OwnDaemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            let socket = self.socket();
            let ids = Command::new("docker")
                .args(["-H", &socket, "ps", "-aq"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
                .unwrap_or_default();
            for id in ids.split_whitespace() {
                let _ = Command::new("docker")
                    .args(["-H", &socket, "rm", "-f", id])
                    .output();
            }
            self.stop();
        }
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.dir.join("exec"))
            .output();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

#[tokio::test]
async fn a_restarted_dockerd_is_listed_afresh() -> Result<()> {
    // Short: containerd's sockets live under the exec root and Unix socket paths are short.
    let dir = std::path::PathBuf::from(format!("/tmp/{}", unique("lgd")));
    std::fs::create_dir_all(&dir).expect("daemon dir");
    let mut daemon = OwnDaemon::start(dir);
    let image_tar = daemon.dir.join("image.tar");
    {
        // `docker save` is an image event on the shared dockerd.
        let _engine = SHARED_ENGINE.lock().await;
        docker_cli(&["save", "-o", &image_tar.display().to_string(), IMAGE]);
    }
    daemon.cli(&["load", "-i", &image_tar.display().to_string()]);
    let name = unique("inv-restart");
    let id = daemon.cli(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        &name,
        IMAGE,
        "sh",
        "-c",
        "trap 'exit 0' TERM; while true; do sleep 1; done",
    ]);
    let own = Arc::new(DockerBackend::connect(
        "docker",
        DockerConfig {
            host: Some(daemon.socket()),
            timeout_secs: 30,
            tls: None,
        },
    )?);
    let libgo = LibGo::new();
    libgo.register(own.clone())?;
    let running = libgo.list_all(&InstanceFilter::default()).await?;
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].state, InstanceState::Running);
    // The shutdown stops the container; the events saying so die with that daemon's buffer.
    daemon.stop();
    daemon.run();
    let listed = libgo.list_all(&InstanceFilter::default()).await?;
    let mut engine = own.list(&InstanceFilter::default()).await?;
    for i in &mut engine {
        i.host = libgo_core::LOCAL_HOST.into();
    }
    assert_eq!(listed, engine);
    assert_eq!(listed[0].id, id);
    assert_eq!(listed[0].state, InstanceState::Stopped, "{listed:?}");
    Ok(())
}
