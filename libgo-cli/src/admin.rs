//! Watching and administering: `stats`, `events`, and what only a server has (tasks, users,
//! API keys, the audit log).

use std::io::{IsTerminal, Read, Write};
use std::time::Duration;

use futures::StreamExt;
use libgo::{Error, Result};
use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::{
    AddressPoolCommand, ApiKeyCommand, GroupCommand, RoleCommand, TaskCommand, UserCommand,
};
use crate::output::{Format, field, print_list, print_one, size};
use crate::target::{RemoteClient, Target};
use crate::{exit_code, for_each_name, print_made, report};

fn server(target: &Target) -> Result<&RemoteClient> {
    match target {
        Target::Remote(r) => Ok(r),
        Target::Local(_) => Err(Error::unsupported(
            "tasks, users, API keys and the audit log belong to a libgo server: use --remote",
        )),
    }
}

/// Deletes each of `names` under `collection` (`/api/v1/users`), reporting each.
async fn delete_each(
    remote: &RemoteClient,
    collection: &str,
    names: &[String],
    format: Format,
) -> Result<u8> {
    for_each_name(names, format, |name| {
        let path = format!("{collection}/{}", crate::rest::escape(name));
        async move {
            remote
                .send(Method::DELETE, &path, &[], None)
                .await
                .map(drop)
        }
    })
    .await
}

/// `libgo stats`.
pub async fn stats(
    target: &Target,
    names: Vec<String>,
    no_stream: bool,
    format: Format,
) -> Result<u8> {
    let names = if names.is_empty() {
        let (items, _) = target.list_instances(json!({"state": "running"})).await?;
        items
            .iter()
            .filter_map(|i| i["name"].as_str().map(str::to_string))
            .collect()
    } else {
        names
    };
    let live = !no_stream && format == Format::Table && std::io::stdout().is_terminal();
    loop {
        let mut rows = Vec::new();
        let mut code = 0;
        for name in &names {
            match target.call("stats", json!({ "id": name }), None).await {
                Ok(mut s) => {
                    s["name"] = Value::String(name.clone());
                    rows.push(s);
                }
                Err(e) => {
                    report(&e, name);
                    if code == 0 {
                        code = exit_code(e.kind());
                    }
                }
            }
        }
        if live {
            use crossterm::{cursor::MoveTo, execute, terminal::Clear, terminal::ClearType};
            let _ = execute!(std::io::stdout(), Clear(ClearType::All), MoveTo(0, 0));
        }
        let pair = |s: &Value, a: &str, b: &str| {
            format!(
                "{} / {}",
                s[a].as_u64().map(size).unwrap_or_else(|| "-".into()),
                s[b].as_u64().map(size).unwrap_or_else(|| "-".into())
            )
        };
        print_list(
            format,
            &rows,
            &[
                ("NAME", &|s| field(s, "name")),
                ("CPU %", &|s| {
                    format!("{:.2}%", s["cpuPercent"].as_f64().unwrap_or(0.0))
                }),
                ("MEM USAGE / LIMIT", &|s| {
                    pair(s, "memoryBytes", "memoryLimitBytes")
                }),
                ("MEM %", &|s| {
                    let used = s["memoryBytes"].as_f64().unwrap_or(0.0);
                    match s["memoryLimitBytes"].as_f64() {
                        Some(limit) if limit > 0.0 => format!("{:.2}%", used * 100.0 / limit),
                        _ => "-".into(),
                    }
                }),
                ("NET I/O", &|s| pair(s, "netRxBytes", "netTxBytes")),
                ("BLOCK I/O", &|s| {
                    pair(s, "blockReadBytes", "blockWriteBytes")
                }),
                ("PIDS", &|s| field(s, "pids")),
            ],
        )?;
        if !live {
            return Ok(code);
        }
        // Ctrl-C ends the view (the last sample stays on the screen), even where SIGINT
        // was inherited as ignored.
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(code),
        }
    }
}

