//! Address pools: IPv4 addresses LibGo hands out to instances from ranges an administrator
//! defines (Nano's address pools). The arithmetic and its rules live here; where the
//! allocations are kept (libgo-server's database, so that replicas agree) and how an engine
//! applies an address (its backend) live elsewhere.
//!
//! ```
//! use std::collections::BTreeSet;
//! use libgo_core::addresses::{self, AddressPoolSpec, AddressRange};
//!
//! let pool = AddressPoolSpec {
//!     name: "p1".into(),
//!     gateway: "10.77.0.1".into(),
//!     dns: vec![],
//!     ranges: vec![AddressRange { start: "10.77.0.10".into(), end: "10.77.0.11".into(), prefix: 24 }],
//! };
//! let mut taken = BTreeSet::new();
//! let first = addresses::pick(&pool, &taken, None)?;
//! assert_eq!(first.to_string(), "10.77.0.10");
//! taken.insert(first);
//! taken.insert(addresses::pick(&pool, &taken, None)?);
//! assert!(addresses::pick(&pool, &taken, None).is_err()); // exhausted
//! # Ok::<(), libgo_core::Error>(())
//! ```

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use crate::{Error, Result, validate};

/// Most addresses one pool may hold, so that allocation scans stay bounded.
pub const MAX_POOL_ADDRESSES: u64 = 65_536;

/// Label on the engines' networks that carry a pool: the pool's network name.
pub const LABEL_POOL: &str = "io.libgo.address-pool";

/// Most addresses one instance may ask for.
pub const MAX_INSTANCE_ADDRESSES: usize = 4;

/// A range of addresses of a pool, both ends included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AddressRange {
    /// First address (IPv4).
    #[cfg_attr(feature = "openapi", schema(format = "ipv4"))]
    pub start: String,
    /// Last address (IPv4).
    #[cfg_attr(feature = "openapi", schema(format = "ipv4"))]
    pub end: String,
    /// Prefix length of the subnet the range and the pool's gateway are in.
    #[cfg_attr(feature = "openapi", schema(minimum = 8, maximum = 30))]
    pub prefix: u8,
}

/// An address pool as it is defined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AddressPoolSpec {
    /// Name, DNS-label-like.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", max_length = 63)
    )]
    pub name: String,
    /// The instances' gateway (IPv4); the engines' host side of the pool's network.
    #[cfg_attr(feature = "openapi", schema(format = "ipv4"))]
    pub gateway: String,
    /// Name servers the instances are given.
    #[serde(default)]
    pub dns: Vec<String>,
    /// Ranges addresses are handed out from, in order.
    #[serde(default)]
    pub ranges: Vec<AddressRange>,
}

/// One address handed out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AddressAllocation {
    /// The address.
    pub address: String,
    /// The instance holding it: its id, or its name while it is being created.
    pub instance: String,
}

/// An address pool with its status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AddressPool {
    /// Name.
    pub name: String,
    /// Gateway.
    pub gateway: String,
    /// Name servers.
    pub dns: Vec<String>,
    /// Ranges.
    pub ranges: Vec<AddressRange>,
    /// How many addresses the ranges hold.
    pub addresses: u64,
    /// How many are handed out.
    pub allocated: u64,
    /// Who holds which, by address.
    pub allocations: Vec<AddressAllocation>,
}

/// An instance's request for an address (`InstanceSpec.addresses`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AddressRequest {
    /// The address pool.
    pub pool: String,
    /// A fixed address in one of its ranges; the first free one when absent.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(format = "ipv4"))]
    pub address: Option<String>,
}

/// An address allocated to an instance, with what an engine needs to apply it. Made by
/// whoever keeps the allocations (libgo-server), never read from a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressAssignment {
    /// The pool's name.
    pub pool: String,
    /// The address.
    pub address: Ipv4Addr,
    /// The network the engines carry the pool on.
    pub network: AddressNetwork,
}

