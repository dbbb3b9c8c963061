//! Hosts (named sets of engines), compute pools, and where a new instance goes.
//!
//! A host is what a person calls a machine: its Docker and its libvirt, reached through
//! their own remote protocols. The machine LibGo runs on is host [`LOCAL_HOST`]. Every
//! backend belongs to one host; the facade ([`crate::LibGo`]) knows which, stamps each
//! [`crate::Instance`] with it, and places new instances with [`place`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Error, InstanceKind, Result};

/// The host the server (or the embedded library) runs on.
pub const LOCAL_HOST: &str = "local";

/// The compute pool a host joins when it names none.
pub const DEFAULT_POOL: &str = "default";

/// A host's facts as the facade keeps them: what placement and listings read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct HostMembership {
    /// Host name.
    pub name: String,
    /// Compute pool.
    pub pool: String,
    /// Whether new instances may be placed on it.
    pub enabled: bool,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Where the other hosts' QEMU reaches this host's QEMU for a migration (an address or
    /// name); the host part of its libvirt URI when `None`.
    pub migration_address: Option<String>,
}

impl HostMembership {
    /// The local host, in the default pool, enabled.
    pub fn local() -> Self {
        HostMembership {
            name: LOCAL_HOST.into(),
            pool: DEFAULT_POOL.into(),
            enabled: true,
            labels: BTreeMap::new(),
            migration_address: None,
        }
    }
}

/// What a host has, as its engines report it.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct HostCapacity {
    /// Logical CPUs.
    pub cpus: u32,
    /// Memory.
    pub memory_bytes: u64,
    /// Size of the storage new disks go to (libvirt's default pool), where known.
    pub disk_bytes: Option<u64>,
}

/// What the instances on a host reserve: running or paused ones, by their limits.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct HostAllocation {
    /// CPUs.
    pub cpus: f64,
    /// Memory.
    pub memory_bytes: u64,
}

/// What a host uses now, as its engines report it; `None` where no engine of the host
/// reports it (Docker reports none of these; libvirt all but the network counters, which
/// come from the instances' statistics, see [`crate::LibGo::note_traffic`]).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct HostUsage {
    /// CPU busy, 0–100 of the whole host.
    pub cpu_percent: Option<f64>,
    /// Memory in use.
    pub memory_bytes: Option<u64>,
    /// Storage in use (libvirt's default pool).
    pub disk_bytes: Option<u64>,
    /// Bytes received by the host's running instances (the sum of their interfaces'
    /// counters at the last statistics sample; `None` before one).
    pub rx_bytes: Option<u64>,
    /// Bytes sent by the host's running instances, likewise.
    pub tx_bytes: Option<u64>,
}

/// A host's resources in one answer of one engine.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct HostResources {
    /// What it has.
    pub capacity: HostCapacity,
    /// What it uses.
    pub usage: HostUsage,
}

/// Instances on a host by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct HostInstanceCounts {
    /// Running or paused.
    pub running: u64,
    /// Defined, not running.
    pub stopped: u64,
    /// On an engine that does not answer.
    pub lost: u64,
    /// Being migrated or moved off this host.
    pub migrating: u64,
}

/// One engine of a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct HostEngine {
    /// `docker` or `kvm`.
    pub kind: String,
    /// The backend's name.
    pub backend: String,
    /// Where it is reached.
    pub url: String,
    /// Whether it answers.
    pub up: bool,
    /// Its version, or why it does not answer.
    pub message: String,
}

/// A host as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Host {
    /// Name.
    pub name: String,
    /// Compute pool.
    pub pool: String,
    /// Whether new instances may be placed on it.
    pub enabled: bool,
    /// Whether any of its engines answers.
    pub alive: bool,
    /// Its engines.
    pub engines: Vec<HostEngine>,
    /// What it has.
    pub capacity: HostCapacity,
    /// What its instances reserve.
    pub allocated: HostAllocation,
    /// What it uses.
    pub usage: HostUsage,
    /// Its instances by state.
    pub instances: HostInstanceCounts,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// A request to move an instance to another host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MigrateRequest {
    /// The host to move it to.
    pub host: String,
    /// VMs: keep the guest running while its memory and disks are copied (`true`, the
    /// default), or pause it for the copy. Containers and stopped VMs are always moved
    /// cold.
    #[serde(default = "yes")]
    pub live: bool,
}

fn yes() -> bool {
    true
}

