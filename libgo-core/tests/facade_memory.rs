//! The facade's branches that need more than one backend, or a backend that fails at the
//! wrong moment, on in-memory engines: routing a name held by two backends, a merged list
//! with a backend down, instances of a lost host, the inventory's patch and overflow paths,
//! batches with per-item results, prunes over every backend, concurrent admissions and
//! placements on hosts of a given memory, failover's bookkeeping.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use libgo_core::memory::MemoryBackend;
use libgo_core::{
    BatchSpec, BatchStatus, Compute, DeleteOptions, ErrorKind, HostMembership, ImageKind,
    InstanceFilter, InstanceKind, InstanceSpec, InstanceState, LibGo, On, Pagination, ProgressSink,
    VolumeSpec, Volumes,
};

fn engine(name: &str) -> MemoryBackend {
    let memory = MemoryBackend::new(name);
    memory.add_image("busybox:latest", ImageKind::Container);
    memory
}

fn container(name: &str) -> InstanceSpec {
    InstanceSpec::container(name, "busybox:latest")
}

/// A facade with engine `near` on the local host and `far` on host `far`.
fn near_and_far(near: &MemoryBackend, far: &MemoryBackend) -> LibGo {
    let libgo = LibGo::new();
    libgo.register(Arc::new(near.clone())).expect("near engine");
    libgo
        .host_set(HostMembership {
            name: "far".into(),
            ..HostMembership::local()
        })
        .expect("host far");
    libgo
        .register_on("far", Arc::new(far.clone()))
        .expect("far engine");
    libgo
}

/// Two engines, `a` and `b`, registered on the local host.
fn two() -> (LibGo, MemoryBackend, MemoryBackend) {
    let (a, b) = (engine("a"), engine("b"));
    let libgo = LibGo::new();
    libgo.register(Arc::new(a.clone())).expect("register a");
    libgo.register(Arc::new(b.clone())).expect("register b");
    (libgo, a, b)
}

#[tokio::test]
async fn a_name_held_by_two_backends_is_a_conflict_that_changes_nothing() {
    let (libgo, a, b) = two();
    // Made behind the facade's back: each engine alone allows it.
    let on_a = a.create(&container("web")).await.expect("on a");
    let on_b = b.create(&container("web")).await.expect("on b");

    let err = libgo.get("web").await.expect_err("ambiguous");
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(
        err.message().contains('a') && err.message().contains("name the backend"),
        "{err}"
    );
    let err = libgo
        .delete("web", DeleteOptions::default())
        .await
        .expect_err("ambiguous delete");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(a.get(&on_a.id).await.is_ok() && b.get(&on_b.id).await.is_ok());

    // By id each is found; deleting one makes the name unique again.
    assert_eq!(libgo.get(&on_b.id).await.expect("by id").backend, "b");
    libgo
        .delete(&on_a.id, DeleteOptions::default())
        .await
        .expect("delete by id");
    assert_eq!(libgo.get("web").await.expect("unique now").id, on_b.id);
    // The facade keeps names unique across backends for what it creates.
    let mut again = container("web");
    again.backend = Some("a".into());
    let err = libgo.create(&again).await.expect_err("taken on b");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(
        a.list(&InstanceFilter::default())
            .await
            .expect("list")
            .is_empty()
    );
}

