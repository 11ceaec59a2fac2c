//! The XNNPACK delegate's pointwise + depthwise fusion changes no bit: the fp32
//! MobileNet v2 fixture (`fixtures/xnn_mobilenet_v2`) gives the same output with every
//! eligible pair fused as with none, and its plan holds less memory.

use std::path::Path;

use pteron::npy::read_npy;
use pteron::Module;
use pteron_xnnpack::{set_fusion, Fusion};

/// Output bits and prepared bytes of the fixture compiled under `mode`.
fn run(mode: Fusion) -> (Vec<u64>, usize) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/xnn_mobilenet_v2");
    set_fusion(mode);
    let mut module = Module::from_file(dir.join("program.pte")).expect("load");
    let input = read_npy(dir.join("in_0.npy")).expect("input");
    let outs = module
        .run("forward", &[input.as_tensor().expect("view")])
        .expect("run");
    let prepared = module
        .method("forward")
        .expect("loaded method")
        .memory()
        .prepared;
    set_fusion(Fusion::Auto);
    assert_eq!(outs.len(), 1);
    (
        outs[0].to_f64().iter().map(|v| v.to_bits()).collect(),
        prepared,
    )
}

#[test]
fn fused_mobilenet_v2_is_bit_identical() {
    let (off, off_bytes) = run(Fusion::Off);
    let (all, all_bytes) = run(Fusion::All);
    assert_eq!(off, all, "fusion changed the output");
    assert!(
        all_bytes < off_bytes,
        "fusing dropped no buffer: {all_bytes} vs {off_bytes} bytes"
    );
}
