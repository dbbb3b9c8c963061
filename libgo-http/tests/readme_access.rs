//! The README's table of who may do what is the route declarations, written out.

use libgo_http::auth::AccessTable;

const BEGIN: &str = "<!-- access-table:begin -->";
const END: &str = "<!-- access-table:end -->";

fn table() -> String {
    let access = AccessTable::from_openapi(&libgo_http::openapi());
    assert!(access.undeclared().is_empty(), "{:?}", access.undeclared());
    let mut out = String::from("\n| route | method | who may |\n|---|---|---|\n");
    for (method, route, a) in access.entries() {
        out.push_str(&format!("| `{route}` | {method} | {} |\n", a.as_str()));
    }
    out
}

#[test]
fn readme_table_matches_the_route_declarations() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let readme = std::fs::read_to_string(path).expect("README");
    let (head, rest) = readme.split_once(BEGIN).expect("table start marker");
    let (_, tail) = rest.split_once(END).expect("table end marker");
    let wanted = format!("{head}{BEGIN}{}{END}{tail}", table());
    if std::env::var_os("UPDATE_README").is_some() {
        std::fs::write(path, &wanted).expect("write README");
    }
    assert!(
        readme == wanted,
        "the README's access table is stale: run UPDATE_README=1 cargo test -p libgo-http --test readme_access"
    );
}
