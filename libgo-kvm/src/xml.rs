//! libvirt XML: written with quick-xml (which escapes every text and attribute) and read
//! with roxmltree. No XML here is made by pasting strings together.

use std::collections::BTreeMap;
use std::io;

use chrono::{DateTime, Utc};
use libgo_core::{Error, Result};
use quick_xml::Writer;
use quick_xml::events::BytesText;

use libgo_core::KernelBoot;

/// Namespace of LibGo's domain metadata.
pub(crate) const NS: &str = "https://libgo.dev/xmlns/libgo-kvm/1";

type W = Writer<Vec<u8>>;

/// Name of the virtio-serial port the QEMU guest agent listens on.
pub(crate) const AGENT_CHANNEL: &str = "org.qemu.guest_agent.0";

fn text(w: &mut W, name: &str, value: &str) -> io::Result<()> {
    w.create_element(name)
        .write_text_content(BytesText::new(value))?;
    Ok(())
}

fn finish(w: W) -> Result<String> {
    String::from_utf8(w.into_inner()).map_err(|e| Error::internal(format!("XML is not UTF-8: {e}")))
}

fn io_err(e: io::Error) -> Error {
    Error::internal(format!("writing XML failed: {e}"))
}

/// Where a disk's bytes come from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DiskSource {
    /// A volume in a pool.
    Volume { pool: String, volume: String },
    /// A host file.
    File(String),
}

/// A disk of a domain to build.
#[derive(Debug, Clone)]
pub(crate) struct PlannedDisk {
    pub source: DiskSource,
    /// qcow2, raw…
    pub format: String,
    pub cdrom: bool,
    pub readonly: bool,
    /// vda, vdb, hdc…
    pub target: String,
}

/// A network interface of a domain to build.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PlannedNic {
    /// A libvirt network by name (which may itself be an OVS bridge network).
    Network(String),
    /// A libvirt network with a MAC address chosen in advance (for a DHCP host entry).
    NetworkWithMac(String, String),
}

/// LibGo's facts about a domain, kept in its metadata.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Meta {
    pub created: Option<DateTime<Utc>>,
    pub image: Option<String>,
    pub template: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Volumes the VM created for itself (`pool/name`), deleted with it.
    pub owned: Vec<String>,
}

/// Everything needed to write a domain's XML.
#[derive(Debug, Clone)]
pub(crate) struct DomainPlan {
    pub name: String,
    pub domain_type: String,
    pub memory_bytes: u64,
    pub cpus: u32,
    pub boot: Option<KernelBoot>,
    /// Firmware boot order (empty: disk, then CD-ROM); unused with a kernel boot.
    pub boot_order: Vec<libgo_core::BootDevice>,
    pub disks: Vec<PlannedDisk>,
    pub nics: Vec<PlannedNic>,
    pub serial_log: Option<String>,
    pub vnc: bool,
    /// A virtio-serial channel for the QEMU guest agent (`org.qemu.guest_agent.0`).
    pub agent: bool,
    pub meta: Meta,
}

fn write_meta(w: &mut W, meta: &Meta) -> io::Result<()> {
    w.create_element("libgo:instance")
        .with_attribute(("xmlns:libgo", NS))
        .write_inner_content(|w| {
            if let Some(c) = meta.created {
                text(w, "libgo:created", &c.to_rfc3339())?;
            }
            if let Some(i) = &meta.image {
                text(w, "libgo:image", i)?;
            }
            if let Some(t) = &meta.template {
                text(w, "libgo:template", t)?;
            }
            for (k, v) in &meta.labels {
                w.create_element("libgo:label")
                    .with_attribute(("key", k.as_str()))
                    .write_text_content(BytesText::new(v))?;
            }
            for o in &meta.owned {
                text(w, "libgo:owned-volume", o)?;
            }
            Ok(())
        })?;
    Ok(())
}