/// How a backend moves one of its instances to another backend of its engine.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MigrationSpec {
    /// Keep a VM running during the copy.
    pub live: bool,
    /// Where the destination's engine is reached for the data (its host's migration
    /// address); the backend derives it from the destination's URL when `None`.
    pub address: Option<String>,
}

/// How an instance was moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum MigrationKind {
    /// A VM moved while it ran (paused only for the final switch).
    Live,
    /// A VM moved paused.
    Offline,
    /// Copied while stopped and made again on the other host: a container (stopped first,
    /// started after) or a stopped VM (its volumes copied, it stays stopped). Never live.
    Move,
}

/// What a migration did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct MigrationReport {
    /// The instance, where it is now.
    pub instance: crate::Instance,
    /// How it was moved.
    pub kind: MigrationKind,
    /// The backend it left.
    pub from_backend: String,
    /// The backend it is on now.
    pub to_backend: String,
    /// How long the move took.
    pub elapsed_ms: u64,
    /// How long the guest was paused (libvirt's job statistics), where known.
    pub downtime_ms: Option<u64>,
    /// Bytes copied (memory and disks), where known.
    pub transferred_bytes: Option<u64>,
}

/// A compute pool: a group of hosts that placement treats as one (Nano's pools of cells).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ComputePoolSpec {
    /// Name, DNS-label-like.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", max_length = 63)
    )]
    pub name: String,
    /// Whether new instances may be placed in it (`true`).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Fail over (`false`): when a host's VM engine has not answered for the server's
    /// `failover_after_secs`, its VMs are defined again on another host of the pool and
    /// started if they ran. Their disks must be on storage every host of the pool reaches
    /// (a storage pool of the same path on each); QEMU's image locks keep a VM whose old
    /// host still runs it from starting twice. Containers are not failed over.
    #[serde(default)]
    pub failover: bool,
    /// The address pool (Nano's `network`) every instance placed in it that asks for no
    /// address gets one from.
    #[serde(default)]
    pub network: Option<String>,
}

/// A compute pool as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ComputePool {
    /// Name.
    pub name: String,
    /// Whether new instances may be placed in it.
    pub enabled: bool,
    /// Whether its hosts' VMs fail over (see [`ComputePoolSpec::failover`]).
    pub failover: bool,
    /// Its address pool (see [`ComputePoolSpec::network`]).
    pub network: Option<String>,
    /// Its hosts, by name.
    pub hosts: Vec<String>,
}

/// Two counts: how many are off and how many on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct OffOn {
    /// Offline hosts, disabled pools.
    pub off: u64,
    /// Online hosts, enabled pools.
    pub on: u64,
}

/// The aggregated status of a compute pool, or of the whole zone (every host): the fields
/// of Nano's `compute_pool_status` and `compute_zone_status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    /// The pool's name, or `zone`.
    pub name: String,
    /// Whether placement uses it (the zone: always).
    pub enabled: bool,
    /// The zone only: pools disabled and enabled.
    pub pools: Option<OffOn>,
    /// Hosts not answering and answering.
    pub hosts: OffOn,
    /// Instances by state.
    pub instances: HostInstanceCounts,
    /// CPUs busy (the sum over hosts of each one's busy share times its CPUs).
    pub cpu_usage: f64,
    /// CPUs.
    pub max_cpu: u64,
    /// Memory not in use.
    pub available_memory_bytes: u64,
    /// Memory.
    pub max_memory_bytes: u64,
    /// Storage not in use.
    pub available_disk_bytes: u64,
    /// Storage.
    pub max_disk_bytes: u64,
    /// Bytes received by the hosts, where their engines report it.
    pub rx_bytes: Option<u64>,
    /// Bytes sent by the hosts, where their engines report it.
    pub tx_bytes: Option<u64>,
}

