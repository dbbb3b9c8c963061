//! The embedded web console is the build of the sources in `libgo-web/`: fails when a source
//! (or the OpenAPI document its API types are generated from) changed without
//! `bash scripts/web.sh build`. The hash is the one `libgo-web/source-hash.mjs` writes.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Keep in step with `SOURCES` in libgo-web/source-hash.mjs.
const SOURCES: &[&str] = &[
    "index.html",
    "package.json",
    "package-lock.json",
    "tsconfig.json",
    "vite.config.ts",
    "source-hash.mjs",
    "src",
    "public",
    "../libgo-http/openapi.json",
];

fn walk(path: &Path, out: &mut Vec<PathBuf>) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).expect("read dir").flatten() {
            walk(&entry.path(), out);
        }
    } else {
        out.push(path.to_path_buf());
    }
}

fn source_hash(root: &Path) -> String {
    let mut files = Vec::new();
    for s in SOURCES {
        walk(&root.join(s), &mut files);
    }
    let mut rel: Vec<String> = files
        .iter()
        .map(|f| {
            // Relative to the web root, as node's path.relative gives it.
            let f = f.to_string_lossy().to_string();
            let root = root.to_string_lossy().to_string();
            match f.strip_prefix(&format!("{root}/")) {
                Some(inside) => inside.to_string(),
                None => f.replace(&format!("{root}/../"), "../"),
            }
        })
        .collect();
    rel.sort();
    let mut h = Sha256::new();
    for f in &rel {
        let body = std::fs::read(root.join(f)).expect("read source");
        h.update(format!("{f}\0{}\0", body.len()).as_bytes());
        h.update(&body);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_embedded_console_is_built_from_the_current_sources() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let web_root = crate_dir.join("../libgo-web");
    let recorded = std::fs::read_to_string(crate_dir.join("web/source-hash"))
        .expect("libgo-http/web/source-hash: run `bash scripts/web.sh build`");
    assert_eq!(
        recorded.trim(),
        source_hash(&web_root),
        "the embedded web console is stale: run `bash scripts/web.sh build` and commit libgo-http/web"
    );
}

#[test]
fn the_page_names_only_assets_that_are_embedded() {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    let index = std::fs::read_to_string(web.join("index.html")).expect("index.html");
    let mut named = 0;
    for part in index.split('"') {
        if let Some(asset) = part.strip_prefix("/assets/") {
            assert!(
                web.join("assets").join(asset).is_file(),
                "{asset} is missing"
            );
            named += 1;
        }
    }
    assert!(named >= 2, "index.html names its script and style: {index}");
}
