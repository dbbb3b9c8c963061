//! Conversions between LibGo's types and Docker's.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum,
    ContainerStatsResponse, ContainerSummary, ContainerSummaryStateEnum, HostConfig, Mount,
    MountType, PortBinding, PortSummaryTypeEnum, RestartPolicy as DockerRestart,
    RestartPolicyNameEnum,
};
use chrono::{DateTime, TimeZone, Utc};
use libgo_core::{
    Error, EventAction, HostAccess, Instance, InstanceKind, InstanceSpec, InstanceState, MountKind,
    PortMapping, Protocol, RestartPolicy, Result, Stats,
};
use regex::Regex;

use crate::LABEL_IMAGE;

/// Docker's create body for a validated spec.
pub(crate) fn create_body(spec: &InstanceSpec) -> ContainerCreateBody {
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &spec.ports {
        let key = format!("{}/{}", p.container_port, p.protocol.as_str());
        let binding = PortBinding {
            host_ip: p.host_ip.clone(),
            host_port: Some(p.host_port.map(|h| h.to_string()).unwrap_or_default()),
        };
        port_bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(binding);
    }
    let mounts = spec
        .mounts
        .iter()
        .map(|m| Mount {
            target: Some(m.target.clone()),
            source: (m.kind != MountKind::Tmpfs).then(|| m.source.clone()),
            typ: Some(match m.kind {
                MountKind::Volume => MountType::VOLUME,
                MountKind::Bind => MountType::BIND,
                MountKind::Tmpfs => MountType::TMPFS,
            }),
            read_only: Some(m.read_only),
            ..Default::default()
        })
        .collect::<Vec<_>>();
    let mut labels: HashMap<String, String> = spec
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(image) = &spec.image {
        labels.insert(LABEL_IMAGE.to_string(), image.clone());
    }
    let host_config = HostConfig {
        port_bindings: (!port_bindings.is_empty()).then_some(port_bindings.clone()),
        mounts: (!mounts.is_empty()).then_some(mounts),
        memory: spec.memory_bytes.map(|m| m as i64),
        nano_cpus: spec.cpus.map(|c| i64::from(c) * 1_000_000_000),
        restart_policy: spec.restart_policy.map(restart_policy),
        privileged: spec.privileged.then_some(true),
        devices: (!spec.devices.is_empty()).then(|| {
            spec.devices
                .iter()
                .map(|d| bollard::models::DeviceMapping {
                    path_on_host: Some(d.clone()),
                    path_in_container: Some(d.clone()),
                    cgroup_permissions: Some("rwm".into()),
                })
                .collect()
        }),
        network_mode: spec.networks.first().cloned(),
        dns: {
            let dns: Vec<String> = spec
                .assigned
                .iter()
                .flat_map(|a| a.network.dns.iter().cloned())
                .collect();
            (!dns.is_empty()).then_some(dns)
        },
        ..Default::default()
    };
    let networking_config = spec.networks.first().and_then(|n| {
        let endpoint = endpoint(spec, n)?;
        Some(bollard::models::NetworkingConfig {
            endpoints_config: Some(HashMap::from([(n.clone(), endpoint)])),
        })
    });
    ContainerCreateBody {
        image: spec.image.clone(),
        cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
        entrypoint: spec.entrypoint.clone(),
        env: (!spec.env.is_empty())
            .then(|| spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        working_dir: spec.workdir.clone(),
        tty: spec.tty.then_some(true),
        open_stdin: spec.tty.then_some(true),
        exposed_ports: (!port_bindings.is_empty()).then(|| port_bindings.keys().cloned().collect()),
        labels: Some(labels),
        host_config: Some(host_config),
        networking_config,
        ..Default::default()
    }
}

/// The endpoint of a container on `network` when an address pool's address goes there: its
/// static address.
pub(crate) fn endpoint(
    spec: &InstanceSpec,
    network: &str,
) -> Option<bollard::models::EndpointSettings> {
    let a = spec.assigned.iter().find(|a| a.network.name == network)?;
    Some(bollard::models::EndpointSettings {
        ipam_config: Some(bollard::models::EndpointIpamConfig {
            ipv4_address: Some(a.address.to_string()),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn state_of(status: Option<ContainerStateStatusEnum>) -> InstanceState {
    match status {
        Some(ContainerStateStatusEnum::RUNNING) | Some(ContainerStateStatusEnum::RESTARTING) => {
            InstanceState::Running
        }
        Some(ContainerStateStatusEnum::PAUSED) => InstanceState::Paused,
        Some(ContainerStateStatusEnum::CREATED) | Some(ContainerStateStatusEnum::EXITED) => {
            InstanceState::Stopped
        }
        Some(ContainerStateStatusEnum::DEAD) => InstanceState::Error,
        _ => InstanceState::Unknown,
    }
}

fn summary_state(state: Option<ContainerSummaryStateEnum>) -> InstanceState {
    match state {
        Some(ContainerSummaryStateEnum::RUNNING) | Some(ContainerSummaryStateEnum::RESTARTING) => {
            InstanceState::Running
        }
        Some(ContainerSummaryStateEnum::PAUSED) => InstanceState::Paused,
        Some(ContainerSummaryStateEnum::CREATED) | Some(ContainerSummaryStateEnum::EXITED) => {
            InstanceState::Stopped
        }
        Some(ContainerSummaryStateEnum::DEAD) => InstanceState::Error,
        _ => InstanceState::Unknown,
    }
}

fn btree(map: Option<HashMap<String, String>>) -> BTreeMap<String, String> {
    map.unwrap_or_default().into_iter().collect()
}

fn protocol(p: &str) -> Protocol {
    if p.eq_ignore_ascii_case("udp") {
        Protocol::Udp
    } else {
        Protocol::Tcp
    }
}

/// The image a container reports: the one LibGo created it from, else Docker's.
fn image_of(labels: &BTreeMap<String, String>, docker_image: Option<String>) -> Option<String> {
    labels.get(LABEL_IMAGE).cloned().or(docker_image)
}

/// An instance from a full inspect.
/// Docker's restart policy for LibGo's.
pub(crate) fn restart_policy(p: RestartPolicy) -> DockerRestart {
    DockerRestart {
        name: Some(match p {
            RestartPolicy::No => RestartPolicyNameEnum::NO,
            RestartPolicy::Always => RestartPolicyNameEnum::ALWAYS,
            RestartPolicy::UnlessStopped => RestartPolicyNameEnum::UNLESS_STOPPED,
            RestartPolicy::OnFailure => RestartPolicyNameEnum::ON_FAILURE,
        }),
        maximum_retry_count: None,
    }
}

/// What a container's host configuration takes from the host.
pub(crate) fn host_access(host: &bollard::models::HostConfig) -> Vec<HostAccess> {
    let mut out = Vec::new();
    if host.privileged == Some(true) {
        out.push(HostAccess::Privileged("privileged mode".into()));
    }
    for cap in host.cap_add.iter().flatten() {
        out.push(HostAccess::Privileged(format!("capability {cap}")));
    }
    for opt in host.security_opt.iter().flatten() {
        if opt.contains("unconfined") {
            out.push(HostAccess::Privileged(format!("security option {opt}")));
        }
    }
    for bind in host.binds.iter().flatten() {
        // `source:target[:options]`; a source that is not a path is a named volume.
        let source = bind.split(':').next().unwrap_or_default();
        if source.starts_with('/') {
            out.push(HostAccess::HostPath(source.to_string()));
        }
    }
    for m in host.mounts.iter().flatten() {
        if m.typ == Some(bollard::models::MountType::BIND) {
            out.push(HostAccess::HostPath(m.source.clone().unwrap_or_default()));
        }
    }
    for d in host.devices.iter().flatten() {
        out.push(HostAccess::Device(
            d.path_on_host.clone().unwrap_or_default(),
        ));
    }
    if !host.device_requests.as_ref().is_none_or(Vec::is_empty) {
        out.push(HostAccess::Device("device request".into()));
    }
    if let Some(mode) = host.network_mode.as_deref()
        && (mode == "host" || mode == "none" || mode.starts_with("container:"))
    {
        out.push(HostAccess::HostNamespace(format!("network {mode}")));
    }
    let namespaces = [
        ("pid", host.pid_mode.as_deref()),
        ("ipc", host.ipc_mode.as_deref()),
        ("uts", host.uts_mode.as_deref()),
        ("user", host.userns_mode.as_deref()),
        // The cgroup namespace is left out: `host` is Docker's default on cgroup v1 hosts
        // and gives no write access to the host by itself.
    ];
    for (ns, mode) in namespaces {
        if let Some(mode) = mode
            && (mode == "host" || mode.starts_with("container:"))
        {
            out.push(HostAccess::HostNamespace(format!("{ns} {mode}")));
        }
    }
    out
}

pub(crate) fn from_inspect(backend: &str, c: ContainerInspectResponse) -> Instance {
    let config = c.config.unwrap_or_default();
    let host = c.host_config.unwrap_or_default();
    let labels = btree(config.labels);
    let state = c.state.unwrap_or_default();
    let settings = c.network_settings.unwrap_or_default();
    let mut ports = Vec::new();
    for (key, bindings) in settings.ports.unwrap_or_default() {
        let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let Ok(container_port) = port.parse::<u16>() else {
            continue;
        };
        for b in bindings.unwrap_or_default() {
            ports.push(PortMapping {
                container_port,
                host_port: b.host_port.and_then(|p| p.parse().ok()),
                host_ip: b.host_ip.filter(|ip| !ip.is_empty()),
                protocol: protocol(proto),
            });
        }
    }
    ports.sort_by_key(|p| {
        (
            p.container_port,
            p.protocol == Protocol::Udp,
            p.host_ip.clone(),
            p.host_port,
        )
    });
    // Ordered by network name, so that two reads of one container compare equal.
    let networks: BTreeMap<_, _> = settings.networks.unwrap_or_default().into_iter().collect();
    let network_names: Vec<String> = networks.keys().cloned().collect();
    let ip_addresses = networks
        .values()
        .filter_map(|n| n.ip_address.clone())
        .filter(|ip| !ip.is_empty())
        .collect();
    let exited = matches!(state.status, Some(ContainerStateStatusEnum::EXITED));
    Instance {
        id: c.id.unwrap_or_default(),
        name: c
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        kind: InstanceKind::Container,
        backend: backend.to_string(),
        host: String::new(),
        state: state_of(state.status),
        image: image_of(&labels, config.image),
        cpus: host.nano_cpus.filter(|n| *n > 0).map(|n| n as f64 / 1e9),
        memory_bytes: host.memory.filter(|m| *m > 0).map(|m| m as u64),
        created_at: c.created,
        labels,
        ports,
        networks: network_names,
        ip_addresses,
        exit_code: if exited { state.exit_code } else { None },
    }
}

/// An instance from a list entry (no cpu/memory limits: those need an inspect).
pub(crate) fn from_summary(backend: &str, c: ContainerSummary) -> Instance {
    let labels = btree(c.labels);
    let mut ports: Vec<PortMapping> = c
        .ports
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.public_port.is_some())
        .map(|p| PortMapping {
            container_port: p.private_port,
            host_port: p.public_port,
            host_ip: p.ip.filter(|ip| !ip.is_empty()),
            protocol: match p.typ {
                Some(PortSummaryTypeEnum::UDP) => Protocol::Udp,
                _ => Protocol::Tcp,
            },
        })
        .collect();
    ports.sort_by_key(|p| {
        (
            p.container_port,
            p.protocol == Protocol::Udp,
            p.host_ip.clone(),
            p.host_port,
        )
    });
    let networks: BTreeMap<_, _> = c
        .network_settings
        .and_then(|s| s.networks)
        .unwrap_or_default()
        .into_iter()
        .collect();
    let network_names: Vec<String> = networks.keys().cloned().collect();
    let ip_addresses = networks
        .values()
        .filter_map(|n| n.ip_address.clone())
        .filter(|ip| !ip.is_empty())
        .collect();
    let name = c
        .names
        .unwrap_or_default()
        .into_iter()
        .next()
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_string();
    Instance {
        id: c.id.unwrap_or_default(),
        name,
        kind: InstanceKind::Container,
        backend: backend.to_string(),
        host: String::new(),
        state: summary_state(c.state),
        image: image_of(&labels, c.image),
        cpus: None,
        memory_bytes: None,
        created_at: c.created.and_then(|s| Utc.timestamp_opt(s, 0).single()),
        labels,
        ports,
        networks: network_names,
        ip_addresses,
        exit_code: None,
    }
}

/// CPU time used by a container, in nanoseconds, and the host's, from one sample.
pub(crate) fn cpu_times(s: &ContainerStatsResponse) -> (u64, u64, u32) {
    let cpu = s.cpu_stats.clone().unwrap_or_default();
    let usage = cpu.cpu_usage.clone().unwrap_or_default();
    let online = cpu
        .online_cpus
        .filter(|n| *n > 0)
        .or_else(|| usage.percpu_usage.as_ref().map(|p| p.len() as u32))
        .unwrap_or(1);
    (
        usage.total_usage.unwrap_or(0),
        cpu.system_cpu_usage.unwrap_or(0),
        online,
    )
}

/// Normalised stats. `cpu_percent` is filled in by the caller, who knows the previous sample.
pub(crate) fn stats(s: &ContainerStatsResponse) -> Stats {
    let memory = s.memory_stats.clone().unwrap_or_default();
    let raw = memory.stats.clone().unwrap_or_default();
    // Page cache is reclaimable; `docker stats` leaves it out the same way.
    let cache = raw
        .get("inactive_file")
        .or_else(|| raw.get("total_inactive_file"))
        .or_else(|| raw.get("cache"))
        .copied()
        .unwrap_or(0);
    let usage = memory.usage.unwrap_or(0);
    let mut block_read = 0;
    let mut block_write = 0;
    for e in s
        .blkio_stats
        .clone()
        .and_then(|b| b.io_service_bytes_recursive)
        .unwrap_or_default()
    {
        match e.op.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("read") => block_read += e.value.unwrap_or(0),
            Some("write") => block_write += e.value.unwrap_or(0),
            _ => {}
        }
    }
    let (mut rx, mut tx) = (0, 0);
    for n in s.networks.clone().unwrap_or_default().values() {
        rx += n.rx_bytes.unwrap_or(0);
        tx += n.tx_bytes.unwrap_or(0);
    }
    Stats {
        timestamp: s.read.unwrap_or_else(Utc::now),
        cpu_percent: 0.0,
        memory_bytes: usage.saturating_sub(cache),
        memory_limit_bytes: memory.limit.unwrap_or(0),
        block_read_bytes: block_read,
        block_write_bytes: block_write,
        net_rx_bytes: rx,
        net_tx_bytes: tx,
        pids: s.pids_stats.as_ref().and_then(|p| p.current),
    }
}

/// CPU percent between two samples, Docker CLI's formula: share of host CPU time × CPUs.
pub(crate) fn cpu_percent_between(prev: (u64, u64), now: (u64, u64, u32)) -> f64 {
    let cpu_delta = now.0.saturating_sub(prev.0) as f64;
    let system_delta = now.1.saturating_sub(prev.1) as f64;
    if system_delta <= 0.0 {
        return 0.0;
    }
    cpu_delta / system_delta * f64::from(now.2) * 100.0
}

/// The LibGo action for a Docker container event action.
pub(crate) fn event_action(action: &str) -> Option<EventAction> {
    Some(match action {
        "create" => EventAction::Created,
        "start" => EventAction::Started,
        "stop" => EventAction::Stopped,
        "die" | "oom" => EventAction::Died,
        "pause" => EventAction::Paused,
        "unpause" => EventAction::Resumed,
        "destroy" => EventAction::Deleted,
        _ => return None,
    })
}

/// Splits Docker's RFC 3339 timestamp prefix off a log line.
pub(crate) fn split_timestamp(line: &str) -> (Option<DateTime<Utc>>, &str) {
    match line.split_once(' ') {
        Some((ts, rest)) => match DateTime::parse_from_rfc3339(ts) {
            Ok(t) => (Some(t.with_timezone(&Utc)), rest),
            Err(_) => (None, line),
        },
        None => (None, line),
    }
}

/// `repo:tag` → (`repo`, `tag`), with `latest` as the default tag; digests stay in `repo`.
/// Docker's grammar for a name with an optional tag (distribution's `reference` package):
/// an optional registry (`host[:port]/`), lowercase path components joined by `.`, `_`,
/// `__` or dashes, and a tag of at most 128 word characters, dots and dashes.
static TAGGED_NAME: LazyLock<Regex> = LazyLock::new(|| {
    let component = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
    let label = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?";
    let domain = format!(r"(?:{label}(?:\.{label})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?");
    let pattern = format!(r"^(?:{domain}/)?{component}(?:/{component})*(?::[\w][\w.-]{{0,127}})?$");
    Regex::new(&pattern).expect("the reference grammar is a valid pattern")
});

/// Checks that `reference` can name a new tag on dockerd: its grammar, the 255-character
/// limit of a name, and no name that reads as an image id. dockerd 20.10 answers these
/// with a 500, so they are caught here and reported as the caller's error.
pub(crate) fn tag_target(reference: &str) -> Result<()> {
    let (name, _) = split_reference(reference);
    let why = if reference.contains('@') {
        Some("a tag cannot carry a digest")
    } else if !TAGGED_NAME.is_match(reference) {
        Some(
            "use lowercase path components (letters, digits, '.', '_', '-') after an optional \
             registry host, then an optional ':tag' of at most 128 characters",
        )
    } else if name.len() > 255 {
        Some("a repository name has at most 255 characters")
    } else if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
        Some("a 64-character hexadecimal name would read as an image id")
    } else {
        None
    };
    match why {
        Some(why) => Err(Error::invalid(format!(
            "image reference {reference:?} cannot be a tag: {why}"
        ))),
        None => Ok(()),
    }
}

pub(crate) fn split_reference(reference: &str) -> (String, String) {
    if reference.contains('@') {
        return (reference.to_string(), String::new());
    }
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(i) => (
            reference[..last_slash + i].to_string(),
            reference[last_slash + i + 1..].to_string(),
        ),
        None => (reference.to_string(), "latest".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libgo_core::ErrorKind;

    #[test]
    fn tag_targets_follow_dockers_reference_grammar() {
        for good in [
            "busybox",
            "busybox:1.36",
            "libgo-test/busybox:latest",
            "127.0.0.1:5000/a/b:v1",
            "localhost:5000/a__b/c-d.e_f:V_1.0-rc",
            "Registry.Example.com/x",
        ] {
            assert!(tag_target(good).is_ok(), "{good}");
        }
        let long_tag = format!("x:{}", "a".repeat(129));
        let long_name = "0".repeat(256);
        let hex_name = "a".repeat(64);
        for bad in [
            "ABC",
            "a__-b",
            "x:",
            "x:-tag",
            "a//b",
            "busybox@sha256:0000",
            long_tag.as_str(),
            long_name.as_str(),
            hex_name.as_str(),
        ] {
            let e = tag_target(bad).expect_err(bad);
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn references_split_on_the_last_colon_after_the_last_slash() {
        assert_eq!(
            split_reference("busybox"),
            ("busybox".into(), "latest".into())
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/a/b:v1"),
            ("127.0.0.1:5000/a/b".into(), "v1".into())
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/a"),
            ("127.0.0.1:5000/a".into(), "latest".into())
        );
    }

    #[test]
    fn log_timestamps_are_split() {
        let (t, rest) = split_timestamp("2024-05-01T10:00:00.123456789Z hello world");
        assert!(t.is_some());
        assert_eq!(rest, "hello world");
        let (t, rest) = split_timestamp("no timestamp");
        assert!(t.is_none());
        assert_eq!(rest, "no timestamp");
    }

    #[test]
    fn cpu_percent_uses_cpu_count() {
        // Half the host's time on a 2-CPU host is one full CPU: 100 %.
        let p = cpu_percent_between((0, 0), (1_000, 2_000, 2));
        assert!((p - 100.0).abs() < 1e-9);
    }
}