impl PoolStatus {
    /// The status of `hosts` together, under `name`.
    pub fn of(name: &str, enabled: bool, hosts: &[&Host]) -> PoolStatus {
        let mut s = PoolStatus {
            name: name.to_string(),
            enabled,
            pools: None,
            hosts: OffOn::default(),
            instances: HostInstanceCounts::default(),
            cpu_usage: 0.0,
            max_cpu: 0,
            available_memory_bytes: 0,
            max_memory_bytes: 0,
            available_disk_bytes: 0,
            max_disk_bytes: 0,
            rx_bytes: None,
            tx_bytes: None,
        };
        for h in hosts {
            if h.alive {
                s.hosts.on += 1;
            } else {
                s.hosts.off += 1;
            }
            s.instances.running += h.instances.running;
            s.instances.stopped += h.instances.stopped;
            s.instances.lost += h.instances.lost;
            s.instances.migrating += h.instances.migrating;
            let cpus = u64::from(h.capacity.cpus);
            s.max_cpu += cpus;
            s.cpu_usage += h.usage.cpu_percent.unwrap_or(0.0) * cpus as f64 / 100.0;
            s.max_memory_bytes += h.capacity.memory_bytes;
            s.available_memory_bytes += h
                .capacity
                .memory_bytes
                .saturating_sub(h.usage.memory_bytes.unwrap_or(0));
            let disk = h.capacity.disk_bytes.unwrap_or(0);
            s.max_disk_bytes += disk;
            s.available_disk_bytes += disk.saturating_sub(h.usage.disk_bytes.unwrap_or(0));
            if let Some(rx) = h.usage.rx_bytes {
                *s.rx_bytes.get_or_insert(0) += rx;
            }
            if let Some(tx) = h.usage.tx_bytes {
                *s.tx_bytes.get_or_insert(0) += tx;
            }
        }
        s
    }
}

/// Seed 001's resource use of one host or the zone, in percent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ResourceUsage {
    /// `local`, another host's name, or `zone`.
    pub scope: String,
    /// CPU busy, 0–100.
    pub cpu_usage: f64,
    /// Memory in use, 0–100.
    pub memory_usage: f64,
    /// Storage in use, 0–100.
    pub disk_usage: f64,
    /// Bytes received and sent, where reported.
    pub network: NetworkBytes,
}

/// Bytes through the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct NetworkBytes {
    /// Received.
    pub rx_bytes: Option<u64>,
    /// Sent.
    pub tx_bytes: Option<u64>,
}

impl ResourceUsage {
    /// The use that `status` adds up to.
    pub fn of(scope: &str, s: &PoolStatus) -> ResourceUsage {
        let pct = |used: f64, max: f64| if max > 0.0 { used * 100.0 / max } else { 0.0 };
        ResourceUsage {
            scope: scope.to_string(),
            cpu_usage: pct(s.cpu_usage, s.max_cpu as f64),
            memory_usage: pct(
                s.max_memory_bytes.saturating_sub(s.available_memory_bytes) as f64,
                s.max_memory_bytes as f64,
            ),
            disk_usage: pct(
                s.max_disk_bytes.saturating_sub(s.available_disk_bytes) as f64,
                s.max_disk_bytes as f64,
            ),
            network: NetworkBytes {
                rx_bytes: s.rx_bytes,
                tx_bytes: s.tx_bytes,
            },
        }
    }
}

/// What evacuating a host does with each of its instances (Incus's actions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum EvacuateAction {
    /// Stop it where it is.
    Stop,
    /// Move it to another host, a VM paused for the copy.
    Migrate,
    /// Move it to another host, a running VM live (containers always move cold).
    LiveMigrate,
}

/// A request to empty a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EvacuateRequest {
    /// What to do with each instance.
    pub action: EvacuateAction,
}

/// A host as [`place`] sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Host name.
    pub name: String,
    /// Compute pool.
    pub pool: String,
    /// Placement allowed on it.
    pub enabled: bool,
    /// Its engines answer.
    pub alive: bool,
    /// The kinds of instance its answering engines manage.
    pub kinds: Vec<InstanceKind>,
    /// Its memory.
    pub memory_bytes: u64,
    /// What its running instances reserve ([`reservation`]).
    pub allocated_memory_bytes: u64,
    /// How many instances it has.
    pub instances: u64,
}

/// What is to be placed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Placement<'a> {
    /// The instance's kind.
    pub kind: Option<InstanceKind>,
    /// The memory it reserves ([`reservation`]).
    pub memory_bytes: u64,
    /// A host it must go to.
    pub host: Option<&'a str>,
    /// A pool it must go to.
    pub pool: Option<&'a str>,
}

/// What QEMU holds beyond a guest's memory (its own code, TCG's translation cache, device
/// state: about 50 MiB for an idle TCG guest here). Counted with each VM so that many small
/// VMs cannot exhaust a host either.
pub const VM_OVERHEAD_BYTES: u64 = 64 << 20;

/// A VM's memory when its spec gives none (the libvirt backend's default).
pub const VM_DEFAULT_MEMORY_BYTES: u64 = 512 << 20;

