//! Validation of everything a caller hands LibGo, shared by every backend and front end.
//!
//! Each function returns [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) (or
//! `Unsupported` for a field that does not apply to the instance kind) with a message that
//! names the field.

use std::net::IpAddr;

use crate::error::{Error, Result};
use crate::types::*;

/// Smallest memory an instance may have: 6 MiB, Docker's own minimum.
pub const MIN_MEMORY_BYTES: u64 = 6 * 1024 * 1024;
/// Largest memory an instance may have: 4 TiB.
pub const MAX_MEMORY_BYTES: u64 = 4 << 40;
/// Most CPUs an instance may have.
pub const MAX_CPUS: u32 = 512;
/// Smallest disk: 1 MiB.
pub const MIN_DISK_BYTES: u64 = 1 << 20;
/// Largest disk: 64 TiB.
pub const MAX_DISK_BYTES: u64 = 64 << 40;

/// A name of an instance, network, snapshot, pool or template: 1–63 characters of
/// lowercase letters, digits and inner hyphens, like a DNS label.
pub fn name(field: &str, value: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::invalid(format!(
            "{field} {value:?} is invalid: {why}"
        )))
    };
    if value.is_empty() || value.len() > 63 {
        return bad("it must be 1 to 63 characters long");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return bad("only lowercase letters, digits and '-' are allowed");
    }
    if value.starts_with('-') || value.ends_with('-') {
        return bad("it must start and end with a letter or digit");
    }
    Ok(())
}

/// A volume name: 1–128 characters of letters, digits, `_`, `.` and `-`, starting with a
/// letter or digit (VM volumes carry a file extension such as `.qcow2`), optionally after a
/// `pool/` prefix.
pub fn volume_name(value: &str) -> Result<()> {
    let plain = value.split_once('/').map_or(value, |(pool, vol)| {
        if name("pool", pool).is_err() {
            // Keep the whole value so the message below names it.
            return value;
        }
        vol
    });
    let ok = !plain.is_empty()
        && plain.len() <= 128
        && plain.as_bytes()[0].is_ascii_alphanumeric()
        && plain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "volume name {value:?} is invalid: use 1 to 128 letters, digits, '_', '.' or '-', \
             starting with a letter or digit, optionally after a 'pool/' prefix"
        )))
    }
}

/// An image reference (`repo[:tag]`, `registry/repo@digest`, or a base image name).
pub fn image_reference(value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 512
        && !value.starts_with(['-', ':', '@', '/'])
        && value.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "image reference {value:?} is invalid: it must be 1 to 512 printable characters \
             without spaces"
        )))
    }
}

/// An id or name that names an existing object (instance, network, volume, image, pool):
/// 1 to 512 printable ASCII characters without spaces, `?`, `#`, `%` or a `..` path
/// component, since it may reach an engine's URL or a file path.
pub fn object_id(what: &str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 512
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'?' | b'#' | b'%'))
        && !value.split('/').any(|c| c == "..");
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{what} id or name {value:?} is invalid: 1 to 512 printable characters without \
             spaces, '?', '#', '%' or '..'"
        )))
    }
}

/// An environment variable name: a letter or `_`, then letters, digits and `_`.
pub fn env_key(key: &str) -> Result<()> {
    let mut bytes = key.bytes();
    let ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "environment variable name {key:?} is invalid: use letters, digits and '_', not \
             starting with a digit"
        )))
    }
}

/// An absolute path without NUL bytes or `..` components.
pub fn absolute_path(field: &str, value: &str) -> Result<()> {
    if !value.starts_with('/') || value.contains('\0') || value.split('/').any(|c| c == "..") {
        return Err(Error::invalid(format!(
            "{field} {value:?} must be an absolute path without '..'"
        )));
    }
    Ok(())
}

fn no_nul(field: &str, value: &str) -> Result<()> {
    if value.contains('\0') {
        return Err(Error::invalid(format!(
            "{field} must not contain NUL bytes"
        )));
    }
    Ok(())
}

