//! `libgo`: VMs and containers from a terminal, through the library (embedded) or a
//! `libgo-server` (remote). Every command is an operation of the bindings' operation table,
//! so both modes run the same verbs with the same JSON.
//!
//! ```sh
//! libgo run busybox --name web -- sleep 300
//! libgo ls --format json
//! libgo exec web -- cat /etc/hostname
//! libgo delete --force web
//! ```
//!
//! A cold `libgo ls` is kept fast without any cache (nothing it shows can be stale): only
//! the engine of the listed kind is opened, Docker's API version is read from `GET /_ping`
//! (not `/version`, which makes dockerd ask containerd and runc), each engine is listed once
//! (no pages in-process), and libvirt's domain XML is read by four threads at once on a
//! connection opened without libvirt's event loop (which would hand every reply through
//! its own thread).
//!
//! Exit codes: 0 success; for `exec` the command's own code; otherwise one per error kind
//! (see [`exit_code`]); 2 for a command line clap refuses.

mod admin;
mod cli;
mod config;
mod console;
mod exec;
mod output;
mod rest;
mod target;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::sync::Arc;

use clap::{CommandFactory, Parser};
use indicatif::{ProgressBar, ProgressStyle};
use libgo::{
    BootDevice, CloudInit, DiskSpec, EngineConfig, Error, ErrorKind, InstanceKind, InstanceSpec,
    KernelBoot, MountSpec, PortMapping, Protocol, Result,
};
use serde_json::{Value, json};

use cli::{Cli, Command, CreateArgs, ImageCommand, NetworkCommand, RemoteCommand};
use cli::{
    DiskCommand, HostCommand, MediaCommand, PoolCommand, SnapshotCommand, TemplateCommand,
    VolumeCommand,
};
use output::{Format, field, print_list, print_one, size};
use target::{OnProgress, RemoteClient, Target};

/// The exit code of an error kind (documented in the README).
pub fn exit_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Internal => 1,
        ErrorKind::NotFound => 10,
        ErrorKind::InvalidInput => 11,
        ErrorKind::Conflict => 12,
        ErrorKind::Unauthorized => 13,
        ErrorKind::Forbidden => 14,
        ErrorKind::Unsupported => 15,
        ErrorKind::Unavailable => 16,
        ErrorKind::Timeout => 17,
    }
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LIBGO_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(if cli.quiet { "error" } else { "warn" })
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(output::colour())
        .without_time()
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => quick_exit(fail(&Error::internal(format!("runtime: {e}")))),
    };
    let outcome = runtime.block_on(run(cli));
    // A console's read of standard input may still block: do not wait for it.
    runtime.shutdown_background();
    let code = match outcome {
        Ok(code) => code,
        Err(e) => fail(&e),
    };
    quick_exit(code)
}

