//! Address pools kept in the server's database, and the allocator the facade asks while it
//! creates and deletes instances. An address goes to one instance because the allocation
//! row's primary key is (pool, address): the insert that loses a race changes nothing and
//! the allocator picks again. Changes to a pool's ranges are compare-and-set on its stored
//! definition, and an allocation is only inserted while the definition it was picked from
//! is still the stored one.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use async_trait::async_trait;
use libgo_core::addresses::{self, AddressAllocator};
use libgo_core::{
    AddressAssignment, AddressPool, AddressPoolSpec, AddressRange, AddressRequest, Error,
};
use sqlx::Row;

use crate::db::{ConfigTable, Db, now_ms};
use crate::state::AppState;

/// A create that holds a claim longer than this died half-way (its replica stopped).
const STALE_CLAIM_MS: i64 = 3_600_000;

/// Picks that lose a race are retried this often before the allocator gives up.
const MAX_ATTEMPTS: usize = 512;

fn db_error(e: sqlx::Error) -> Error {
    Error::unavailable(format!("database: {e}"))
}

/// A pool's stored definition (the JSON text, for compare-and-set) and its parsed form.
pub async fn stored(db: &Db, name: &str) -> Result<Option<(String, AddressPoolSpec)>, Error> {
    let row = sqlx::query("SELECT config FROM address_pools WHERE name = $1")
        .bind(name)
        .fetch_optional(db.pool())
        .await
        .map_err(db_error)?;
    let Some(row) = row else { return Ok(None) };
    let text: String = row.try_get("config").map_err(db_error)?;
    let spec = serde_json::from_str(&text)
        .map_err(|e| Error::internal(format!("stored address pool {name:?}: {e}")))?;
    Ok(Some((text, spec)))
}

async fn stored_or_404(db: &Db, name: &str) -> Result<(String, AddressPoolSpec), Error> {
    stored(db, name)
        .await?
        .ok_or_else(|| Error::not_found(format!("no address pool {name:?}")))
}

/// Who holds which address of pool `name`, by address.
async fn allocations(db: &Db, name: &str) -> Result<Vec<(Ipv4Addr, String)>, Error> {
    let rows = sqlx::query(
        "SELECT address, instance FROM address_allocations WHERE pool = $1 ORDER BY address_num",
    )
    .bind(name)
    .fetch_all(db.pool())
    .await
    .map_err(db_error)?;
    rows.iter()
        .map(|r| {
            let a: String = r.try_get("address").map_err(db_error)?;
            let i: String = r.try_get("instance").map_err(db_error)?;
            let a = a
                .parse()
                .map_err(|_| Error::internal(format!("stored address {a:?} is not IPv4")))?;
            Ok((a, i))
        })
        .collect()
}

/// A pool with its status.
pub async fn pool(db: &Db, name: &str) -> Result<AddressPool, Error> {
    let (_, spec) = stored_or_404(db, name).await?;
    with_status(db, spec).await
}

async fn with_status(db: &Db, spec: AddressPoolSpec) -> Result<AddressPool, Error> {
    let held = allocations(db, &spec.name).await?;
    let size = addresses::check_pool(&spec)
        .map(|p| addresses::size(&p))
        .unwrap_or(0);
    Ok(AddressPool {
        addresses: size,
        allocated: held.len() as u64,
        allocations: held
            .into_iter()
            .map(|(a, i)| libgo_core::addresses::AddressAllocation {
                address: a.to_string(),
                instance: i,
            })
            .collect(),
        name: spec.name,
        gateway: spec.gateway,
        dns: spec.dns,
        ranges: spec.ranges,
    })
}

/// Every pool with its status, by name.
pub async fn pools(db: &Db) -> Result<Vec<AddressPool>, Error> {
    let rows = db
        .config_list(ConfigTable::AddressPools)
        .await
        .map_err(db_error)?;
    let mut out = Vec::with_capacity(rows.len());
    for (name, text) in rows {
        let spec = serde_json::from_str(&text)
            .map_err(|e| Error::internal(format!("stored address pool {name:?}: {e}")))?;
        out.push(with_status(db, spec).await?);
    }
    Ok(out)
}

/// Stores a new pool after checking it; a taken name is a conflict.
pub async fn create(db: &Db, spec: &AddressPoolSpec) -> Result<AddressPool, Error> {
    addresses::check_pool(spec)?;
    let text = serde_json::to_string(spec).map_err(|e| Error::internal(e.to_string()))?;
    if !db
        .config_insert(ConfigTable::AddressPools, &spec.name, &text)
        .await
        .map_err(db_error)?
    {
        return Err(Error::conflict(format!(
            "an address pool named {:?} exists already",
            spec.name
        )));
    }
    pool(db, &spec.name).await
}