fn print_event(format: Format, e: &Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if format == Format::Table && e["action"].is_string() {
        let name = e["instanceName"]
            .as_str()
            .or(e["instanceId"].as_str())
            .unwrap_or("-");
        writeln!(
            out,
            "{} {} {} {} {name}",
            field(e, "time"),
            field(e, "backend"),
            field(e, "kind"),
            field(e, "action"),
        )?;
    } else {
        writeln!(out, "{e}")?;
    }
    out.flush()?;
    Ok(())
}

/// `libgo events`.
pub async fn events(target: &Target, filter: Value, format: Format) -> Result<u8> {
    match target {
        Target::Local(_) => {
            let mut events = target.stream("events", json!({ "filter": filter })).await?;
            while let Some(e) = events.next().await {
                print_event(format, &e?)?;
            }
        }
        Target::Remote(remote) => {
            use tokio_tungstenite::tungstenite::Message;
            let query: Vec<String> = ["instance", "kind", "backend"]
                .iter()
                .filter_map(|k| {
                    filter[*k]
                        .as_str()
                        .map(|v| format!("{k}={}", crate::rest::escape(v)))
                })
                .collect();
            let path = if query.is_empty() {
                "/api/v1/events".to_string()
            } else {
                format!("/api/v1/events?{}", query.join("&"))
            };
            let mut socket = remote.websocket(&path).await?;
            while let Some(m) = socket.next().await {
                match m {
                    Ok(Message::Text(t)) => {
                        let e: Value = serde_json::from_str(&t)?;
                        if e["type"] == "pong" {
                            continue;
                        }
                        if e["code"].is_string() && e["status"].is_number() {
                            return Err(crate::target::error_frame(&t));
                        }
                        // The server wraps instance events (`{type: "instance", event}`) to
                        // send task changes on the same socket: show the event as embedded does.
                        if e["type"] == "instance" {
                            print_event(format, &e["event"])?;
                        } else {
                            print_event(format, &e)?;
                        }
                    }
                    Ok(Message::Close(_)) => break,
                    Ok(_) => {}
                    Err(e) => return Err(Error::unavailable(format!("event stream: {e}"))),
                }
            }
        }
    }
    Ok(0)
}

/// `libgo task …`.
pub async fn task(target: &Target, t: TaskCommand, format: Format) -> Result<u8> {
    let remote = server(target)?;
    match t {
        TaskCommand::List => {
            let items = remote.all_pages("/api/v1/tasks", &[], 1000).await?;
            print_list(
                format,
                &items,
                &[
                    ("ID", &|t| field(t, "id")),
                    ("KIND", &|t| field(t, "kind")),
                    ("TARGET", &|t| field(t, "target")),
                    ("STATUS", &|t| field(t, "status")),
                    ("PROGRESS", &|t| {
                        format!("{:.0}%", t["progress"].as_f64().unwrap_or(0.0))
                    }),
                    ("CREATED", &|t| field(t, "createdAt")),
                ],
            )?;
        }
        TaskCommand::Wait { id } => {
            let path = format!("/api/v1/tasks/{}", crate::rest::escape(&id));
            let task = remote.send(Method::GET, &path, &[], None).await?;
            print_one(format, &remote.wait_task(task, None).await?)?;
        }
        TaskCommand::Cancel { id } => {
            let path = format!("/api/v1/tasks/{}/cancel", crate::rest::escape(&id));
            remote.send(Method::POST, &path, &[], None).await?;
        }
    }
    Ok(0)
}

