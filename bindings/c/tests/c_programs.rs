//! Compiles the C test program and the C example with the system `cc` against the cdylib,
//! and runs them against the real dockerd: natively, and under valgrind with leak checking.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const IMAGE: &str = "libgo-test/busybox:latest";

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..10])
}

/// `target/<profile>`: the directory holding this test's `deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .to_path_buf()
}

/// Builds the cdylib (cargo builds only the rlib for integration tests), once.
fn library_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = profile_dir();
        let profile = match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev".to_string(),
            Some(other) => other.to_string(),
            None => "dev".to_string(),
        };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let target_dir = dir.parent().expect("target dir").to_path_buf();
        let status = Command::new(cargo)
            .args(["build", "-p", "libgo-c", "--lib", "--profile", &profile])
            .env("CARGO_TARGET_DIR", &target_dir)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build -p libgo-c failed");
        assert!(
            dir.join("liblibgo_c.so").exists(),
            "no liblibgo_c.so in {dir:?}"
        );
        assert!(
            dir.join("liblibgo_c.a").exists(),
            "no liblibgo_c.a in {dir:?}"
        );
        dir
    })
}

/// Compiles `source` into a program linked to the cdylib.
fn compile(source: &Path, name: &str) -> PathBuf {
    let lib = library_dir();
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(unique(name));
    let status = Command::new("cc")
        .arg("-std=c11")
        .args(["-Wall", "-Wextra", "-Werror", "-g", "-pthread"])
        .arg("-I")
        .arg(crate_dir().join("include"))
        .arg(source)
        .arg("-o")
        .arg(&out)
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-llibgo_c")
        // The test program checks results with a JSON parser (Debian's libcjson-dev).
        .arg("-lcjson")
        .status()
        .expect("run cc (install build-essential)");
    assert!(status.success(), "cc failed on {source:?}");
    out
}

fn run(program: &Path, args: &[String], valgrind: bool) -> String {
    let mut cmd = if valgrind {
        let mut c = Command::new("valgrind");
        c.args([
            "--quiet",
            "--leak-check=full",
            "--show-leak-kinds=definite,indirect,possible",
            "--errors-for-leak-kinds=definite,indirect,possible",
            "--error-exitcode=97",
        ])
        .arg(program);
        c
    } else {
        Command::new(program)
    };
    let out = cmd
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program:?} (valgrind: {valgrind}): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{program:?} (valgrind: {valgrind}) exited {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status.code()
    );
    stdout
}

#[test]
fn c_test_program_passes() {
    let program = compile(&crate_dir().join("tests/c/test_client.c"), "test_client");
    let out = run(&program, &[IMAGE.into(), unique("ctest")], false);
    assert!(out.contains(" passed, 0 failed"), "{out}");
}

#[test]
fn c_test_program_has_no_leaks_under_valgrind() {
    let program = compile(&crate_dir().join("tests/c/test_client.c"), "test_client");
    let out = run(&program, &[IMAGE.into(), unique("cgrind")], true);
    assert!(out.contains(" passed, 0 failed"), "{out}");
}

#[test]
fn c_example_runs_natively_and_under_valgrind() {
    let source = crate_dir().join("../../examples/c/hello.c");
    let program = compile(&source, "hello");
    let name = unique("hello-c");
    let out = run(&program, &[name.clone(), IMAGE.into()], false);
    assert!(out.contains("hello from LibGo"), "{out}");
    let out = run(&program, &[unique("hello-cv"), IMAGE.into()], true);
    assert!(out.contains("hello from LibGo"), "{out}");
}
