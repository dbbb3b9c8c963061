//! The facade over two real backends at once: Docker and libvirt's test driver.
//! Routing by kind, one name space, merged lists and merged events.

use std::time::Duration;

use futures::StreamExt;
use libgo::{
    EngineConfig, EngineMode, ErrorKind, EventAction, EventFilter, InstanceFilter, InstanceKind,
    InstanceSpec, InstanceState, LibGo, Pagination, StopOptions,
};

fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..10])
}

async fn both() -> LibGo {
    let config = EngineConfig {
        docker: EngineMode::Required,
        kvm: EngineMode::Required,
        libvirt_uri: "test:///default".into(),
        template_dir: Some(
            std::env::temp_dir()
                .join(unique("tpl"))
                .display()
                .to_string(),
        ),
        ..Default::default()
    };
    libgo::connect(&config).await.expect("both engines")
}

fn container(name: &str) -> InstanceSpec {
    let mut spec = InstanceSpec::container(name, "libgo-test/busybox:latest");
    spec.command = vec!["sleep".into(), "3600".into()];
    spec
}

fn vm(name: &str) -> InstanceSpec {
    let mut spec = InstanceSpec::vm(name);
    spec.cpus = Some(1);
    spec.memory_bytes = Some(64 << 20);
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_name_space_and_one_list_over_vms_and_containers() -> libgo::Result<()> {
    let libgo = both().await;
    assert_eq!(libgo.backend_names(), ["docker", "kvm"]);
    let prefix = unique("mix");
    let (c, v) = (format!("{prefix}-c"), format!("{prefix}-v"));
    let outcome = async {
        let ci = libgo.create(&container(&c)).await?;
        let vi = libgo.create(&vm(&v)).await?;
        assert_eq!(
            (ci.kind, ci.backend.as_str()),
            (InstanceKind::Container, "docker")
        );
        assert_eq!((vi.kind, vi.backend.as_str()), (InstanceKind::Vm, "kvm"));

        // Names are unique across backends, whatever the kind.
        let dup = libgo.create(&vm(&c)).await.unwrap_err();
        assert_eq!(dup.kind(), ErrorKind::Conflict, "{dup}");
        assert_eq!(
            libgo.create(&container(&v)).await.unwrap_err().kind(),
            ErrorKind::Conflict
        );

        // One list, both kinds, filtered and paginated.
        let mine = InstanceFilter {
            name: Some(prefix.clone()),
            ..Default::default()
        };
        let page = libgo
            .list(
                &mine,
                Pagination {
                    page: 1,
                    page_size: 1,
                },
            )
            .await?;
        assert_eq!((page.count, page.items.len()), (2, 1));
        let all = libgo.list_all(&mine).await?;
        assert_eq!(
            all.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
            [c.as_str(), v.as_str()]
        );
        let vms = libgo
            .list_all(&InstanceFilter {
                kind: Some(InstanceKind::Vm),
                ..mine.clone()
            })
            .await?;
        assert_eq!(vms.len(), 1);
        assert_eq!(vms[0].name, v);

        // Verbs are routed by name to the right engine.
        let mut events = libgo
            .events(EventFilter {
                instance: Some(v.clone()),
                ..Default::default()
            })
            .await?;
        libgo.start(&v).await?;
        libgo.start(&c).await?;
        assert_eq!(libgo.get(&v).await?.state, InstanceState::Running);
        assert_eq!(libgo.get(&c).await?.state, InstanceState::Running);
        let running = libgo
            .list_all(&InstanceFilter {
                state: Some(InstanceState::Running),
                ..mine.clone()
            })
            .await?;
        assert_eq!(running.len(), 2);
        let started = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event")
            .expect("open")?;
        assert_eq!(
            (started.action, started.kind),
            (EventAction::Started, InstanceKind::Vm)
        );
        libgo
            .stop(
                &v,
                StopOptions {
                    timeout_secs: None,
                    force: true,
                },
            )
            .await?;
        libgo
            .stop(
                &c,
                StopOptions {
                    timeout_secs: Some(0),
                    force: false,
                },
            )
            .await?;
        assert_eq!(libgo.get(&v).await?.state, InstanceState::Stopped);
        Ok::<_, libgo::Error>(())
    }
    .await;
    for n in [&c, &v] {
        match libgo.delete(n, true).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    outcome?;
    assert_eq!(libgo.get(&c).await.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(libgo.get(&v).await.unwrap_err().kind(), ErrorKind::NotFound);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_errors_are_clear() -> libgo::Result<()> {
    let libgo = both().await;
    let mut spec = container(&unique("route"));
    spec.kind = None;
    assert_eq!(
        libgo.create(&spec).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    spec.backend = Some("nowhere".into());
    assert_eq!(
        libgo.create(&spec).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // A container asked of the VM backend is refused before anything is made.
    spec.backend = Some("kvm".into());
    spec.kind = Some(InstanceKind::Container);
    assert_eq!(
        libgo.create(&spec).await.unwrap_err().kind(),
        ErrorKind::Unsupported
    );
    assert_eq!(
        libgo.get(&spec.name).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // A VM-only field on a container is refused by the core's validation.
    let mut spec = container(&unique("route"));
    spec.autostart = true;
    assert_eq!(
        libgo.create(&spec).await.unwrap_err().kind(),
        ErrorKind::Unsupported
    );
    // An engine that is down leaves the other usable.
    let partial = libgo::connect(&EngineConfig {
        docker: EngineMode::Auto,
        docker_host: Some("unix:///nonexistent.sock".into()),
        kvm: EngineMode::Required,
        libvirt_uri: "test:///default".into(),
        ..Default::default()
    })
    .await?;
    assert_eq!(partial.backend_names(), ["kvm"]);
    let required = libgo::connect(&EngineConfig {
        docker: EngineMode::Required,
        docker_host: Some("unix:///nonexistent.sock".into()),
        kvm: EngineMode::Off,
        ..Default::default()
    })
    .await;
    assert_eq!(required.unwrap_err().kind(), ErrorKind::Unavailable);
    Ok(())
}