#[tokio::test]
async fn a_backend_down_is_named_in_the_merged_list_and_its_instances_are_not_lost() {
    let (libgo, a, b) = two();
    libgo.create(&container("one")).await.expect("one");
    let mut on_b = container("two");
    on_b.backend = Some("b".into());
    libgo.create(&on_b).await.expect("two");
    let page = libgo
        .list(&InstanceFilter::default(), Pagination::default())
        .await
        .expect("list");
    assert_eq!(page.count, 2);
    assert!(page.unavailable.is_empty());

    b.set_unreachable(true);
    let page = libgo
        .list(&InstanceFilter::default(), Pagination::default())
        .await
        .expect("a partial list");
    let names: Vec<_> = page.items.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["one"]);
    assert_eq!(page.unavailable.len(), 1, "{:?}", page.unavailable);
    assert_eq!(page.unavailable[0].backend, "b");
    assert!(page.unavailable[0].message.contains("unreachable"));
    // Calls on a's instances go on; one on b's answers why, not "not found".
    assert_eq!(libgo.get("one").await.expect("a answers").backend, "a");
    let err = libgo.get("two").await.expect_err("b is down");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");

    a.set_unreachable(true);
    let err = libgo
        .list(&InstanceFilter::default(), Pagination::default())
        .await
        .expect_err("nobody answers");
    assert_eq!(err.kind(), ErrorKind::Unavailable);

    // The engines come back: so do their instances, and the list is whole again.
    a.set_unreachable(false);
    b.set_unreachable(false);
    let page = libgo
        .list(&InstanceFilter::default(), Pagination::default())
        .await
        .expect("whole again");
    assert_eq!(page.count, 2);
    assert!(page.unavailable.is_empty());
}

#[tokio::test]
async fn instances_of_a_host_that_stops_answering_are_listed_as_lost() {
    let (local, remote) = (engine("local-engine"), engine("far-engine"));
    let libgo = near_and_far(&local, &remote);
    let mut spec = container("far-away");
    spec.backend = Some("far-engine".into());
    spec.start = true;
    libgo.create(&spec).await.expect("create on far");
    let seen = libgo
        .list_all(&InstanceFilter::default())
        .await
        .expect("seen");
    assert_eq!(seen[0].host, "far");
    assert_eq!(seen[0].state, InstanceState::Running);

    remote.set_unreachable(true);
    local.create(&container("near")).await.expect("near");
    let (items, unavailable) = libgo
        .list_all_reporting(&InstanceFilter::default())
        .await
        .expect("list");
    let far = items
        .iter()
        .find(|i| i.name == "far-away")
        .expect("still listed");
    assert_eq!(far.state, InstanceState::Lost);
    assert_eq!(far.host, "far");
    assert_eq!(unavailable[0].backend, "far-engine");
    // A local backend's instances are never guessed at: only what answered is listed.
    local.set_unreachable(true);
    remote.set_unreachable(false);
    let (items, unavailable) = libgo
        .list_all_reporting(&InstanceFilter::default())
        .await
        .expect("list");
    assert!(items.iter().all(|i| i.name != "near"), "{items:?}");
    assert_eq!(unavailable[0].backend, "local-engine");
}

#[tokio::test]
async fn the_inventory_reads_only_what_changed_until_too_much_changed() {
    let memory = engine("m");
    let libgo = LibGo::new();
    libgo.register(Arc::new(memory.clone())).expect("register");
    for i in 0..3 {
        libgo
            .create(&container(&format!("c{i}")))
            .await
            .expect("create");
    }
    let all = InstanceFilter::default();
    assert_eq!(libgo.list_all(&all).await.expect("first").len(), 3);
    let first = memory.list_calls();
    assert_eq!(first.full, 1, "the first list is a full one: {first:?}");

    // A change made by someone else is in the next answer, read by id.
    memory.create(&container("outside")).await.expect("outside");
    memory.start("c1").await.expect("start");
    let listed = libgo.list_all(&all).await.expect("second");
    assert_eq!(listed.len(), 4);
    assert_eq!(
        listed.iter().find(|i| i.name == "c1").map(|i| i.state),
        Some(InstanceState::Running)
    );
    let second = memory.list_calls();
    assert_eq!(
        (second.full, second.by_id),
        (1, first.by_id + 1),
        "{second:?}"
    );

    // Nothing changed: no engine read at all beyond the change check.
    libgo.list_all(&all).await.expect("third");
    assert_eq!(memory.list_calls(), second);

    // More changes than are worth patching: one full list instead.
    for i in 0..100 {
        memory
            .create(&container(&format!("burst{i}")))
            .await
            .expect("burst");
    }
    assert_eq!(
        libgo.list_all(&all).await.expect("after the burst").len(),
        104
    );
    let third = memory.list_calls();
    assert_eq!((third.full, third.by_id), (2, second.by_id), "{third:?}");

    // A deletion behind the facade's back is seen too.
    memory.delete("burst7", true).await.expect("delete");
    let listed = libgo.list_all(&all).await.expect("after delete");
    assert!(listed.iter().all(|i| i.name != "burst7"));

    // Without a change feed every list goes to the engine.
    memory.set_change_feed(false);
    let before = memory.list_calls().full;
    libgo.list_all(&all).await.expect("no feed");
    libgo.list_all(&all).await.expect("no feed");
    assert_eq!(memory.list_calls().full, before + 2);
}