/// The domain XML for a plan.
pub(crate) fn domain_xml(p: &DomainPlan) -> Result<String> {
    let mut w = Writer::new(Vec::new());
    let test = p.domain_type == "test";
    w.create_element("domain")
        .with_attribute(("type", p.domain_type.as_str()))
        .write_inner_content(|w| {
            text(w, "name", &p.name)?;
            w.create_element("metadata")
                .write_inner_content(|w| write_meta(w, &p.meta))?;
            let mem = p.memory_bytes.to_string();
            w.create_element("memory")
                .with_attribute(("unit", "b"))
                .write_text_content(BytesText::new(&mem))?;
            w.create_element("currentMemory")
                .with_attribute(("unit", "b"))
                .write_text_content(BytesText::new(&mem))?;
            text(w, "vcpu", &p.cpus.to_string())?;
            w.create_element("os").write_inner_content(|w| {
                let t = w.create_element("type").with_attribute(("arch", "x86_64"));
                let t = if test {
                    t
                } else {
                    t.with_attribute(("machine", "pc"))
                };
                t.write_text_content(BytesText::new("hvm"))?;
                if let Some(b) = &p.boot {
                    text(w, "kernel", &b.kernel)?;
                    if let Some(i) = &b.initrd {
                        text(w, "initrd", i)?;
                    }
                    if let Some(c) = &b.cmdline {
                        text(w, "cmdline", c)?;
                    }
                } else {
                    let default = [libgo_core::BootDevice::Disk, libgo_core::BootDevice::Cdrom];
                    let order = if p.boot_order.is_empty() {
                        &default[..]
                    } else {
                        &p.boot_order[..]
                    };
                    for dev in order {
                        w.create_element("boot")
                            .with_attribute(("dev", boot_dev(*dev)))
                            .write_empty()?;
                    }
                }
                Ok(())
            })?;
            if !test {
                w.create_element("features").write_inner_content(|w| {
                    w.create_element("acpi").write_empty()?;
                    w.create_element("apic").write_empty()?;
                    Ok(())
                })?;
                if p.domain_type == "kvm" {
                    w.create_element("cpu")
                        .with_attribute(("mode", "host-passthrough"))
                        .write_empty()?;
                }
            }
            text(w, "on_poweroff", "destroy")?;
            text(w, "on_reboot", "restart")?;
            text(w, "on_crash", "destroy")?;
            w.create_element("devices").write_inner_content(|w| {
                for d in &p.disks {
                    write_disk(w, d)?;
                }
                for n in &p.nics {
                    write_nic(w, n)?;
                }
                if !test {
                    w.create_element("serial")
                        .with_attribute(("type", "pty"))
                        .write_inner_content(|w| {
                            if let Some(log) = &p.serial_log {
                                w.create_element("log")
                                    .with_attribute(("file", log.as_str()))
                                    .with_attribute(("append", "on"))
                                    .write_empty()?;
                            }
                            w.create_element("target")
                                .with_attribute(("port", "0"))
                                .write_empty()?;
                            Ok(())
                        })?;
                    w.create_element("console")
                        .with_attribute(("type", "pty"))
                        .write_inner_content(|w| {
                            w.create_element("target")
                                .with_attribute(("type", "serial"))
                                .with_attribute(("port", "0"))
                                .write_empty()?;
                            Ok(())
                        })?;
                    if p.agent {
                        // libvirt picks the host socket path and tracks whether the
                        // agent in the guest is connected.
                        w.create_element("channel")
                            .with_attribute(("type", "unix"))
                            .write_inner_content(|w| {
                                w.create_element("target")
                                    .with_attribute(("type", "virtio"))
                                    .with_attribute(("name", AGENT_CHANNEL))
                                    .write_empty()?;
                                Ok(())
                            })?;
                    }
                    if p.vnc {
                        w.create_element("graphics")
                            .with_attribute(("type", "vnc"))
                            .with_attribute(("port", "-1"))
                            .with_attribute(("autoport", "yes"))
                            .with_attribute(("listen", "127.0.0.1"))
                            .write_inner_content(|w| {
                                w.create_element("listen")
                                    .with_attribute(("type", "address"))
                                    .with_attribute(("address", "127.0.0.1"))
                                    .write_empty()?;
                                Ok(())
                            })?;
                        w.create_element("video").write_inner_content(|w| {
                            w.create_element("model")
                                .with_attribute(("type", "vga"))
                                .write_empty()?;
                            Ok(())
                        })?;
                    }
                    w.create_element("memballoon")
                        .with_attribute(("model", "virtio"))
                        .write_inner_content(|w| {
                            w.create_element("stats")
                                .with_attribute(("period", "2"))
                                .write_empty()?;
                            Ok(())
                        })?;
                }
                Ok(())
            })?;
            Ok(())
        })
        .map_err(io_err)?;
    finish(w)
}

