//! Runs a container through LibGo, asks it to say hello, and deletes it.
//! The README shows this program; `tests/examples.rs` runs it.

use std::sync::Arc;

use libgo_core::{DeleteOptions, ExecSpec, InstanceSpec, LibGo};
use libgo_docker::{DockerBackend, DockerConfig};

#[tokio::main]
async fn main() -> libgo_core::Result<()> {
    let libgo = LibGo::new();
    libgo.register(Arc::new(DockerBackend::connect(
        "docker",
        DockerConfig::default(),
    )?))?;

    let name = format!("hello-{}", std::process::id());
    let mut spec = InstanceSpec::container(&name, "libgo-test/busybox:latest");
    spec.command = vec!["sleep".into(), "300".into()];
    spec.start = true;
    let hello = libgo.create(&spec).await?;

    let greeting = ExecSpec {
        command: vec!["echo".into(), "hello from LibGo".into()],
        ..Default::default()
    };
    let out = libgo.exec(&hello.id, &greeting).await?;
    println!("{} says: {}", hello.name, out.stdout.trim());

    libgo
        .delete(&hello.id, DeleteOptions { force: true })
        .await?;
    Ok(())
}