/// Replaces pool `name`'s definition by `change(old)`, checked, if nobody changed it in
/// between and (when `keep_free` is given) no address in that range is allocated.
async fn change(
    db: &Db,
    name: &str,
    keep_free: Option<(u32, u32)>,
    edit: impl Fn(&mut AddressPoolSpec) -> Result<(), Error>,
) -> Result<AddressPool, Error> {
    for _ in 0..MAX_ATTEMPTS {
        let (old_text, mut spec) = stored_or_404(db, name).await?;
        edit(&mut spec)?;
        addresses::check_pool(&spec)?;
        let text = serde_json::to_string(&spec).map_err(|e| Error::internal(e.to_string()))?;
        let (lo, hi) = keep_free.map_or((1, 0), |(s, e)| (i64::from(s), i64::from(e)));
        let r = sqlx::query(
            "UPDATE address_pools SET config = $2, updated_at = $3 \
             WHERE name = $1 AND config = $4 AND NOT EXISTS (SELECT 1 FROM address_allocations \
             WHERE pool = $1 AND address_num BETWEEN $5 AND $6)",
        )
        .bind(name)
        .bind(&text)
        .bind(now_ms())
        .bind(&old_text)
        .bind(lo)
        .bind(hi)
        .execute(db.pool())
        .await
        .map_err(db_error)?;
        if r.rows_affected() == 1 {
            return pool(db, name).await;
        }
        if let Some((s, e)) = keep_free {
            let held = allocations(db, name).await?;
            if let Some((a, i)) = held.iter().find(|(a, _)| (s..=e).contains(&u32::from(*a))) {
                return Err(Error::conflict(format!(
                    "the range holds allocated addresses ({a}, held by {i}): delete those \
                     instances first"
                )));
            }
        }
        // The definition changed meanwhile: edit the new one.
    }
    Err(Error::unavailable(format!(
        "address pool {name:?} kept changing; try again"
    )))
}

/// Changes a pool's name servers.
pub async fn set_dns(db: &Db, name: &str, dns: Vec<String>) -> Result<AddressPool, Error> {
    change(db, name, None, |spec| {
        spec.dns = dns.clone();
        Ok(())
    })
    .await
}

/// Adds a range (checked against the pool's others and its gateway).
pub async fn add_range(db: &Db, name: &str, range: AddressRange) -> Result<AddressPool, Error> {
    change(db, name, None, |spec| {
        spec.ranges.push(range.clone());
        Ok(())
    })
    .await
}

/// Removes the range that starts at `start`, unless one of its addresses is allocated.
pub async fn remove_range(db: &Db, name: &str, start: &str) -> Result<AddressPool, Error> {
    let (_, spec) = stored_or_404(db, name).await?;
    let range = spec
        .ranges
        .iter()
        .find(|r| r.start == start)
        .ok_or_else(|| {
            Error::not_found(format!(
                "address pool {name:?} has no range starting at {start}"
            ))
        })?;
    let bounds = |r: &AddressRange| -> Result<(u32, u32), Error> {
        let s: Ipv4Addr = r
            .start
            .parse()
            .map_err(|_| Error::internal("stored range"))?;
        let e: Ipv4Addr = r.end.parse().map_err(|_| Error::internal("stored range"))?;
        Ok((u32::from(s), u32::from(e)))
    };
    let keep_free = bounds(range)?;
    change(db, name, Some(keep_free), |spec| {
        let before = spec.ranges.len();
        spec.ranges.retain(|r| r.start != start);
        if spec.ranges.len() == before {
            return Err(Error::not_found(format!(
                "address pool {name:?} has no range starting at {start}"
            )));
        }
        Ok(())
    })
    .await
}

/// Deletes a pool that hands out no address.
pub async fn delete(db: &Db, name: &str) -> Result<(), Error> {
    let r = sqlx::query(
        "DELETE FROM address_pools WHERE name = $1 AND NOT EXISTS \
         (SELECT 1 FROM address_allocations WHERE pool = $1)",
    )
    .bind(name)
    .execute(db.pool())
    .await
    .map_err(db_error)?;
    if r.rows_affected() == 1 {
        return Ok(());
    }
    let (_, _) = stored_or_404(db, name).await?;
    let held = allocations(db, name).await?;
    Err(Error::conflict(format!(
        "address pool {name:?} has {} allocated addresses: delete those instances first",
        held.len()
    )))
}

/// The allocator the facade asks (see the module's doc).
#[derive(Debug, Clone)]
pub struct DbAllocator {
    db: Db,
}

impl DbAllocator {
    /// An allocator on `db`.
    pub fn new(db: Db) -> Self {
        DbAllocator { db }
    }