fn write_disk(w: &mut W, d: &PlannedDisk) -> io::Result<()> {
    let kind = match d.source {
        DiskSource::Volume { .. } => "volume",
        DiskSource::File(_) => "file",
    };
    w.create_element("disk")
        .with_attribute(("type", kind))
        .with_attribute(("device", if d.cdrom { "cdrom" } else { "disk" }))
        .write_inner_content(|w| {
            w.create_element("driver")
                .with_attribute(("name", "qemu"))
                .with_attribute(("type", d.format.as_str()))
                .write_empty()?;
            match &d.source {
                DiskSource::Volume { pool, volume } => w
                    .create_element("source")
                    .with_attribute(("pool", pool.as_str()))
                    .with_attribute(("volume", volume.as_str()))
                    .write_empty()?,
                DiskSource::File(path) => w
                    .create_element("source")
                    .with_attribute(("file", path.as_str()))
                    .write_empty()?,
            };
            let bus = if d.cdrom { "ide" } else { "virtio" };
            w.create_element("target")
                .with_attribute(("dev", d.target.as_str()))
                .with_attribute(("bus", bus))
                .write_empty()?;
            if d.readonly || d.cdrom {
                w.create_element("readonly").write_empty()?;
            }
            Ok(())
        })?;
    Ok(())
}

/// libvirt's name of a boot device.
fn boot_dev(d: libgo_core::BootDevice) -> &'static str {
    match d {
        libgo_core::BootDevice::Disk => "hd",
        libgo_core::BootDevice::Cdrom => "cdrom",
        libgo_core::BootDevice::Network => "network",
    }
}

/// A domain's XML with its `<os>` boot entries replaced by `order`.
pub(crate) fn with_boot_order(xml: &str, order: &[libgo_core::BootDevice]) -> Result<String> {
    let start = xml
        .find("<os>")
        .or_else(|| xml.find("<os "))
        .ok_or_else(|| Error::internal("the domain XML has no <os> element"))?;
    let end = start
        + xml[start..]
            .find("</os>")
            .ok_or_else(|| Error::internal("the domain XML has no </os>"))?;
    let mut os = String::new();
    let mut rest = &xml[start..end];
    // libvirt writes each as one empty element: <boot dev='hd'/>.
    while let Some(b) = rest.find("<boot ") {
        os.push_str(&rest[..b]);
        let close = rest[b..]
            .find("/>")
            .ok_or_else(|| Error::internal("an unclosed <boot> element"))?;
        rest = &rest[b + close + 2..];
    }
    os.push_str(rest);
    for dev in order {
        os.push_str(&format!("<boot dev='{}'/>", boot_dev(*dev)));
    }
    Ok(format!("{}{os}{}", &xml[..start], &xml[end..]))
}

/// One `<disk>` device to attach, update or detach; no source is an empty CD-ROM drive.
pub(crate) fn disk_device_xml(
    source: Option<&DiskSource>,
    format: &str,
    device: &str,
    target: &str,
    bus: &str,
    readonly: bool,
) -> Result<String> {
    let kind = match source {
        Some(DiskSource::Volume { .. }) => "volume",
        _ => "file",
    };
    let mut w = Writer::new(Vec::new());
    w.create_element("disk")
        .with_attribute(("type", kind))
        .with_attribute(("device", device))
        .write_inner_content(|w| {
            w.create_element("driver")
                .with_attribute(("name", "qemu"))
                .with_attribute(("type", format))
                .write_empty()?;
            match source {
                Some(DiskSource::Volume { pool, volume }) => {
                    w.create_element("source")
                        .with_attribute(("pool", pool.as_str()))
                        .with_attribute(("volume", volume.as_str()))
                        .write_empty()?;
                }
                Some(DiskSource::File(path)) => {
                    w.create_element("source")
                        .with_attribute(("file", path.as_str()))
                        .write_empty()?;
                }
                None => {}
            }
            w.create_element("target")
                .with_attribute(("dev", target))
                .with_attribute(("bus", bus))
                .write_empty()?;
            if readonly {
                w.create_element("readonly").write_empty()?;
            }
            Ok(())
        })
        .map_err(io_err)?;
    finish(w)
}

fn write_nic(w: &mut W, n: &PlannedNic) -> io::Result<()> {
    let (name, mac) = match n {
        PlannedNic::Network(name) => (name, None),
        PlannedNic::NetworkWithMac(name, mac) => (name, Some(mac)),
    };
    w.create_element("interface")
        .with_attribute(("type", "network"))
        .write_inner_content(|w| {
            if let Some(m) = mac {
                w.create_element("mac")
                    .with_attribute(("address", m.as_str()))
                    .write_empty()?;
            }
            w.create_element("source")
                .with_attribute(("network", name.as_str()))
                .write_empty()?;
            w.create_element("model")
                .with_attribute(("type", "virtio"))
                .write_empty()?;
            Ok(())
        })?;
    Ok(())
}

/// The XML of one interface, for attach/detach (`mac`: keep the one it has).
pub(crate) fn nic_xml(n: &PlannedNic, mac: Option<&str>) -> Result<String> {
    let mut w = Writer::new(Vec::new());
    let n = match (n, mac) {
        (PlannedNic::Network(name), Some(m)) => PlannedNic::NetworkWithMac(name.clone(), m.into()),
        _ => n.clone(),
    };
    write_nic(&mut w, &n).map_err(io_err)?;
    finish(w)
}

