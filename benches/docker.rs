//! LibGo's overhead over raw bollard and over the `docker` CLI:
//! - one container's create + start + stop + remove;
//! - listing 200 containers.
//!
//! Run with `cargo bench -p libgo-benches --bench docker` after `scripts/docker.sh`.

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, RemoveContainerOptions, StartContainerOptions,
    StopContainerOptions,
};
use criterion::{Criterion, criterion_group, criterion_main};
use libgo_benches::{IMAGE, unique};
use libgo_core::{InstanceFilter, InstanceSpec, LibGo, StopOptions};
use libgo_docker::{DockerBackend, DockerConfig};

const COMMAND: [&str; 2] = ["sleep", "3600"];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn docker_cli(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker");
    assert!(out.status.success(), "docker {args:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cycle(c: &mut Criterion) {
    let rt = runtime();
    let libgo = LibGo::new();
    libgo
        .register(Arc::new(
            DockerBackend::connect("docker", DockerConfig::default()).expect("backend"),
        ))
        .expect("register");
    let docker = rt.block_on(async {
        Docker::connect_with_local_defaults()
            .expect("bollard")
            .negotiate_version()
            .await
            .expect("negotiate")
    });
    let mut group = c.benchmark_group("container_create_start_stop_remove");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(30));
    group.bench_function("libgo", |b| {
        b.to_async(&rt).iter(|| async {
            let mut spec = InstanceSpec::container(unique("bl"), IMAGE);
            spec.command = COMMAND.iter().map(|s| s.to_string()).collect();
            spec.start = true;
            let i = libgo.create(&spec).await.expect("create");
            libgo
                .stop(
                    &i.id,
                    StopOptions {
                        timeout_secs: Some(0),
                        force: false,
                    },
                )
                .await
                .expect("stop");
            libgo
                .delete(&i.id, Default::default())
                .await
                .expect("delete");
        })
    });
    group.bench_function("bollard", |b| {
        b.to_async(&rt).iter(|| async {
            let created = docker
                .create_container(
                    Some(CreateContainerOptions {
                        name: Some(unique("bb")),
                        platform: String::new(),
                    }),
                    ContainerCreateBody {
                        image: Some(IMAGE.into()),
                        cmd: Some(COMMAND.iter().map(|s| s.to_string()).collect()),
                        ..Default::default()
                    },
                )
                .await
                .expect("create");
            docker
                .start_container(&created.id, None::<StartContainerOptions>)
                .await
                .expect("start");
            docker
                .stop_container(
                    &created.id,
                    Some(StopContainerOptions {
                        t: Some(0),
                        signal: None,
                    }),
                )
                .await
                .expect("stop");
            docker
                .remove_container(&created.id, None::<RemoveContainerOptions>)
                .await
                .expect("remove");
        })
    });
    group.bench_function("docker_cli", |b| {
        b.iter(|| {
            let name = unique("bc");
            docker_cli(&["create", "--name", &name, IMAGE, COMMAND[0], COMMAND[1]]);
            docker_cli(&["start", &name]);
            docker_cli(&["stop", "-t", "0", &name]);
            docker_cli(&["rm", &name]);
        })
    });
    group.finish();
}

fn list_200(c: &mut Criterion) {
    let rt = runtime();
    let libgo = LibGo::new();
    libgo
        .register(Arc::new(
            DockerBackend::connect("docker", DockerConfig::default()).expect("backend"),
        ))
        .expect("register");
    let docker = rt.block_on(async {
        Docker::connect_with_local_defaults()
            .expect("bollard")
            .negotiate_version()
            .await
            .expect("negotiate")
    });
    // 200 containers in all: top up what other runs left (none, normally).
    let run = unique("list");
    let existing = rt
        .block_on(docker.list_containers(Some(ListContainersOptions {
            all: true,
            ..Default::default()
        })))
        .expect("list")
        .len();
    let mut made = Vec::new();
    for i in existing..200 {
        let id = rt
            .block_on(docker.create_container(
                Some(CreateContainerOptions {
                    name: Some(format!("{run}-{i}")),
                    platform: String::new(),
                }),
                ContainerCreateBody {
                    image: Some(IMAGE.into()),
                    cmd: Some(COMMAND.iter().map(|s| s.to_string()).collect()),
                    labels: Some(HashMap::from([(
                        "test.libgo.bench".to_string(),
                        run.clone(),
                    )])),
                    ..Default::default()
                },
            ))
            .expect("create")
            .id;
        made.push(id);
    }
    let mut group = c.benchmark_group("list_200_containers");
    group
        .sample_size(50)
        .measurement_time(Duration::from_secs(15));
    group.bench_function("libgo", |b| {
        b.to_async(&rt).iter(|| async {
            let all = libgo
                .list_all(&InstanceFilter::default())
                .await
                .expect("list");
            assert!(all.len() >= 200);
        })
    });
    group.bench_function("bollard", |b| {
        b.to_async(&rt).iter(|| async {
            let all = docker
                .list_containers(Some(ListContainersOptions {
                    all: true,
                    ..Default::default()
                }))
                .await
                .expect("list");
            assert!(all.len() >= 200);
        })
    });
    group.bench_function("docker_cli", |b| {
        b.iter(|| {
            let out = docker_cli(&["ps", "-a", "--no-trunc"]);
            assert!(out.lines().count() > 200);
        })
    });
    group.finish();
    for id in made {
        rt.block_on(docker.remove_container(
            &id,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        ))
        .expect("cleanup");
    }
}

criterion_group!(benches, cycle, list_200);
criterion_main!(benches);