/// Label prefixes LibGo keeps for its own records; user input carrying them is refused.
pub const RESERVED_LABEL_PREFIXES: [&str; 2] = ["io.libgo.", "kvm.libgo.io/"];

/// The image repository of container snapshots; only LibGo writes to it.
pub const SNAPSHOT_REPOSITORY: &str = "libgo-snapshots";

/// An image reference given by a user: valid, and not in LibGo's snapshot repository
/// (whose images only LibGo commits, so that a revert uses nothing else).
pub fn user_image_reference(value: &str) -> Result<()> {
    image_reference(value)?;
    let repo = value.split(['@', ':']).next().unwrap_or_default();
    let repo = repo.strip_prefix("docker.io/library/").unwrap_or(repo);
    if repo == SNAPSHOT_REPOSITORY || repo.starts_with(&format!("{SNAPSHOT_REPOSITORY}/")) {
        return Err(Error::invalid(format!(
            "image reference {value:?} is in {SNAPSHOT_REPOSITORY}/, which only LibGo's \
             snapshots may use"
        )));
    }
    Ok(())
}

/// Labels: valid keys and values, and not too many.
pub fn labels(map: &std::collections::BTreeMap<String, String>) -> Result<()> {
    for (k, v) in map {
        if let Some(p) = RESERVED_LABEL_PREFIXES.iter().find(|p| k.starts_with(*p)) {
            return Err(Error::invalid(format!(
                "label key {k:?} is invalid: the prefix {p:?} is reserved for LibGo"
            )));
        }
        if k.is_empty() || k.len() > 255 || k.chars().any(|c| c.is_whitespace() || c == '\0') {
            return Err(Error::invalid(format!(
                "label key {k:?} is invalid: 1 to 255 characters without spaces"
            )));
        }
        no_nul("label value", v)?;
    }
    Ok(())
}

/// CPU count.
pub fn cpus(value: u32) -> Result<()> {
    if value == 0 || value > MAX_CPUS {
        return Err(Error::invalid(format!(
            "cpus must be between 1 and {MAX_CPUS}, got {value}"
        )));
    }
    Ok(())
}

/// Memory size in bytes.
pub fn memory(value: u64) -> Result<()> {
    if !(MIN_MEMORY_BYTES..=MAX_MEMORY_BYTES).contains(&value) {
        return Err(Error::invalid(format!(
            "memoryBytes must be between {MIN_MEMORY_BYTES} (6 MiB) and {MAX_MEMORY_BYTES} \
             (4 TiB), got {value}"
        )));
    }
    Ok(())
}

/// Disk size in bytes.
pub fn disk_size(value: u64) -> Result<()> {
    if !(MIN_DISK_BYTES..=MAX_DISK_BYTES).contains(&value) {
        return Err(Error::invalid(format!(
            "disk sizeBytes must be between {MIN_DISK_BYTES} (1 MiB) and {MAX_DISK_BYTES} \
             (64 TiB), got {value}"
        )));
    }
    Ok(())
}

fn port(p: &PortMapping) -> Result<()> {
    if p.container_port == 0 {
        return Err(Error::invalid("containerPort must be between 1 and 65535"));
    }
    if p.host_port == Some(0) {
        return Err(Error::invalid("hostPort must be between 1 and 65535"));
    }
    if let Some(ip) = &p.host_ip {
        ip.parse::<IpAddr>()
            .map_err(|_| Error::invalid(format!("hostIp {ip:?} is not an IP address")))?;
    }
    Ok(())
}

fn mount(m: &MountSpec) -> Result<()> {
    absolute_path("mount target", &m.target)?;
    match m.kind {
        MountKind::Bind => absolute_path("bind mount source", &m.source),
        MountKind::Volume => volume_name(&m.source),
        MountKind::Tmpfs => Ok(()),
    }
}

