//! `libgo` as a person runs it, against the real Docker and libvirt: embedded, and remote
//! against a libgo server this test starts. Needs `scripts/docker.sh` and
//! `scripts/libvirt.sh` (the test suite runs them).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const IMAGE: &str = "libgo-test/busybox:latest";

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Runs `libgo args…` with its config in `config_dir`; `stdin` is fed to it.
async fn libgo(config_dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let dir = config_dir.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let stdin = stdin.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        let mut cmd = assert_cmd::Command::cargo_bin("libgo").expect("the libgo binary");
        cmd.env("LIBGO_CONFIG_DIR", &dir)
            .env_remove("LIBGO_REMOTE")
            .env_remove("LIBGO_API_KEY")
            .env_remove("LIBGO_PASSWORD")
            .env("NO_COLOR", "1")
            // The test guest boots under TCG everywhere (nested KVM may not run it).
            .env("LIBGO_KVM_ACCELERATOR", "tcg")
            .args(&args)
            .timeout(Duration::from_secs(180));
        if let Some(s) = stdin {
            cmd.write_stdin(s);
        }
        cmd.output().expect("libgo runs")
    })
    .await
    .expect("join")
}

/// Deletes instances when dropped, so a failing test leaves nothing running.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(mut cmd) = assert_cmd::Command::cargo_bin("libgo") {
            let _ = cmd
                .env("LIBGO_CONFIG_DIR", std::env::temp_dir())
                .args(["--local", "-q", "rm", "--force"])
                .args(&self.0)
                .timeout(Duration::from_secs(60))
                .output();
        }
    }
}

/// `libgo` in a real terminal: a tmux session (120x40) a test types into and reads, as a
/// person would. The shell prints `EXITED-<code>` when libgo ends.
struct Tmux {
    session: String,
}

impl Tmux {
    fn start(config_dir: &Path, args: &[&str]) -> Tmux {
        Tmux::start_with(config_dir, args, "NO_COLOR=1")
    }