    async fn allocate_one(
        &self,
        claim: &str,
        request: &AddressRequest,
    ) -> Result<AddressAssignment, Error> {
        for _ in 0..MAX_ATTEMPTS {
            let (text, spec) = stored(&self.db, &request.pool).await?.ok_or_else(|| {
                Error::invalid(format!("no address pool {:?}", request.pool))
                    .with_field("addresses")
            })?;
            let taken: BTreeSet<Ipv4Addr> = allocations(&self.db, &request.pool)
                .await?
                .into_iter()
                .map(|(a, _)| a)
                .collect();
            let address = addresses::pick(&spec, &taken, request.address.as_deref())?;
            let assignment = addresses::assignment(&spec, address)?;
            // The WHERE keeps a pick from a definition that changed meanwhile (a range
            // removed) out; the primary key keeps a second holder out.
            let r = sqlx::query(
                "INSERT INTO address_allocations (pool, address, address_num, instance, \
                 instance_name, created_at) SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS \
                 (SELECT 1 FROM address_pools WHERE name = $1 AND config = $7) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&request.pool)
            .bind(address.to_string())
            .bind(i64::from(u32::from(address)))
            .bind(claim)
            .bind(claim.split('#').next().unwrap_or(claim))
            .bind(now_ms())
            .bind(&text)
            .execute(self.db.pool())
            .await
            .map_err(db_error)?;
            if r.rows_affected() == 1 {
                return Ok(assignment);
            }
        }
        Err(Error::unavailable(format!(
            "address pool {:?} is too busy: try again",
            request.pool
        )))
    }
}

#[async_trait]
impl AddressAllocator for DbAllocator {
    async fn allocate(
        &self,
        claim: &str,
        requests: &[AddressRequest],
    ) -> libgo_core::Result<Vec<AddressAssignment>> {
        let mut out = Vec::with_capacity(requests.len());
        for r in requests {
            match self.allocate_one(claim, r).await {
                Ok(a) => out.push(a),
                Err(e) => {
                    self.release(claim, claim).await?;
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    async fn bind(&self, claim: &str, id: &str) -> libgo_core::Result<()> {
        // created_at becomes the time the instance held it: a list of instances begun later
        // shows the instance (see `reclaim`).
        sqlx::query(
            "UPDATE address_allocations SET instance = $2, created_at = $3 WHERE instance = $1",
        )
        .bind(claim)
        .bind(id)
        .bind(now_ms())
        .execute(self.db.pool())
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn release(&self, id: &str, claim: &str) -> libgo_core::Result<()> {
        sqlx::query("DELETE FROM address_allocations WHERE instance = $1 OR instance = $2")
            .bind(id)
            .bind(claim)
            .execute(self.db.pool())
            .await
            .map_err(db_error)?;
        Ok(())
    }
}

/// Frees the addresses of instances that are gone without LibGo deleting them (removed
/// through the engine) and of creates that died half-way. Only when every backend answered
/// the list: an instance on an engine that is down still holds its address. Answers how
/// many were freed.
pub async fn reclaim(state: &AppState) -> Result<u64, Error> {
    let started = now_ms();
    let (instances, unavailable) = state
        .libgo
        .list_all_reporting(&libgo_core::InstanceFilter::default())
        .await?;
    if !unavailable.is_empty() {
        return Ok(0);
    }
    let rows = sqlx::query(
        "SELECT pool, address, instance, instance_name, created_at FROM address_allocations",
    )
    .fetch_all(state.db.pool())
    .await
    .map_err(db_error)?;
    // By id, or by name: an instance an engine replaced (a new id) keeps its addresses
    // until the facade moves them to the new id.
    let alive: BTreeSet<&str> = instances
        .iter()
        .flat_map(|i| [i.id.as_str(), i.name.as_str()])
        .collect();
    let mut freed = 0;
    for r in rows {
        let pool: String = r.try_get("pool").map_err(db_error)?;
        let address: String = r.try_get("address").map_err(db_error)?;
        let instance: String = r.try_get("instance").map_err(db_error)?;
        let name: String = r.try_get("instance_name").map_err(db_error)?;
        let since: i64 = r.try_get("created_at").map_err(db_error)?;
        let gone = if instance.contains('#') {
            since < started - STALE_CLAIM_MS
        } else {
            since < started && !alive.contains(instance.as_str()) && !alive.contains(name.as_str())
        };
        if !gone {
            continue;
        }
        // Only the row as read: an address freed and handed out again meanwhile stays.
        let d = sqlx::query(
            "DELETE FROM address_allocations WHERE pool = $1 AND address = $2 AND instance = $3 \
             AND created_at = $4",
        )
        .bind(&pool)
        .bind(&address)
        .bind(&instance)
        .bind(since)
        .execute(state.db.pool())
        .await
        .map_err(db_error)?;
        if d.rows_affected() == 1 {
            tracing::info!(%pool, %address, %instance, "freed the address of an instance that is gone");
            freed += 1;
        }
    }
    Ok(freed)
}

/// Runs [`reclaim`] every `address_reclaim_secs`.
pub fn spawn_reclaimer(state: std::sync::Arc<AppState>) {
    let every = std::time::Duration::from_secs(state.config.address_reclaim_secs);
    if every.is_zero() {
        return;
    }
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if let Err(e) = reclaim(&state).await {
                tracing::warn!(error = %e, "cannot reclaim pool addresses");
            }
        }
    });
}