fn cloud_init(ci: &CloudInit) -> Result<()> {
    if let Some(h) = &ci.hostname {
        // A host name is one or more DNS labels.
        for label in h.split('.') {
            name("cloudInit hostname", label)?;
        }
    }
    for u in &ci.users {
        let ok = !u.name.is_empty()
            && u.name.len() <= 32
            && u.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
            && !u.name.starts_with('-');
        if !ok {
            return Err(Error::invalid(format!(
                "cloud-init user name {:?} is invalid: 1 to 32 lowercase letters, digits, '_' \
                 or '-'",
                u.name
            )));
        }
    }
    for f in &ci.write_files {
        absolute_path("cloudInit writeFiles path", &f.path)?;
        if let Some(p) = &f.permissions {
            let ok = (3..=4).contains(&p.len()) && p.bytes().all(|b| (b'0'..=b'7').contains(&b));
            if !ok {
                return Err(Error::invalid(format!(
                    "cloud-init file permissions {p:?} must be octal like 0644"
                )));
            }
        }
    }
    Ok(())
}

/// [`instance_spec`] for a spec the facade stamped with an [`crate::Ownership`]: its two
/// labels may be there (with names for values); every other reserved label is still
/// refused. Backends check this; the facade checks the caller's spec with
/// [`instance_spec`] first.
pub fn owned_instance_spec(spec: &InstanceSpec, kind: InstanceKind) -> Result<()> {
    owned(spec, |s| &mut s.labels, |s| instance_spec(s, kind))
}

/// [`network_spec`] for a spec the facade stamped with an [`crate::Ownership`] (see
/// [`owned_instance_spec`]).
pub fn owned_network_spec(spec: &NetworkSpec) -> Result<()> {
    owned(spec, |s| &mut s.labels, network_spec)
}

/// [`volume_spec`] for a spec the facade stamped with an [`crate::Ownership`] (see
/// [`owned_instance_spec`]).
pub fn owned_volume_spec(spec: &VolumeSpec) -> Result<()> {
    owned(spec, |s| &mut s.labels, volume_spec)
}

/// Checks `spec` with `check` once the ownership labels are taken out (their values must
/// be names).
fn owned<T: Clone>(
    spec: &T,
    labels: impl Fn(&mut T) -> &mut std::collections::BTreeMap<String, String>,
    check: impl Fn(&T) -> Result<()>,
) -> Result<()> {
    let mut rest = spec.clone();
    for key in [crate::LABEL_OWNER, crate::LABEL_GROUP] {
        if let Some(v) = labels(&mut rest).remove(key) {
            name(key, &v).map_err(|e| e.with_field("labels"))?;
        }
    }
    check(&rest)
}