    /// With `env` (`NAME=value …`) in libgo's environment.
    fn start_with(config_dir: &Path, args: &[&str], env: &str) -> Tmux {
        let session = unique("libgo-tty");
        let bin = assert_cmd::cargo::cargo_bin("libgo");
        let quoted: Vec<String> = std::iter::once(bin.display().to_string())
            .chain(args.iter().map(|a| a.to_string()))
            .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
            .collect();
        let script = format!(
            "env LIBGO_CONFIG_DIR='{}' {env} LIBGO_KVM_ACCELERATOR=tcg {}; echo EXITED-$?; sleep 600",
            config_dir.display(),
            quoted.join(" ")
        );
        let status = std::process::Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-x",
                "120",
                "-y",
                "40",
                "-s",
                &session,
                &script,
            ])
            .status()
            .expect("tmux runs (scripts/test-tools.sh installs it)");
        assert!(status.success(), "tmux new-session");
        Tmux { session }
    }

    fn keys(&self, keys: &[&str]) {
        let status = std::process::Command::new("tmux")
            .args(["send-keys", "-t", &self.session])
            .args(keys)
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    fn resize(&self, columns: u16, rows: u16) {
        let status = std::process::Command::new("tmux")
            .args(["resize-window", "-t", &self.session])
            .args(["-x", &columns.to_string(), "-y", &rows.to_string()])
            .status()
            .expect("tmux resize-window");
        assert!(status.success());
    }

    /// The screen with its colours, as escape sequences.
    fn screen_with_colours(&self) -> String {
        let out = std::process::Command::new("tmux")
            .args([
                "capture-pane",
                "-e",
                "-p",
                "-J",
                "-S",
                "-200",
                "-t",
                &self.session,
            ])
            .output()
            .expect("tmux capture-pane");
        text(&out.stdout)
    }

    fn screen(&self) -> String {
        let out = std::process::Command::new("tmux")
            .args([
                "capture-pane",
                "-p",
                "-J",
                "-S",
                "-200",
                "-t",
                &self.session,
            ])
            .output()
            .expect("tmux capture-pane");
        text(&out.stdout)
    }

    async fn wait_for(&self, wanted: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let screen = self.screen();
            if screen.contains(wanted) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "{wanted:?} not on the screen:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// A container's shell through `libgo console` in a terminal: typing reaches it, Ctrl-C
/// interrupts its command (not libgo), Ctrl-] detaches and leaves it running.
async fn console_round_trip(dir: &Path, mode: &[&str]) {
    let name = unique("clitty");
    let _cleanup = Cleanup(vec![name.clone()]);
    let args = in_mode(mode, &["run", IMAGE, "--name", &name, "-t", "--", "sh"]);
    ok(&libgo(dir, &args, None).await);
    let args = in_mode(mode, &["console", &name]);
    let tty = Tmux::start(dir, &args);
    tty.wait_for("Ctrl-] detaches", 30).await;
    tty.keys(&["echo hello-$((6*7))", "Enter"]);
    tty.wait_for("hello-42", 30).await;
    tty.keys(&["sleep 300", "Enter"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    tty.keys(&["C-c"]);
    tty.keys(&["echo after-$((40+2))", "Enter"]);
    let screen = tty.wait_for("after-42", 30).await;
    assert!(!screen.contains("EXITED-"), "Ctrl-C ended libgo:\n{screen}");
    tty.keys(&["C-]"]);
    let screen = tty.wait_for("EXITED-", 30).await;
    assert!(
        screen.contains("detached") && screen.contains("EXITED-0"),
        "{screen}"
    );
    let args = in_mode(mode, &["info", &name, "--format", "json"]);
    assert_eq!(json(&libgo(dir, &args, None).await)["state"], "running");
}

/// `exec -it` in a terminal, as `docker exec -it`: the command sees the window's size and
/// its changes, Ctrl-C interrupts what runs inside, and libgo exits with the shell's code;
/// `exec -i` from a pipe passes the input, keeps stdout and stderr apart, and the code.
async fn exec_tty_round_trip(dir: &Path, mode: &[&str]) {
    let name = unique("cliexec");
    let _cleanup = Cleanup(vec![name.clone()]);
    let args = in_mode(mode, &["run", IMAGE, "--name", &name, "--", "sleep", "300"]);
    ok(&libgo(dir, &args, None).await);

    let args = in_mode(
        mode,
        &[
            "exec",
            "-i",
            &name,
            "--",
            "sh",
            "-c",
            "cat; echo to-stderr >&2; exit 7",
        ],
    );
    let o = libgo(dir, &args, Some("piped-in\n")).await;
    assert_eq!(o.status.code(), Some(7), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "piped-in\n");
    assert_eq!(text(&o.stderr), "to-stderr\n");

    let args = in_mode(mode, &["exec", "-it", &name, "--", "sh"]);
    let tty = Tmux::start(dir, &args);
    tokio::time::sleep(Duration::from_millis(500)).await;
    tty.keys(&["stty size", "Enter"]);
    tty.wait_for("40 120", 30).await;
    tty.keys(&["sleep 300", "Enter"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    tty.keys(&["C-c"]);
    tty.keys(&["echo after-$((40+2))", "Enter"]);
    let screen = tty.wait_for("after-42", 30).await;
    assert!(!screen.contains("EXITED-"), "Ctrl-C ended libgo:\n{screen}");
    tty.resize(100, 30);
    tokio::time::sleep(Duration::from_millis(500)).await;
    tty.keys(&["clear; stty size", "Enter"]);
    tty.wait_for("30 100", 30).await;
    tty.keys(&["exit 5", "Enter"]);
    tty.wait_for("EXITED-5", 30).await;
}

/// `image build` of a directory: the image has what its Dockerfile made, and runs.
async fn build_round_trip(dir: &Path, mode: &[&str]) {
    let context = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        context.path().join("Dockerfile"),
        format!(
            "FROM {IMAGE}\nARG GREETING\nCOPY hello.txt /hello.txt\nRUN echo $GREETING > /built\n"
        ),
    )
    .expect("Dockerfile");
    std::fs::write(context.path().join("hello.txt"), "from-the-context\n").expect("file");
    let tag = format!("{}:1", unique("cli-built"));
    let context_arg = context.path().display().to_string();
    let args = in_mode(
        mode,
        &[
            "image",
            "build",
            &context_arg,
            "-t",
            &tag,
            "--build-arg",
            "GREETING=built-by-cli",
        ],
    );
    ok(&libgo(dir, &args, None).await);
    let name = unique("clibuilt");
    let _cleanup = Cleanup(vec![name.clone()]);
    let args = in_mode(mode, &["run", &tag, "--name", &name, "--", "sleep", "60"]);
    ok(&libgo(dir, &args, None).await);
    let args = in_mode(mode, &["exec", &name, "--", "cat", "/built", "/hello.txt"]);
    assert_eq!(
        ok(&libgo(dir, &args, None).await),
        "built-by-cli\nfrom-the-context\n"
    );
    let args = in_mode(mode, &["rm", "-f", &name]);
    ok(&libgo(dir, &args, None).await);
    let args = in_mode(mode, &["image", "rm", &tag]);
    ok(&libgo(dir, &args, None).await);
}

/// `create --count`: a batch, each item reported; one that cannot be made does not stop
/// the others, and its kind is the exit code.
async fn batch_round_trip(dir: &Path, mode: &[&str]) {
    let stem = unique("clib");
    let pattern = format!("{stem}-{{n}}");
    let names: Vec<String> = (1..=3).map(|n| format!("{stem}-{n}")).collect();
    let _cleanup = Cleanup(names.clone());
    // Number 2 exists already.
    let args = in_mode(
        mode,
        &["create", IMAGE, "--name", &names[1], "--", "sleep", "60"],
    );
    ok(&libgo(dir, &args, None).await);
    let args = in_mode(
        mode,
        &[
            "run", IMAGE, "--name", &pattern, "--count", "3", "--", "sleep", "60",
        ],
    );
    let o = libgo(dir, &args, None).await;
    assert_eq!(o.status.code(), Some(12), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [names[0].as_str(), names[2].as_str()],
        "{out}"
    );
    assert!(text(&o.stderr).contains(&names[1]), "{}", text(&o.stderr));
    let args = in_mode(mode, &["ls", &stem, "--format", "json"]);
    let list = json(&libgo(dir, &args, None).await);
    assert_eq!(
        find(&list, &names[0]).map(|i| i["state"].clone()),
        Some(json!("running")),
        "{list}"
    );
    assert_eq!(
        find(&list, &names[2]).map(|i| i["state"].clone()),
        Some(json!("running")),
        "{list}"
    );
    let mut args = in_mode(mode, &["rm", "-f"]);
    args.extend(names.iter().map(String::as_str));
    ok(&libgo(dir, &args, None).await);
}

/// Networks, volumes, templates and pools as a user drives them.
async fn resources_round_trip(dir: &Path, mode: &[&str]) {
    // A container joins and leaves a network.
    let net = unique("clinet");
    let box_name = unique("clinetc");
    let _cleanup = Cleanup(vec![box_name.clone()]);
    ok(&libgo(
        dir,
        &in_mode(mode, &["network", "create", &net, "--backend", "docker"]),
        None,
    )
    .await);
    ok(&libgo(
        dir,
        &in_mode(
            mode,
            &["run", IMAGE, "--name", &box_name, "--", "sleep", "120"],
        ),
        None,
    )
    .await);
    ok(&libgo(
        dir,
        &in_mode(mode, &["network", "connect", &net, &box_name]),
        None,
    )
    .await);
    let info = json(
        &libgo(
            dir,
            &in_mode(
                mode,
                &[
                    "network",
                    "info",
                    &net,
                    "--backend",
                    "docker",
                    "--format",
                    "json",
                ],
            ),
            None,
        )
        .await,
    );
    let on_it = info["instances"].to_string();
    let me = json(
        &libgo(
            dir,
            &in_mode(mode, &["info", &box_name, "--format", "json"]),
            None,
        )
        .await,
    );
    assert!(
        on_it.contains(me["id"].as_str().unwrap_or("?")) || on_it.contains(&box_name),
        "{info}"
    );
    ok(&libgo(
        dir,
        &in_mode(mode, &["network", "disconnect", &net, &box_name]),
        None,
    )
    .await);
    let info = json(
        &libgo(
            dir,
            &in_mode(
                mode,
                &[
                    "network",
                    "info",
                    &net,
                    "--backend",
                    "docker",
                    "--format",
                    "json",
                ],
            ),
            None,
        )
        .await,
    );
    assert_eq!(info["instances"], json!([]), "{info}");
    ok(&libgo(dir, &in_mode(mode, &["rm", "-f", &box_name]), None).await);
    ok(&libgo(
        dir,
        &in_mode(mode, &["network", "rm", &net, "--backend", "docker"]),
        None,
    )
    .await);

    // A libvirt volume grows and is copied.
    let vol = unique("clivol");
    let copy = format!("{vol}-copy");
    ok(&libgo(
        dir,
        &in_mode(
            mode,
            &[
                "volume",
                "create",
                &vol,
                "--size",
                "16MiB",
                "--backend",
                "kvm",
            ],
        ),
        None,
    )
    .await);
    ok(&libgo(
        dir,
        &in_mode(
            mode,
            &["volume", "resize", &vol, "32MiB", "--backend", "kvm"],
        ),
        None,
    )
    .await);
    let info = json(
        &libgo(
            dir,
            &in_mode(
                mode,
                &[
                    "volume",
                    "info",
                    &vol,
                    "--backend",
                    "kvm",
                    "--format",
                    "json",
                ],
            ),
            None,
        )
        .await,
    );
    assert_eq!(info["capacityBytes"], 32u64 << 20, "{info}");
    ok(&libgo(
        dir,
        &in_mode(mode, &["volume", "clone", &vol, &copy, "--backend", "kvm"]),
        None,
    )
    .await);
    let info = json(
        &libgo(
            dir,
            &in_mode(
                mode,
                &[
                    "volume",
                    "info",
                    &copy,
                    "--backend",
                    "kvm",
                    "--format",
                    "json",
                ],
            ),
            None,
        )
        .await,
    );
    assert_eq!(info["capacityBytes"], 32u64 << 20, "{info}");
    ok(&libgo(
        dir,
        &in_mode(mode, &["volume", "rm", &vol, &copy, "--backend", "kvm"]),
        None,
    )
    .await);

    // A template gives a VM its size.
    let tpl = unique("clitpl");
    let vm = unique("clitplvm");
    let _vm_cleanup = Cleanup(vec![vm.clone()]);
    ok(&libgo(
        dir,
        &in_mode(
            mode,
            &[
                "template",
                "create",
                &tpl,
                "--cpus",
                "2",
                "--memory",
                "128MiB",
                "--backend",
                "kvm",
            ],
        ),
        None,
    )
    .await);
    let t = json(
        &libgo(
            dir,
            &in_mode(
                mode,
                &[
                    "template",
                    "info",
                    &tpl,
                    "--backend",
                    "kvm",
                    "--format",
                    "json",
                ],
            ),
            None,
        )
        .await,
    );
    assert_eq!(t["cpus"], 2, "{t}");
    ok(&libgo(
        dir,
        &in_mode(
            mode,
            &[
                "create",
                "--vm",
                "--template",
                &tpl,
                "--name",
                &vm,
                "--disk",
                "16MiB",
            ],
        ),
        None,
    )
    .await);
    let i = json(
        &libgo(
            dir,
            &in_mode(mode, &["info", &vm, "--format", "json"]),
            None,
        )
        .await,
    );
    assert_eq!(
        (i["cpus"].as_f64(), i["memoryBytes"].as_u64()),
        (Some(2.0), Some(128 << 20)),
        "{i}"
    );
    ok(&libgo(dir, &in_mode(mode, &["rm", "-f", &vm]), None).await);
    ok(&libgo(
        dir,
        &in_mode(mode, &["template", "rm", &tpl, "--backend", "kvm"]),
        None,
    )
    .await);
    let o = libgo(
        dir,
        &in_mode(mode, &["template", "info", &tpl, "--backend", "kvm"]),
        None,
    )
    .await;
    assert_eq!(o.status.code(), Some(10), "{}", text(&o.stderr));

    let pools = json(
        &libgo(
            dir,
            &in_mode(mode, &["pool", "ls", "--format", "json"]),
            None,
        )
        .await,
    );
    assert!(find(&pools, "default").is_some(), "{pools}");
    let p = json(
        &libgo(
            dir,
            &in_mode(
                mode,
                &[
                    "pool",
                    "info",
                    "default",
                    "--backend",
                    "kvm",
                    "--format",
                    "json",
                ],
            ),
            None,
        )
        .await,
    );
    assert!(p["capacityBytes"].as_u64().is_some_and(|c| c > 0), "{p}");
}

/// Colour on a terminal only, and never with `NO_COLOR`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colours_only_on_a_terminal_without_no_color() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let name = unique("clicolour");
    let _cleanup = Cleanup(vec![name.clone()]);
    ok(&libgo(
        d,
        &[
            "--local", "run", IMAGE, "--name", &name, "--", "sleep", "120",
        ],
        None,
    )
    .await);
    // "running" coloured on a terminal (an SGR sequence, ending in `m`, right before it).
    let tty = Tmux::start_with(d, &["--local", "ls", &name], "TERM=xterm-256color");
    tty.wait_for("EXITED-0", 30).await;
    let screen = tty.screen_with_colours();
    assert!(
        screen.contains("mrunning") && screen.contains('\u{1b}'),
        "{screen:?}"
    );
    let tty = Tmux::start_with(d, &["--local", "ls", &name], "NO_COLOR=1");
    tty.wait_for("EXITED-0", 30).await;
    let screen = tty.screen_with_colours();
    assert!(
        screen.contains(" running") && !screen.contains("mrunning"),
        "{screen:?}"
    );
    // Piped: plain text.
    let out = ok(&libgo(d, &["--local", "ls", &name], None).await);
    assert!(!out.contains('\u{1b}'), "{out:?}");
    ok(&libgo(d, &["--local", "rm", "-f", &name], None).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_bars_show_on_a_terminal_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let reference = format!("127.0.0.1:5000/{}:1", unique("cli-progress"));
    ok(&libgo(d, &["image", "tag", IMAGE, &reference], None).await);
    // Not a terminal: no bar, only the result.
    let o = libgo(d, &["image", "push", &reference], None).await;
    ok(&o);
    assert!(!text(&o.stderr).contains('%'), "{}", text(&o.stderr));
    ok(&libgo(d, &["image", "rm", &reference], None).await);
    // A terminal: the bar, finished.
    let tty = Tmux::start(d, &["image", "pull", &reference]);
    let screen = tty.wait_for("EXITED-", 120).await;
    assert!(screen.contains("EXITED-0"), "{screen}");
    assert!(
        screen
            .lines()
            .any(|l| l.contains(&format!("pulling {reference}")) && l.contains("100%")),
        "{screen}"
    );
    // -q: none.
    ok(&libgo(d, &["image", "rm", &reference], None).await);
    let tty = Tmux::start(d, &["-q", "image", "pull", &reference]);
    let screen = tty.wait_for("EXITED-", 120).await;
    assert!(
        screen.contains("EXITED-0") && !screen.contains("100%"),
        "{screen}"
    );
    ok(&libgo(d, &["image", "rm", &reference], None).await);
}

/// `logs -f` prints lines as the instance writes them.
async fn follow_round_trip(dir: &Path, mode: &[&str]) {
    let name = unique("clifollow");
    let _cleanup = Cleanup(vec![name.clone()]);
    let script = "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do echo tick-$i; sleep 1; done";
    let args = in_mode(
        mode,
        &["run", IMAGE, "--name", &name, "--", "sh", "-c", script],
    );
    ok(&libgo(dir, &args, None).await);
    let args = in_mode(mode, &["logs", "-f", &name]);
    let tty = Tmux::start(dir, &args);
    let screen = tty.wait_for("tick-3", 30).await;
    // Still following: the later ticks arrive on the same run.
    assert!(!screen.contains("EXITED-"), "{screen}");
    tty.wait_for("tick-6", 30).await;
    tty.keys(&["C-c"]);
}

/// `args` after the mode's options (`--local`, `--remote NAME`, or none).
fn in_mode<'a>(mode: &[&'a str], args: &[&'a str]) -> Vec<&'a str> {
    mode.iter().chain(args).copied().collect()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

fn json(o: &Output) -> Value {
    let out = ok(o);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn find<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|i| i["name"] == name)
}

/// What a user checks of a container, through `libgo` with `mode` (`--local` or
/// `--remote NAME`): it runs, answers exec with its own exit code and streams, shows its
/// log, and goes away.
async fn container_round_trip(dir: &Path, mode: &[&str]) {
    let name = unique("cli");
    let _cleanup = Cleanup(vec![name.clone()]);
    let out = ok(&libgo(
        dir,
        &in_mode(
            mode,
            &[
                "run",
                IMAGE,
                "--name",
                &name,
                "-e",
                "GREETING=hi-from-cli",
                "-l",
                "suite=cli",
                "--",
                "sh",
                "-c",
                "echo started-$GREETING; sleep 300",
            ],
        ),
        None,
    )
    .await);
    assert_eq!(out.trim(), name);

    let list = json(
        &libgo(
            dir,
            &in_mode(mode, &["ls", "--format", "json", "--label", "suite=cli"]),
            None,
        )
        .await,
    );
    let me = find(&list, &name).unwrap_or_else(|| panic!("{name} not listed: {list}"));
    assert_eq!(me["state"], "running");
    assert_eq!(me["kind"], "container");

    // The table a person reads has the documented columns and the instance's row.
    let table = ok(&libgo(dir, &in_mode(mode, &["list", &name]), None).await);
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME", "KIND", "STATE", "BACKEND", "HOST", "IPV4", "CREATED", "GROUP"
        ]
    );
    assert!(
        lines.any(|l| l.starts_with(&name) && l.contains("running")),
        "{table}"
    );

    // exec passes stdout, stderr and the exit code through.
    let o = libgo(
        dir,
        &in_mode(
            mode,
            &[
                "exec",
                &name,
                "--",
                "sh",
                "-c",
                "echo out-$GREETING; echo err >&2; exit 3",
            ],
        ),
        None,
    )
    .await;
    assert_eq!(o.status.code(), Some(3), "stderr: {}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "out-hi-from-cli\n");
    assert_eq!(text(&o.stderr), "err\n");

    // A snapshot brings back what the container held when it was taken.
    ok(&libgo(
        dir,
        &in_mode(
            mode,
            &["exec", &name, "--", "sh", "-c", "echo before > /marker"],
        ),
        None,
    )
    .await);
    ok(&libgo(
        dir,
        &in_mode(
            mode,
            &["snapshot", "create", &name, "s1", "--description", "first"],
        ),
        None,
    )
    .await);
    let snaps = json(
        &libgo(
            dir,
            &in_mode(mode, &["snapshot", "ls", &name, "--format", "json"]),
            None,
        )
        .await,
    );
    assert!(
        find(&snaps, "s1").is_some_and(|s| s["description"] == "first"),
        "{snaps}"
    );
    let snap = json(
        &libgo(
            dir,
            &in_mode(mode, &["snapshot", "info", &name, "s1", "--format", "json"]),
            None,
        )
        .await,
    );
    assert_eq!(
        (&snap["name"], &snap["current"], &snap["description"]),
        (&json!("s1"), &json!(true), &json!("first")),
        "{snap}"
    );
    let missing = libgo(
        dir,
        &in_mode(mode, &["snapshot", "info", &name, "nope"]),
        None,
    )
    .await;
    assert_eq!(missing.status.code(), Some(10), "{}", text(&missing.stderr));
    // What the backends support, all of them or one.
    let caps = json(
        &libgo(
            dir,
            &in_mode(mode, &["capabilities", "--format", "json"]),
            None,
        )
        .await,
    );
    let docker = caps
        .as_array()
        .and_then(|a| a.iter().find(|c| c["backend"] == "docker"))
        .unwrap_or_else(|| panic!("no docker in {caps}"));
    assert_eq!(
        docker["capabilities"]["kinds"],
        json!(["container"]),
        "{caps}"
    );
    assert_eq!(docker["capabilities"]["disks"], false, "{caps}");
    let table = ok(&libgo(dir, &in_mode(mode, &["capabilities", "docker"]), None).await);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines.len() == 2 && lines[0].starts_with("BACKEND") && lines[1].starts_with("docker"),
        "{table}"
    );
    assert!(lines[1].contains("container"), "{table}");
    let unknown = libgo(dir, &in_mode(mode, &["capabilities", "nope"]), None).await;
    assert_eq!(unknown.status.code(), Some(10), "{}", text(&unknown.stderr));
    ok(&libgo(
        dir,
        &in_mode(
            mode,
            &["exec", &name, "--", "sh", "-c", "echo after > /marker"],
        ),
        None,
    )
    .await);
    ok(&libgo(
        dir,
        &in_mode(mode, &["snapshot", "revert", &name, "s1"]),
        None,
    )
    .await);
    assert_eq!(
        ok(&libgo(
            dir,
            &in_mode(mode, &["exec", &name, "--", "cat", "/marker"]),
            None
        )
        .await),
        "before\n"
    );
    ok(&libgo(dir, &in_mode(mode, &["snapshot", "rm", &name, "s1"]), None).await);
    let snaps = json(
        &libgo(
            dir,
            &in_mode(mode, &["snapshot", "ls", &name, "--format", "json"]),
            None,
        )
        .await,
    );
    assert!(find(&snaps, "s1").is_none(), "{snaps}");

    // The log has the container's first line.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = ok(&libgo(dir, &in_mode(mode, &["logs", &name, "--tail", "10"]), None).await);
        if log.contains("started-hi-from-cli") {
            break;
        }
        assert!(Instant::now() < deadline, "log: {log}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Several names at once, one missing: the others are done, the exit code says NOT_FOUND.
    let missing = unique("missing");
    let o = libgo(
        dir,
        &in_mode(mode, &["stop", "--timeout", "1", &name, &missing]),
        None,
    )
    .await;
    assert_eq!(o.status.code(), Some(10), "stderr: {}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), name);
    assert!(
        text(&o.stderr).contains("Error: NOT_FOUND:") && text(&o.stderr).contains(&missing),
        "{}",
        text(&o.stderr)
    );
    let info = json(
        &libgo(
            dir,
            &in_mode(mode, &["info", &name, "--format", "json"]),
            None,
        )
        .await,
    );
    assert_eq!(info["state"], "stopped");

    ok(&libgo(dir, &in_mode(mode, &["delete", "--force", &name]), None).await);
    let list = json(&libgo(dir, &in_mode(mode, &["ls", "--format", "json"]), None).await);
    assert!(find(&list, &name).is_none(), "{name} still listed");
    let o = libgo(dir, &in_mode(mode, &["info", &name]), None).await;
    assert_eq!(o.status.code(), Some(10));
    let err = text(&o.stderr);
    assert!(err.starts_with("Error: NOT_FOUND: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_one_line_with_its_exit_code_and_creates_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let name = unique("cli-bad");
    // Bad memory size: refused by the argument parser (clap's code 2).
    let o = libgo(
        dir.path(),
        &["run", IMAGE, "--name", &name, "--memory", "lots"],
        None,
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    // A bad port: INVALID_INPUT, exit 11.
    let o = libgo(
        dir.path(),
        &["run", IMAGE, "--name", &name, "-p", "80:x"],
        None,
    )
    .await;
    assert_eq!(o.status.code(), Some(11), "{}", text(&o.stderr));
    assert!(text(&o.stderr).starts_with("Error: INVALID_INPUT: "));
    // A bad name: the library's validation, exit 11, nothing made.
    let o = libgo(dir.path(), &["run", IMAGE, "--name", "Bad Name!"], None).await;
    assert_eq!(o.status.code(), Some(11), "{}", text(&o.stderr));
    let list = json(&libgo(dir.path(), &["ls", "--format", "json"], None).await);
    assert!(find(&list, "Bad Name!").is_none());
    assert!(find(&list, &name).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn formats_completions_and_man_pages() {
    let dir = tempfile::tempdir().expect("temp dir");
    let name = unique("cli-fmt");
    let _cleanup = Cleanup(vec![name.clone()]);
    ok(&libgo(
        dir.path(),
        &["create", IMAGE, "--name", &name, "--", "sleep", "60"],
        None,
    )
    .await);
    let yaml = ok(&libgo(dir.path(), &["ls", &name, "--format", "yaml"], None).await);
    assert!(yaml.contains(&format!("name: {name}")), "{yaml}");
    let csv = ok(&libgo(dir.path(), &["ls", &name, "--format", "csv"], None).await);
    let mut rows = csv.lines();
    assert_eq!(
        rows.next(),
        Some("NAME,KIND,STATE,BACKEND,HOST,IPV4,CREATED,GROUP")
    );
    let row: Vec<&str> = rows.next().unwrap_or_default().split(',').collect();
    assert_eq!(
        &row[..5],
        [name.as_str(), "container", "stopped", "docker", "local"],
        "{csv}"
    );
    ok(&libgo(dir.path(), &["rm", &name], None).await);

    let bash = ok(&libgo(dir.path(), &["completion", "bash"], None).await);
    assert!(
        bash.contains("_libgo()") && bash.contains("snapshot"),
        "bash completion"
    );
    let fish = ok(&libgo(dir.path(), &["completion", "fish"], None).await);
    assert!(fish.contains("complete -c libgo"));
    let man = dir.path().join("man");
    ok(&libgo(dir.path(), &["man", man.to_str().unwrap_or_default()], None).await);
    let page = std::fs::read_to_string(man.join("libgo-run.1")).expect("libgo-run.1");
    assert!(
        page.contains("\\-\\-publish") || page.contains("publish"),
        "{page}"
    );
    assert!(man.join("libgo.1").exists());
}

/// The test guest (`scripts/libvirt.sh` puts it in the cache).
fn guest() -> PathBuf {
    let cache = std::env::var("LIBGO_CACHE").unwrap_or_else(|_| "/var/cache/libgo".into());
    PathBuf::from(cache).join("guest")
}

/// A VM through `libgo` with `mode`: it boots (its serial log shows the guest), `exec`
/// runs in it through the guest agent with its exit code, and it is deleted with its disk.
async fn vm_round_trip(dir: &Path, mode: &[&str]) {
    let name = unique("clivm");
    let _cleanup = Cleanup(vec![name.clone()]);
    let g = guest();
    let kernel = g.join("vmlinuz").display().to_string();
    let initrd = g.join("initrd.img").display().to_string();
    ok(&libgo(
        dir,
        &in_mode(
            mode,
            &[
                "run",
                "--vm",
                "--name",
                &name,
                "--memory",
                "256MiB",
                "--disk",
                "16MiB",
                "--kernel",
                &kernel,
                "--initrd",
                &initrd,
                "--cmdline",
                "console=ttyS0 panic=-1 quiet",
            ],
        ),
        None,
    )
    .await);
    let list = json(
        &libgo(
            dir,
            &in_mode(mode, &["ls", "--kind", "vm", "--format", "json"]),
            None,
        )
        .await,
    );
    let me = find(&list, &name).unwrap_or_else(|| panic!("{name} not listed: {list}"));
    assert_eq!(me["kind"], "vm");
    assert_eq!(me["state"], "running");

    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let log = ok(&libgo(dir, &in_mode(mode, &["logs", &name]), None).await);
        if log.contains("LIBGO-GUEST-READY") {
            break;
        }
        assert!(Instant::now() < deadline, "the guest did not boot: {log}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // The agent starts a moment after the marker: retry while it is not there yet.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let o = libgo(
            dir,
            &in_mode(
                mode,
                &["exec", &name, "--", "sh", "-c", "echo in-the-guest; exit 4"],
            ),
            None,
        )
        .await;
        if o.status.code() == Some(4) {
            assert_eq!(text(&o.stdout), "in-the-guest\n");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "exec: {:?} {}",
            o.status.code(),
            text(&o.stderr)
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // A disk hot-plugged, grown online and seen by the guest; detached; its volume deleted.
    let made = json(
        &libgo(
            dir,
            &in_mode(
                mode,
                &[
                    "disk", "attach", &name, "--size", "16MiB", "--format", "json",
                ],
            ),
            None,
        )
        .await,
    );
    assert_eq!(made["target"], "vdb", "{made}");
    ok(&libgo(
        dir,
        &in_mode(mode, &["disk", "resize", &name, "vdb", "32MiB"]),
        None,
    )
    .await);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = libgo(
            dir,
            &in_mode(mode, &["exec", &name, "--", "cat", "/sys/block/vdb/size"]),
            None,
        )
        .await;
        if text(&o.stdout).trim() == "65536" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the guest does not see vdb grown: {} {}",
            text(&o.stdout),
            text(&o.stderr)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let table = ok(&libgo(dir, &in_mode(mode, &["disk", "ls", &name]), None).await);
    assert!(table.starts_with("TARGET"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("vdb ") && l.contains("32MiB")),
        "{table}"
    );
    ok(&libgo(dir, &in_mode(mode, &["disk", "detach", &name, "vdb"]), None).await);
    let o = libgo(dir, &in_mode(mode, &["disk", "detach", &name, "vdb"]), None).await;
    assert_eq!(o.status.code(), Some(10), "{}", text(&o.stderr));
    let o = libgo(
        dir,
        &in_mode(mode, &["media", "insert", &name, "no-such-media.iso"]),
        None,
    )
    .await;
    assert_eq!(o.status.code(), Some(10), "{}", text(&o.stderr));
    ok(&libgo(
        dir,
        &in_mode(mode, &["volume", "rm", &format!("{name}-vdb.qcow2")]),
        None,
    )
    .await);

    // A guest password, read from standard input, set through the agent.
    ok(&libgo(
        dir,
        &in_mode(mode, &["passwd", &name]),
        Some("Cli-Guest-Pw-3\n"),
    )
    .await);
    let shadow = ok(&libgo(
        dir,
        &in_mode(
            mode,
            &["exec", &name, "--", "grep", "^root:", "/etc/shadow"],
        ),
        None,
    )
    .await);
    assert!(shadow.starts_with("root:$6$"), "{shadow}");

    // Its disk, exported (downloaded from the server in remote mode), is a real VMDK.
    ok(&libgo(dir, &in_mode(mode, &["stop", "--force", &name]), None).await);
    let file = dir.join(format!("{name}.vmdk"));
    let file_arg = file.display().to_string();
    ok(&libgo(
        dir,
        &in_mode(
            mode,
            &["export", &name, "--disk-format", "vmdk", "-o", &file_arg],
        ),
        None,
    )
    .await);
    let info = std::process::Command::new("qemu-img")
        .args(["info", "--output=json", &file_arg])
        .output()
        .expect("qemu-img");
    let info: Value = serde_json::from_slice(&info.stdout).unwrap_or_default();
    assert_eq!(info["format"], "vmdk", "{info}");
    let o = libgo(
        dir,
        &in_mode(
            mode,
            &["export", &name, "--disk-format", "vmdk", "-o", &file_arg],
        ),
        None,
    )
    .await;
    assert_eq!(
        o.status.code(),
        Some(12),
        "an existing file is kept: {}",
        text(&o.stderr)
    );
    ok(&libgo(dir, &in_mode(mode, &["delete", "--force", &name]), None).await);
    let o = libgo(dir, &in_mode(mode, &["info", &name]), None).await;
    assert_eq!(o.status.code(), Some(10), "{}", text(&o.stderr));
    let volumes = json(
        &libgo(
            dir,
            &in_mode(mode, &["volume", "ls", "--format", "json"]),
            None,
        )
        .await,
    );
    let left: Vec<&Value> = volumes
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|v| v["name"].as_str().is_some_and(|n| n.contains(&name)))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "disks left: {left:?}");

    // A boot order at creation and by update, as libvirt keeps it.
    let booted = format!("{name}-b");
    let _cleanup_b = Cleanup(vec![booted.clone()]);
    let boot_devs = || {
        let out = std::process::Command::new("virsh")
            .args(["-c", "qemu:///system", "dumpxml", "--inactive", &booted])
            .output()
            .expect("virsh");
        text(&out.stdout)
            .split("<boot dev='")
            .skip(1)
            .filter_map(|s| s.split('\'').next().map(str::to_string))
            .collect::<Vec<_>>()
    };
    ok(&libgo(
        dir,
        &in_mode(
            mode,
            &[
                "create",
                "--vm",
                "--name",
                &booted,
                "--memory",
                "64MiB",
                "--disk",
                "16MiB",
                "--boot",
                "cdrom,disk",
            ],
        ),
        None,
    )
    .await);
    assert_eq!(boot_devs(), ["cdrom", "hd"]);
    ok(&libgo(
        dir,
        &in_mode(mode, &["update", &booted, "--boot", "network,disk"]),
        None,
    )
    .await);
    assert_eq!(boot_devs(), ["network", "hd"]);
    ok(&libgo(dir, &in_mode(mode, &["delete", "--force", &booted]), None).await);
}

/// The embedded-mode test of each round trip (the remote test runs them all against a
/// server).
/// Hosts, the zone and `migrate`'s refusals (moving between two hosts is tested over
/// HTTP in libgo-http's many_hosts test, against a second host).
async fn hosts_round_trip(dir: &Path, mode: &[&str]) {
    let hosts = json(
        &libgo(
            dir,
            &in_mode(mode, &["host", "ls", "--format", "json"]),
            None,
        )
        .await,
    );
    let local = find(&hosts, "local").unwrap_or_else(|| panic!("no local host: {hosts}"));
    assert_eq!(local["alive"], true, "{local}");
    assert!(
        local["capacity"]["memoryBytes"]
            .as_u64()
            .is_some_and(|m| m > 0),
        "{local}"
    );
    let table = ok(&libgo(dir, &in_mode(mode, &["host", "ls"]), None).await);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("local ")), "{table}");
    let one = json(
        &libgo(
            dir,
            &in_mode(mode, &["host", "info", "local", "--format", "json"]),
            None,
        )
        .await,
    );
    assert_eq!(one["name"], "local");
    let zone = json(&libgo(dir, &in_mode(mode, &["zone", "--format", "json"]), None).await);
    assert!(
        zone["hosts"]["on"].as_u64().is_some_and(|n| n >= 1),
        "{zone}"
    );
    let name = unique("cli-mig");
    let _cleanup = Cleanup(vec![name.clone()]);
    ok(&libgo(
        dir,
        &in_mode(mode, &["create", IMAGE, "--name", &name]),
        None,
    )
    .await);
    let o = libgo(
        dir,
        &in_mode(mode, &["migrate", &name, "--host", "nowhere"]),
        None,
    )
    .await;
    assert_eq!(o.status.code(), Some(10), "{}", text(&o.stderr));
    let o = libgo(
        dir,
        &in_mode(mode, &["migrate", &name, "--host", "local"]),
        None,
    )
    .await;
    assert_eq!(o.status.code(), Some(12), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("already"), "{}", text(&o.stderr));

    // Rename and restart policy reach dockerd; autostart is a VM's setting.
    let renamed = unique("cli-ren");
    let _cleanup2 = Cleanup(vec![renamed.clone()]);
    let out = ok(&libgo(dir, &in_mode(mode, &["rename", &name, &renamed]), None).await);
    assert_eq!(out.trim(), renamed);
    ok(&libgo(
        dir,
        &in_mode(mode, &["update", &renamed, "--restart", "always"]),
        None,
    )
    .await);
    let policy = std::process::Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{.HostConfig.RestartPolicy.Name}}",
            &renamed,
        ])
        .output()
        .expect("docker inspect");
    assert_eq!(text(&policy.stdout).trim(), "always");
    let o = libgo(
        dir,
        &in_mode(mode, &["update", &renamed, "--autostart", "true"]),
        None,
    )
    .await;
    assert_eq!(o.status.code(), Some(15), "{}", text(&o.stderr));
    let o = libgo(dir, &in_mode(mode, &["update", &renamed]), None).await;
    assert_eq!(o.status.code(), Some(11), "{}", text(&o.stderr));
}

macro_rules! embedded {
    ($($test:ident => $round_trip:ident,)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            let dir = tempfile::tempdir().expect("temp dir");
            $round_trip(dir.path(), &["--local"]).await;
        }
    )*};
}

embedded! {
    embedded_resources => resources_round_trip,
    embedded_batch_create => batch_round_trip,
    embedded_image_build => build_round_trip,
    embedded_exec_in_a_terminal => exec_tty_round_trip,
    embedded_console_in_a_terminal => console_round_trip,
    embedded_logs_follow => follow_round_trip,
    embedded_container_round_trip => container_round_trip,
    embedded_vm_round_trip => vm_round_trip,
    embedded_hosts => hosts_round_trip,
}

/// libgo-http's test server (a real server on a loopback port, both engines up), its test
/// guest on TCG as everywhere in these tests.
#[path = "../../libgo-http/tests/common/mod.rs"]
mod common;

use common::ADMIN_PASSWORD;

async fn server() -> common::TestServer {
    common::start(true, |c| c.kvm.accelerator = "tcg".into()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_mode_logs_in_and_drives_the_same_engines() {
    let s = server().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    ok(&libgo(d, &["remote", "add", "lab", &s.base], None).await);
    // Not logged in yet: UNAUTHORIZED, exit 13, and a hint.
    let o = libgo(d, &["ls"], None).await;
    assert_eq!(o.status.code(), Some(13), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("libgo login"),
        "{}",
        text(&o.stderr)
    );
    // A wrong password changes nothing.
    let o = libgo(d, &["login", "--password-stdin"], Some("wrong-password\n")).await;
    assert_eq!(o.status.code(), Some(13), "{}", text(&o.stderr));
    ok(&libgo(
        d,
        &["login", "--password-stdin"],
        Some(&format!("{ADMIN_PASSWORD}\n")),
    )
    .await);
    // The credentials are the user's alone.
    let file = d.join("config.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&file).expect("config file").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let config: Value = serde_json::from_slice(&std::fs::read(&file).expect("read")).expect("json");
    assert_eq!(config["current"], "lab");
    assert!(config["remotes"]["lab"]["token"].is_string());
    let remotes = ok(&libgo(d, &["remote", "list"], None).await);
    assert!(remotes.lines().any(|l| l.starts_with("lab *")), "{remotes}");

    // The current remote is used without --remote, and the same commands work.
    container_round_trip(d, &[]).await;
    vm_round_trip(d, &["--remote", "lab"]).await;
    console_round_trip(d, &["--remote", "lab"]).await;
    exec_tty_round_trip(d, &["--remote", "lab"]).await;
    build_round_trip(d, &["--remote", "lab"]).await;
    batch_round_trip(d, &["--remote", "lab"]).await;
    resources_round_trip(d, &["--remote", "lab"]).await;
    follow_round_trip(d, &["--remote", "lab"]).await;
    hosts_round_trip(d, &["--remote", "lab"]).await;

    // What the remote made, the local engines see: one Docker behind both.
    let name = unique("cli-both");
    let _cleanup = Cleanup(vec![name.clone()]);
    ok(&libgo(
        d,
        &["create", IMAGE, "--name", &name, "--", "sleep", "60"],
        None,
    )
    .await);
    let local = json(&libgo(d, &["--local", "ls", "--format", "json"], None).await);
    assert!(find(&local, &name).is_some(), "{name} not seen locally");
    ok(&libgo(d, &["--local", "rm", "--force", &name], None).await);
    let o = libgo(d, &["info", &name], None).await;
    assert_eq!(o.status.code(), Some(10));

    ok(&libgo(d, &["remote", "switch", "local"], None).await);
    ok(&libgo(d, &["remote", "remove", "lab"], None).await);
    let o = libgo(d, &["--remote", "lab", "ls"], None).await;
    assert_eq!(o.status.code(), Some(10), "{}", text(&o.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_groups_custom_roles_and_scoped_users() {
    let s = server().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    ok(&libgo(d, &["remote", "add", "lab", &s.base], None).await);
    ok(&libgo(
        d,
        &["login", "--password-stdin"],
        Some(&format!("{ADMIN_PASSWORD}\n")),
    )
    .await);

    // A custom role from the permissions the server lists.
    let perms = json(&libgo(d, &["role", "permissions", "--format", "json"], None).await);
    assert!(
        perms
            .as_array()
            .is_some_and(|a| a.iter().any(|p| p["name"] == "instances.write")),
        "{perms}"
    );
    let role = unique("auditor");
    ok(&libgo(
        d,
        &[
            "role",
            "create",
            &role,
            "--permission",
            "instances.read",
            "--permission",
            "audit.admin",
        ],
        None,
    )
    .await);
    let roles = json(&libgo(d, &["role", "ls", "--format", "json"], None).await);
    assert!(
        roles
            .as_array()
            .is_some_and(|a| a.iter().any(|r| r["name"] == role.as_str()
                && r["permissions"] == json!(["audit.admin", "instances.read"]))),
        "{roles}"
    );
    let o = libgo(
        d,
        &[
            "role",
            "create",
            &unique("bad"),
            "--permission",
            "nope.read",
        ],
        None,
    )
    .await;
    assert_eq!(o.status.code(), Some(11), "{}", text(&o.stderr));

    // A group, and a member kept to it.
    let group = unique("team");
    let member = unique("member");
    ok(&libgo(
        d,
        &["group", "create", &group, "--description", "a team"],
        None,
    )
    .await);
    ok(&libgo(
        d,
        &[
            "user", "create", &member, "--role", "operator", "--scope", "groups",
        ],
        Some("member-password-1\n"),
    )
    .await);
    ok(&libgo(d, &["group", "add", &group, &member], None).await);
    let groups = json(&libgo(d, &["group", "ls", "--format", "json"], None).await);
    assert!(
        groups.as_array().is_some_and(|a| a
            .iter()
            .any(|g| g["name"] == group.as_str() && g["members"] == json!([member]))),
        "{groups}"
    );
    let users = ok(&libgo(d, &["user", "ls"], None).await);
    assert!(
        users
            .lines()
            .any(|l| l.starts_with(&member) && l.contains("operator") && l.contains("groups")),
        "{users}"
    );

    let mdir = tempfile::tempdir().expect("temp dir");
    let m = mdir.path();
    ok(&libgo(m, &["remote", "add", "lab", &s.base], None).await);
    ok(&libgo(
        m,
        &["login", "--username", &member, "--password-stdin"],
        Some("member-password-1\n"),
    )
    .await);
    let (mine, theirs) = (unique("cli-mine"), unique("cli-theirs"));
    let _cleanup = Cleanup(vec![mine.clone(), theirs.clone()]);
    ok(&libgo(
        m,
        &["run", IMAGE, "--name", &mine, "--", "sleep", "300"],
        None,
    )
    .await);
    ok(&libgo(
        d,
        &["run", IMAGE, "--name", &theirs, "--", "sleep", "300"],
        None,
    )
    .await);
    // The admin filters by group and sees the column.
    let listed = json(&libgo(d, &["ls", "--group", &group, "--format", "json"], None).await);
    assert!(
        find(&listed, &mine).is_some() && find(&listed, &theirs).is_none(),
        "{listed}"
    );
    let table = ok(&libgo(d, &["ls", &mine], None).await);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&mine) && l.trim_end().ends_with(group.as_str())),
        "{table}"
    );
    // The member sees only its group's, and another's is not found (exit 10).
    let seen = json(&libgo(m, &["ls", "--format", "json"], None).await);
    assert!(
        find(&seen, &mine).is_some() && find(&seen, &theirs).is_none(),
        "{seen}"
    );
    let o = libgo(m, &["info", &theirs], None).await;
    assert_eq!(o.status.code(), Some(10), "{}", text(&o.stderr));
    // Groups are a server's.
    let o = libgo(
        d,
        &[
            "--local",
            "run",
            IMAGE,
            "--name",
            &unique("x"),
            "--group",
            &group,
        ],
        None,
    )
    .await;
    assert_eq!(o.status.code(), Some(15), "{}", text(&o.stderr));
    ok(&libgo(d, &["group", "remove", &group, &member], None).await);
    ok(&libgo(d, &["rm", "--force", &mine, &theirs], None).await);
    ok(&libgo(d, &["group", "rm", &group], None).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_administration_roles_stats_and_events() {
    let s = server().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    ok(&libgo(d, &["remote", "add", "lab", &s.base], None).await);
    ok(&libgo(
        d,
        &["login", "--password-stdin"],
        Some(&format!("{ADMIN_PASSWORD}\n")),
    )
    .await);

    // Users and roles: a viewer may look but not act, and gets FORBIDDEN (exit 14).
    let viewer = unique("viewer");
    ok(&libgo(
        d,
        &["user", "create", &viewer, "--role", "viewer"],
        Some("viewer-password-1\n"),
    )
    .await);
    let users = json(&libgo(d, &["user", "ls", "--format", "json"], None).await);
    assert!(
        users.as_array().is_some_and(|a| a
            .iter()
            .any(|u| u["username"] == viewer.as_str() && u["role"] == "viewer")),
        "{users}"
    );
    let vdir = tempfile::tempdir().expect("temp dir");
    let v = vdir.path();
    ok(&libgo(v, &["remote", "add", "lab", &s.base], None).await);
    ok(&libgo(
        v,
        &["login", "--username", &viewer, "--password-stdin"],
        Some("viewer-password-1\n"),
    )
    .await);
    ok(&libgo(v, &["ls"], None).await);
    let name = unique("cli-admin");
    let _cleanup = Cleanup(vec![name.clone()]);
    let o = libgo(
        v,
        &["run", IMAGE, "--name", &name, "--", "sleep", "300"],
        None,
    )
    .await;
    assert_eq!(o.status.code(), Some(14), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).starts_with("Error: FORBIDDEN: "),
        "{}",
        text(&o.stderr)
    );
    let o = libgo(v, &["audit"], None).await;
    assert_eq!(o.status.code(), Some(14), "{}", text(&o.stderr));

    // API keys: made once, usable with --api-key, listed by prefix only.
    let key = ok(&libgo(d, &["api-key", "create", "cli-key"], None).await)
        .trim()
        .to_string();
    assert!(key.len() > 20, "{key}");
    let kdir = tempfile::tempdir().expect("temp dir");
    ok(&libgo(kdir.path(), &["remote", "add", "lab", &s.base], None).await);
    ok(&libgo(kdir.path(), &["--api-key", &key, "ls"], None).await);
    let keys = ok(&libgo(d, &["api-key", "ls"], None).await);
    assert!(keys.contains("cli-key") && !keys.contains(&key), "{keys}");

    // Events, in a terminal, as an instance is made and started.
    let tty = Tmux::start(d, &["events"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    ok(&libgo(
        d,
        &["run", IMAGE, "--name", &name, "--", "sleep", "300"],
        None,
    )
    .await);
    tty.wait_for(&format!("docker container started {name}"), 30)
        .await;

    // Stats: one sample with the numbers docker stats shows.
    let stats = json(
        &libgo(
            d,
            &["stats", &name, "--no-stream", "--format", "json"],
            None,
        )
        .await,
    );
    let sample = &stats[0];
    assert_eq!(sample["name"], name.as_str());
    assert!(
        sample["memoryBytes"].as_u64().is_some_and(|m| m > 0),
        "{stats}"
    );
    assert!(sample["pids"].as_u64().is_some_and(|p| p >= 1), "{stats}");

    // Tasks: a pull is one, followed to its end.
    let reference = format!("127.0.0.1:5000/{}:1", unique("cli-task"));
    ok(&libgo(d, &["--local", "image", "tag", IMAGE, &reference], None).await);
    ok(&libgo(d, &["--local", "image", "push", &reference], None).await);
    ok(&libgo(d, &["--local", "image", "rm", &reference], None).await);
    ok(&libgo(d, &["image", "pull", &reference], None).await);
    let tasks = json(&libgo(d, &["task", "ls", "--format", "json"], None).await);
    let pull = tasks
        .as_array()
        .and_then(|a| a.iter().find(|t| t["kind"] == "image.pull"))
        .unwrap_or_else(|| panic!("no pull task: {tasks}"));
    assert_eq!(pull["status"], "finished");
    let id = pull["id"].as_str().unwrap_or_default();
    let waited = json(&libgo(d, &["task", "wait", id, "--format", "json"], None).await);
    assert_eq!(waited["status"], "finished");
    ok(&libgo(d, &["--local", "image", "rm", &reference], None).await);

    // The audit log names what the admin did.
    let audit = json(&libgo(d, &["audit", "--format", "json", "--limit", "200"], None).await);
    assert!(
        audit
            .as_array()
            .is_some_and(|a| a.iter().any(|r| r["method"] == "POST"
                && r["path"] == "/api/v1/instances"
                && r["status"] == 201)),
        "{audit}"
    );
    ok(&libgo(d, &["rm", "--force", &name], None).await);

    // Embedded mode has no server: a clear UNSUPPORTED.
    let o = libgo(d, &["--local", "task", "ls"], None).await;
    assert_eq!(o.status.code(), Some(15), "{}", text(&o.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_events_and_stats() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let name = unique("cli-watch");
    let _cleanup = Cleanup(vec![name.clone()]);
    let tty = Tmux::start(d, &["--local", "events", "--kind", "container"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    ok(&libgo(
        d,
        &[
            "--local", "run", IMAGE, "--name", &name, "--", "sleep", "300",
        ],
        None,
    )
    .await);
    tty.wait_for(&format!("docker container started {name}"), 30)
        .await;
    // On a terminal the view refreshes: the screen is redrawn with new samples.
    let view = Tmux::start(d, &["--local", "stats", &name]);
    view.wait_for("MEM USAGE / LIMIT", 30).await;
    let first = view.screen();
    let deadline = Instant::now() + Duration::from_secs(30);
    while view.screen() == first {
        assert!(
            Instant::now() < deadline,
            "the stats view did not refresh:\n{first}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(!view.screen().contains("EXITED-"), "stats ended on its own");
    view.keys(&["C-c"]);
    view.wait_for("EXITED-0", 30).await;
    let table = ok(&libgo(d, &["--local", "stats", &name, "--no-stream"], None).await);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split("  ")
        .filter(|c| !c.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "CPU %",
            "MEM USAGE / LIMIT",
            "MEM %",
            "NET I/O",
            "BLOCK I/O",
            "PIDS"
        ],
        "{table}"
    );
    assert!(
        table.lines().nth(1).is_some_and(|l| l.starts_with(&name)),
        "{table}"
    );
    ok(&libgo(d, &["--local", "rm", "-f", &name], None).await);
    tty.wait_for(&format!("docker container deleted {name}"), 30)
        .await;
}

/// Address pools from the command line: made with ranges, an instance run with an address
/// from one (and the embedded mode saying it keeps no pools), the pool's status, the
/// address freed by `rm`, the pool deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_address_pools() {
    let s = server().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    ok(&libgo(d, &["remote", "add", "lab", &s.base], None).await);
    ok(&libgo(
        d,
        &["login", "--password-stdin"],
        Some(&format!("{ADMIN_PASSWORD}\n")),
    )
    .await);
    let id = uuid::Uuid::new_v4();
    let net = format!("10.{}.{}", 100 + id.as_bytes()[0] % 100, id.as_bytes()[1]);
    let pool = unique("clip");
    let name = unique("clipc");
    let _cleanup = Cleanup(vec![name.clone()]);
    ok(&libgo(
        d,
        &[
            "address-pool",
            "create",
            &pool,
            "--gateway",
            &format!("{net}.1"),
            "--range",
            &format!("{net}.10-{net}.10/24"),
        ],
        None,
    )
    .await);
    // A range that is not START-END/PREFIX is refused before anything is sent.
    let o = libgo(d, &["ap", "add-range", &pool, &format!("{net}.20")], None).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    ok(&libgo(
        d,
        &["ap", "add-range", &pool, &format!("{net}.20-{net}.21/24")],
        None,
    )
    .await);
    let o = libgo(
        d,
        &["ap", "add-range", &pool, &format!("{net}.21-{net}.22/24")],
        None,
    )
    .await;
    assert_eq!(o.status.code(), Some(12), "overlap: {}", text(&o.stderr));

    ok(&libgo(
        d,
        &[
            "run",
            IMAGE,
            "--name",
            &name,
            "--address",
            &format!("{pool}={net}.21"),
            "--",
            "sleep",
            "300",
        ],
        None,
    )
    .await);
    let listed = json(&libgo(d, &["ls", "--format", "json", &name], None).await);
    assert!(
        listed.as_array().is_some_and(|a| a
            .iter()
            .any(|i| i["ipAddresses"] == json!([format!("{net}.21")]))),
        "{listed}"
    );
    // HOST is the host the server names (its own machine is `local`), not the remote.
    let csv = ok(&libgo(d, &["ls", &name, "--format", "csv"], None).await);
    let row: Vec<&str> = csv.lines().nth(1).unwrap_or_default().split(',').collect();
    assert_eq!(row.get(4), Some(&"local"), "{csv}");
    let table = ok(&libgo(d, &["ap", "ls"], None).await);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&pool) && l.contains(" 3 ") && l.contains(" 1 ")),
        "{table}"
    );
    let info = json(&libgo(d, &["ap", "info", &pool, "--format", "json"], None).await);
    assert_eq!(
        info["allocations"][0]["address"],
        format!("{net}.21"),
        "{info}"
    );
    // The range that holds it stays.
    let o = libgo(
        d,
        &["ap", "remove-range", &pool, &format!("{net}.20")],
        None,
    )
    .await;
    assert_eq!(o.status.code(), Some(12), "{}", text(&o.stderr));

    // The library alone keeps no pools: the embedded mode says so and makes nothing.
    let local = tempfile::tempdir().expect("temp dir");
    let o = libgo(
        local.path(),
        &[
            "run",
            IMAGE,
            "--name",
            &unique("clipl"),
            "--address",
            &pool,
            "--",
            "sleep",
            "1",
        ],
        None,
    )
    .await;
    assert_eq!(o.status.code(), Some(15), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("libgo-server"),
        "{}",
        text(&o.stderr)
    );

    ok(&libgo(d, &["rm", "--force", &name], None).await);
    let info = json(&libgo(d, &["ap", "info", &pool, "--format", "json"], None).await);
    assert_eq!(info["allocated"], 0, "{info}");
    ok(&libgo(
        d,
        &["ap", "remove-range", &pool, &format!("{net}.20")],
        None,
    )
    .await);
    ok(&libgo(d, &["ap", "rm", &pool], None).await);
    let o = libgo(d, &["ap", "info", &pool], None).await;
    assert_eq!(o.status.code(), Some(10), "{}", text(&o.stderr));
}
