//! Networks (libvirt NAT, isolated, routed, bridged and Open vSwitch) and the serial
//! console stream.

use std::net::Ipv4Addr;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use libgo_core::*;
use tokio::io::AsyncReadExt;
use virt::connect::Connect;
use virt::network::Network as VirNetwork;

use crate::KvmBackend;
use crate::compute::{is_active_domain, lookup};
use crate::conn::{Inner, LvExt};
use crate::xml::{self, PlannedNic};

fn find(c: &Connect, id: &str) -> Result<VirNetwork> {
    let missing = || Error::not_found(format!("no network {id:?}"));
    if crate::compute::is_uuid(id)
        && let Ok(n) = c.lookup_network_by_uuid_string(id)
    {
        return Ok(n);
    }
    if validate::name("network", id).is_err() && id != "default" {
        return Err(missing());
    }
    c.lookup_network_by_name(id).lv().map_err(|e| {
        if e.kind() == ErrorKind::NotFound {
            missing()
        } else {
            e
        }
    })
}

fn describe(inner: &Inner, n: &VirNetwork) -> Result<Network> {
    let f = xml::parse_network(&n.xml_desc(0).lv()?)?;
    let driver = if f.ovs {
        "ovs".to_string()
    } else {
        match f.forward.as_deref() {
            None => "isolated".into(),
            Some(m) => m.to_string(),
        }
    };
    let (subnet, gateway) = match &f.address {
        Some((ip, prefix)) => {
            let net = ip
                .parse::<Ipv4Addr>()
                .map(|a| {
                    let mask = if *prefix == 0 {
                        0
                    } else {
                        u32::MAX << (32 - u32::from(*prefix).min(32))
                    };
                    format!("{}/{prefix}", Ipv4Addr::from(u32::from(a) & mask))
                })
                .unwrap_or_else(|_| format!("{ip}/{prefix}"));
            (Some(net), Some(ip.clone()))
        }
        None => (None, None),
    };
    Ok(Network {
        id: n.uuid_string().lv()?,
        name: n.name().lv()?,
        backend: inner.config.name.clone(),
        internal: driver == "isolated",
        host_attached: attaches_host(&driver),
        driver,
        subnet,
        gateway,
        active: n.is_active().lv()?,
        labels: f.labels,
        instances: Vec::new(),
    })
}

