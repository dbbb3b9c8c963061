//! Networks and volumes on Docker.

use std::collections::HashMap;

use async_trait::async_trait;
use bollard::models::{
    Ipam, IpamConfig, NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    InspectNetworkOptions, ListNetworksOptions, ListVolumesOptions, PruneVolumesOptions,
    RemoveVolumeOptions,
};
use libgo_core::{
    Compute, Error, ErrorKind, Network, NetworkSpec, Networks, PruneReport, Result, Volume,
    VolumeSpec, Volumes, validate,
};

use crate::DockerBackend;

fn first_ipam(ipam: Option<Ipam>) -> (Option<String>, Option<String>) {
    ipam.and_then(|i| i.config)
        .and_then(|c| c.into_iter().next())
        .map_or((None, None), |c| (c.subnet, c.gateway))
}

impl DockerBackend {
    fn volume(&self, v: bollard::models::Volume) -> Volume {
        Volume {
            name: v.name,
            backend: self.name.clone(),
            driver: v.driver,
            pool: None,
            path: Some(v.mountpoint).filter(|m| !m.is_empty()),
            format: None,
            capacity_bytes: None,
            allocation_bytes: v.usage_data.and_then(|u| u64::try_from(u.size).ok()),
            created_at: v.created_at,
            labels: v.labels.into_iter().collect(),
            used_by: Vec::new(),
        }
    }
}

impl DockerBackend {
    /// The names of the containers (of any state) that mount each named volume, from one
    /// list of containers; only volume `only` when given.
    async fn volume_users(&self, only: Option<&str>) -> Result<HashMap<String, Vec<String>>> {
        let docker = self.docker().await?;
        let filters = only.map(|v| HashMap::from([("volume".to_string(), vec![v.to_string()])]));
        let containers = docker
            .list_containers(Some(bollard::query_parameters::ListContainersOptions {
                all: true,
                filters,
                ..Default::default()
            }))
            .await
            .map_err(|e| self.error(e))?;
        let mut users: HashMap<String, Vec<String>> = HashMap::new();
        for c in containers {
            let Some(name) = c.names.as_ref().and_then(|n| n.first()) else {
                continue;
            };
            let name = name.trim_start_matches('/').to_string();
            for m in c.mounts.unwrap_or_default() {
                if let Some(v) = m.name
                    && m.typ.as_deref() == Some("volume")
                {
                    users.entry(v).or_default().push(name.clone());
                }
            }
        }
        for names in users.values_mut() {
            names.sort();
            names.dedup();
        }
        Ok(users)
    }

