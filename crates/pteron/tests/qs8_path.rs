//! The PT2E static int8 fixture (`fixtures/xnn_q8_cnn`) runs through the real int8
//! kernels of pteron-xnnpack (not the f32 emulation) and reproduces ExecuTorch's
//! output bit for bit.

use std::path::Path;

use pteron::npy::read_npy;
use pteron::Module;

#[test]
fn xnn_q8_cnn_runs_in_int8_and_matches_reference_exactly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/xnn_q8_cnn");
    let before = pteron_xnnpack::int8_steps_compiled();
    let mut module = Module::from_file(dir.join("program.pte")).expect("load");
    let input = read_npy(dir.join("in_0.npy")).expect("input");
    let outs = module
        .run("forward", &[input.as_tensor().expect("view")])
        .expect("run");
    // Convs, depthwise, linear, add, clamps and max pool compile to int8 steps.
    let compiled = pteron_xnnpack::int8_steps_compiled() - before;
    assert!(compiled >= 5, "only {compiled} int8 steps were compiled");
    let want = read_npy(dir.join("ref_0.npy")).expect("reference");
    assert_eq!(outs.len(), 1);
    assert_eq!(outs[0].shape, want.shape);
    assert_eq!(
        outs[0].to_f64(),
        want.to_f64(),
        "not bit-identical to ExecuTorch"
    );
}