/// A disk as the domain XML describes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct DiskFacts {
    pub target: String,
    pub device: String,
    pub bus: String,
    pub format: Option<String>,
    pub pool: Option<String>,
    pub volume: Option<String>,
    pub file: Option<String>,
    pub readonly: bool,
}

/// An interface as the domain XML describes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct NicFacts {
    pub network: Option<String>,
    pub bridge: Option<String>,
    pub mac: Option<String>,
}

/// What LibGo reads from a domain's XML.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct DomainFacts {
    pub uuid: String,
    pub name: String,
    pub memory_bytes: u64,
    pub max_memory_bytes: u64,
    pub vcpus: u32,
    pub meta: Meta,
    pub disks: Vec<DiskFacts>,
    pub nics: Vec<NicFacts>,
    pub serial_log: Option<String>,
    pub vnc_port: Option<u16>,
    pub vnc_listen: Option<String>,
    pub direct_boot: bool,
}

fn to_bytes(value: &str, unit: Option<&str>) -> u64 {
    let v: u64 = value.trim().parse().unwrap_or(0);
    let mult: u64 = match unit.unwrap_or("KiB") {
        "b" | "bytes" => 1,
        "k" | "KiB" => 1 << 10,
        "KB" => 1000,
        "M" | "MiB" => 1 << 20,
        "MB" => 1_000_000,
        "G" | "GiB" => 1 << 30,
        "GB" => 1_000_000_000,
        "T" | "TiB" => 1 << 40,
        "TB" => 1_000_000_000_000,
        _ => 1 << 10,
    };
    v.saturating_mul(mult)
}

fn parse_doc(xml: &str) -> Result<roxmltree::Document<'_>> {
    roxmltree::Document::parse(xml)
        .map_err(|e| Error::internal(format!("libvirt returned XML LibGo cannot read: {e}")))
}

fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.children().find(|c| c.has_tag_name(name))
}

fn child_text(n: roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
    child(n, name)
        .and_then(|c| c.text())
        .map(|s| s.trim().to_string())
}

/// Reads LibGo's metadata element wherever it sits in a document.
fn parse_meta(root: roxmltree::Node<'_, '_>) -> Meta {
    let mut meta = Meta::default();
    let Some(inst) = root
        .descendants()
        .find(|n| n.tag_name().name() == "instance" && n.tag_name().namespace() == Some(NS))
    else {
        return meta;
    };
    for c in inst.children().filter(|c| c.is_element()) {
        let value = c.text().unwrap_or("").to_string();
        match c.tag_name().name() {
            "created" => {
                meta.created = DateTime::parse_from_rfc3339(value.trim())
                    .ok()
                    .map(|d| d.with_timezone(&Utc))
            }
            "image" => meta.image = Some(value),
            "template" => meta.template = Some(value),
            "label" => {
                if let Some(k) = c.attribute("key") {
                    meta.labels.insert(k.to_string(), value);
                }
            }
            "owned-volume" => meta.owned.push(value),
            _ => {}
        }
    }
    meta
}

