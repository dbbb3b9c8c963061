//! Exec through the QEMU guest agent (`guest-exec`, then `guest-exec-status` until the
//! command has exited), sent by libvirt (`virDomainQemuAgentCommand`).
//!
//! Every VM LibGo creates has the agent's virtio-serial channel (`org.qemu.guest_agent.0`);
//! the guest must run `qemu-ga` on it. A VM without the channel, or whose agent is not
//! connected, answers `Unsupported`. Right after a start the agent may not be up yet: exec
//! then waits for it, up to [`crate::KvmConfig::agent_wait_secs`] after the start.
//!
//! Requests are JSON built with `serde_json` (no string pasting). The command's program and
//! arguments are passed as the agent's `path` and `arg` (no shell). A working directory is
//! the agent's `cwd` field where the agent has one (QEMU 9.1 and later); older agents (the
//! test guest's is QEMU 7.2) reject that field, and then the command runs under a fixed
//! shell script that receives the directory and the command as positional parameters:
//! `sh -c 'cd "$1" && shift && exec "$@"' libgo-exec DIR PROGRAM ARGS...`, so no input of
//! the caller is ever parsed by a shell.

use std::time::{Duration, Instant};

use base64::Engine;
use libgo_core::{Error, ErrorKind, ExecResult, ExecSpec, GuestPassword, Result, validate};
use serde_json::{Value, json};
use virt::domain::Domain;

use crate::KvmBackend;
use crate::compute::lookup;
use crate::conn::LvExt;

/// Seconds libvirt waits for one agent reply.
const AGENT_REPLY_SECS: i32 = 10;

/// The environment the agent gives a command when the caller sets variables: `guest-exec`
/// replaces the whole environment with the list it gets, so a PATH is added unless the
/// caller gives one.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The fixed script that changes directory for agents without `cwd`. `$1` is the directory,
/// the rest is the command: nothing the caller gives is parsed by the shell.
const CD_SCRIPT: &str = "cd \"$1\" && shift && exec \"$@\"";

fn request(spec: &ExecSpec, cwd_field: bool) -> Value {
    let (path, mut args) = match (&spec.workdir, cwd_field) {
        (Some(dir), false) => {
            let mut a = vec![
                "-c".to_string(),
                CD_SCRIPT.to_string(),
                "libgo-exec".to_string(),
                dir.clone(),
            ];
            a.extend(spec.command.iter().cloned());
            ("/bin/sh".to_string(), a)
        }
        _ => (spec.command[0].clone(), spec.command[1..].to_vec()),
    };
    let mut arguments = serde_json::Map::new();
    arguments.insert("path".into(), Value::String(path));
    arguments.insert(
        "arg".into(),
        Value::Array(args.drain(..).map(Value::String).collect()),
    );
    if !spec.env.is_empty() {
        let mut env: Vec<Value> = spec
            .env
            .iter()
            .map(|(k, v)| Value::String(format!("{k}={v}")))
            .collect();
        if !spec.env.contains_key("PATH") {
            env.push(Value::String(format!("PATH={DEFAULT_PATH}")));
        }
        arguments.insert("env".into(), Value::Array(env));
    }
    if cwd_field && let Some(dir) = &spec.workdir {
        arguments.insert("cwd".into(), Value::String(dir.clone()));
    }
    arguments.insert("capture-output".into(), Value::Bool(true));
    json!({ "execute": "guest-exec", "arguments": arguments })
}

/// Sends one agent command; the reply's `return` member.
fn command(d: &Domain, cmd: &Value) -> Result<Value> {
    let reply = d
        .qemu_agent_command(&cmd.to_string(), AGENT_REPLY_SECS, 0)
        .lv()?;
    let mut v: Value = serde_json::from_str(&reply)
        .map_err(|e| Error::internal(format!("the guest agent's reply is not JSON: {e}")))?;
    Ok(v.get_mut("return").map(Value::take).unwrap_or(Value::Null))
}

fn decode(v: &Value, key: &str) -> Result<String> {
    match v.get(key).and_then(Value::as_str) {
        None => Ok(String::new()),
        Some(b64) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| {
                    Error::internal(format!("the guest agent's {key} is not base64: {e}"))
                })?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
    }
}