    /// Whether network `name` with `subnet` exists within two seconds.
    async fn network_appearing(&self, name: &str, subnet: &str) -> bool {
        for _ in 0..20 {
            if let Ok(n) = self.network_inspect(name).await
                && n.subnet.as_deref() == Some(subnet)
            {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        false
    }
}

#[async_trait]
impl Networks for DockerBackend {
    fn network_attaches_host(&self, spec: &NetworkSpec) -> bool {
        crate::host_attached_driver(spec.driver.as_deref())
    }

    async fn network_list(&self) -> Result<Vec<Network>> {
        let docker = self.docker().await?;
        let networks = docker
            .list_networks(None::<ListNetworksOptions>)
            .await
            .map_err(|e| self.error(e))?;
        Ok(networks
            .into_iter()
            .map(|n| {
                let (subnet, gateway) = first_ipam(n.ipam);
                Network {
                    id: n.id.unwrap_or_default(),
                    name: n.name.unwrap_or_default(),
                    backend: self.name.clone(),
                    host_attached: crate::host_attached_driver(n.driver.as_deref()),
                    driver: n.driver.unwrap_or_default(),
                    subnet,
                    gateway,
                    internal: n.internal.unwrap_or(false),
                    active: true,
                    labels: n.labels.unwrap_or_default().into_iter().collect(),
                    instances: Vec::new(),
                }
            })
            .collect())
    }

    async fn network_create(&self, spec: &NetworkSpec) -> Result<Network> {
        validate::owned_network_spec(spec)?;
        // Docker would create a second network of the same name; LibGo names are unique.
        match self.network_inspect(&spec.name).await {
            Ok(_) => {
                return Err(Error::conflict(format!(
                    "a network named {:?} exists already",
                    spec.name
                )));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let docker = self.docker().await?;
        let ipam = spec.subnet.as_ref().map(|subnet| Ipam {
            driver: Some("default".into()),
            config: Some(vec![IpamConfig {
                subnet: Some(subnet.clone()),
                gateway: spec.gateway.clone(),
                ..Default::default()
            }]),
            options: None,
        });
        let created = docker
            .create_network(NetworkCreateRequest {
                name: spec.name.clone(),
                driver: Some(spec.driver.clone().unwrap_or_else(|| "bridge".into())),
                internal: Some(spec.internal),
                attachable: Some(true),
                ipam,
                labels: Some(spec.labels.clone().into_iter().collect()),
                ..Default::default()
            })
            .await
            .map_err(|e| self.error(e).with_context("network", spec.name.clone()))?;
        self.network_inspect(&created.id).await
    }

    async fn address_network(&self, net: &libgo_core::AddressNetwork) -> Result<()> {
        // Docker 20.10 would make a second network of the same name: one at a time.
        static MAKING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _one = MAKING.lock().await;
        let subnet = net.subnet();
        match self.network_inspect(&net.name).await {
            Ok(n) if n.subnet.as_deref() == Some(subnet.as_str()) => return Ok(()),
            Ok(n) => {
                return Err(Error::conflict(format!(
                    "network {:?} has subnet {}, its address pool now says {subnet}: delete \
                     the network (once no instance uses it) to have it made again",
                    net.name,
                    n.subnet.unwrap_or_default()
                )));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let docker = self.docker().await?;
        let subnet_again = subnet.clone();
        let made = docker
            .create_network(NetworkCreateRequest {
                name: net.name.clone(),
                driver: Some("bridge".into()),
                attachable: Some(true),
                ipam: Some(Ipam {
                    driver: Some("default".into()),
                    config: Some(vec![IpamConfig {
                        subnet: Some(subnet),
                        gateway: Some(net.gateway.to_string()),
                        // Docker's own allocation may only take the gateway, which it has:
                        // a container that joins without a pool address is refused instead
                        // of taking one the pool hands out.
                        ip_range: Some(format!("{}/32", net.gateway)),
                        ..Default::default()
                    }]),
                    options: None,
                }),
                // The bridge the host's VM engine made, when it has one: Docker takes a
                // bridge that exists, so containers and VMs of the pool share one LAN.
                options: Some(HashMap::from([(
                    "com.docker.network.bridge.name".to_string(),
                    net.bridge.clone(),
                )])),
                labels: Some(HashMap::from([(
                    libgo_core::addresses::LABEL_POOL.to_string(),
                    net.name.clone(),
                )])),
                ..Default::default()
            })
            .await;
        match made {
            Ok(_) => {}
            // Another server replica is making it: Docker refuses a second network on the
            // same subnet, and shows the first by name a moment later.
            Err(e) => match self.network_appearing(&net.name, &subnet_again).await {
                true => {}
                false => {
                    let e = self.error(e).with_context("network", net.name.clone());
                    return Err(if e.message().contains("overlaps") {
                        Error::conflict(format!(
                            "the address pool's subnet {subnet_again} overlaps a network \
                             Docker has: {}",
                            e.message()
                        ))
                    } else {
                        e
                    });
                }
            },
        }
        Ok(())
    }

    async fn network_inspect(&self, id: &str) -> Result<Network> {
        let docker = self.docker().await?;
        let n = docker
            .inspect_network(id, None::<InspectNetworkOptions>)
            .await
            .map_err(|e| self.error(e).with_context("network", id))?;
        let (subnet, gateway) = first_ipam(n.ipam);
        let mut instances: Vec<String> = n.containers.unwrap_or_default().into_keys().collect();
        instances.sort();
        Ok(Network {
            id: n.id.unwrap_or_default(),
            name: n.name.unwrap_or_default(),
            backend: self.name.clone(),
            host_attached: crate::host_attached_driver(n.driver.as_deref()),
            driver: n.driver.unwrap_or_default(),
            subnet,
            gateway,
            internal: n.internal.unwrap_or(false),
            active: true,
            labels: n.labels.unwrap_or_default().into_iter().collect(),
            instances,
        })
    }

    async fn network_delete(&self, id: &str) -> Result<()> {
        let docker = self.docker().await?;
        docker
            .remove_network(id)
            .await
            .map_err(|e| self.error(e).with_context("network", id))
    }

    async fn network_connect(&self, network: &str, instance: &str) -> Result<()> {
        // The container first: Docker answers a name it cannot parse (`/a"b`) with a bare
        // 500, where a missing instance is NotFound.
        let instance = &Compute::resolve(self, instance).await?;
        let docker = self.docker().await?;
        docker
            .connect_network(
                network,
                NetworkConnectRequest {
                    container: instance.to_string(),
                    endpoint_config: None,
                },
            )
            .await
            .map_err(|e| {
                self.error(e)
                    .with_context("network", network)
                    .with_context("instance", instance)
            })
    }

    async fn network_disconnect(&self, network: &str, instance: &str) -> Result<()> {
        // The container first: Docker answers a name it cannot parse (`/a"b`) with a bare
        // 500, where a missing instance is NotFound.
        let instance = &Compute::resolve(self, instance).await?;
        let docker = self.docker().await?;
        docker
            .disconnect_network(
                network,
                NetworkDisconnectRequest {
                    container: instance.to_string(),
                    force: Some(false),
                },
            )
            .await
            .map_err(|e| {
                self.error(e)
                    .with_context("network", network)
                    .with_context("instance", instance)
            })
    }
}

#[async_trait]
impl Volumes for DockerBackend {
    async fn volume_list(&self) -> Result<Vec<Volume>> {
        let docker = self.docker().await?;
        let listed = docker
            .list_volumes(None::<ListVolumesOptions>)
            .await
            .map_err(|e| self.error(e))?;
        let mut users = self.volume_users(None).await?;
        Ok(listed
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| {
                let mut v = self.volume(v);
                v.used_by = users.remove(&v.name).unwrap_or_default();
                v
            })
            .collect())
    }

    async fn volume_create(&self, spec: &VolumeSpec) -> Result<Volume> {
        validate::owned_volume_spec(spec)?;
        if spec.size_bytes.is_some() || spec.pool.is_some() || spec.format.is_some() {
            return Err(Error::unsupported(
                "Docker volumes take no size, pool or format",
            ));
        }
        // Docker answers a create of an existing name with the existing volume.
        match self.volume_inspect(&spec.name).await {
            Ok(_) => {
                return Err(Error::conflict(format!(
                    "a volume named {:?} exists already",
                    spec.name
                )));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let docker = self.docker().await?;
        let v = docker
            .create_volume(VolumeCreateRequest {
                name: Some(spec.name.clone()),
                driver: Some(spec.driver.clone().unwrap_or_else(|| "local".into())),
                labels: Some(spec.labels.clone().into_iter().collect::<HashMap<_, _>>()),
                ..Default::default()
            })
            .await
            .map_err(|e| self.error(e).with_context("volume", spec.name.clone()))?;
        Ok(self.volume(v))
    }

    async fn volume_inspect(&self, name: &str) -> Result<Volume> {
        validate::volume_name(name)?;
        let docker = self.docker().await?;
        let v = docker
            .inspect_volume(name)
            .await
            .map_err(|e| self.error(e).with_context("volume", name))?;
        let mut v = self.volume(v);
        v.used_by = self
            .volume_users(Some(name))
            .await?
            .remove(name)
            .unwrap_or_default();
        Ok(v)
    }

    async fn volume_delete(&self, name: &str, force: bool) -> Result<()> {
        validate::volume_name(name)?;
        let docker = self.docker().await?;
        docker
            .remove_volume(name, Some(RemoveVolumeOptions { force }))
            .await
            .map_err(|e| self.error(e).with_context("volume", name))
    }

    async fn volume_prune(&self) -> Result<PruneReport> {
        let docker = self.docker().await?;
        let pruned = docker
            .prune_volumes(None::<PruneVolumesOptions>)
            .await
            .map_err(|e| self.error(e))?;
        Ok(PruneReport {
            deleted: pruned.volumes_deleted.unwrap_or_default(),
            space_reclaimed_bytes: pruned.space_reclaimed.unwrap_or(0).max(0) as u64,
        })
    }
}