/// Parses a domain's XML.
pub(crate) fn parse_domain(xml: &str) -> Result<DomainFacts> {
    let doc = parse_doc(xml)?;
    let root = doc.root_element();
    let mut f = DomainFacts {
        uuid: child_text(root, "uuid").unwrap_or_default(),
        name: child_text(root, "name").unwrap_or_default(),
        meta: parse_meta(root),
        ..Default::default()
    };
    if let Some(m) = child(root, "memory") {
        f.max_memory_bytes = to_bytes(m.text().unwrap_or("0"), m.attribute("unit"));
    }
    f.memory_bytes = child(root, "currentMemory")
        .map(|m| to_bytes(m.text().unwrap_or("0"), m.attribute("unit")))
        .unwrap_or(f.max_memory_bytes);
    if let Some(v) = child(root, "vcpu") {
        f.vcpus = v
            .attribute("current")
            .or(v.text())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1);
    }
    f.direct_boot = child(root, "os")
        .and_then(|os| child(os, "kernel"))
        .is_some();
    if let Some(devices) = child(root, "devices") {
        for d in devices.children().filter(|c| c.is_element()) {
            match d.tag_name().name() {
                "disk" => {
                    let src = child(d, "source");
                    f.disks.push(DiskFacts {
                        target: child(d, "target")
                            .and_then(|t| t.attribute("dev"))
                            .unwrap_or("")
                            .to_string(),
                        device: d.attribute("device").unwrap_or("disk").to_string(),
                        bus: child(d, "target")
                            .and_then(|t| t.attribute("bus"))
                            .unwrap_or("")
                            .to_string(),
                        format: child(d, "driver")
                            .and_then(|t| t.attribute("type"))
                            .map(str::to_string),
                        pool: src.and_then(|s| s.attribute("pool")).map(str::to_string),
                        volume: src.and_then(|s| s.attribute("volume")).map(str::to_string),
                        file: src
                            .and_then(|s| s.attribute("file").or(s.attribute("dev")))
                            .map(str::to_string),
                        readonly: child(d, "readonly").is_some(),
                    });
                }
                "interface" => {
                    let src = child(d, "source");
                    f.nics.push(NicFacts {
                        network: src.and_then(|s| s.attribute("network")).map(str::to_string),
                        bridge: src.and_then(|s| s.attribute("bridge")).map(str::to_string),
                        mac: child(d, "mac")
                            .and_then(|m| m.attribute("address"))
                            .map(str::to_string),
                    });
                }
                "serial" if f.serial_log.is_none() => {
                    f.serial_log = child(d, "log")
                        .and_then(|l| l.attribute("file"))
                        .or_else(|| {
                            (d.attribute("type") == Some("file"))
                                .then(|| child(d, "source").and_then(|s| s.attribute("path")))
                                .flatten()
                        })
                        .map(str::to_string);
                }
                "graphics" if d.attribute("type") == Some("vnc") => {
                    f.vnc_port = d
                        .attribute("port")
                        .and_then(|p| p.parse::<i32>().ok())
                        .filter(|p| *p > 0)
                        .and_then(|p| u16::try_from(p).ok());
                    f.vnc_listen = d.attribute("listen").map(str::to_string);
                }
                _ => {}
            }
        }
    }
    Ok(f)
}

/// A volume to create.
pub(crate) struct VolumePlan<'a> {
    pub name: &'a str,
    pub capacity: u64,
    pub format: &'a str,
    /// Backing file and its format, for an overlay.
    pub backing: Option<(&'a str, &'a str)>,
}

/// Storage volume XML.
pub(crate) fn volume_xml(v: &VolumePlan<'_>) -> Result<String> {
    let mut w = Writer::new(Vec::new());
    w.create_element("volume")
        .write_inner_content(|w| {
            text(w, "name", v.name)?;
            w.create_element("capacity")
                .with_attribute(("unit", "bytes"))
                .write_text_content(BytesText::new(&v.capacity.to_string()))?;
            if v.format == "raw" {
                w.create_element("allocation")
                    .with_attribute(("unit", "bytes"))
                    .write_text_content(BytesText::new("0"))?;
            }
            w.create_element("target").write_inner_content(|w| {
                w.create_element("format")
                    .with_attribute(("type", v.format))
                    .write_empty()?;
                Ok(())
            })?;
            if let Some((path, format)) = v.backing {
                w.create_element("backingStore").write_inner_content(|w| {
                    text(w, "path", path)?;
                    w.create_element("format")
                        .with_attribute(("type", format))
                        .write_empty()?;
                    Ok(())
                })?;
            }
            Ok(())
        })
        .map_err(io_err)?;
    finish(w)
}

/// What LibGo reads from a volume's XML.
#[derive(Debug, Clone, Default)]
pub(crate) struct VolumeFacts {
    pub format: Option<String>,
    pub path: Option<String>,
    pub capacity: u64,
    pub allocation: u64,
    pub created: Option<DateTime<Utc>>,
    /// The backing file libvirt read from the image's header (`<backingStore><path>`).
    pub backing: Option<String>,
}

pub(crate) fn parse_volume(xml: &str) -> Result<VolumeFacts> {
    let doc = parse_doc(xml)?;
    let root = doc.root_element();
    let target = child(root, "target");
    let num = |n: &str| {
        child(root, n)
            .map(|c| to_bytes(c.text().unwrap_or("0"), c.attribute("unit").or(Some("b"))))
            .unwrap_or(0)
    };
    Ok(VolumeFacts {
        format: target
            .and_then(|t| child(t, "format"))
            .and_then(|f| f.attribute("type"))
            .map(str::to_string),
        path: target.and_then(|t| child_text(t, "path")),
        capacity: num("capacity"),
        allocation: num("allocation"),
        created: target
            .and_then(|t| child(t, "timestamps"))
            .and_then(|t| child_text(t, "ctime"))
            .and_then(|c| c.split('.').next().and_then(|s| s.parse::<i64>().ok()))
            .and_then(|s| DateTime::from_timestamp(s, 0)),
        backing: child(root, "backingStore").and_then(|b| child_text(b, "path")),
    })
}

