//! Profiling reaches inside XNNPACK delegates: time per compiled node, with the
//! node kind, shapes and the kernel path taken.

use std::path::Path;

use pteron::npy::read_npy;
use pteron::Module;

#[test]
fn delegate_nodes_are_profiled() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/xnn_q8_cnn");
    let mut module = Module::from_file(dir.join("program.pte")).expect("load");
    let input = read_npy(dir.join("in_0.npy")).expect("input");
    let view = input.as_tensor().expect("view");
    // Off by default: nothing recorded.
    module.run("forward", &[view]).expect("run");
    assert!(module
        .method("forward")
        .expect("method")
        .delegate_profile()
        .is_empty());

    module
        .method("forward")
        .expect("method")
        .set_profiling(true);
    for _ in 0..3 {
        module.run("forward", &[view]).expect("run");
    }
    let m = module.method("forward").expect("method");
    let ops = m.profile();
    let delegate_nanos: u64 = ops
        .iter()
        .filter(|o| o.op.starts_with("delegate"))
        .map(|o| o.nanos)
        .sum();
    let per_delegate = m.delegate_profile();
    assert!(!per_delegate.is_empty());
    let nodes: Vec<_> = per_delegate
        .iter()
        .inspect(|(_, backend, _)| assert_eq!(backend, "XnnpackBackend"))
        .flat_map(|(_, _, n)| n.iter().cloned())
        .collect();
    assert!(nodes.len() >= 5, "{nodes:?}");
    for n in &nodes {
        assert_eq!(n.calls, 3, "{n:?}");
        assert!(n.kind.starts_with("XNN"), "{n:?}");
        assert!(n.detail.contains("->"), "{n:?}");
    }
    // The convolutions of this PT2E graph run on the int8 kernels, and say so.
    assert!(
        nodes
            .iter()
            .any(|n| n.kind == "XNNConv2d" && n.detail.ends_with("int8")),
        "{nodes:?}"
    );
    // Node times are measured inside the delegate call's time.
    let node_nanos: u64 = nodes.iter().map(|n| n.nanos).sum();
    assert!(
        node_nanos <= delegate_nanos,
        "{node_nanos} > {delegate_nanos}"
    );

    m.set_profiling(false);
    assert!(m.delegate_profile().is_empty());
}