/// A whole instance spec. `kind` is the kind it will be created as (the spec's own, or the
/// backend's when the spec leaves it out).
pub fn instance_spec(spec: &InstanceSpec, kind: InstanceKind) -> Result<()> {
    // Each failure names its field in the spec's JSON spelling (see [`Error::field`]).
    let at = |field: &'static str| move |e: Error| e.with_field(field);
    name("name", &spec.name).map_err(at("name"))?;
    if let Some(c) = spec.cpus {
        cpus(c).map_err(at("cpus"))?;
    }
    if let Some(m) = spec.memory_bytes {
        memory(m).map_err(at("memoryBytes"))?;
    }
    if let Some(image) = &spec.image {
        image_reference(image).map_err(at("image"))?;
    }
    if let Some(t) = &spec.template {
        name("template", t).map_err(at("template"))?;
    }
    for p in &spec.ports {
        port(p).map_err(at("ports"))?;
    }
    for k in spec.env.keys() {
        env_key(k).map_err(at("env"))?;
    }
    for v in spec.env.values() {
        no_nul("environment value", v).map_err(at("env"))?;
    }
    for m in &spec.mounts {
        mount(m).map_err(at("mounts"))?;
    }
    for arg in spec.command.iter().chain(spec.entrypoint.iter().flatten()) {
        no_nul("command", arg).map_err(at("command"))?;
    }
    if let Some(w) = &spec.workdir {
        absolute_path("workdir", w).map_err(at("workdir"))?;
    }
    labels(&spec.labels).map_err(at("labels"))?;
    for n in &spec.networks {
        name("network", n).map_err(at("networks"))?;
    }
    for d in &spec.devices {
        absolute_path("device", d).map_err(at("devices"))?;
    }
    for d in &spec.disks {
        if let Some(s) = d.size_bytes {
            disk_size(s).map_err(at("disks"))?;
        }
        if let Some(b) = &d.base_image {
            image_reference(b).map_err(at("disks"))?;
        }
        if let Some(v) = &d.volume {
            volume_name(v).map_err(at("disks"))?;
        }
        if let Some(p) = &d.pool {
            name("pool", p).map_err(at("disks"))?;
        }
        let sources = [
            d.size_bytes.is_some() && d.base_image.is_none(),
            d.base_image.is_some(),
            d.volume.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err(Error::invalid(
                "each disk needs exactly one of: sizeBytes (a new blank disk), baseImage (an \
                 overlay, optionally with sizeBytes) or volume (an existing volume)",
            )
            .with_field("disks"));
        }
    }
    if let Some(c) = &spec.cdrom {
        image_reference(c).map_err(at("cdrom"))?;
    }
    if let Some(k) = &spec.kernel_boot {
        kernel_boot(k).map_err(at("kernelBoot"))?;
    }
    boot_order(&spec.boot)?;
    if spec.kernel_boot.is_some() && !spec.boot.is_empty() {
        return Err(Error::invalid(
            "a boot order does not apply to a direct kernel boot (kernelBoot)",
        )
        .with_field("boot"));
    }
    if let Some(ci) = &spec.cloud_init {
        cloud_init(ci).map_err(at("cloudInit"))?;
    }
    match kind {
        InstanceKind::Container => {
            if spec.image.is_none() {
                return Err(Error::invalid("a container needs an image").with_field("image"));
            }
            let vm_only = [
                ("cloudInit", spec.cloud_init.is_some()),
                ("disks", !spec.disks.is_empty()),
                ("cdrom", spec.cdrom.is_some()),
                ("kernelBoot", spec.kernel_boot.is_some()),
                ("template", spec.template.is_some()),
                ("autostart", spec.autostart),
                ("boot", !spec.boot.is_empty()),
            ];
            if let Some((field, _)) = vm_only.iter().find(|(_, set)| *set) {
                return Err(Error::unsupported(format!(
                    "{field} applies to VMs only, not to containers"
                ))
                .with_field(*field));
            }
        }
        InstanceKind::Vm => {
            let container_only = [
                ("ports", !spec.ports.is_empty()),
                ("env", !spec.env.is_empty()),
                ("mounts", !spec.mounts.is_empty()),
                ("command", !spec.command.is_empty()),
                ("entrypoint", spec.entrypoint.is_some()),
                ("workdir", spec.workdir.is_some()),
                ("restartPolicy", spec.restart_policy.is_some()),
                ("privileged", spec.privileged),
            ];
            if let Some((field, _)) = container_only.iter().find(|(_, set)| *set) {
                return Err(Error::unsupported(format!(
                    "{field} applies to containers only, not to VMs"
                ))
                .with_field(*field));
            }
        }
    }
    Ok(())
}

/// A disk's device name as libvirt gives it (`vda`, `hdc`, `sdb`, `vdaa`).
pub fn disk_target(value: &str) -> Result<()> {
    let ok = (3..=8).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && ["vd", "hd", "sd", "xvd"]
            .iter()
            .any(|p| value.starts_with(p));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "disk target {value:?} is invalid: a device name such as vdb, sda or hdc"
        ))
        .with_field("target"))
    }
}

