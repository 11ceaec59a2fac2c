//! Prints the decoded graphs of every `fixtures/xnn_*` program (`cargo test -p pteron-xnnpack --test dump -- --nocapture --ignored`),
//! or of the programs named in `XNN_DUMP_FILES` (colon-separated paths).
use std::path::Path;

#[test]
#[ignore]
fn dump_fixture_graphs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let filter = std::env::var("XNN_DUMP").unwrap_or_default();
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    dirs.sort();
    let mut files: Vec<(String, std::path::PathBuf)> = dirs
        .into_iter()
        .filter_map(|d| {
            let name = d.file_name()?.to_string_lossy().to_string();
            (name.starts_with("xnn_") && name.contains(&filter))
                .then(|| (name, d.join("program.pte")))
        })
        .collect();
    if let Ok(list) = std::env::var("XNN_DUMP_FILES") {
        files = list
            .split(':')
            .map(|p| (p.to_string(), std::path::PathBuf::from(p)))
            .collect();
    }
    for (name, path) in files {
        let bytes = std::fs::read(path).unwrap();
        let prog = pteron_format::parse_program(&bytes).unwrap();
        for plan in &prog.plans {
            for (di, del) in plan.delegates.iter().enumerate() {
                let r = prog.delegate_range(del).unwrap();
                let named = |k: &str| prog.named_data_range(k).map(|r| &bytes[r]);
                let g = pteron_xnnpack::parse(&bytes[r], &named).unwrap();
                println!(
                    "== {name} delegate {di}: {} values, {} nodes, externs {}",
                    g.values.len(),
                    g.nodes.len(),
                    g.num_externs
                );
                for (i, v) in g.values.iter().enumerate() {
                    println!(
                        "  v{i} {} {:?} const={} ext={:?} flags={} dq={:?} q={:?}",
                        v.dtype.name(),
                        v.dims,
                        v.data.map_or(0, |d| d.len()),
                        v.external,
                        v.flags,
                        v.dq_datatype,
                        match &v.quant {
                            pteron_xnnpack::graph::Quant::PerChannel {
                                scales,
                                channel_dim,
                            } => format!("pc({} ch{channel_dim})", scales.len()),
                            pteron_xnnpack::graph::Quant::Blockwise {
                                scales, group_size, ..
                            } => format!("blockwise({} g{group_size})", scales.len()),
                            q => format!("{q:?}"),
                        }
                    );
                }
                for (i, n) in g.nodes.iter().enumerate() {
                    println!("  n{i} {} [{}, {}] {:?}", n.kind, n.min, n.max, n.op);
                }
            }
        }
    }
}