#[tokio::test]
async fn batches_report_each_item_and_go_on_past_a_failure() {
    let (libgo, a, b) = two();
    // `web-2` is taken on b: that item fails, the rest are made.
    b.create(&container("web-2")).await.expect("taken");
    let batch = BatchSpec {
        spec: container("ignored"),
        count: 3,
        name_pattern: Some("web-{n}".into()),
        first: None,
    };
    let report = libgo
        .create_batch(&batch, ProgressSink::none())
        .await
        .expect("batch");
    assert_eq!((report.succeeded, report.failed), (2, 1), "{report:?}");
    let failed: Vec<_> = report
        .items
        .iter()
        .filter(|i| i.status == BatchStatus::Failed)
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].name, "web-2");
    assert_eq!(
        failed[0].error.as_ref().map(|e| e.code.as_str()),
        Some("RESOURCE_CONFLICT")
    );
    assert_eq!(
        a.list(&InstanceFilter::default()).await.expect("a").len(),
        2
    );

    let ids = ["web-1", "web-2", "ghost"].map(String::from);
    let report = libgo
        .delete_batch(&ids, DeleteOptions::default(), ProgressSink::none())
        .await
        .expect("delete batch");
    let statuses: BTreeMap<_, _> = report
        .items
        .iter()
        .map(|i| (i.name.as_str(), i.status))
        .collect();
    assert_eq!(statuses["web-1"], BatchStatus::Deleted);
    assert_eq!(
        statuses["web-2"],
        BatchStatus::Deleted,
        "found on b by name"
    );
    assert_eq!(statuses["ghost"], BatchStatus::Failed);
    assert!(
        b.list(&InstanceFilter::default())
            .await
            .expect("b")
            .is_empty()
    );
}

#[tokio::test]
async fn creates_are_routed_by_backend_then_kind() {
    let (libgo, a, b) = two();
    let vm_only = MemoryBackend::new("c");
    // Only c holds the disk image: a VM with it can only be made there when named.
    vm_only.add_image("base.qcow2", ImageKind::Disk);
    libgo.register(Arc::new(vm_only.clone())).expect("c");
    let made = libgo.create(&container("first")).await.expect("first");
    assert_eq!(made.backend, "a", "the first backend of the kind");
    let mut spec = InstanceSpec::vm("disk-vm");
    spec.disks = vec![libgo_core::DiskSpec {
        base_image: Some("base.qcow2".into()),
        ..Default::default()
    }];
    spec.backend = Some("c".into());
    assert_eq!(
        libgo.create(&spec).await.expect("on c").kind,
        InstanceKind::Vm
    );
    spec.name = "unknown-backend".into();
    spec.backend = Some("nope".into());
    let err = libgo.create(&spec).await.expect_err("no such backend");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(
        b.list(&InstanceFilter::default())
            .await
            .expect("b")
            .is_empty()
    );
    assert_eq!(
        vm_only
            .list(&InstanceFilter::default())
            .await
            .expect("c")
            .len(),
        1
    );
    let _ = a;
}

#[tokio::test]
async fn prunes_without_a_backend_prune_every_backend() {
    let (libgo, a, b) = two();
    for (engine, name) in [(&a, "left-a"), (&b, "left-b")] {
        engine
            .volume_create(&VolumeSpec {
                name: name.into(),
                size_bytes: Some(1 << 20),
                ..Default::default()
            })
            .await
            .expect("volume");
        engine.add_image(&format!("{name}:unused"), ImageKind::Container);
    }
    let volumes = libgo.volume_prune(On::any()).await.expect("volume prune");
    let mut deleted = volumes.deleted.clone();
    deleted.sort();
    assert_eq!(deleted, ["left-a", "left-b"]);
    let images = libgo.image_prune(On::any()).await.expect("image prune");
    // Each engine's busybox and its unused image: nothing runs from them.
    assert_eq!(images.deleted.len(), 4, "{images:?}");
    assert!(a.volume_list().await.expect("a").is_empty());
    assert!(b.volume_list().await.expect("b").is_empty());
}