/// A disk to attach: exactly one source, a sane size and pool.
pub fn disk_attach(d: &DiskAttach) -> Result<()> {
    match (&d.volume, d.size_bytes) {
        (Some(v), None) => {
            volume_name(v).map_err(|e| e.with_field("volume"))?;
            if d.format.is_some() || d.pool.is_some() {
                return Err(Error::invalid(
                    "format and pool describe a new volume; an existing volume has its own",
                )
                .with_field(if d.format.is_some() { "format" } else { "pool" }));
            }
        }
        (None, Some(size)) => {
            disk_size(size).map_err(|e| e.with_field("sizeBytes"))?;
            if let Some(p) = &d.pool {
                name("pool", p).map_err(|e| e.with_field("pool"))?;
            }
            if d.format == Some(DiskFormat::Iso) {
                return Err(Error::invalid(
                    "a new blank disk cannot be an ISO: insert ISOs as media",
                )
                .with_field("format"));
            }
        }
        _ => {
            return Err(Error::invalid(
                "give exactly one of volume (an existing volume) or sizeBytes (a new one)",
            )
            .with_field("volume"));
        }
    }
    Ok(())
}

/// A disk's new size.
pub fn disk_resize(r: &DiskResize) -> Result<()> {
    disk_size(r.size_bytes).map_err(|e| e.with_field("sizeBytes"))
}

/// A guest password request; errors never quote the password.
pub fn guest_password(p: &GuestPassword) -> Result<()> {
    let user_ok = (1..=32).contains(&p.user.len())
        && p.user.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase() || b == b'_' || (i > 0 && (b.is_ascii_digit() || b == b'-'))
        });
    if !user_ok {
        return Err(Error::invalid(format!(
            "user {:?} is invalid: 1 to 32 lowercase letters, digits, '_' or '-', starting with \
             a letter or '_'",
            p.user
        ))
        .with_field("user"));
    }
    if p.password.is_empty()
        || p.password.len() > 256
        || p.password
            .bytes()
            .any(|b| b == 0 || b == b'\n' || b == b'\r')
    {
        return Err(Error::invalid(
            "the password must be 1 to 256 bytes, without NUL or line breaks",
        )
        .with_field("password"));
    }
    Ok(())
}

/// A boot order: each device at most once.
pub fn boot_order(order: &[BootDevice]) -> Result<()> {
    for (i, d) in order.iter().enumerate() {
        if order[..i].contains(d) {
            return Err(
                Error::invalid(format!("the boot order names {d:?} twice")).with_field("boot")
            );
        }
    }
    Ok(())
}

/// A direct kernel boot: absolute host paths and a sane command line.
pub fn kernel_boot(k: &KernelBoot) -> Result<()> {
    absolute_path("kernelBoot kernel", &k.kernel)?;
    if let Some(i) = &k.initrd {
        absolute_path("kernelBoot initrd", i)?;
    }
    if let Some(c) = &k.cmdline
        && (c.len() > 4096 || c.chars().any(char::is_control))
    {
        return Err(Error::invalid(
            "kernelBoot cmdline must be at most 4096 characters without control characters",
        ));
    }
    Ok(())
}

/// A network spec.
pub fn network_spec(spec: &NetworkSpec) -> Result<()> {
    name("network name", &spec.name)?;
    if let Some(s) = &spec.subnet {
        cidr(s)?;
    }
    if let Some(g) = &spec.gateway {
        g.parse::<IpAddr>()
            .map_err(|_| Error::invalid(format!("gateway {g:?} is not an IP address")))?;
        if spec.subnet.is_none() {
            return Err(Error::invalid("a gateway needs a subnet"));
        }
    }
    if let Some(d) = &spec.driver {
        name("network driver", d)?;
    }
    labels(&spec.labels)
}

/// A CIDR block such as `10.1.2.0/24`.
pub fn cidr(value: &str) -> Result<()> {
    let bad = || {
        Error::invalid(format!(
            "subnet {value:?} is not in CIDR form like 10.1.2.0/24"
        ))
    };
    let (ip, len) = value.split_once('/').ok_or_else(bad)?;
    let ip: IpAddr = ip.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(bad());
    }
    Ok(())
}