/// The network that carries a pool's addresses on a host: one bridge shared by the host's
/// engines, the pool's gateway on it. Each engine's network of this name is made on demand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressNetwork {
    /// The engines' network name (`libgo-ap-<pool>`).
    pub name: String,
    /// The host bridge (at most 15 characters).
    pub bridge: String,
    /// The gateway, on the bridge.
    pub gateway: Ipv4Addr,
    /// Prefix length of the subnet.
    pub prefix: u8,
    /// Name servers for the instances.
    pub dns: Vec<String>,
}

impl AddressNetwork {
    /// The subnet in CIDR form (`10.77.0.0/24`).
    pub fn subnet(&self) -> String {
        let mask = mask(self.prefix);
        format!(
            "{}/{}",
            Ipv4Addr::from(u32::from(self.gateway) & mask),
            self.prefix
        )
    }
}

impl AddressAssignment {
    /// The MAC address of the interface that carries this address: the same for the same
    /// pool and address, so that a DHCP server still holding the lease of the address's last
    /// holder hands it to the next one (dnsmasq refuses an address leased to another MAC).
    /// Locally administered, unicast.
    pub fn mac(&self) -> String {
        let [a, b, c, d] = self.address.octets();
        let pool = fnv1a(&self.pool) as u8;
        format!("52:{pool:02x}:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
    }
}

fn fnv1a(s: &str) -> u64 {
    // Stable across builds and Rust versions, unlike std's hasher.
    s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The engines' name of a pool's network.
pub fn network_name(pool: &str) -> String {
    format!("libgo-ap-{pool}")
}

/// The host bridge of a pool's network: short (Linux allows 15 characters) and stable.
pub fn bridge_name(pool: &str) -> String {
    format!("lgap{:010x}", fnv1a(pool) & 0xff_ffff_ffff)
}

fn mask(prefix: u8) -> u32 {
    u32::MAX << (32 - u32::from(prefix))
}

fn ipv4(field: &str, s: &str) -> Result<Ipv4Addr> {
    s.parse().map_err(|_| {
        Error::invalid(format!("{field} {s:?} is not an IPv4 address")).with_field(field)
    })
}

/// A pool's ranges as numbers, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedPool {
    /// Gateway.
    pub gateway: Ipv4Addr,
    /// Prefix of the pool's subnet (`None` while it has no range).
    pub prefix: Option<u8>,
    /// Ranges as inclusive numeric bounds, in the spec's order.
    pub ranges: Vec<(u32, u32)>,
}

/// Checks a pool: an IPv4 gateway; name servers that are addresses; ranges inside the
/// gateway's subnet (one prefix for all), not holding the gateway, the subnet's own or its
/// broadcast address, not overlapping each other, at most [`MAX_POOL_ADDRESSES`] in all.
pub fn check_pool(spec: &AddressPoolSpec) -> Result<CheckedPool> {
    validate::name("address pool", &spec.name)?;
    // The engines' network is named after the pool and must stay a valid name.
    if spec.name.len() > 50 {
        return Err(
            Error::invalid("an address pool's name is at most 50 characters").with_field("name"),
        );
    }
    let gateway = ipv4("gateway", &spec.gateway)?;
    // It goes on a host bridge: never an address the host uses for something else.
    if gateway.is_loopback()
        || gateway.is_unspecified()
        || gateway.is_multicast()
        || gateway.is_broadcast()
        || gateway.is_link_local()
        || gateway.octets()[0] >= 240
        || gateway.octets()[0] == 0
    {
        return Err(Error::invalid(format!(
            "gateway {gateway} is a loopback, link-local, multicast or reserved address"
        ))
        .with_field("gateway"));
    }
    if spec.dns.len() > 8 {
        return Err(Error::invalid("at most 8 name servers").with_field("dns"));
    }
    for d in &spec.dns {
        d.parse::<IpAddr>().map_err(|_| {
            Error::invalid(format!("name server {d:?} is not an address")).with_field("dns")
        })?;
    }
    let mut prefix = None;
    let mut ranges: Vec<(u32, u32)> = Vec::with_capacity(spec.ranges.len());
    let mut total = 0u64;
    for r in &spec.ranges {
        let (start, end) = check_range(gateway, r)?;
        if prefix.is_some_and(|p| p != r.prefix) {
            return Err(Error::invalid(format!(
                "range {}-{} has prefix /{}, the pool's other ranges /{}: a pool is one subnet",
                r.start,
                r.end,
                r.prefix,
                prefix.unwrap_or_default()
            ))
            .with_field("ranges"));
        }
        prefix = Some(r.prefix);
        if let Some((s, e)) = ranges.iter().find(|(s, e)| start <= *e && *s <= end) {
            return Err(Error::conflict(format!(
                "range {}-{} overlaps range {}-{}",
                r.start,
                r.end,
                Ipv4Addr::from(*s),
                Ipv4Addr::from(*e)
            ))
            .with_field("ranges"));
        }
        total += u64::from(end - start) + 1;
        ranges.push((start, end));
    }
    if let Some(p) = prefix {
        let mask = mask(p);
        let g = u32::from(gateway);
        if g & !mask == 0 || g & !mask == !mask {
            return Err(Error::invalid(format!(
                "gateway {gateway} is its subnet's own or broadcast address (/{p})"
            ))
            .with_field("gateway"));
        }
    }
    if total > MAX_POOL_ADDRESSES {
        return Err(Error::invalid(format!(
            "the ranges hold {total} addresses; a pool holds at most {MAX_POOL_ADDRESSES}"
        ))
        .with_field("ranges"));
    }
    Ok(CheckedPool {
        gateway,
        prefix,
        ranges,
    })
}

fn check_range(gateway: Ipv4Addr, r: &AddressRange) -> Result<(u32, u32)> {
    if !(8..=30).contains(&r.prefix) {
        return Err(Error::invalid("a range's prefix is between 8 and 30").with_field("prefix"));
    }
    let start = u32::from(ipv4("start", &r.start)?);
    let end = u32::from(ipv4("end", &r.end)?);
    if start > end {
        return Err(Error::invalid(format!(
            "range start {} is after its end {}",
            r.start, r.end
        ))
        .with_field("start"));
    }
    let mask = mask(r.prefix);
    let net = u32::from(gateway) & mask;
    let broadcast = net | !mask;
    if start & mask != net || end & mask != net {
        return Err(Error::invalid(format!(
            "range {}-{} leaves the gateway's subnet {}/{}",
            r.start,
            r.end,
            Ipv4Addr::from(net),
            r.prefix
        ))
        .with_field("start"));
    }
    if start == net || end == broadcast {
        return Err(Error::invalid(format!(
            "range {}-{} holds the subnet's own or broadcast address",
            r.start, r.end
        ))
        .with_field("start"));
    }
    let g = u32::from(gateway);
    if (start..=end).contains(&g) {
        return Err(Error::invalid(format!(
            "range {}-{} holds the gateway {gateway}",
            r.start, r.end
        ))
        .with_field("start"));
    }
    Ok((start, end))
}

/// How many addresses a checked pool holds.
pub fn size(pool: &CheckedPool) -> u64 {
    pool.ranges.iter().map(|(s, e)| u64::from(e - s) + 1).sum()
}

/// Whether a range holds an address.
pub fn range_holds(range: &AddressRange, address: &str) -> bool {
    match (
        range.start.parse::<Ipv4Addr>(),
        range.end.parse::<Ipv4Addr>(),
        address.parse::<Ipv4Addr>(),
    ) {
        (Ok(s), Ok(e), Ok(a)) => (u32::from(s)..=u32::from(e)).contains(&u32::from(a)),
        _ => false,
    }
}

/// The address to hand out next: `want` if it is in a range and free, else the first free
/// address of the ranges in order. An exhausted pool or a taken address is a conflict.
pub fn pick(
    spec: &AddressPoolSpec,
    taken: &BTreeSet<Ipv4Addr>,
    want: Option<&str>,
) -> Result<Ipv4Addr> {
    let pool = check_pool(spec)?;
    if let Some(w) = want {
        let a = ipv4("address", w)?;
        let n = u32::from(a);
        if !pool.ranges.iter().any(|(s, e)| (*s..=*e).contains(&n)) {
            return Err(Error::invalid(format!(
                "address {a} is in no range of address pool {:?}",
                spec.name
            ))
            .with_field("addresses"));
        }
        if taken.contains(&a) {
            return Err(Error::conflict(format!(
                "address {a} of address pool {:?} is taken",
                spec.name
            )));
        }
        return Ok(a);
    }
    for (s, e) in &pool.ranges {
        for n in *s..=*e {
            let a = Ipv4Addr::from(n);
            if !taken.contains(&a) {
                return Ok(a);
            }
        }
    }
    Err(Error::conflict(format!(
        "address pool {:?} is exhausted: all {} of its addresses are allocated",
        spec.name,
        size(&pool)
    )))
}

/// What an engine needs to apply `address` of pool `spec`.
pub fn assignment(spec: &AddressPoolSpec, address: Ipv4Addr) -> Result<AddressAssignment> {
    let pool = check_pool(spec)?;
    let prefix = pool
        .prefix
        .ok_or_else(|| Error::conflict(format!("address pool {:?} has no range", spec.name)))?;
    Ok(AddressAssignment {
        pool: spec.name.clone(),
        address,
        network: AddressNetwork {
            name: network_name(&spec.name),
            bridge: bridge_name(&spec.name),
            gateway: pool.gateway,
            prefix,
            dns: spec.dns.clone(),
        },
    })
}

/// Keeps address pools' allocations for [`crate::LibGo`], which asks it while creating and
/// deleting instances. libgo-server's keeps them in its database, so that its replicas
/// never hand out one address twice.
#[async_trait::async_trait]
pub trait AddressAllocator: Send + Sync {
    /// Allocates one address per request, all or none, held by `claim` (the instance's
    /// name and a suffix unique to this create) until [`AddressAllocator::bind`].
    async fn allocate(
        &self,
        claim: &str,
        requests: &[AddressRequest],
    ) -> Result<Vec<AddressAssignment>>;
    /// The instance was made, with id `id`: its claim's addresses are now its.
    async fn bind(&self, claim: &str, id: &str) -> Result<()>;
    /// Frees what instance `id` holds, or what `claim` holds.
    async fn release(&self, id: &str, claim: &str) -> Result<()>;
}

/// Checks an instance's requests: at most [`MAX_INSTANCE_ADDRESSES`], one per pool.
pub fn check_requests(requests: &[AddressRequest]) -> Result<()> {
    if requests.len() > MAX_INSTANCE_ADDRESSES {
        return Err(Error::invalid(format!(
            "at most {MAX_INSTANCE_ADDRESSES} addresses per instance"
        ))
        .with_field("addresses"));
    }
    let mut pools = BTreeSet::new();
    for r in requests {
        validate::name("address pool", &r.pool)?;
        if !pools.insert(r.pool.as_str()) {
            return Err(Error::invalid(format!(
                "address pool {:?} is asked for twice: one address per pool",
                r.pool
            ))
            .with_field("addresses"));
        }
        if let Some(a) = &r.address {
            ipv4("address", a)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(ranges: &[(&str, &str, u8)]) -> AddressPoolSpec {
        AddressPoolSpec {
            name: "p1".into(),
            gateway: "10.1.0.1".into(),
            dns: vec!["10.1.0.1".into()],
            ranges: ranges
                .iter()
                .map(|(s, e, p)| AddressRange {
                    start: (*s).into(),
                    end: (*e).into(),
                    prefix: *p,
                })
                .collect(),
        }
    }

    #[test]
    fn ranges_are_checked() {
        assert!(check_pool(&pool(&[("10.1.0.10", "10.1.0.20", 24)])).is_ok());
        let cases = [
            (vec![("10.1.0.20", "10.1.0.10", 24)], "after its end"),
            (
                vec![("10.1.1.10", "10.1.1.20", 24)],
                "leaves the gateway's subnet",
            ),
            (vec![("10.1.0.0", "10.1.0.20", 24)], "own or broadcast"),
            (vec![("10.1.0.200", "10.1.0.255", 24)], "own or broadcast"),
            (vec![("10.1.0.1", "10.1.0.20", 24)], "holds the gateway"),
            (
                vec![
                    ("10.1.0.10", "10.1.0.20", 24),
                    ("10.1.0.20", "10.1.0.30", 24),
                ],
                "overlaps",
            ),
            (
                vec![
                    ("10.1.0.10", "10.1.0.20", 24),
                    ("10.1.0.30", "10.1.0.40", 25),
                ],
                "one subnet",
            ),
            (vec![("10.1.0.10", "10.1.0.20", 31)], "between 8 and 30"),
            (vec![("10.0.0.2", "10.3.0.2", 8)], "at most 65536"),
            (vec![("10.1.0.x", "10.1.0.20", 24)], "not an IPv4"),
        ];
        for (ranges, words) in cases {
            let mut p = pool(&ranges);
            p.gateway = if words == "at most 65536" {
                "10.0.0.1".into()
            } else {
                p.gateway
            };
            let e = check_pool(&p).expect_err(words);
            assert!(e.to_string().contains(words), "{e} lacks {words:?}");
        }
        let mut p = pool(&[("10.1.0.10", "10.1.0.20", 24)]);
        p.gateway = "10.1.0.255".into();
        assert!(check_pool(&p).is_err(), "a broadcast gateway");
        let mut p = pool(&[]);
        p.dns = vec!["resolver".into()];
        assert!(check_pool(&p).is_err());
        for g in [
            "127.0.0.1",
            "169.254.1.1",
            "224.0.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "250.0.0.1",
        ] {
            let mut p = pool(&[]);
            p.gateway = g.into();
            assert!(check_pool(&p).is_err(), "{g}");
        }
    }

    #[test]
    fn picks_in_order_skips_taken_and_reports_exhaustion() {
        let p = pool(&[("10.1.0.10", "10.1.0.11", 24), ("10.1.0.5", "10.1.0.5", 24)]);
        let mut taken = BTreeSet::new();
        let mut got = vec![];
        for _ in 0..3 {
            let a = pick(&p, &taken, None).expect("free");
            taken.insert(a);
            got.push(a.to_string());
        }
        assert_eq!(got, ["10.1.0.10", "10.1.0.11", "10.1.0.5"]);
        let e = pick(&p, &taken, None).expect_err("exhausted");
        assert_eq!(e.kind(), crate::ErrorKind::Conflict);
        assert!(e.to_string().contains("exhausted: all 3"), "{e}");
    }

    #[test]
    fn a_fixed_address_must_be_in_a_range_and_free() {
        let p = pool(&[("10.1.0.10", "10.1.0.20", 24)]);
        let taken = BTreeSet::from(["10.1.0.12".parse().expect("ip")]);
        assert_eq!(
            pick(&p, &taken, Some("10.1.0.13"))
                .expect("free")
                .to_string(),
            "10.1.0.13"
        );
        assert_eq!(
            pick(&p, &taken, Some("10.1.0.12"))
                .expect_err("taken")
                .kind(),
            crate::ErrorKind::Conflict
        );
        assert_eq!(
            pick(&p, &taken, Some("10.1.0.30"))
                .expect_err("outside")
                .kind(),
            crate::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn the_network_follows_the_pool() {
        let p = pool(&[("10.1.0.10", "10.1.0.20", 24)]);
        let a = assignment(&p, "10.1.0.10".parse().expect("ip")).expect("assignment");
        assert_eq!(a.network.name, "libgo-ap-p1");
        assert_eq!(a.network.subnet(), "10.1.0.0/24");
        assert!(a.network.bridge.len() <= 15);
        assert_eq!(bridge_name("p1"), a.network.bridge);
        assert_ne!(bridge_name("p2"), a.network.bridge);
        // One MAC per pool and address, whoever holds it.
        assert!(
            a.mac().starts_with("52:") && a.mac().ends_with(":0a:01:00:0a"),
            "{}",
            a.mac()
        );
        assert_eq!(a.mac(), assignment(&p, a.address).expect("again").mac());
        let other = assignment(&p, "10.1.0.11".parse().expect("ip")).expect("other");
        assert_ne!(a.mac(), other.mac());
    }

    #[test]
    fn requests_are_checked() {
        let r = |p: &str| AddressRequest {
            pool: p.into(),
            address: None,
        };
        assert!(check_requests(&[r("a"), r("b")]).is_ok());
        assert!(check_requests(&[r("a"), r("a")]).is_err());
        assert!(check_requests(&[r("a"), r("b"), r("c"), r("d"), r("e")]).is_err());
    }
}