/// A dir storage pool's XML.
pub(crate) fn pool_xml(name: &str, path: &str) -> Result<String> {
    let mut w = Writer::new(Vec::new());
    w.create_element("pool")
        .with_attribute(("type", "dir"))
        .write_inner_content(|w| {
            text(w, "name", name)?;
            w.create_element("target")
                .write_inner_content(|w| text(w, "path", path))?;
            Ok(())
        })
        .map_err(io_err)?;
    finish(w)
}

/// Type and target path of a pool.
pub(crate) fn parse_pool(xml: &str) -> Result<(String, Option<String>)> {
    let doc = parse_doc(xml)?;
    let root = doc.root_element();
    Ok((
        root.attribute("type").unwrap_or("dir").to_string(),
        child(root, "target").and_then(|t| child_text(t, "path")),
    ))
}

/// A network to create.
pub(crate) struct NetworkPlan<'a> {
    pub name: &'a str,
    /// nat, isolated, route, bridge, ovs.
    pub mode: &'a str,
    pub bridge: Option<&'a str>,
    pub address: Option<(String, u8)>,
    pub dhcp: Option<(String, String)>,
    pub labels: &'a BTreeMap<String, String>,
    /// Name servers dnsmasq forwards to.
    pub dns_forwarders: &'a [String],
}

/// Network XML.
pub(crate) fn network_xml(n: &NetworkPlan<'_>) -> Result<String> {
    let mut w = Writer::new(Vec::new());
    w.create_element("network")
        .write_inner_content(|w| {
            text(w, "name", n.name)?;
            if !n.labels.is_empty() {
                w.create_element("metadata").write_inner_content(|w| {
                    write_meta(
                        w,
                        &Meta {
                            labels: n.labels.clone(),
                            ..Default::default()
                        },
                    )
                })?;
            }
            match n.mode {
                "nat" | "route" => {
                    w.create_element("forward")
                        .with_attribute(("mode", n.mode))
                        .write_empty()?;
                }
                "bridge" | "ovs" => {
                    w.create_element("forward")
                        .with_attribute(("mode", "bridge"))
                        .write_empty()?;
                }
                _ => {}
            }
            if let Some(b) = n.bridge {
                w.create_element("bridge")
                    .with_attribute(("name", b))
                    .write_empty()?;
            }
            if n.mode == "ovs" {
                w.create_element("virtualport")
                    .with_attribute(("type", "openvswitch"))
                    .write_empty()?;
            }
            if !n.dns_forwarders.is_empty() {
                w.create_element("dns").write_inner_content(|w| {
                    for f in n.dns_forwarders {
                        w.create_element("forwarder")
                            .with_attribute(("addr", f.as_str()))
                            .write_empty()?;
                    }
                    Ok(())
                })?;
            }
            if let Some((ip, prefix)) = &n.address {
                w.create_element("ip")
                    .with_attribute(("address", ip.as_str()))
                    .with_attribute(("prefix", prefix.to_string().as_str()))
                    .write_inner_content(|w| {
                        if let Some((start, end)) = &n.dhcp {
                            w.create_element("dhcp").write_inner_content(|w| {
                                w.create_element("range")
                                    .with_attribute(("start", start.as_str()))
                                    .with_attribute(("end", end.as_str()))
                                    .write_empty()?;
                                Ok(())
                            })?;
                        }
                        Ok(())
                    })?;
            }
            Ok(())
        })
        .map_err(io_err)?;
    finish(w)
}

/// What a domain's XML says it takes from its host, before paths and networks are
/// checked against the pools and networks.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct HostFacts {
    /// A kernel (or initrd) booted from a host file.
    pub kernel: Option<String>,
    /// Passed-through host devices (`<hostdev>`), described.
    pub hostdevs: Vec<String>,
    /// Interfaces on a host bridge or device directly (`type` bridge, direct, ethernet…).
    pub host_interfaces: Vec<String>,
    /// libvirt networks the interfaces use.
    pub networks: Vec<String>,
    /// Files and block devices used as disks.
    pub disk_paths: Vec<String>,
    /// Host directories shared into the guest (`<filesystem>`).
    pub shared_dirs: Vec<String>,
}