/// A volume spec.
pub fn volume_spec(spec: &VolumeSpec) -> Result<()> {
    volume_name(&spec.name)?;
    if let Some(s) = spec.size_bytes {
        disk_size(s)?;
    }
    if let Some(p) = &spec.pool {
        name("pool", p)?;
    }
    if let Some(d) = &spec.driver {
        no_nul("driver", d)?;
    }
    labels(&spec.labels)
}

/// A storage pool spec.
pub fn pool_spec(spec: &StoragePoolSpec) -> Result<()> {
    name("pool name", &spec.name)?;
    absolute_path("pool path", &spec.path)?;
    if let Some(t) = &spec.pool_type
        && t != "dir"
    {
        return Err(Error::unsupported(format!(
            "storage pool type {t:?} is not supported; use \"dir\""
        )));
    }
    Ok(())
}

/// A snapshot spec.
pub fn snapshot_spec(spec: &SnapshotSpec) -> Result<()> {
    name("snapshot name", &spec.name)?;
    if let Some(d) = &spec.description {
        no_nul("description", d)?;
    }
    Ok(())
}

/// An exec spec.
pub fn exec_spec(spec: &ExecSpec) -> Result<()> {
    if spec.command.is_empty() || spec.command[0].is_empty() {
        return Err(Error::invalid("exec needs a command"));
    }
    for arg in &spec.command {
        no_nul("command", arg)?;
    }
    for k in spec.env.keys() {
        env_key(k)?;
    }
    if let Some(w) = &spec.workdir {
        absolute_path("workdir", w)?;
    }
    Ok(())
}

/// An export spec: the destination is absolute and does not exist yet.
pub fn export_spec(spec: &ExportSpec) -> Result<()> {
    let dest = spec
        .destination
        .to_str()
        .ok_or_else(|| Error::invalid("export destination must be valid UTF-8"))?;
    absolute_path("export destination", dest)?;
    if spec.destination.exists() {
        return Err(Error::conflict(format!(
            "export destination {dest:?} exists already"
        )));
    }
    Ok(())
}

/// A template.
pub fn template(t: &Template) -> Result<()> {
    name("template name", &t.name)?;
    let as_spec = InstanceSpec {
        name: t.name.clone(),
        image: t.image.clone(),
        cpus: t.cpus,
        memory_bytes: t.memory_bytes,
        disks: t.disks.clone(),
        networks: t.networks.clone(),
        cloud_init: t.cloud_init.clone(),
        ..Default::default()
    };
    instance_spec(&as_spec, InstanceKind::Vm)
}

/// The ids of a batch delete: 1 to [`BatchSpec::MAX_COUNT`](crate::BatchSpec::MAX_COUNT).
pub fn batch_ids(ids: &[String]) -> Result<()> {
    let max = crate::BatchSpec::MAX_COUNT as usize;
    if ids.is_empty() || ids.len() > max {
        return Err(Error::invalid(format!(
            "ids must list 1 to {max} instances"
        )));
    }
    Ok(())
}

/// A page request.
pub fn pagination(p: Pagination) -> Result<()> {
    if p.page == 0 {
        return Err(Error::invalid("page starts at 1"));
    }
    if p.page_size == 0 || p.page_size > Pagination::MAX_PAGE_SIZE {
        return Err(Error::invalid(format!(
            "pageSize must be between 1 and {}",
            Pagination::MAX_PAGE_SIZE
        )));
    }
    Ok(())
}

/// The Docker address of another host: `tcp://` or `unix://`.
pub fn host_docker_url(url: &str) -> Result<()> {
    if !url.starts_with("tcp://") && !url.starts_with("unix://") {
        return Err(Error::invalid(format!(
            "docker: {url:?} is not a tcp:// or unix:// address"
        ))
        .with_context("field", "docker"));
    }
    Ok(())
}