/// `libgo user …`.
pub async fn user(target: &Target, u: UserCommand, format: Format) -> Result<u8> {
    let remote = server(target)?;
    match u {
        UserCommand::List => {
            let items = remote.all_pages("/api/v1/users", &[], 10_000).await?;
            print_list(
                format,
                &items,
                &[
                    ("NAME", &|u| field(u, "username")),
                    ("ROLE", &|u| field(u, "role")),
                    ("SCOPE", &|u| field(u, "scope")),
                    ("ID", &|u| field(u, "id")),
                    ("CREATED", &|u| field(u, "createdAt")),
                ],
            )?;
        }
        UserCommand::Create { name, role, scope } => {
            let mut password = String::new();
            std::io::stdin().read_to_string(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']);
            let body =
                json!({"username": name, "password": password, "role": role, "scope": scope});
            let made = remote
                .send(Method::POST, "/api/v1/users", &[], Some(&body))
                .await?;
            print_made(format, &made, "username")?;
        }
        UserCommand::Delete { names } => {
            return delete_each(remote, "/api/v1/users", &names, format).await;
        }
    }
    Ok(0)
}

/// `libgo group …`.
pub async fn group(target: &Target, g: GroupCommand, format: Format) -> Result<u8> {
    let remote = server(target)?;
    match g {
        GroupCommand::List => {
            let items = remote.all_pages("/api/v1/groups", &[], 10_000).await?;
            print_list(
                format,
                &items,
                &[
                    ("NAME", &|g| field(g, "name")),
                    ("MEMBERS", &|g| field(g, "members")),
                    ("DESCRIPTION", &|g| field(g, "description")),
                ],
            )?;
        }
        GroupCommand::Create { name, description } => {
            let body = json!({"name": name, "description": description});
            let made = remote
                .send(Method::POST, "/api/v1/groups", &[], Some(&body))
                .await?;
            print_made(format, &made, "name")?;
        }
        GroupCommand::Delete { names } => {
            return delete_each(remote, "/api/v1/groups", &names, format).await;
        }
        GroupCommand::Add { group, users } => {
            return membership(remote, Method::PUT, &group, &users, format).await;
        }
        GroupCommand::Remove { group, users } => {
            return membership(remote, Method::DELETE, &group, &users, format).await;
        }
    }
    Ok(0)
}

/// `libgo address-pool …`.
pub async fn address_pool(target: &Target, a: AddressPoolCommand, format: Format) -> Result<u8> {
    let remote = server(target)?;
    let range = |(start, end, prefix): (String, String, u8)| json!({"start": start, "end": end, "prefix": prefix});
    let path = |name: &str| format!("/api/v1/address-pools/{}", crate::rest::escape(name));
    match a {
        AddressPoolCommand::List => {
            let items = remote
                .all_pages("/api/v1/address-pools", &[], 10_000)
                .await?;
            print_list(
                format,
                &items,
                &[
                    ("NAME", &|p| field(p, "name")),
                    ("GATEWAY", &|p| field(p, "gateway")),
                    ("ADDRESSES", &|p| field(p, "addresses")),
                    ("ALLOCATED", &|p| field(p, "allocated")),
                    ("RANGES", &|p| {
                        p["ranges"]
                            .as_array()
                            .map(|rs| {
                                rs.iter()
                                    .map(|r| {
                                        format!(
                                            "{}-{}/{}",
                                            field(r, "start"),
                                            field(r, "end"),
                                            field(r, "prefix")
                                        )
                                    })
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            })
                            .unwrap_or_default()
                    }),
                ],
            )?;
        }
        AddressPoolCommand::Info { name } => {
            let pool = remote.send(Method::GET, &path(&name), &[], None).await?;
            print_one(format, &pool)?;
        }
        AddressPoolCommand::Create {
            name,
            gateway,
            dns,
            range: ranges,
        } => {
            let body = json!({"name": name, "gateway": gateway, "dns": dns,
                              "ranges": ranges.into_iter().map(range).collect::<Vec<_>>()});
            let made = remote
                .send(Method::POST, "/api/v1/address-pools", &[], Some(&body))
                .await?;
            print_made(format, &made, "name")?;
        }
        AddressPoolCommand::Delete { names } => {
            return delete_each(remote, "/api/v1/address-pools", &names, format).await;
        }
        AddressPoolCommand::AddRange { name, range: r } => {
            let pool = remote
                .send(
                    Method::POST,
                    &format!("{}/ranges", path(&name)),
                    &[],
                    Some(&range(r)),
                )
                .await?;
            print_made(format, &pool, "name")?;
        }
        AddressPoolCommand::RemoveRange { name, start } => {
            let p = format!("{}/ranges/{}", path(&name), crate::rest::escape(&start));
            let pool = remote.send(Method::DELETE, &p, &[], None).await?;
            print_made(format, &pool, "name")?;
        }
    }
    Ok(0)
}

/// Adds (PUT) or removes (DELETE) each user, with a result per user.
async fn membership(
    remote: &RemoteClient,
    method: Method,
    group: &str,
    users: &[String],
    format: Format,
) -> Result<u8> {
    let base = format!("/api/v1/groups/{}/members", crate::rest::escape(group));
    for_each_name(users, format, |user| {
        let path = format!("{base}/{}", crate::rest::escape(user));
        let method = method.clone();
        async move { remote.send(method, &path, &[], None).await.map(drop) }
    })
    .await
}

/// `libgo role …`.
pub async fn role(target: &Target, r: RoleCommand, format: Format) -> Result<u8> {
    let remote = server(target)?;
    let count = |r: &Value| r["permissions"].as_array().map_or(0, Vec::len).to_string();
    match r {
        RoleCommand::List => {
            let items = remote.all_pages("/api/v1/roles", &[], 10_000).await?;
            print_list(
                format,
                &items,
                &[
                    ("NAME", &|r| field(r, "name")),
                    ("BUILTIN", &|r| field(r, "builtin")),
                    ("PERMISSIONS", &count),
                ],
            )?;
        }
        RoleCommand::Permissions => {
            let answer = remote
                .send(Method::GET, "/api/v1/permissions", &[], None)
                .await?;
            let items = answer.as_array().cloned().unwrap_or_default();
            print_list(
                format,
                &items,
                &[
                    ("PERMISSION", &|p| field(p, "name")),
                    ("ROLE", &|p| field(p, "role")),
                    ("ROUTES", &|p| {
                        p["routes"].as_array().map_or(0, Vec::len).to_string()
                    }),
                ],
            )?;
        }
        RoleCommand::Create { name, permissions } => {
            let body = json!({"name": name, "permissions": permissions});
            let made = remote
                .send(Method::POST, "/api/v1/roles", &[], Some(&body))
                .await?;
            print_made(format, &made, "name")?;
        }
        RoleCommand::Delete { names } => {
            return delete_each(remote, "/api/v1/roles", &names, format).await;
        }
    }
    Ok(0)
}

/// `libgo api-key …`.
pub async fn api_key(target: &Target, k: ApiKeyCommand, format: Format) -> Result<u8> {
    let remote = server(target)?;
    match k {
        ApiKeyCommand::List => {
            let items = remote.all_pages("/api/v1/api-keys", &[], 10_000).await?;
            print_list(
                format,
                &items,
                &[
                    ("ID", &|k| field(k, "id")),
                    ("NAME", &|k| field(k, "name")),
                    ("PREFIX", &|k| field(k, "prefix")),
                    ("USER", &|k| field(k, "username")),
                    ("EXPIRES", &|k| field(k, "expiresAt")),
                    ("LAST USED", &|k| field(k, "lastUsedAt")),
                ],
            )?;
        }
        ApiKeyCommand::Create {
            name,
            expires_in_days,
        } => {
            let body = json!({"name": name, "expiresInDays": expires_in_days});
            let made = remote
                .send(Method::POST, "/api/v1/api-keys", &[], Some(&body))
                .await?;
            print_made(format, &made, "key")?;
        }
        ApiKeyCommand::Revoke { ids } => {
            return delete_each(remote, "/api/v1/api-keys", &ids, format).await;
        }
    }
    Ok(0)
}

/// `libgo audit`.
pub async fn audit(target: &Target, limit: u32, format: Format) -> Result<u8> {
    let remote = server(target)?;
    let items = remote
        .all_pages("/api/v1/audit", &[], limit as usize)
        .await?;
    print_list(
        format,
        &items,
        &[
            ("TIME", &|a| field(a, "time")),
            ("USER", &|a| field(a, "username")),
            ("METHOD", &|a| field(a, "method")),
            ("PATH", &|a| field(a, "path")),
            ("STATUS", &|a| field(a, "status")),
            ("TARGET", &|a| field(a, "target")),
        ],
    )?;
    Ok(0)
}