/// Reads what a domain takes from its host.
pub(crate) fn host_facts(xml: &str) -> Result<HostFacts> {
    let doc = parse_doc(xml)?;
    let root = doc.root_element();
    let mut f = HostFacts::default();
    if let Some(os) = child(root, "os") {
        f.kernel = ["kernel", "initrd", "dtb"]
            .iter()
            .find_map(|t| child_text(os, t));
    }
    let Some(devices) = child(root, "devices") else {
        return Ok(f);
    };
    for d in devices.children().filter(|c| c.is_element()) {
        let src = child(d, "source");
        match d.tag_name().name() {
            "hostdev" => f.hostdevs.push(
                src.and_then(|s| s.children().find(|c| c.is_element()))
                    .map(|a| {
                        let attrs: Vec<String> = a
                            .attributes()
                            .map(|at| format!("{}={}", at.name(), at.value()))
                            .collect();
                        format!("{} {}", a.tag_name().name(), attrs.join(" "))
                    })
                    .unwrap_or_else(|| d.attribute("type").unwrap_or("hostdev").to_string()),
            ),
            "interface" => match d.attribute("type") {
                Some("network") => {
                    if let Some(n) = src.and_then(|s| s.attribute("network")) {
                        f.networks.push(n.to_string());
                    }
                }
                Some("user") => {}
                other => f.host_interfaces.push(format!(
                    "{} {}",
                    other.unwrap_or("interface"),
                    src.and_then(|s| s.attribute("bridge").or(s.attribute("dev")))
                        .unwrap_or("")
                )),
            },
            "disk" => {
                if let Some(p) = src.and_then(|s| s.attribute("file").or(s.attribute("dev"))) {
                    f.disk_paths.push(p.to_string());
                }
            }
            "filesystem" => {
                if let Some(p) = src.and_then(|s| s.attribute("dir").or(s.attribute("file"))) {
                    f.shared_dirs.push(p.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(f)
}

/// Where a domain's disk comes from: a file or device, or a volume of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DiskRef {
    /// `<source file=…>` or `<source dev=…>`.
    Path(String),
    /// `<source pool=… volume=…>`.
    Volume { pool: String, volume: String },
}

/// The sources of a domain's disks (CD-ROMs included).
pub(crate) fn disk_refs(xml: &str) -> Result<Vec<DiskRef>> {
    let doc = parse_doc(xml)?;
    let Some(devices) = child(doc.root_element(), "devices") else {
        return Ok(Vec::new());
    };
    Ok(devices
        .children()
        .filter(|d| d.is_element() && d.tag_name().name() == "disk")
        .filter_map(|d| child(d, "source"))
        .filter_map(
            |src| match (src.attribute("pool"), src.attribute("volume")) {
                (Some(pool), Some(volume)) => Some(DiskRef::Volume {
                    pool: pool.to_string(),
                    volume: volume.to_string(),
                }),
                _ => src
                    .attribute("file")
                    .or(src.attribute("dev"))
                    .map(|p| DiskRef::Path(p.to_string())),
            },
        )
        .collect())
}

/// What LibGo reads from a network's XML.
#[derive(Debug, Clone, Default)]
pub(crate) struct NetworkFacts {
    pub forward: Option<String>,
    pub bridge: Option<String>,
    pub ovs: bool,
    pub address: Option<(String, u8)>,
    pub labels: BTreeMap<String, String>,
}

pub(crate) fn parse_network(xml: &str) -> Result<NetworkFacts> {
    let doc = parse_doc(xml)?;
    let root = doc.root_element();
    let address = child(root, "ip").and_then(|ip| {
        let addr = ip.attribute("address")?.to_string();
        let prefix = ip
            .attribute("prefix")
            .and_then(|p| p.parse().ok())
            .or_else(|| ip.attribute("netmask").map(netmask_prefix))?;
        Some((addr, prefix))
    });
    Ok(NetworkFacts {
        forward: child(root, "forward").map(|f| f.attribute("mode").unwrap_or("nat").to_string()),
        bridge: child(root, "bridge")
            .and_then(|b| b.attribute("name"))
            .map(str::to_string),
        ovs: child(root, "virtualport").and_then(|v| v.attribute("type")) == Some("openvswitch"),
        address,
        labels: parse_meta(root).labels,
    })
}

fn netmask_prefix(mask: &str) -> u8 {
    mask.parse::<std::net::Ipv4Addr>()
        .map(|m| u32::from(m).count_ones() as u8)
        .unwrap_or(24)
}

/// Snapshot XML.
pub(crate) fn snapshot_xml(name: &str, description: Option<&str>) -> Result<String> {
    let mut w = Writer::new(Vec::new());
    w.create_element("domainsnapshot")
        .write_inner_content(|w| {
            text(w, "name", name)?;
            if let Some(d) = description {
                text(w, "description", d)?;
            }
            Ok(())
        })
        .map_err(io_err)?;
    finish(w)
}

/// What LibGo reads from a snapshot's XML.
pub(crate) struct SnapshotFacts {
    pub name: String,
    pub description: Option<String>,
    pub created: Option<DateTime<Utc>>,
    pub memory: bool,
    pub parent: Option<String>,
}

pub(crate) fn parse_snapshot(xml: &str) -> Result<SnapshotFacts> {
    let doc = parse_doc(xml)?;
    let root = doc.root_element();
    let state = child_text(root, "state").unwrap_or_default();
    let memory = child(root, "memory")
        .and_then(|m| m.attribute("snapshot"))
        .map(|s| s != "no")
        .unwrap_or(matches!(state.as_str(), "running" | "paused"));
    Ok(SnapshotFacts {
        name: child_text(root, "name").unwrap_or_default(),
        description: child_text(root, "description"),
        created: child_text(root, "creationTime")
            .and_then(|c| c.parse::<i64>().ok())
            .and_then(|s| DateTime::from_timestamp(s, 0)),
        memory,
        parent: child(root, "parent").and_then(|p| child_text(p, "name")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_refs_name_files_devices_and_pool_volumes() {
        let x = r#"<domain><devices>
            <disk type='volume'><source pool='default' volume='a-disk0.qcow2'/></disk>
            <disk type='file' device='cdrom'><source file='/var/lib/libvirt/images/s.iso'/></disk>
            <disk type='block'><source dev='/dev/vdb'/></disk>
            <disk type='file' device='cdrom'/>
            <interface type='network'><source network='default'/></interface>
        </devices></domain>"#;
        assert_eq!(
            disk_refs(x).unwrap(),
            vec![
                DiskRef::Volume {
                    pool: "default".into(),
                    volume: "a-disk0.qcow2".into()
                },
                DiskRef::Path("/var/lib/libvirt/images/s.iso".into()),
                DiskRef::Path("/dev/vdb".into()),
            ]
        );
    }

    #[test]
    fn a_boot_order_replaces_the_old_one() {
        use libgo_core::BootDevice::*;
        let x = "<domain><os><type>hvm</type><boot dev='hd'/>\n    <boot dev='cdrom'/></os><devices/></domain>";
        let y = with_boot_order(x, &[Network, Disk]).expect("edit");
        assert_eq!(
            y,
            "<domain><os><type>hvm</type>\n    <boot dev='network'/><boot dev='hd'/></os><devices/></domain>"
        );
    }

    fn plan(name: &str) -> DomainPlan {
        DomainPlan {
            name: name.into(),
            domain_type: "qemu".into(),
            memory_bytes: 256 << 20,
            cpus: 2,
            boot: Some(KernelBoot {
                kernel: "/boot/vmlinuz".into(),
                initrd: None,
                cmdline: Some("console=ttyS0 x=<&>".into()),
            }),
            boot_order: Vec::new(),
            disks: vec![PlannedDisk {
                source: DiskSource::Volume {
                    pool: "default".into(),
                    volume: "a.qcow2".into(),
                },
                format: "qcow2".into(),
                cdrom: false,
                readonly: false,
                target: "vda".into(),
            }],
            nics: vec![PlannedNic::Network("default".into())],
            serial_log: Some("/var/log/x.log".into()),
            vnc: true,
            agent: true,
            meta: Meta {
                created: Some(Utc::now()),
                image: Some("base.qcow2".into()),
                template: None,
                labels: [("k\"<'>&".to_string(), "v</libgo:label><evil/>".to_string())].into(),
                owned: vec!["default/a.qcow2".into()],
            },
        }
    }

    #[test]
    fn domain_xml_round_trips_and_escapes() {
        let xml = domain_xml(&plan("vm-1")).unwrap();
        assert!(!xml.contains("<evil/>"), "{xml}");
        assert!(
            xml.contains(r#"<channel type="unix"><target type="virtio" name="org.qemu.guest_agent.0"/></channel>"#),
            "{xml}"
        );
        let f = parse_domain(&xml).unwrap();
        assert_eq!(f.name, "vm-1");
        assert_eq!(f.memory_bytes, 256 << 20);
        assert_eq!(f.vcpus, 2);
        assert_eq!(
            f.meta.labels.get("k\"<'>&").map(String::as_str),
            Some("v</libgo:label><evil/>")
        );
        assert_eq!(f.meta.owned, vec!["default/a.qcow2".to_string()]);
        assert_eq!(f.disks[0].volume.as_deref(), Some("a.qcow2"));
        assert_eq!(f.nics[0].network.as_deref(), Some("default"));
        assert_eq!(f.serial_log.as_deref(), Some("/var/log/x.log"));
        assert!(f.direct_boot);
    }

    #[test]
    fn units() {
        assert_eq!(to_bytes("1", Some("GiB")), 1 << 30);
        assert_eq!(to_bytes("2048", None), 2 << 20);
        assert_eq!(to_bytes("junk", Some("b")), 0);
    }
}
