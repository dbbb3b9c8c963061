//! `libgo` against a server behind HTTPS (a TLS-terminating proxy in front of a test
//! server, with a CA of the test's own that the CLI trusts through `SSL_CERT_FILE`): REST
//! calls and the WebSocket event stream both go over TLS.

#[path = "../../libgo-http/tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

const IMAGE: &str = "libgo-test/busybox:latest";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`ca.pem`) and a certificate for 127.0.0.1 it signed (`server.der`, `server.key.der`).
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=libgo test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").expect("ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-outform",
            "DER",
            "-out",
            "server.der",
        ],
    );
    openssl(
        dir,
        &[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            "server.key",
            "-outform",
            "DER",
            "-out",
            "server.key.der",
        ],
    );
}

/// Terminates TLS on a loopback port and pipes each connection to `backend`.
async fn tls_proxy(dir: &Path, backend: String) -> String {
    let cert = CertificateDer::from(std::fs::read(dir.join("server.der")).expect("cert"));
    let key = PrivateKeyDer::try_from(std::fs::read(dir.join("server.key.der")).expect("key"))
        .expect("a PKCS#8 key");
    let config = ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .expect("server config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, backend) = (acceptor.clone(), backend.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(&backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    format!("https://127.0.0.1:{port}")
}

fn libgo(config: &Path, ca: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_libgo"));
    cmd.env("LIBGO_CONFIG_DIR", config)
        .env("SSL_CERT_FILE", ca)
        .env_remove("LIBGO_REMOTE")
        .env_remove("LIBGO_API_KEY")
        .env("NO_COLOR", "1");
    cmd
}

async fn run(mut cmd: Command, stdin: Option<&str>) -> std::process::Output {
    let stdin = stdin.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("libgo runs");
        if let Some(s) = stdin {
            use std::io::Write;
            let _ = child.stdin.take().expect("stdin").write_all(s.as_bytes());
        }
        drop(child.stdin.take());
        child.wait_with_output().expect("libgo ends")
    })
    .await
    .expect("join")
}

fn ok(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "libgo failed ({:?}): {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_over_https_with_rest_and_websockets() {
    let s = common::start(true, |_| {}).await;
    let certs = tempfile::tempdir().expect("temp dir");
    certificates(certs.path());
    let ca = certs.path().join("ca.pem");
    let base = tls_proxy(
        certs.path(),
        s.base.trim_start_matches("http://").to_string(),
    )
    .await;
    let config = tempfile::tempdir().expect("temp dir");
    let c = config.path();

    ok(&run(
        {
            let mut cmd = libgo(c, &ca);
            cmd.args(["remote", "add", "tls", &base]);
            cmd
        },
        None,
    )
    .await);
    // Without the CA, the server is not trusted.
    let mut untrusted = libgo(c, &certs.path().join("ext.cnf"));
    untrusted.args(["login", "--password-stdin"]);
    let o = run(untrusted, Some(&format!("{}\n", common::ADMIN_PASSWORD))).await;
    assert!(
        !o.status.success(),
        "an untrusted certificate is refused: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    ok(&run(
        {
            let mut cmd = libgo(c, &ca);
            cmd.args(["login", "--password-stdin"]);
            cmd
        },
        Some(&format!("{}\n", common::ADMIN_PASSWORD)),
    )
    .await);

    // The event stream (a WebSocket, so wss://) sees a container made over HTTPS.
    let mut events = libgo(c, &ca);
    events
        .args(["events", "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut events = events.spawn().expect("libgo events");
    let stdout = events.stdout.take().expect("stdout");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let name = format!(
        "cli-tls-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    ok(&run(
        {
            let mut cmd = libgo(c, &ca);
            cmd.args(["run", IMAGE, "--name", &name, "--", "sleep", "300"]);
            cmd
        },
        None,
    )
    .await);
    let seen = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = rx.recv().await {
            if line.contains(&name) && line.contains("started") {
                return line;
            }
        }
        String::new()
    })
    .await
    .expect("the start reaches the event stream over wss");
    assert!(seen.contains(&name), "{seen}");
    let _ = events.kill();
    let _ = events.wait();

    let out = ok(&run(
        {
            let mut cmd = libgo(c, &ca);
            cmd.args(["exec", &name, "--", "echo", "over-tls"]);
            cmd
        },
        None,
    )
    .await);
    assert_eq!(out, "over-tls\n");
    ok(&run(
        {
            let mut cmd = libgo(c, &ca);
            cmd.args(["rm", "--force", &name]);
            cmd
        },
        None,
    )
    .await);
    s.stop().await;
}
