//! Runs the README's example programs against the real engines.

use std::process::Command;

#[test]
fn run_container_example_says_hello_and_cleans_up() {
    let out = Command::new(env!("CARGO_BIN_EXE_run-container"))
        .output()
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "example failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("says: hello from LibGo"), "{stdout}");
    let name = stdout.split_whitespace().next().expect("a name");
    let left = Command::new("docker")
        .args(["ps", "-a", "--filter", &format!("name=^{name}$"), "-q"])
        .output()
        .expect("docker ps");
    assert!(left.stdout.is_empty(), "the example left {name} behind");
}