/// The libvirt URI of another host: a `qemu` (or `test`) URI with an authority, over a
/// network transport, with only the parameters that choose keys and checks.
pub fn host_libvirt_uri(url: &str) -> Result<()> {
    let scheme = url.split("://").next().unwrap_or_default();
    let driver = scheme.split('+').next().unwrap_or_default();
    let authority = url
        .split_once("://")
        .map(|(_, rest)| rest.split('/').next().unwrap_or_default())
        .unwrap_or_default();
    if driver == "qemu" && authority.is_empty() {
        return Err(Error::invalid(format!(
            "libvirt: {url:?} is this machine's libvirt (host local); give another \
             host's URI (qemu+tcp://, qemu+tls://, qemu+ssh://)"
        ))
        .with_context("field", "libvirt"));
    }
    if !url.contains("://") || !["qemu", "test"].contains(&driver) {
        return Err(
            Error::invalid(format!("libvirt: {url:?} is not a libvirt URI"))
                .with_context("field", "libvirt"),
        );
    }
    libvirt_uri_is_safe(url, scheme)
}

/// libvirt's transports that reach another host over the network; `ext` (which runs any
/// program) and `unix` (this machine) are not among them.
const LIBVIRT_TRANSPORTS: [&str; 6] = ["", "tcp", "tls", "ssh", "libssh", "libssh2"];

/// URI parameters that choose keys and checks; the others (`command`, `netcat`, `socket`…)
/// name programs or sockets to run or open on the server, and are refused.
const LIBVIRT_PARAMETERS: [&str; 7] = [
    "pkipath",
    "no_verify",
    "keyfile",
    "known_hosts",
    "known_hosts_verify",
    "sshauth",
    "no_tty",
];