/// Ends the process without running C destructors: libvirt's event loop thread runs until
/// the process ends, and the libraries' exit-time cleanup racing it corrupted the heap in
/// about 2% of runs (`malloc_consolidate(): invalid chunk size`, exit 134).
fn quick_exit(code: u8) -> ! {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` only ends the process; the output buffers were flushed above.
    unsafe { libc::_exit(i32::from(code)) }
}

fn fail(e: &Error) -> u8 {
    eprintln!("Error: {}: {}", e.kind().code(), e.detail());
    exit_code(e.kind())
}

/// Opens the target the options and the config choose.
async fn open(cli: &Cli) -> Result<Target> {
    let config = config::Config::load()?;
    let remote = if cli.local {
        None
    } else {
        cli.remote.clone().or(config.current.clone())
    };
    match remote {
        Some(name) if name != "local" => {
            let r = config.remote(&name)?;
            Ok(Target::Remote(RemoteClient::new(
                &name,
                r,
                cli.api_key.clone(),
            )?))
        }
        _ => {
            // The server's variable, so one setting serves both (`tcg` where KVM misbehaves).
            let accelerator =
                std::env::var("LIBGO_KVM_ACCELERATOR").unwrap_or_else(|_| "auto".into());
            let mut engines = EngineConfig {
                reconnect_secs: 0,
                accelerator,
                ..Default::default()
            };
            if let Command::List(a) = &cli.command {
                // A listing reads once: libvirt's events would only slow its calls down.
                engines.events = false;
                // A listing of one kind opens only the engine that has it.
                match a.kind.as_deref() {
                    Some("vm") => engines.docker = libgo::EngineMode::Off,
                    Some("container") => engines.kvm = libgo::EngineMode::Off,
                    _ => {}
                }
            }
            Ok(Target::Local(Arc::new(libgo::connect(&engines).await?)))
        }
    }
}

async fn run(cli: Cli) -> Result<u8> {
    // Commands that need no engine.
    match &cli.command {
        Command::Completion { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "libgo", &mut std::io::stdout());
            return Ok(0);
        }
        Command::Man { dir } => {
            std::fs::create_dir_all(dir)?;
            clap_mangen::generate_to(Cli::command(), dir)?;
            return Ok(0);
        }
        Command::Remote(r) => return remote_command(r, &cli).await,
        Command::Login(l) => return login(l, &cli).await,
        _ => {}
    }
    let target = open(&cli).await?;
    let outcome = command(&target, cli).await;
    // The process ends right after (`quick_exit`): closing the engines' connections one
    // call at a time would only delay it; the kernel closes them.
    std::mem::forget(target);
    outcome
}

async fn command(target: &Target, cli: Cli) -> Result<u8> {
    let format = cli.format;
    let quiet = cli.quiet;
    match cli.command {
        Command::List(a) => {
            let mut labels = BTreeMap::new();
            for l in &a.label {
                let (k, v) = key_value(l)?;
                labels.insert(k, v);
            }
            if let Some(g) = &a.group {
                labels.insert(libgo::LABEL_GROUP.to_string(), g.clone());
            }
            let filter = json!({
                "kind": a.kind, "state": a.state, "backend": a.backend,
                "name": a.prefix, "labels": labels,
            });
            let (mut items, unavailable) = target.list_instances(filter).await?;
            if let Some(prefix) = &a.prefix {
                items.retain(|i| i["name"].as_str().is_some_and(|n| n.starts_with(prefix)));
            }
            for u in &unavailable {
                if !quiet {
                    eprintln!(
                        "Warning: backend {} did not answer: {}",
                        field(u, "backend"),
                        field(u, "message")
                    );
                }
            }
            // The host the server (or the library) says the instance is on: `local` is the
            // machine of whoever manages it, h2… another host.
            let host = target.host().to_string();
            let host_of = move |i: &Value| match i["host"].as_str() {
                Some(h) if !h.is_empty() => h.to_string(),
                _ => host.clone(),
            };
            let ipv4 = |i: &Value| {
                i["ipAddresses"]
                    .as_array()
                    .and_then(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .find(|s| !s.contains(':'))
                    })
                    .unwrap_or("-")
                    .to_string()
            };
            let created = |i: &Value| {
                i["createdAt"]
                    .as_str()
                    .map(|s| s.get(..19).unwrap_or(s).replace('T', " "))
                    .unwrap_or_else(|| "-".into())
            };
            print_list(
                format,
                &items,
                &[
                    ("NAME", &|i| field(i, "name")),
                    ("KIND", &|i| field(i, "kind")),
                    ("STATE", &|i| field(i, "state")),
                    ("BACKEND", &|i| field(i, "backend")),
                    ("HOST", &host_of),
                    ("IPV4", &ipv4),
                    ("CREATED", &created),
                    ("GROUP", &|i| field(&i["labels"], libgo::LABEL_GROUP)),
                ],
            )?;
            Ok(0)
        }
        Command::Info { name } => {
            let i = target.call("get", json!({ "id": name }), None).await?;
            print_one(format, &i)?;
            Ok(0)
        }
        Command::Create(a) => create(target, a, false, format, quiet).await,
        Command::Run(a) => create(target, a, true, format, quiet).await,
        Command::Start(n) => each(target, "start", "id", &n.names, |_| json!({}), format).await,
        Command::Pause(n) => each(target, "pause", "id", &n.names, |_| json!({}), format).await,
        Command::Resume(n) => each(target, "resume", "id", &n.names, |_| json!({}), format).await,
        Command::Stop(s) => {
            let options = json!({"options": {"timeoutSecs": s.timeout, "force": s.force}});
            each(
                target,
                "stop",
                "id",
                &s.names.names,
                |_| options.clone(),
                format,
            )
            .await
        }
        Command::Restart(s) => {
            let options = json!({"options": {"timeoutSecs": s.timeout, "force": s.force}});
            each(
                target,
                "restart",
                "id",
                &s.names.names,
                |_| options.clone(),
                format,
            )
            .await
        }
        Command::Kill { signal, names } => {
            let args = json!({ "signal": signal });
            each(target, "kill", "id", &names.names, |_| args.clone(), format).await
        }
        Command::Delete { force, names } => {
            let args = json!({ "force": force });
            each(
                target,
                "delete",
                "id",
                &names.names,
                |_| args.clone(),
                format,
            )
            .await
        }
        Command::Exec(a) => {
            let mut env = BTreeMap::new();
            for e in &a.env {
                let (k, v) = key_value(e)?;
                env.insert(k, v);
            }
            if a.interactive || a.tty {
                let spec = libgo::ExecSpec {
                    command: a.command.clone(),
                    env,
                    workdir: a.workdir.clone(),
                    user: a.user.clone(),
                    tty: a.tty,
                    ..Default::default()
                };
                let attached = target.exec_interactive(&a.name, &spec).await?;
                return exec::run(attached, a.tty, a.interactive).await;
            }
            let spec = json!({
                "command": a.command, "env": env, "workdir": a.workdir, "user": a.user,
            });
            let r = target
                .call("exec", json!({"id": a.name, "spec": spec}), None)
                .await?;
            if format == Format::Json || format == Format::Yaml {
                print_one(format, &r)?;
            } else {
                std::io::stdout().write_all(r["stdout"].as_str().unwrap_or("").as_bytes())?;
                std::io::stderr().write_all(r["stderr"].as_str().unwrap_or("").as_bytes())?;
            }
            // The command's own code, like `docker exec`; out of range codes become 255.
            let code = r["exitCode"].as_i64().unwrap_or(1);
            Ok(u8::try_from(code).unwrap_or(255))
        }
        Command::Console { name } => {
            let session = target.console(&name).await?;
            console::attach(session, &name, quiet).await
        }
        Command::Logs(a) if a.follow => {
            let options = json!({
                "tail": a.tail, "since": a.since, "timestamps": a.timestamps, "follow": true,
            });
            let mut entries = target
                .stream("logs", json!({"id": a.name, "options": options}))
                .await?;
            use futures::StreamExt;
            while let Some(entry) = entries.next().await {
                let entry = entry?;
                let mut out = std::io::stdout().lock();
                if format == Format::Json {
                    writeln!(out, "{entry}")?;
                } else {
                    if a.timestamps
                        && let Some(t) = entry["timestamp"].as_str()
                    {
                        write!(out, "{t} ")?;
                    }
                    writeln!(out, "{}", entry["message"].as_str().unwrap_or_default())?;
                }
                out.flush()?;
            }
            Ok(0)
        }
        Command::Logs(a) => {
            let options = json!({
                "tail": a.tail, "since": a.since, "timestamps": a.timestamps,
            });
            let entries = target
                .call("logs", json!({"id": a.name, "options": options}), None)
                .await?;
            let entries = entries.as_array().cloned().unwrap_or_default();
            if format == Format::Table {
                let mut out = std::io::stdout().lock();
                for e in &entries {
                    if a.timestamps
                        && let Some(t) = e["timestamp"].as_str()
                    {
                        write!(out, "{t} ")?;
                    }
                    writeln!(out, "{}", e["message"].as_str().unwrap_or_default())?;
                }
            } else {
                print_list(
                    format,
                    &entries,
                    &[
                        ("TIME", &|e| field(e, "timestamp")),
                        ("STREAM", &|e| field(e, "stream")),
                        ("MESSAGE", &|e| field(e, "message")),
                    ],
                )?;
            }
            Ok(0)
        }
        Command::Stats { names, no_stream } => admin::stats(target, names, no_stream, format).await,
        Command::Events {
            instance,
            kind,
            backend,
        } => {
            let filter = json!({"instance": instance, "kind": kind, "backend": backend});
            admin::events(target, filter, format).await
        }
        Command::Task(t) => admin::task(target, t, format).await,
        Command::User(u) => admin::user(target, u, format).await,
        Command::Group(g) => admin::group(target, g, format).await,
        Command::Role(r) => admin::role(target, r, format).await,
        Command::AddressPool(a) => admin::address_pool(target, a, format).await,
        Command::ApiKey(k) => admin::api_key(target, k, format).await,
        Command::Audit { limit } => admin::audit(target, limit, format).await,
        Command::Export {
            name,
            disk_format,
            output,
        } => export(target, &name, &disk_format, &output, format, quiet).await,
        Command::Migrate {
            name,
            host,
            offline,
        } => migrate(target, &name, &host, !offline, format, quiet).await,
        Command::Update {
            name,
            cpus,
            memory,
            new_name,
            autostart,
            restart,
            boot,
        } => {
            let update = json!({"cpus": cpus, "memoryBytes": memory, "name": new_name,
                                "autostart": autostart, "restartPolicy": restart, "boot": boot});
            update_instance(target, &name, update, format).await
        }
        Command::Rename { name, new_name } => {
            update_instance(target, &name, json!({"name": new_name}), format).await
        }
        Command::Host(h) => host(target, h, format).await,
        Command::Zone => {
            print_one(format, &target.call("zone_status", json!({}), None).await?)?;
            Ok(0)
        }
        Command::Capabilities { backend } => {
            let mut items = target.capabilities().await?;
            if let Some(b) = &backend {
                items.retain(|c| c["backend"] == b.as_str());
                if items.is_empty() {
                    return Err(Error::not_found(format!("no backend named {b:?}")));
                }
            }
            if backend.is_some() && format != Format::Table {
                print_one(format, &items[0])?;
                return Ok(0);
            }
            let yes = |c: &Value, key: &str| {
                if c["capabilities"][key] == true {
                    "yes"
                } else {
                    "-"
                }
                .to_string()
            };
            let joined = |c: &Value, key: &str| field(&c["capabilities"], key);
            print_list(
                format,
                &items,
                &[
                    ("BACKEND", &|c| field(c, "backend")),
                    ("KINDS", &|c| joined(c, "kinds")),
                    ("SNAPSHOTS", &|c| yes(c, "snapshots")),
                    ("LIVE-SNAPSHOT", &|c| yes(c, "liveSnapshot")),
                    ("EXPORT", &|c| joined(c, "exportFormats")),
                    ("CONSOLE", &|c| yes(c, "console")),
                    ("VNC", &|c| yes(c, "consoleVnc")),
                    ("DISKS", &|c| yes(c, "disks")),
                    ("IMAGES", &|c| yes(c, "imageRegistry")),
                    ("GUEST-PASSWORD", &|c| yes(c, "guestPassword")),
                ],
            )?;
            Ok(0)
        }
        Command::Snapshot(s) => snapshot(target, s, format).await,
        Command::Reinstall { name, image } => {
            let made = target
                .call(
                    "reinstall",
                    json!({"id": name, "spec": {"image": image}}),
                    None,
                )
                .await?;
            print_made(format, &made, "name")?;
            Ok(0)
        }
        Command::Passwd {
            name,
            user,
            crypted,
        } => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            let password = text.trim_end_matches(['\r', '\n']);
            target
                .call(
                    "guest_password",
                    json!({"id": name, "password": {"user": user, "password": password, "crypted": crypted}}),
                    None,
                )
                .await?;
            Ok(0)
        }
        Command::Disk(d) => disk(target, d, format).await,
        Command::Media(m) => media(target, m, format).await,
        Command::Image(i) => image(target, i, format, quiet).await,
        Command::Network(n) => network(target, n, format).await,
        Command::Volume(v) => volume(target, v, format).await,
        Command::Pool(p) => pool(target, p, format).await,
        Command::Template(t) => template(target, t, format).await,
        Command::Completion { .. } | Command::Man { .. } | Command::Remote(_) => Ok(0),
        Command::Login(_) => Ok(0),
    }
}

pub(crate) fn bytes_field(item: &Value, name: &str) -> String {
    item[name].as_u64().map(size).unwrap_or_else(|| "-".into())
}

async fn list_of(target: &Target, op: &str) -> Result<Vec<Value>> {
    Ok(target
        .call(op, json!({}), None)
        .await?
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// One failed item of a command on several names, on stderr.
pub(crate) fn report(e: &Error, name: &str) {
    let detail = e.detail();
    if detail.contains(name) {
        eprintln!("Error: {}: {detail}", e.kind().code());
    } else {
        eprintln!("Error: {}: {detail} ({name})", e.kind().code());
    }
}

fn key_value(text: &str) -> Result<(String, String)> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| Error::invalid(format!("{text:?} is not KEY=VALUE")))
}

/// Runs `op` on each name (given as its argument `key`); see [`for_each_name`].
async fn each(
    target: &Target,
    op: &str,
    key: &str,
    names: &[String],
    args: impl Fn(&str) -> Value,
    format: Format,
) -> Result<u8> {
    for_each_name(names, format, |name| {
        let mut a = args(name);
        a[key] = Value::String(name.to_string());
        async move { target.call(op, a, None).await.map(drop) }
    })
    .await
}

/// Runs `act` on each name; prints each name that succeeded (a table) or a result per item
/// (JSON/YAML), and reports each failure. The exit code is the first failure's.
pub(crate) async fn for_each_name<F, Fut>(names: &[String], format: Format, act: F) -> Result<u8>
where
    F: Fn(&str) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut code = 0;
    let mut results = Vec::new();
    for name in names {
        match act(name).await {
            Ok(()) => {
                if format == Format::Table || format == Format::Csv {
                    println!("{name}");
                }
                results.push(json!({"id": name, "ok": true}));
            }
            Err(e) => {
                report(&e, name);
                if code == 0 {
                    code = exit_code(e.kind());
                }
                results.push(json!({"id": name, "ok": false,
                    "error": {"code": e.kind().code(), "message": e.detail()}}));
            }
        }
    }
    if format == Format::Json || format == Format::Yaml {
        print_one(format, &Value::Array(results))?;
    }
    Ok(code)
}

/// What a create answers: its name (`key`) for people, the whole object otherwise.
pub(crate) fn print_made(format: Format, made: &Value, key: &str) -> Result<()> {
    if format == Format::Table {
        println!("{}", field(made, key));
        Ok(())
    } else {
        print_one(format, made)
    }
}

/// A progress bar on a terminal (none with `-q` or when stderr is not one).
fn progress_bar(quiet: bool, what: &str) -> (Option<ProgressBar>, Option<OnProgress>) {
    if quiet || !std::io::stderr().is_terminal() {
        return (None, None);
    }
    let bar = ProgressBar::new(100);
    let style = ProgressStyle::with_template(
        "{prefix} [{bar:30}] {pos:>3}% {wide_msg} ({elapsed}, ETA {eta})",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(what.to_string());
    let b = bar.clone();
    let on: OnProgress = Arc::new(move |p: libgo::Progress| {
        if let Some(pct) = p.percent {
            b.set_position(pct.clamp(0.0, 100.0) as u64);
        }
        b.set_message(p.message);
    });
    (Some(bar), Some(on))
}

/// A directory as a tar archive (the build context), in memory.
fn context_tar(dir: &std::path::Path) -> Result<Vec<u8>> {
    if !dir.is_dir() {
        return Err(Error::invalid(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder
        .append_dir_all(".", dir)
        .map_err(|e| Error::invalid(format!("{}: {e}", dir.display())))?;
    builder
        .into_inner()
        .map_err(|e| Error::internal(format!("tar: {e}")))
}

/// Ends a progress bar: a finished one stays on screen at 100%, a failed one goes.
fn finish(bar: Option<ProgressBar>, ok: bool) {
    if let Some(b) = bar {
        if ok {
            b.set_position(100);
            b.finish_with_message("done");
        } else {
            b.finish_and_clear();
        }
    }
}

async fn create(
    target: &Target,
    a: CreateArgs,
    start: bool,
    format: Format,
    quiet: bool,
) -> Result<u8> {
    let spec = spec_of(&a, start || a.start)?;
    if let Some(count) = a.count {
        let pattern = a.name.contains("{n}").then(|| a.name.clone());
        let batch = json!({"spec": serde_json::to_value(&spec)?, "count": count,
            "namePattern": pattern});
        let (bar, on) = progress_bar(quiet, &format!("creating {count}"));
        let answer = target
            .call("create_batch", json!({ "batch": batch }), on)
            .await;
        finish(bar, answer.is_ok());
        let answer = answer?;
        let mut code = 0;
        for item in answer["items"].as_array().into_iter().flatten() {
            let name = field(item, "name");
            if item["status"] == "failed" {
                let e = Error::new(
                    target::kind_of(item["error"]["code"].as_str().unwrap_or_default()),
                    item["error"]["message"].as_str().unwrap_or_default(),
                );
                report(&e, &name);
                if code == 0 {
                    code = exit_code(e.kind());
                }
            } else if format == Format::Table {
                println!("{name}");
            }
        }
        if format != Format::Table {
            print_one(format, &answer)?;
        }
        return Ok(code);
    }
    let made = match (&a.group, target) {
        (None, _) => {
            target
                .call(
                    "create",
                    json!({ "spec": serde_json::to_value(&spec)? }),
                    None,
                )
                .await?
        }
        (Some(g), Target::Remote(r)) => {
            r.send(
                reqwest::Method::POST,
                "/api/v1/instances",
                &[("group".to_string(), g.clone())],
                Some(&serde_json::to_value(&spec)?),
            )
            .await?
        }
        (Some(_), Target::Local(_)) => {
            return Err(Error::unsupported(
                "groups belong to a libgo server: use --remote with --group",
            ));
        }
    };
    print_made(format, &made, "name")?;
    Ok(0)
}

/// The instance spec of `create`/`run`'s flags.
fn spec_of(a: &CreateArgs, start: bool) -> Result<InstanceSpec> {
    let vm = a.vm
        || a.template.is_some()
        || !a.disk.is_empty()
        || a.cloud_init.is_some()
        || a.kernel.is_some()
        || !a.boot.is_empty();
    let mut spec = InstanceSpec {
        name: a.name.clone(),
        kind: Some(if vm {
            InstanceKind::Vm
        } else {
            InstanceKind::Container
        }),
        backend: a.backend.clone(),
        image: a.image.clone(),
        template: a.template.clone(),
        cpus: a.cpus,
        memory_bytes: a.memory,
        networks: a.network.clone(),
        command: a.command.clone(),
        tty: a.tty,
        start,
        ..Default::default()
    };
    for want in &a.address {
        let (pool, address) = match want.split_once('=') {
            Some((p, ip)) => (p.to_string(), Some(ip.to_string())),
            None => (want.clone(), None),
        };
        spec.addresses.push(libgo::AddressRequest { pool, address });
    }
    for dev in &a.boot {
        spec.boot.push(match dev.as_str() {
            "cdrom" => BootDevice::Cdrom,
            "network" => BootDevice::Network,
            _ => BootDevice::Disk,
        });
    }
    for size in &a.disk {
        spec.disks.push(DiskSpec {
            size_bytes: Some(*size),
            ..Default::default()
        });
    }
    if let Some(kernel) = &a.kernel {
        spec.kernel_boot = Some(KernelBoot {
            kernel: kernel.clone(),
            initrd: a.initrd.clone(),
            cmdline: a.cmdline.clone(),
        });
    }
    if let Some(path) = &a.cloud_init {
        let user_data = std::fs::read_to_string(path)
            .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
        spec.cloud_init = Some(CloudInit {
            user_data: Some(user_data),
            ..Default::default()
        });
    }
    for e in &a.env {
        let (k, v) = key_value(e)?;
        spec.env.insert(k, v);
    }
    for l in &a.label {
        let (k, v) = key_value(l)?;
        spec.labels.insert(k, v);
    }
    for p in &a.publish {
        spec.ports.push(port_of(p)?);
    }
    for v in &a.volume {
        let mut parts = v.split(':');
        let (Some(source), Some(target)) = (parts.next(), parts.next()) else {
            return Err(Error::invalid(format!("{v:?} is not VOLUME:/path[:ro]")));
        };
        let read_only = match parts.next() {
            None => false,
            Some("ro") => true,
            Some("rw") => false,
            Some(other) => return Err(Error::invalid(format!("{other:?}: expected ro or rw"))),
        };
        // A path is a bind mount (administrators only, the server decides); a name a volume.
        let kind = if source.starts_with('/') {
            libgo::MountKind::Bind
        } else {
            libgo::MountKind::Volume
        };
        spec.mounts.push(MountSpec {
            kind,
            source: source.to_string(),
            target: target.to_string(),
            read_only,
        });
    }
    Ok(spec)
}

/// `[IP:]HOST:CONTAINER[/udp]` or `CONTAINER` as a port mapping.
fn port_of(text: &str) -> Result<PortMapping> {
    let bad = || Error::invalid(format!("{text:?} is not [IP:]HOST:CONTAINER[/udp]"));
    let (ports, protocol) = match text.rsplit_once('/') {
        Some((p, "udp")) => (p, Protocol::Udp),
        Some((p, "tcp")) => (p, Protocol::Tcp),
        Some(_) => return Err(bad()),
        None => (text, Protocol::Tcp),
    };
    let parts: Vec<&str> = ports.rsplitn(3, ':').collect();
    let port = |s: &str| s.parse::<u16>().map_err(|_| bad());
    let (host_ip, host_port, container_port) = match parts.as_slice() {
        [c] => (None, None, port(c)?),
        [c, h] => (None, Some(port(h)?), port(c)?),
        [c, h, ip] => (Some(ip.to_string()), Some(port(h)?), port(c)?),
        _ => return Err(bad()),
    };
    Ok(PortMapping {
        container_port,
        host_port,
        host_ip,
        protocol,
    })
}

/// `libgo export`: embedded, the library writes `output`; remote, the server writes the
/// file in its export directory and it is downloaded to `output`.
async fn export(
    target: &Target,
    name: &str,
    export_format: &str,
    output: &std::path::Path,
    format: Format,
    quiet: bool,
) -> Result<u8> {
    if output.exists() {
        return Err(Error::conflict(format!(
            "{} exists already",
            output.display()
        )));
    }
    let (bar, on) = progress_bar(quiet, &format!("exporting {name}"));
    let result = match target {
        Target::Local(_) => {
            let destination = std::path::absolute(output)?;
            target
                .call(
                    "export",
                    json!({"id": name, "spec": {"format": export_format, "destination": destination}}),
                    on,
                )
                .await
        }
        Target::Remote(remote) => {
            remote
                .export_and_download(name, export_format, output, on)
                .await
        }
    };
    finish(bar, result.is_ok());
    let result = result?;
    if format == Format::Table {
        println!("{}", output.display());
    } else {
        print_one(format, &result)?;
    }
    Ok(0)
}

fn print_disks(format: Format, items: &[Value]) -> Result<()> {
    print_list(
        format,
        items,
        &[
            ("TARGET", &|d| field(d, "target")),
            ("DEVICE", &|d| field(d, "device")),
            ("BUS", &|d| field(d, "bus")),
            ("VOLUME", &|d| field(d, "volume")),
            ("SIZE", &|d| {
                d["sizeBytes"]
                    .as_u64()
                    .map(output::size)
                    .unwrap_or_default()
            }),
            ("FORMAT", &|d| field(d, "format")),
        ],
    )
}

async fn disk(target: &Target, d: DiskCommand, format: Format) -> Result<u8> {
    match d {
        DiskCommand::List { name } => {
            let items = target
                .call("disk_list", json!({ "id": name }), None)
                .await?;
            print_disks(format, items.as_array().map(Vec::as_slice).unwrap_or(&[]))?;
        }
        DiskCommand::Attach {
            name,
            volume,
            size,
            disk_format,
            pool,
            bus,
            read_only,
        } => {
            let mut disk = serde_json::Map::new();
            for (k, v) in [
                ("volume", volume.map(Value::from)),
                ("sizeBytes", size.map(Value::from)),
                ("format", disk_format.map(Value::from)),
                ("pool", pool.map(Value::from)),
                ("bus", bus.map(Value::from)),
            ] {
                if let Some(v) = v {
                    disk.insert(k.into(), v);
                }
            }
            disk.insert("readOnly".into(), read_only.into());
            let made = target
                .call("disk_attach", json!({"id": name, "disk": disk}), None)
                .await?;
            print_made(format, &made, "target")?;
        }
        DiskCommand::Detach { name, target: dev } => {
            target
                .call("disk_detach", json!({"id": name, "target": dev}), None)
                .await?;
        }
        DiskCommand::Resize {
            name,
            target: dev,
            size,
            allow_shrink,
        } => {
            let resize = json!({"sizeBytes": size, "allowShrink": allow_shrink});
            let d = target
                .call(
                    "disk_resize",
                    json!({"id": name, "target": dev, "resize": resize}),
                    None,
                )
                .await?;
            print_disks(format, &[d])?;
        }
    }
    Ok(0)
}

async fn media(target: &Target, m: MediaCommand, format: Format) -> Result<u8> {
    match m {
        MediaCommand::Insert { name, image } => {
            let d = target
                .call(
                    "media_insert",
                    json!({"id": name, "media": {"image": image}}),
                    None,
                )
                .await?;
            print_disks(format, &[d])?;
        }
        MediaCommand::Eject { name } => {
            target
                .call("media_eject", json!({ "id": name }), None)
                .await?;
        }
    }
    Ok(0)
}

async fn snapshot(target: &Target, s: SnapshotCommand, format: Format) -> Result<u8> {
    match s {
        SnapshotCommand::Create {
            name,
            snapshot,
            description,
        } => {
            let spec = json!({"name": snapshot, "description": description});
            let made = target
                .call("snapshot_create", json!({"id": name, "spec": spec}), None)
                .await?;
            print_made(format, &made, "name")?;
        }
        SnapshotCommand::List { name } => {
            let items = target
                .call("snapshot_list", json!({ "id": name }), None)
                .await?;
            let items = items.as_array().cloned().unwrap_or_default();
            print_list(
                format,
                &items,
                &[
                    ("NAME", &|s| field(s, "name")),
                    ("PARENT", &|s| field(s, "parent")),
                    ("CURRENT", &|s| {
                        if s["current"] == true { "*" } else { "" }.to_string()
                    }),
                    ("CREATED", &|s| field(s, "createdAt")),
                    ("DESCRIPTION", &|s| field(s, "description")),
                ],
            )?;
        }
        SnapshotCommand::Info { name, snapshot } => {
            let args = json!({"id": name, "snapshot": snapshot});
            print_one(format, &target.call("snapshot_get", args, None).await?)?;
        }
        SnapshotCommand::Revert { name, snapshot } => {
            target
                .call(
                    "snapshot_revert",
                    json!({"id": name, "snapshot": snapshot}),
                    None,
                )
                .await?;
        }
        SnapshotCommand::Delete { name, snapshot } => {
            target
                .call(
                    "snapshot_delete",
                    json!({"id": name, "snapshot": snapshot}),
                    None,
                )
                .await?;
        }
    }
    Ok(0)
}

async fn image(target: &Target, i: ImageCommand, format: Format, quiet: bool) -> Result<u8> {
    match i {
        ImageCommand::List => {
            let items = list_of(target, "image_list").await?;
            print_list(
                format,
                &items,
                &[
                    ("TAGS", &|i| field(i, "tags")),
                    ("ID", &|i| {
                        let id = field(i, "id");
                        // Docker's digests shortened as `docker images` does; paths whole.
                        match id.strip_prefix("sha256:") {
                            Some(digest) => digest.chars().take(12).collect(),
                            None => id,
                        }
                    }),
                    ("KIND", &|i| field(i, "kind")),
                    ("BACKEND", &|i| field(i, "backend")),
                    ("SIZE", &|i| bytes_field(i, "sizeBytes")),
                ],
            )?;
            Ok(0)
        }
        ImageCommand::Pull { reference, backend } => {
            let (bar, on) = progress_bar(quiet, &format!("pulling {reference}"));
            let got = target
                .call(
                    "image_pull",
                    json!({"reference": reference, "backend": backend}),
                    on,
                )
                .await;
            finish(bar, got.is_ok());
            let got = got?;
            if format == Format::Table {
                println!("{}", field(&got, "id"));
            } else {
                print_one(format, &got)?;
            }
            Ok(0)
        }
        ImageCommand::Build {
            context,
            tags,
            file,
            build_args,
            backend,
        } => {
            let mut args = BTreeMap::new();
            for a in &build_args {
                let (k, v) = key_value(a)?;
                args.insert(k, v);
            }
            let tar = context_tar(&context)?;
            let (bar, on) = progress_bar(quiet, &format!("building {}", context.display()));
            let spec = json!({"dockerfile": file, "tags": tags, "buildArgs": args});
            let built = target.build(backend, spec, tar, on).await;
            finish(bar, built.is_ok());
            let built = built?;
            print_made(format, &built, "id")?;
            Ok(0)
        }
        ImageCommand::Push { reference, backend } => {
            let (bar, on) = progress_bar(quiet, &format!("pushing {reference}"));
            let pushed = target
                .call(
                    "image_push",
                    json!({"reference": reference, "backend": backend}),
                    on,
                )
                .await;
            finish(bar, pushed.is_ok());
            pushed?;
            Ok(0)
        }
        ImageCommand::Tag {
            source,
            target: new,
            backend,
        } => {
            let args = json!({"source": source, "target": new, "backend": backend});
            target.call("image_tag", args, None).await?;
            Ok(0)
        }
        ImageCommand::Remove {
            ids,
            force,
            backend,
        } => {
            let args = json!({"force": force, "backend": backend});
            each(target, "image_remove", "id", &ids, |_| args.clone(), format).await
        }
    }
}

async fn network(target: &Target, n: NetworkCommand, format: Format) -> Result<u8> {
    match n {
        NetworkCommand::List => {
            let items = list_of(target, "network_list").await?;
            print_list(
                format,
                &items,
                &[
                    ("NAME", &|n| field(n, "name")),
                    ("BACKEND", &|n| field(n, "backend")),
                    ("DRIVER", &|n| field(n, "driver")),
                    ("SUBNET", &|n| field(n, "subnet")),
                ],
            )?;
            Ok(0)
        }
        NetworkCommand::Create {
            name,
            backend,
            subnet,
        } => {
            let spec = json!({"name": name, "backend": backend, "subnet": subnet});
            let made = target
                .call("network_create", json!({ "spec": spec }), None)
                .await?;
            print_made(format, &made, "name")?;
            Ok(0)
        }
        NetworkCommand::Delete { ids, backend } => {
            let args = json!({ "backend": backend });
            each(
                target,
                "network_delete",
                "id",
                &ids,
                |_| args.clone(),
                format,
            )
            .await
        }
        NetworkCommand::Info { id, backend } => {
            let args = json!({"id": id, "backend": backend});
            print_one(format, &target.call("network_inspect", args, None).await?)?;
            Ok(0)
        }
        NetworkCommand::Connect { network, instance } => {
            let args = json!({"network": network, "instance": instance});
            target.call("network_connect", args, None).await?;
            Ok(0)
        }
        NetworkCommand::Disconnect { network, instance } => {
            let args = json!({"network": network, "instance": instance});
            target.call("network_disconnect", args, None).await?;
            Ok(0)
        }
    }
}

async fn volume(target: &Target, v: VolumeCommand, format: Format) -> Result<u8> {
    match v {
        VolumeCommand::List => {
            let items = list_of(target, "volume_list").await?;
            print_list(
                format,
                &items,
                &[
                    ("NAME", &|v| field(v, "name")),
                    ("BACKEND", &|v| field(v, "backend")),
                    ("POOL", &|v| field(v, "pool")),
                    ("CAPACITY", &|v| bytes_field(v, "capacityBytes")),
                ],
            )?;
            Ok(0)
        }
        VolumeCommand::Create {
            name,
            size,
            backend,
        } => {
            let spec = json!({"name": name, "backend": backend, "sizeBytes": size});
            let made = target
                .call("volume_create", json!({ "spec": spec }), None)
                .await?;
            print_made(format, &made, "name")?;
            Ok(0)
        }
        VolumeCommand::Delete {
            names,
            force,
            backend,
        } => {
            let args = json!({"force": force, "backend": backend});
            each(
                target,
                "volume_delete",
                "name",
                &names,
                |_| args.clone(),
                format,
            )
            .await
        }
        VolumeCommand::Info { name, backend } => {
            let args = json!({"name": name, "backend": backend});
            print_one(format, &target.call("volume_inspect", args, None).await?)?;
            Ok(0)
        }
        VolumeCommand::Resize {
            name,
            size,
            backend,
        } => {
            let args = json!({"name": name, "sizeBytes": size, "backend": backend});
            let v = target.call("volume_resize", args, None).await?;
            print_made(format, &v, "name")?;
            Ok(0)
        }
        VolumeCommand::Clone {
            source,
            target: copy,
            backend,
        } => {
            let args = json!({"source": source, "target": copy, "backend": backend});
            let v = target.call("volume_clone", args, None).await?;
            print_made(format, &v, "name")?;
            Ok(0)
        }
    }
}

/// `update` and `rename`: one PATCH of the instance; unset fields are left out.
async fn update_instance(target: &Target, name: &str, update: Value, format: Format) -> Result<u8> {
    let update: serde_json::Map<String, Value> = update
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    if update.is_empty() {
        return Err(Error::invalid(
            "nothing to change: give at least one option",
        ));
    }
    let args = json!({"id": name, "update": update});
    let i = target.call("update", args, None).await?;
    print_made(format, &i, "name")?;
    Ok(0)
}

async fn migrate(
    target: &Target,
    name: &str,
    host: &str,
    live: bool,
    format: Format,
    quiet: bool,
) -> Result<u8> {
    let (bar, on) = progress_bar(quiet, &format!("moving {name} to {host}"));
    let report = target
        .call(
            "migrate",
            json!({"id": name, "request": {"host": host, "live": live}}),
            on,
        )
        .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = report?;
    match format {
        Format::Table => println!(
            "{name}: {} to host {} in {} ms{}",
            field(&report, "kind"),
            host,
            field(&report, "elapsedMs"),
            report["downtimeMs"]
                .as_u64()
                .map(|d| format!(", paused {d} ms"))
                .unwrap_or_default()
        ),
        _ => print_one(format, &report)?,
    }
    Ok(0)
}

async fn host(target: &Target, h: HostCommand, format: Format) -> Result<u8> {
    match h {
        HostCommand::List => {
            let items = list_of(target, "host_list").await?;
            print_list(
                format,
                &items,
                &[
                    ("NAME", &|h| field(h, "name")),
                    ("POOL", &|h| field(h, "pool")),
                    ("ENABLED", &|h| field(h, "enabled")),
                    ("ALIVE", &|h| field(h, "alive")),
                    ("CPUS", &|h| field(&h["capacity"], "cpus")),
                    ("MEMORY", &|h| bytes_field(&h["capacity"], "memoryBytes")),
                    ("RUNNING", &|h| field(&h["instances"], "running")),
                    ("STOPPED", &|h| field(&h["instances"], "stopped")),
                    ("LOST", &|h| field(&h["instances"], "lost")),
                ],
            )?;
        }
        HostCommand::Info { name } => {
            print_one(
                format,
                &target.call("host_get", json!({"name": name}), None).await?,
            )?;
        }
    }
    Ok(0)
}

async fn pool(target: &Target, p: PoolCommand, format: Format) -> Result<u8> {
    match p {
        PoolCommand::List => {
            let items = list_of(target, "pool_list").await?;
            print_list(
                format,
                &items,
                &[
                    ("NAME", &|p| field(p, "name")),
                    ("BACKEND", &|p| field(p, "backend")),
                    ("TYPE", &|p| field(p, "poolType")),
                    ("ACTIVE", &|p| field(p, "active")),
                    ("CAPACITY", &|p| bytes_field(p, "capacityBytes")),
                    ("AVAILABLE", &|p| bytes_field(p, "availableBytes")),
                ],
            )?;
        }
        PoolCommand::Info { name, backend } => {
            let args = json!({"name": name, "backend": backend});
            print_one(format, &target.call("pool_inspect", args, None).await?)?;
        }
    }
    Ok(0)
}

async fn template(target: &Target, t: TemplateCommand, format: Format) -> Result<u8> {
    match t {
        TemplateCommand::List => {
            let items = list_of(target, "template_list").await?;
            print_list(
                format,
                &items,
                &[
                    ("NAME", &|t| field(t, "name")),
                    ("OS", &|t| field(t, "os")),
                    ("IMAGE", &|t| field(t, "image")),
                    ("CPUS", &|t| field(t, "cpus")),
                    ("MEMORY", &|t| bytes_field(t, "memoryBytes")),
                ],
            )?;
        }
        TemplateCommand::Info { name, backend } => {
            let args = json!({"name": name, "backend": backend});
            print_one(format, &target.call("template_get", args, None).await?)?;
        }
        TemplateCommand::Create {
            name,
            image,
            os,
            cpus,
            memory,
            backend,
        } => {
            let template = json!({"name": name, "image": image, "os": os, "cpus": cpus,
                "memoryBytes": memory});
            let args = json!({"template": template, "backend": backend});
            let made = target.call("template_create", args, None).await?;
            print_made(format, &made, "name")?;
        }
        TemplateCommand::Delete { name, backend } => {
            let args = json!({"name": name, "backend": backend});
            target.call("template_delete", args, None).await?;
        }
    }
    Ok(0)
}

async fn remote_command(r: &RemoteCommand, cli: &Cli) -> Result<u8> {
    let mut config = config::Config::load()?;
    match r {
        RemoteCommand::Add { name, url } => {
            if name == "local" {
                return Err(Error::invalid("\"local\" names the embedded engines"));
            }
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(Error::invalid(format!(
                    "{url:?}: expected http:// or https://"
                )));
            }
            if config.remotes.contains_key(name) {
                return Err(Error::conflict(format!("a remote {name:?} exists already")));
            }
            config.remotes.insert(
                name.clone(),
                config::Remote {
                    url: url.clone(),
                    token: None,
                    api_key: cli.api_key.clone(),
                },
            );
            if config.current.is_none() {
                config.current = Some(name.clone());
            }
            config.save()?;
        }
        RemoteCommand::List => {
            let mut items = vec![json!({
                "name": "local", "url": "embedded", "current": config.current.is_none(),
            })];
            for (name, r) in &config.remotes {
                items.push(json!({
                    "name": name, "url": r.url,
                    "current": config.current.as_deref() == Some(name),
                    "loggedIn": r.token.is_some() || r.api_key.is_some(),
                }));
            }
            print_list(
                cli.format,
                &items,
                &[
                    ("NAME", &|r| {
                        let mark = if r["current"] == true { " *" } else { "" };
                        format!("{}{mark}", field(r, "name"))
                    }),
                    ("URL", &|r| field(r, "url")),
                ],
            )?;
        }
        RemoteCommand::Switch { name } => {
            if name == "local" {
                config.current = None;
            } else {
                config.remote(name)?;
                config.current = Some(name.clone());
            }
            config.save()?;
        }
        RemoteCommand::Remove { name } => {
            config.remote(name)?;
            config.remotes.remove(name);
            if config.current.as_deref() == Some(name) {
                config.current = None;
            }
            config.save()?;
        }
    }
    Ok(0)
}

async fn login(l: &cli::LoginArgs, cli: &Cli) -> Result<u8> {
    let mut config = config::Config::load()?;
    let name = cli
        .remote
        .clone()
        .or(config.current.clone())
        .ok_or_else(|| Error::invalid("no remote to log in to: libgo remote add NAME URL"))?;
    let remote = config.remote(&name)?.clone();
    let password = if l.password_stdin {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text.trim_end_matches(['\r', '\n']).to_string()
    } else {
        std::env::var("LIBGO_PASSWORD").map_err(|_| {
            Error::invalid(
                "give the password on standard input (--password-stdin) or in LIBGO_PASSWORD",
            )
        })?
    };
    let client = RemoteClient::new(
        &name,
        &config::Remote {
            url: remote.url.clone(),
            ..Default::default()
        },
        None,
    )?;
    let answer = client
        .send(
            reqwest::Method::POST,
            "/api/v1/login",
            &[],
            Some(&json!({"username": l.username, "password": password})),
        )
        .await?;
    let token = answer["token"]
        .as_str()
        .ok_or_else(|| Error::internal("the server's login answer has no token"))?;
    if let Some(r) = config.remotes.get_mut(&name) {
        r.token = Some(token.to_string());
    }
    config.save()?;
    if !cli.quiet {
        eprintln!("Logged in to {name} as {}", l.username);
    }
    Ok(0)
}