/// The memory an instance reserves on its host while it runs: a VM its memory and QEMU's
/// overhead, a container its memory limit (nothing without one).
///
/// ```
/// use libgo_core::hosts::{reservation, VM_OVERHEAD_BYTES};
/// use libgo_core::InstanceKind;
/// assert_eq!(reservation(InstanceKind::Vm, Some(1 << 30)), (1 << 30) + VM_OVERHEAD_BYTES);
/// assert_eq!(reservation(InstanceKind::Container, None), 0);
/// ```
pub fn reservation(kind: InstanceKind, memory_bytes: Option<u64>) -> u64 {
    match kind {
        InstanceKind::Vm => memory_bytes
            .unwrap_or(VM_DEFAULT_MEMORY_BYTES)
            .saturating_add(VM_OVERHEAD_BYTES),
        InstanceKind::Container => memory_bytes.unwrap_or(0),
    }
}

/// Why an instance reserving `want` bytes cannot run on a host of `capacity` bytes whose
/// running instances reserve `reserved`; `None` when it fits. An unknown capacity (0)
/// refuses nothing.
pub fn memory_refusal(capacity: u64, reserved: u64, want: u64) -> Option<String> {
    (capacity > 0 && u128::from(reserved) + u128::from(want) > u128::from(capacity)).then(|| {
        format!(
            "{} MiB free, {} MiB wanted",
            capacity.saturating_sub(reserved) >> 20,
            want >> 20
        )
    })
}