/// An agent error made clear: not connected or not configured → Unsupported.
fn agent_error(e: Error, vm: &str) -> Error {
    match e.kind() {
        ErrorKind::Unsupported => Error::unsupported(format!(
            "exec in VM {vm:?} needs a QEMU guest agent: the guest must run qemu-guest-agent \
             on the virtio-serial port org.qemu.guest_agent.0 ({})",
            e.message()
        ))
        .with_context("instance", vm.to_string()),
        ErrorKind::Conflict => Error::conflict(format!(
            "exec in VM {vm:?} needs it running ({})",
            e.message()
        ))
        .with_context("instance", vm.to_string()),
        _ => e,
    }
}

impl KvmBackend {
    /// Starts `spec` in the guest; its pid there. Waits for the agent after a recent start.
    async fn exec_start(&self, id: &str, spec: &ExecSpec) -> Result<(String, i64)> {
        let wait = Duration::from_secs(self.inner.config.agent_wait_secs);
        let mut cwd_field = spec.workdir.is_some();
        loop {
            let req = request(spec, cwd_field);
            let id_owned = id.to_string();
            let shared = self.inner.shared.clone();
            let answer = self
                .inner
                .run(move |c| {
                    let d = lookup(c, &id_owned)?;
                    let uuid = d.uuid_string().lv()?;
                    let started = shared.started_at(&uuid);
                    Ok((uuid, started, command(&d, &req)))
                })
                .await?;
            let (uuid, started, reply) = answer;
            match reply {
                Ok(v) => {
                    let pid = v.get("pid").and_then(Value::as_i64).ok_or_else(|| {
                        Error::internal(format!("guest-exec answered without a pid: {v}"))
                    })?;
                    return Ok((uuid, pid));
                }
                Err(e) if cwd_field && e.message().contains("'cwd'") => {
                    tracing::debug!("the guest agent has no cwd field; changing directory by sh");
                    cwd_field = false;
                }
                Err(e)
                    if e.kind() == ErrorKind::Unsupported
                        && !e.message().contains("not configured")
                        && started.is_some_and(|t| t.elapsed() < wait) =>
                {
                    // Booting: the agent connects soon.
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) if e.message().contains("Failed to execute child process") => {
                    return Err(Error::invalid(format!(
                        "cannot run {:?} in VM {id:?}: {}",
                        spec.command[0],
                        e.message()
                    )));
                }
                Err(e) => return Err(agent_error(e, id)),
            }
        }
    }
}

/// Sets a user's password in the guest (`guest-set-user-password`, through libvirt's
/// virDomainSetUserPassword). Waits for the agent after a recent start, as exec does.
pub(crate) async fn set_password(b: &KvmBackend, id: &str, p: &GuestPassword) -> Result<()> {
    if b.inner.is_test {
        return Err(Error::unsupported(
            "libvirt's test driver runs no guest, so there is no guest agent to set a password \
             through",
        ));
    }
    let wait = Duration::from_secs(b.inner.config.agent_wait_secs);
    loop {
        let (id_owned, p_owned) = (id.to_string(), p.clone());
        let shared = b.inner.shared.clone();
        let (started, reply) = b
            .inner
            .run(move |c| {
                let d = lookup(c, &id_owned)?;
                let started = shared.started_at(&d.uuid_string().lv()?);
                let flags = if p_owned.crypted {
                    virt::sys::VIR_DOMAIN_PASSWORD_ENCRYPTED
                } else {
                    0
                };
                Ok((
                    started,
                    d.set_user_password(&p_owned.user, &p_owned.password, flags)
                        .lv(),
                ))
            })
            .await?;
        match reply {
            Ok(()) => return Ok(()),
            Err(e)
                if e.kind() == ErrorKind::Unsupported
                    && !e.message().contains("not configured")
                    && started.is_some_and(|t| t.elapsed() < wait) =>
            {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) if matches!(e.kind(), ErrorKind::Unsupported | ErrorKind::Conflict) => {
                return Err(Error::new(
                    e.kind(),
                    format!(
                        "setting a password in VM {id:?} needs it running with a QEMU guest \
                         agent ({})",
                        e.message()
                    ),
                ));
            }
            // The agent ran the guest's chpasswd and it failed: most often no such user.
            Err(e) => {
                tracing::debug!(instance = %id, error = %e, "guest-set-user-password failed");
                return Err(Error::invalid(format!(
                    "the guest could not set the password of {:?}: is there such a user?",
                    p.user
                ))
                .with_field("user"));
            }
        }
    }
}