/// Ids of the VMs (running or not) with an interface on network `name` in their
/// definition: one `list_all_domains` call, then each domain's facts (cached while events
/// flow, so no call per domain). An interface a tool attached to a running VM's live
/// definition only (`virsh attach-interface --live`) is not seen; LibGo's own
/// `network_connect` always changes the definition.
fn attached(inner: &Inner, c: &Connect, name: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for d in c.list_all_domains(0).lv()? {
        let f = match crate::compute::facts(inner, &d) {
            Ok(f) => f,
            // Undefined between the list and now.
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if f.nics.iter().any(|n| n.network.as_deref() == Some(name)) {
            out.push(f.uuid.clone());
        }
    }
    out.sort();
    Ok(out)
}

/// Gateway, prefix and DHCP range of a subnet.
/// Gateway address with prefix, and a DHCP range.
type Addressing = (Option<(String, u8)>, Option<(String, String)>);

fn addressing(spec: &NetworkSpec) -> Result<Addressing> {
    let Some(subnet) = &spec.subnet else {
        return Ok((None, None));
    };
    let (ip, len) = subnet
        .split_once('/')
        .ok_or_else(|| Error::invalid("subnet needs a prefix"))?;
    let ip: Ipv4Addr = ip
        .parse()
        .map_err(|_| Error::unsupported("only IPv4 subnets are supported"))?;
    let len: u8 = len
        .parse()
        .map_err(|_| Error::invalid("bad prefix length"))?;
    if !(8..=30).contains(&len) {
        return Err(Error::invalid("subnet prefix must be between /8 and /30"));
    }
    let mask = u32::MAX << (32 - u32::from(len));
    let net = u32::from(ip) & mask;
    let broadcast = net | !mask;
    let gateway = match &spec.gateway {
        Some(g) => {
            let g: Ipv4Addr = g
                .parse()
                .map_err(|_| Error::invalid("gateway must be IPv4"))?;
            if u32::from(g) & mask != net {
                return Err(Error::invalid("gateway is outside the subnet"));
            }
            g
        }
        None => Ipv4Addr::from(net + 1),
    };
    let start = Ipv4Addr::from(if u32::from(gateway) == net + 1 {
        net + 2
    } else {
        net + 1
    });
    let end = Ipv4Addr::from(broadcast - 1);
    Ok((
        Some((gateway.to_string(), len)),
        Some((start.to_string(), end.to_string())),
    ))
}

fn ovs_vsctl(args: &[&str]) -> Result<()> {
    let out = std::process::Command::new("ovs-vsctl")
        .arg("--timeout=10")
        .args(args)
        .output()
        .map_err(|e| {
            Error::unavailable(format!(
                "cannot run ovs-vsctl (is openvswitch-switch installed and running?): {e}"
            ))
        })?;
    if !out.status.success() {
        return Err(Error::unavailable(format!(
            "ovs-vsctl failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Whether a network mode attaches its VMs to a host bridge (`bridge` uses the host bridge
/// of its name; `ovs` sits on one).
fn attaches_host(mode: &str) -> bool {
    matches!(mode, "bridge" | "ovs")
}

const OVS_LABEL: &str = "kvm.libgo.io/ovs-bridge-created";

fn create_blocking(inner: &Inner, c: &Connect, spec: &NetworkSpec) -> Result<Network> {
    if find(c, &spec.name).is_ok() {
        return Err(Error::conflict(format!(
            "network {:?} exists already",
            spec.name
        )));
    }
    let mode = spec
        .driver
        .as_deref()
        .unwrap_or(if spec.internal { "isolated" } else { "nat" });
    let mut labels = spec.labels.clone();
    let (address, dhcp) = match mode {
        "nat" | "route" | "isolated" => addressing(spec)?,
        "bridge" | "ovs" => {
            if spec.subnet.is_some() {
                return Err(Error::invalid(
                    "a bridged network takes no subnet: the bridge's LAN provides it",
                ));
            }
            (None, None)
        }
        other => {
            return Err(Error::invalid(format!(
                "network driver {other:?} is not one this backend has; use nat, isolated, \
                 route, bridge or ovs"
            )));
        }
    };
    if matches!(mode, "nat" | "route") && address.is_none() {
        return Err(Error::invalid(format!("a {mode} network needs a subnet")));
    }
    // A bridge network uses the host bridge of the same name; an OVS one creates it.
    let bridge = match mode {
        "bridge" | "ovs" => {
            if spec.name.len() > 15 {
                return Err(Error::invalid("a bridge name is at most 15 characters"));
            }
            Some(spec.name.as_str())
        }
        _ => None,
    };
    let mut ovs_created = false;
    if mode == "ovs" {
        ovs_vsctl(&[
            "--may-exist",
            "add-br",
            &spec.name,
            "--",
            "set",
            "bridge",
            &spec.name,
            "datapath_type=netdev",
        ])?;
        ovs_created = true;
        labels.insert(OVS_LABEL.into(), "true".into());
    }
    let x = xml::network_xml(&xml::NetworkPlan {
        name: &spec.name,
        mode,
        bridge,
        address,
        dhcp,
        labels: &labels,
        dns_forwarders: &[],
    })?;
    let made = (|| {
        let n = c.define_network_xml(&x).lv()?;
        if let Err(e) = n.create().lv().and_then(|_| n.set_autostart(true).lv()) {
            let _ = n.destroy();
            let _ = n.undefine();
            return Err(subnet_in_use(e));
        }
        describe(inner, &n)
    })();
    if made.is_err() && ovs_created {
        let _ = ovs_vsctl(&["--if-exists", "del-br", &spec.name]);
    }
    made
}

/// Makes the NAT network that carries an address pool: the pool's bridge with its gateway,
/// DHCP for the host entries LibGo adds per VM only (no range: every address comes from
/// the pool), name servers forwarded.
fn address_network_blocking(inner: &Inner, c: &Connect, net: &AddressNetwork) -> Result<()> {
    // Two creates at once would both define it.
    static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = MAKING.lock().unwrap_or_else(|p| p.into_inner());
    if let Ok(n) = c.lookup_network_by_name(&net.name) {
        let subnet = net.subnet();
        let have = describe(inner, &n)?.subnet;
        if have.as_deref() != Some(subnet.as_str()) {
            return Err(Error::conflict(format!(
                "network {:?} has subnet {}, its address pool now says {subnet}: delete the \
                 network (once no instance uses it) to have it made again",
                net.name,
                have.unwrap_or_default()
            )));
        }
        if !n.is_active().lv()? {
            n.create().lv()?;
        }
        return Ok(());
    }
    let labels = std::collections::BTreeMap::from([(
        libgo_core::addresses::LABEL_POOL.to_string(),
        net.name.clone(),
    )]);
    let x = xml::network_xml(&xml::NetworkPlan {
        name: &net.name,
        mode: "nat",
        bridge: Some(&net.bridge),
        address: Some((net.gateway.to_string(), net.prefix)),
        dhcp: None,
        labels: &labels,
        dns_forwarders: &net.dns,
    })?;
    let n = c.define_network_xml(&x).lv()?;
    if let Err(e) = n.create().lv().and_then(|_| n.set_autostart(true).lv()) {
        let _ = n.destroy();
        let _ = n.undefine();
        return Err(subnet_in_use(e));
    }
    Ok(())
}

/// Adds (or removes) the DHCP host entry that gives a VM's interface its pool address, in
/// the running network and its configuration.
pub(crate) fn dhcp_host(
    c: &Connect,
    network: &str,
    mac: &str,
    entry: Option<(Ipv4Addr, &str)>,
) -> Result<()> {
    let n = c.lookup_network_by_name(network).lv()?;
    // mac is LibGo's or libvirt's, the name a validated instance name: nothing to escape.
    let (cmd, x) = match entry {
        Some((ip, name)) => (
            virt::sys::VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
            format!("<host mac='{mac}' name='{name}' ip='{ip}'/>"),
        ),
        None => (
            virt::sys::VIR_NETWORK_UPDATE_COMMAND_DELETE,
            format!("<host mac='{mac}'/>"),
        ),
    };
    let mut flags = virt::sys::VIR_NETWORK_UPDATE_AFFECT_CONFIG;
    if n.is_active().lv()? {
        flags |= virt::sys::VIR_NETWORK_UPDATE_AFFECT_LIVE;
    }
    let section = virt::sys::VIR_NETWORK_SECTION_IP_DHCP_HOST;
    match n.update(cmd, section, -1, &x, flags).lv() {
        // The entry of a VM removed behind LibGo's back (whose address the server freed)
        // holds the address or the name: it goes, then the new one is added.
        Err(e) if e.message().contains("existing dhcp host entry") => {
            let Some((ip, name)) = entry else {
                return Err(e);
            };
            for stale in [
                format!("<host ip='{ip}'/>"),
                format!("<host name='{name}'/>"),
            ] {
                let _ = n.update(
                    virt::sys::VIR_NETWORK_UPDATE_COMMAND_DELETE,
                    section,
                    -1,
                    &stale,
                    flags,
                );
            }
            n.update(cmd, section, -1, &x, flags).lv()
        }
        other => other,
    }
}

/// libvirt refuses a subnet another interface of the host has with an internal error
/// ("Network is already in use by interface docker0"): a conflict with the host's state,
/// not a fault of LibGo's.
fn subnet_in_use(e: Error) -> Error {
    let message = e.to_string();
    match message.find("already in use by interface") {
        Some(at) => Error::conflict(format!(
            "the network's subnet is {} on this host; choose another subnet",
            message[at..].trim_end_matches(|c: char| c == ')' || c.is_whitespace())
        )),
        None => e,
    }
}

fn delete_blocking(c: &Connect, id: &str) -> Result<()> {
    let n = find(c, id)?;
    let name = n.name().lv()?;
    let f = xml::parse_network(&n.xml_desc(0).lv()?)?;
    if n.is_active().lv()? {
        n.destroy().lv()?;
    }
    n.undefine().lv()?;
    if f.labels.contains_key(OVS_LABEL) {
        ovs_vsctl(&[
            "--if-exists",
            "del-br",
            f.bridge.as_deref().unwrap_or(&name),
        ])?;
    }
    Ok(())
}

#[async_trait]
impl Networks for KvmBackend {
    fn network_attaches_host(&self, spec: &NetworkSpec) -> bool {
        spec.driver.as_deref().is_some_and(attaches_host)
    }

    async fn network_list(&self) -> Result<Vec<Network>> {
        let inner = self.inner.clone();
        self.inner
            .run(move |c| {
                c.list_all_networks(0)
                    .lv()?
                    .iter()
                    .map(|n| describe(&inner, n))
                    .collect()
            })
            .await
    }

    async fn network_create(&self, spec: &NetworkSpec) -> Result<Network> {
        validate::owned_network_spec(spec)?;
        let inner = self.inner.clone();
        let spec = spec.clone();
        self.inner
            .run(move |c| create_blocking(&inner, c, &spec))
            .await
    }

    async fn address_network(&self, net: &AddressNetwork) -> Result<()> {
        if self.inner.is_test {
            return Err(Error::unsupported(
                "libvirt's test driver has no host bridges for address pools",
            ));
        }
        let net = net.clone();
        let inner = self.inner.clone();
        self.inner
            .run(move |c| address_network_blocking(&inner, c, &net))
            .await
    }

    async fn network_inspect(&self, id: &str) -> Result<Network> {
        let inner = self.inner.clone();
        let id = id.to_string();
        self.inner
            .run(move |c| {
                let mut n = describe(&inner, &find(c, &id)?)?;
                n.instances = attached(&inner, c, &n.name)?;
                Ok(n)
            })
            .await
    }

    async fn network_delete(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.inner.run(move |c| delete_blocking(c, &id)).await
    }

    async fn network_start(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.inner
            .run(move |c| find(c, &id)?.create().lv().map(|_| ()))
            .await
    }

    async fn network_stop(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.inner.run(move |c| find(c, &id)?.destroy().lv()).await
    }

    async fn network_connect(&self, network: &str, instance: &str) -> Result<()> {
        let (network, instance) = (network.to_string(), instance.to_string());
        let inner = self.inner.clone();
        self.inner
            .run(move |c| {
                let n = find(c, &network)?;
                let name = n.name().lv()?;
                let d = lookup(c, &instance)?;
                let x = xml::nic_xml(&PlannedNic::Network(name), None)?;
                let mut flags = virt::sys::VIR_DOMAIN_AFFECT_CONFIG;
                if is_active_domain(&d)? {
                    flags |= virt::sys::VIR_DOMAIN_AFFECT_LIVE;
                }
                d.attach_device_flags(&x, flags).lv()?;
                if let Ok(u) = d.uuid_string() {
                    inner.shared.invalidate(&u);
                }
                Ok(())
            })
            .await
    }

    async fn network_disconnect(&self, network: &str, instance: &str) -> Result<()> {
        let (network, instance) = (network.to_string(), instance.to_string());
        let inner = self.inner.clone();
        self.inner
            .run(move |c| {
                let n = find(c, &network)?;
                let name = n.name().lv()?;
                let d = lookup(c, &instance)?;
                let f = xml::parse_domain(&d.xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE).lv()?)?;
                let nic = f
                    .nics
                    .iter()
                    .find(|nic| nic.network.as_deref() == Some(name.as_str()))
                    .ok_or_else(|| {
                        Error::not_found(format!(
                            "VM {instance:?} is not attached to network {name:?}"
                        ))
                    })?;
                let x = xml::nic_xml(&PlannedNic::Network(name), nic.mac.as_deref())?;
                let mut flags = virt::sys::VIR_DOMAIN_AFFECT_CONFIG;
                if is_active_domain(&d)? {
                    flags |= virt::sys::VIR_DOMAIN_AFFECT_LIVE;
                }
                d.detach_device_flags(&x, flags).lv()?;
                if let Ok(u) = d.uuid_string() {
                    inner.shared.invalidate(&u);
                }
                Ok(())
            })
            .await
    }
}

/// The serial console as a stream: libvirt's console stream is read on a thread of its
/// own; what the caller writes is sent from another.
pub(crate) async fn open_console(b: &KvmBackend, id: &str) -> Result<ConsoleSession> {
    if b.inner.is_test {
        return Err(Error::unsupported("libvirt's test driver has no consoles"));
    }
    let id = id.to_string();
    let stream = b
        .inner
        .run(move |c| {
            let d = lookup(c, &id)?;
            if !is_active_domain(&d)? {
                return Err(Error::conflict("the VM is not running"));
            }
            let s = virt::stream::Stream::new(c, 0).lv()?;
            d.open_console(None, &s, virt::sys::VIR_DOMAIN_CONSOLE_FORCE)
                .lv()?;
            Ok(std::sync::Arc::new(s))
        })
        .await?;
    let (out_tx, out_rx) = tokio::sync::mpsc::channel::<Result<Bytes>>(64);
    let reader = stream.clone();
    std::thread::Builder::new()
        .name("libgo-console-out".into())
        .spawn(move || {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match reader.recv(&mut buf) {
                    Ok(n) if n > 0 => {
                        if out_tx
                            .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n as usize])))
                            .is_err()
                        {
                            break;
                        }
                    }
                    Ok(_) => break,
                    Err(e) => {
                        let _ = out_tx.blocking_send(Err(crate::conn::map_error(e)));
                        break;
                    }
                }
            }
        })
        .map_err(|e| Error::internal(format!("console thread: {e}")))?;
    let (user_side, mut our_side) = tokio::io::duplex(16 * 1024);
    let writer = stream.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            match our_side.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let data = buf[..n].to_vec();
                    let w = writer.clone();
                    let sent = tokio::task::spawn_blocking(move || w.send(&data)).await;
                    if !matches!(sent, Ok(Ok(_))) {
                        break;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    });
    let output = tokio_stream::wrappers::ReceiverStream::new(out_rx);
    Ok(ConsoleSession {
        output: Box::pin(output),
        input: Box::pin(user_side),
    })
}