#[tokio::test]
async fn an_object_on_several_backends_is_reached_by_naming_the_backend() {
    let (libgo, _a, _b) = two();
    // Both engines hold busybox: which one is meant must be said.
    let err = libgo
        .image_inspect("busybox:latest", On::any())
        .await
        .expect_err("on a and b");
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    let on_b = libgo
        .image_inspect("busybox:latest", On::backend("b"))
        .await
        .expect("on b");
    assert_eq!(on_b.backend, "b");
    libgo
        .image_tag("busybox:latest", "mine:1", On::backend("b"))
        .await
        .expect("tag on b");
    // Only b has the new tag, so it needs no backend name.
    assert_eq!(
        libgo
            .image_inspect("mine:1", On::any())
            .await
            .expect("found")
            .id,
        on_b.id
    );
    let err = libgo
        .image_inspect("busybox:latest", On::backend("nope"))
        .await
        .expect_err("no such backend");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = libgo
        .volume_prune(On::backend("nope"))
        .await
        .expect_err("no such backend");
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

/// Two VMs started at once on a host with room for one: one runs, the other is refused
/// (`RESOURCE_CONFLICT`) and left stopped, since the first one's memory is claimed while it
/// starts; once it stops, the other starts.
#[tokio::test]
async fn concurrent_starts_do_not_both_count_on_the_same_free_memory() {
    let memory = engine("m");
    let one = libgo_core::hosts::reservation(InstanceKind::Vm, Some(1 << 30));
    memory.set_memory_capacity(2 * one - 1);
    let libgo = LibGo::new();
    libgo.register(Arc::new(memory.clone())).expect("register");
    let vm = |name: &str, start: bool| InstanceSpec {
        memory_bytes: Some(1 << 30),
        start,
        ..InstanceSpec::vm(name)
    };
    let (spec_a, spec_b) = (vm("vm-a", true), vm("vm-b", true));
    let (a, b) = futures::join!(libgo.create(&spec_a), libgo.create(&spec_b));
    let refused = match (&a, &b) {
        (Ok(_), Err(e)) | (Err(e), Ok(_)) => e,
        _ => panic!("exactly one of two VMs fits: {a:?} {b:?}"),
    };
    assert_eq!(refused.kind(), ErrorKind::Conflict, "{refused}");
    let up: Vec<_> = memory
        .list(&InstanceFilter::default())
        .await
        .expect("list")
        .into_iter()
        .filter(|i| i.state == InstanceState::Running)
        .collect();
    assert_eq!(up.len(), 1, "{up:?}");

    // The same for two stopped VMs started at once.
    let first = up[0].id.clone();
    libgo.stop(&first, Default::default()).await.expect("stop");
    libgo.create(&vm("vm-c", false)).await.expect("stopped VM");
    let (c, d) = futures::join!(libgo.start("vm-c"), libgo.start(&first));
    assert!(
        matches!((&c, &d), (Ok(()), Err(_)) | (Err(_), Ok(()))),
        "exactly one of two starts fits: {c:?} {d:?}"
    );
    let e = c.err().or(d.err()).expect("one refused");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
}

/// Three VMs placed at once on two hosts with room for one each: each host gets one (the
/// memory placement counts on is claimed), the third is refused.
#[tokio::test]
async fn concurrent_placements_claim_what_they_count_on() {
    let one = libgo_core::hosts::reservation(InstanceKind::Vm, Some(1 << 30));
    let (near, far) = (engine("near"), engine("far"));
    near.set_memory_capacity(2 * one - 1);
    far.set_memory_capacity(2 * one - 1);
    let libgo = near_and_far(&near, &far);
    let specs: Vec<InstanceSpec> = (1..=3)
        .map(|n| InstanceSpec {
            memory_bytes: Some(1 << 30),
            start: true,
            pool: Some("default".into()),
            ..InstanceSpec::vm(format!("vm-{n}"))
        })
        .collect();
    let outcomes = futures::future::join_all(specs.iter().map(|s| libgo.create(s))).await;
    let mut hosts: Vec<_> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok().map(|i| i.host.clone()))
        .collect();
    hosts.sort();
    assert_eq!(hosts, ["far", "local"], "{outcomes:?}");
    let refused = outcomes
        .iter()
        .find_map(|o| o.as_ref().err())
        .expect("one refused");
    assert_eq!(refused.kind(), ErrorKind::Conflict, "{refused}");
}