/// Refuses a libvirt URI of a registered host that would make the server run a program or
/// open one of its own sockets: hosts come over the API, the URI is libvirt's to interpret.
fn libvirt_uri_is_safe(url: &str, scheme: &str) -> Result<()> {
    let refuse = |why: String| {
        Err(Error::invalid(format!("libvirt: {url:?} {why}")).with_context("field", "libvirt"))
    };
    let transport = scheme.split_once('+').map_or("", |(_, t)| t);
    if !LIBVIRT_TRANSPORTS.contains(&transport) {
        return refuse(format!(
            "uses transport {transport:?}; a host is reached by tcp, tls, ssh, libssh or libssh2"
        ));
    }
    let query = url.split_once('?').map_or("", |(_, q)| q);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        if !LIBVIRT_PARAMETERS.contains(&key) {
            return refuse(format!(
                "has parameter {key:?}; a host's URI may only carry {}",
                LIBVIRT_PARAMETERS.join(", ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn names_are_dns_labels() {
        assert!(name("name", "web-1").is_ok());
        assert!(name("name", &"a".repeat(63)).is_ok());
        for bad in [
            "",
            "-web",
            "web-",
            "Web",
            "we b",
            "a<b>",
            "a&b",
            "x'y",
            &"a".repeat(64),
        ] {
            let e = name("name", bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn container_spec_bounds() {
        let good = InstanceSpec::container("web", "busybox");
        assert!(instance_spec(&good, InstanceKind::Container).is_ok());

        let mut s = good.clone();
        s.cpus = Some(0);
        assert_eq!(
            instance_spec(&s, InstanceKind::Container)
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput
        );

        let mut s = good.clone();
        s.memory_bytes = Some(1 << 60);
        assert_eq!(
            instance_spec(&s, InstanceKind::Container)
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput
        );

        let mut s = good.clone();
        s.env.insert("1BAD".into(), "x".into());
        assert_eq!(
            instance_spec(&s, InstanceKind::Container)
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput
        );

        let mut s = good.clone();
        s.mounts.push(MountSpec {
            kind: MountKind::Volume,
            source: "data".into(),
            target: "relative".into(),
            read_only: false,
        });
        assert_eq!(
            instance_spec(&s, InstanceKind::Container)
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput
        );

        let mut s = good.clone();
        s.ports.push(PortMapping {
            container_port: 0,
            host_port: None,
            host_ip: None,
            protocol: Protocol::Tcp,
        });
        assert_eq!(
            instance_spec(&s, InstanceKind::Container)
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput
        );

        let mut s = good.clone();
        s.cloud_init = Some(CloudInit::default());
        assert_eq!(
            instance_spec(&s, InstanceKind::Container)
                .unwrap_err()
                .kind(),
            ErrorKind::Unsupported
        );

        let mut s = good;
        s.image = None;
        assert_eq!(
            instance_spec(&s, InstanceKind::Container)
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn vm_disks_need_one_source() {
        let mut s = InstanceSpec::vm("vm1");
        s.disks.push(DiskSpec::default());
        assert_eq!(
            instance_spec(&s, InstanceKind::Vm).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        s.disks[0].size_bytes = Some(1 << 30);
        assert!(instance_spec(&s, InstanceKind::Vm).is_ok());
        s.disks[0].volume = Some("v.qcow2".into());
        assert_eq!(
            instance_spec(&s, InstanceKind::Vm).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        s.disks[0] = DiskSpec {
            size_bytes: Some(1 << 62),
            ..Default::default()
        };
        assert_eq!(
            instance_spec(&s, InstanceKind::Vm).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn network_and_volume_specs() {
        let mut n = NetworkSpec {
            name: "net1".into(),
            subnet: Some("10.9.0.0/24".into()),
            gateway: Some("10.9.0.1".into()),
            ..Default::default()
        };
        assert!(network_spec(&n).is_ok());
        n.subnet = Some("10.9.0.0/33".into());
        assert!(network_spec(&n).is_err());
        assert!(volume_name("disk-1.qcow2").is_ok());
        assert!(volume_name("default/disk-1.qcow2").is_ok());
        assert!(volume_name("../etc").is_err());
        assert!(volume_name("a/b/c").is_err());
    }

    #[test]
    fn pagination_bounds() {
        assert!(pagination(Pagination::default()).is_ok());
        assert!(
            pagination(Pagination {
                page: 0,
                page_size: 10
            })
            .is_err()
        );
        assert!(
            pagination(Pagination {
                page: 1,
                page_size: 101
            })
            .is_err()
        );
    }

    /// A registered host's URI cannot make the server run a program or open its sockets.
    #[test]
    fn a_host_libvirt_uri_runs_no_program() {
        for good in [
            "qemu+tcp://10.0.0.2/system",
            "qemu+tls://h2.example/system?pkipath=/etc/libgo/pki/h2",
            "qemu+tls://10.0.0.2/system?pkipath=/p&no_verify=0",
            "qemu+ssh://root@h2/system?keyfile=/k&known_hosts=/kh",
            "qemu://h2/system",
            "test:///default",
        ] {
            assert!(host_libvirt_uri(good).is_ok(), "{good}");
        }
        for bad in [
            "qemu+ext://h2/system?command=/tmp/x",
            "qemu+ssh://h2/system?command=/tmp/x",
            "qemu+ssh://h2/system?netcat=/tmp/x",
            "qemu+tcp://h2/system?comm%61nd=/tmp/x",
            "qemu+unix://h2/system?socket=/run/docker.sock",
            "qemu+tls://h2/system?pkipath=/p&socket=/s",
            "qemu:///system",
            "xen+tcp://h2/",
            "h2",
        ] {
            let e = host_libvirt_uri(bad).expect_err(bad);
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}");
        }
        assert!(host_docker_url("tcp://10.0.0.2:2376").is_ok());
        assert!(host_docker_url("unix:///run/docker.sock").is_ok());
        assert!(host_docker_url("http://10.0.0.2").is_err());
    }
}
