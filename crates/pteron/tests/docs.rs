//! Tidy test: `docs/operators.md` matches the kernels this build registers.
//! `PTERON_BLESS=1 cargo test -p pteron --test docs` rewrites it.

use std::path::Path;

#[test]
fn operators_doc_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/operators.md");
    let want = pteron::operators_markdown(&pteron::default_registry());
    if std::env::var("PTERON_BLESS").is_ok() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/operators.md is stale: run `PTERON_BLESS=1 cargo test -p pteron --test docs`"
    );
}