/// Where an instance goes: among the enabled, alive hosts (of `want.pool`, or just
/// `want.host`) with an engine of the instance's kind, the one with the most memory free
/// after the instance's reservation; ties go to the host with fewer instances, then to the
/// first name. None fits: `RESOURCE_CONFLICT` saying why for each host.
///
/// ```
/// use libgo_core::hosts::{place, Candidate, Placement};
/// use libgo_core::InstanceKind;
/// let host = |name: &str, free_gib: u64| Candidate {
///     name: name.into(), pool: "default".into(), enabled: true, alive: true,
///     kinds: vec![InstanceKind::Vm], memory_bytes: 16 << 30,
///     allocated_memory_bytes: (16 - free_gib) << 30, instances: 0,
/// };
/// let want = Placement { kind: Some(InstanceKind::Vm), memory_bytes: 1 << 30, ..Default::default() };
/// assert_eq!(place(&[host("a", 2), host("b", 8)], &want).unwrap(), "b");
/// ```
pub fn place(candidates: &[Candidate], want: &Placement<'_>) -> Result<String> {
    if let Some(h) = want.host
        && !candidates.iter().any(|c| c.name == h)
    {
        return Err(Error::not_found(format!("no host named {h:?}")).with_context("host", h));
    }
    if let Some(p) = want.pool
        && !candidates.iter().any(|c| c.pool == p)
    {
        return Err(Error::not_found(format!(
            "no compute pool {p:?} (no host is in it)"
        )));
    }
    let mut refusals = Vec::new();
    let mut best: Option<(&Candidate, i128)> = None;
    for c in candidates {
        if want.host.is_some_and(|h| h != c.name) || want.pool.is_some_and(|p| p != c.pool) {
            continue;
        }
        let refusal = if !c.enabled {
            Some("disabled".to_string())
        } else if !c.alive {
            Some("not answering".to_string())
        } else if want.kind.is_some_and(|k| !c.kinds.contains(&k)) {
            Some(format!(
                "no engine for {}s",
                want.kind.map_or("instance", InstanceKind::as_str)
            ))
        } else {
            None
        };
        let free_after =
            c.memory_bytes as i128 - c.allocated_memory_bytes as i128 - want.memory_bytes as i128;
        let refusal = refusal.or_else(|| {
            memory_refusal(c.memory_bytes, c.allocated_memory_bytes, want.memory_bytes)
        });
        if let Some(why) = refusal {
            refusals.push(format!("{}: {why}", c.name));
            continue;
        }
        let better = match best {
            None => true,
            Some((b, b_free)) => {
                free_after > b_free
                    || (free_after == b_free
                        && (c.instances < b.instances
                            || (c.instances == b.instances && c.name < b.name)))
            }
        };
        if better {
            best = Some((c, free_after));
        }
    }
    match best {
        Some((c, _)) => Ok(c.name.clone()),
        None => Err(Error::conflict(format!(
            "no host can take this instance ({})",
            if refusals.is_empty() {
                "no host".to_string()
            } else {
                refusals.join("; ")
            }
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn host(name: &str, pool: &str, free_mib: u64, instances: u64) -> Candidate {
        Candidate {
            name: name.into(),
            pool: pool.into(),
            enabled: true,
            alive: true,
            kinds: vec![InstanceKind::Vm, InstanceKind::Container],
            memory_bytes: 8192 << 20,
            allocated_memory_bytes: (8192 - free_mib) << 20,
            instances,
        }
    }

    fn want(memory_mib: u64) -> Placement<'static> {
        Placement {
            kind: Some(InstanceKind::Vm),
            memory_bytes: memory_mib << 20,
            ..Default::default()
        }
    }

    #[test]
    fn the_most_free_memory_wins() {
        let hosts = [
            host("a", "p", 1000, 0),
            host("b", "p", 3000, 9),
            host("c", "p", 2000, 0),
        ];
        assert_eq!(place(&hosts, &want(512)).unwrap(), "b");
    }

    #[test]
    fn ties_go_to_fewer_instances_then_the_first_name() {
        let hosts = [
            host("b", "p", 1000, 3),
            host("a", "p", 1000, 3),
            host("c", "p", 1000, 1),
        ];
        assert_eq!(place(&hosts, &want(100)).unwrap(), "c");
        let hosts = [host("b", "p", 1000, 1), host("a", "p", 1000, 1)];
        assert_eq!(place(&hosts, &want(100)).unwrap(), "a");
    }

    #[test]
    fn disabled_dead_full_and_wrong_kind_hosts_are_skipped_with_reasons() {
        let mut off = host("off", "p", 8000, 0);
        off.enabled = false;
        let mut dead = host("dead", "p", 8000, 0);
        dead.alive = false;
        let mut docker_only = host("docker", "p", 8000, 0);
        docker_only.kinds = vec![InstanceKind::Container];
        let full = host("full", "p", 100, 0);
        let hosts = [off, dead, docker_only, full];
        let e = place(&hosts, &want(512)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict);
        let m = e.to_string();
        for why in [
            "off: disabled",
            "dead: not answering",
            "docker: no engine for vms",
            "full: 100 MiB free, 512 MiB wanted",
        ] {
            assert!(m.contains(why), "{m}");
        }
    }

    #[test]
    fn vms_reserve_qemus_overhead_so_many_small_ones_do_not_fit_where_their_memory_would() {
        let tiny = reservation(InstanceKind::Vm, Some(6 << 20));
        let host = 1 << 30;
        let fit = (0..)
            .take_while(|n| memory_refusal(host, n * tiny, tiny).is_none())
            .count();
        assert_eq!(fit as u64, host / ((6 << 20) + VM_OVERHEAD_BYTES));
        assert_eq!(
            reservation(InstanceKind::Vm, None),
            VM_DEFAULT_MEMORY_BYTES + VM_OVERHEAD_BYTES
        );
        assert_eq!(
            memory_refusal(0, u64::MAX, u64::MAX),
            None,
            "unknown capacity"
        );
        assert_eq!(
            memory_refusal(1 << 30, 900 << 20, 200 << 20).as_deref(),
            Some("124 MiB free, 200 MiB wanted")
        );
    }

    #[test]
    fn a_pin_or_a_pool_narrows_the_choice() {
        let hosts = [
            host("a", "p1", 1000, 0),
            host("b", "p2", 3000, 0),
            host("c", "p1", 2000, 0),
        ];
        let mut w = want(10);
        w.pool = Some("p1");
        assert_eq!(place(&hosts, &w).unwrap(), "c");
        w.host = Some("a");
        assert_eq!(place(&hosts, &w).unwrap(), "a");
        w.host = Some("b"); // b is not in p1
        assert_eq!(place(&hosts, &w).unwrap_err().kind(), ErrorKind::Conflict);
        w.pool = None;
        w.host = Some("nope");
        assert_eq!(place(&hosts, &w).unwrap_err().kind(), ErrorKind::NotFound);
        w.host = None;
        w.pool = Some("nope");
        assert_eq!(place(&hosts, &w).unwrap_err().kind(), ErrorKind::NotFound);
    }

    #[test]
    fn an_instance_without_a_limit_fits_where_memory_is_left() {
        let hosts = [host("a", "p", 0, 0), host("b", "p", 1, 5)];
        assert_eq!(place(&hosts, &want(0)).unwrap(), "b");
        assert_eq!(place(&hosts, &Placement::default()).unwrap(), "b");
    }
}