/// Runs a command in the guest and waits for it.
pub(crate) async fn exec(b: &KvmBackend, id: &str, spec: &ExecSpec) -> Result<ExecResult> {
    validate::exec_spec(spec)?;
    if b.inner.is_test {
        return Err(Error::unsupported(
            "libvirt's test driver runs no guest, so there is no guest agent to exec through",
        ));
    }
    if let Some(u) = spec.user.as_deref()
        && !matches!(u, "root" | "0")
    {
        return Err(Error::unsupported(format!(
            "the QEMU guest agent runs commands as its own user (root); running as {u:?} is \
             not supported"
        )));
    }
    if spec.tty {
        return Err(Error::unsupported(
            "exec with a TTY is not supported through the QEMU guest agent; use the console",
        ));
    }
    let (uuid, pid) = b.exec_start(id, spec).await?;
    tracing::debug!(instance = %id, pid, "guest-exec started");
    let status = json!({ "execute": "guest-exec-status", "arguments": { "pid": pid } });
    let mut delay = Duration::from_millis(5);
    let started = Instant::now();
    loop {
        let st = status.clone();
        let u = uuid.clone();
        let v = b
            .inner
            .run(move |c| {
                let d = c.lookup_domain_by_uuid_string(&u).lv()?;
                command(&d, &st)
            })
            .await
            .map_err(|e| agent_error(e, id))?;
        if v.get("exited").and_then(Value::as_bool) == Some(true) {
            let exit_code = match (
                v.get("exitcode").and_then(Value::as_i64),
                v.get("signal").and_then(Value::as_i64),
            ) {
                (Some(c), _) => c,
                (None, Some(sig)) => 128 + sig,
                (None, None) => -1,
            };
            let mut truncated = v.get("out-truncated").and_then(Value::as_bool) == Some(true)
                || v.get("err-truncated").and_then(Value::as_bool) == Some(true);
            tracing::debug!(instance = %id, pid, exit_code, elapsed = ?started.elapsed(), "guest-exec done");
            let limit = usize::try_from(spec.output_limit()).unwrap_or(usize::MAX);
            let mut cut = |mut s: String| {
                if s.len() > limit {
                    let mut end = limit;
                    while !s.is_char_boundary(end) {
                        end -= 1;
                    }
                    s.truncate(end);
                    truncated = true;
                }
                s
            };
            let stdout = cut(decode(&v, "out-data")?);
            let stderr = cut(decode(&v, "err-data")?);
            return Ok(ExecResult {
                exit_code,
                stdout,
                stderr,
                truncated,
            });
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ExecSpec {
        ExecSpec {
            command: vec!["ls".into(), "-l; rm -rf /".into()],
            env: [("A".to_string(), "x y'\"$(z)".to_string())].into(),
            workdir: Some("/tmp/a b'$(c)".into()),
            ..Default::default()
        }
    }

    #[test]
    fn request_with_cwd_passes_argv_as_is() {
        let r = request(&spec(), true);
        let a = &r["arguments"];
        assert_eq!(a["path"], "ls");
        assert_eq!(a["arg"], json!(["-l; rm -rf /"]));
        assert_eq!(a["cwd"], "/tmp/a b'$(c)");
        assert_eq!(
            a["env"],
            json!(["A=x y'\"$(z)", format!("PATH={DEFAULT_PATH}")])
        );
        assert_eq!(a["capture-output"], true);
    }

    #[test]
    fn request_without_cwd_uses_a_fixed_script() {
        let r = request(&spec(), false);
        let a = &r["arguments"];
        assert_eq!(a["path"], "/bin/sh");
        assert_eq!(
            a["arg"],
            json!([
                "-c",
                CD_SCRIPT,
                "libgo-exec",
                "/tmp/a b'$(c)",
                "ls",
                "-l; rm -rf /"
            ])
        );
        assert!(a.get("cwd").is_none());
        // No environment given: the agent's own is kept.
        let plain = ExecSpec {
            command: vec!["true".into()],
            ..Default::default()
        };
        assert!(request(&plain, false)["arguments"].get("env").is_none());
    }
}