#[tokio::test]
async fn a_dead_hosts_vms_fail_over_once_and_the_copies_left_are_hidden_then_removed() {
    let (near, far) = (engine("near"), engine("far"));
    let libgo = near_and_far(&near, &far);
    libgo
        .pool_set(&libgo_core::ComputePoolSpec {
            name: "ha".into(),
            enabled: true,
            failover: true,
            network: None,
        })
        .expect("pool");
    for host in ["local", "far"] {
        let mut m = libgo.host_membership(host).expect("host");
        m.pool = "ha".into();
        libgo.host_set(m).expect("join pool");
    }
    let mut ran = InstanceSpec::vm("ran");
    ran.start = true;
    ran.host = Some("far".into());
    let ran = libgo.create(&ran).await.expect("ran");
    let mut idle = InstanceSpec::vm("idle");
    idle.host = Some("far".into());
    let idle = libgo.create(&idle).await.expect("idle");
    let mut box_ = container("box");
    box_.backend = Some("far".into());
    libgo.create(&box_).await.expect("container");
    let all = libgo
        .list_all(&InstanceFilter::default())
        .await
        .expect("list");
    libgo.failover_keep(&all).await;

    // Not due before the engine has been silent for the time given.
    far.set_unreachable(true);
    libgo.note_backend_up("far", false);
    assert!(libgo.failover_due(Duration::from_secs(3600)).is_empty());
    let due = libgo.failover_due(Duration::ZERO);
    assert_eq!(due, ["far"]);
    assert!(
        libgo.failover_due(Duration::ZERO).is_empty(),
        "a death is failed over once"
    );
    let report = libgo
        .fail_over("far", ProgressSink::none())
        .await
        .expect("failover");
    // The VMs only: the container is not failed over.
    assert_eq!(report.items.len(), 2, "{report:?}");
    assert!(
        report.items.iter().all(|i| i.status == BatchStatus::Moved),
        "{report:?}"
    );
    for (id, state) in [
        (&ran.id, InstanceState::Running),
        (&idle.id, InstanceState::Stopped),
    ] {
        let i = libgo.get(id).await.expect("failed over");
        assert_eq!(i.host, "local", "{i:?}");
        assert_eq!(i.state, state, "{i:?}");
    }

    // The old host answers again with its copies (a memory engine has no image locks to
    // fence with, so the one that ran still runs): they are not listed, lookups find the
    // failed-over VM, and the next keep removes the stopped copy and leaves the running one.
    far.set_unreachable(false);
    libgo.note_backend_up("far", true);
    let items = libgo
        .list_all(&InstanceFilter::default())
        .await
        .expect("list");
    for id in [&ran.id, &idle.id] {
        let copies: Vec<_> = items.iter().filter(|i| &i.id == id).collect();
        assert_eq!(copies.len(), 1, "{copies:?}");
        assert_eq!(copies[0].host, "local");
    }
    assert_eq!(libgo.get("ran").await.expect("by name").host, "local");
    libgo.failover_keep(&items).await;
    let mut left: Vec<String> = far
        .list(&InstanceFilter::default())
        .await
        .expect("far list")
        .into_iter()
        .map(|i| i.name)
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["box", "ran"],
        "the stopped copy is removed, the running one left"
    );
    // Still hidden while it is there.
    let items = libgo
        .list_all(&InstanceFilter::default())
        .await
        .expect("list");
    assert_eq!(items.iter().filter(|i| i.id == ran.id).count(), 1);
}
