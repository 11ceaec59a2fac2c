//! Hand-built payloads (`conformance/xnnpack/make_test_payloads.py`): one valid graph
//! run end to end through the backend, and malformed variants that must fail at init
//! with typed errors naming what is wrong.

use std::cell::RefCell;

use pteron_runtime::testing::{run_op, TestArg, TestTensor};
use pteron_runtime::{
    Backend, BackendInitCtx, DelegateHandle, F32Buf, Kernel, KernelCtx, KernelError, PrepareCtx,
    Registry, ScalarType,
};
use pteron_xnnpack::{parse, set_fusion, Fusion, XnnError, XnnpackBackend};

fn data(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name),
    )
    .unwrap()
}

fn try_parse(b: &[u8]) -> Result<(), XnnError> {
    parse(b, &|_| None).map(|_| ())
}

thread_local! {
    static PAYLOAD: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

struct AsKernel(Box<dyn DelegateHandle>);
impl Kernel for AsKernel {
    fn run(&mut self, ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
        self.0.execute(ctx)
    }
    fn prepared_bytes(&self) -> usize {
        self.0.prepared_bytes()
    }
}

/// Runs on a shared workspace as a method does: the run buffers are handed over at
/// init, the slots filled with garbage (what another delegate would leave there).
struct Donated(Box<dyn DelegateHandle>, Vec<F32Buf>);
impl Kernel for Donated {
    fn run(&mut self, ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
        for s in &mut self.1 {
            s.fill(f32::NAN);
        }
        self.0.execute_in(ctx, &mut self.1)
    }
}

fn init_handle(p: &PrepareCtx<'_>) -> Result<Box<dyn DelegateHandle>, KernelError> {
    PAYLOAD.with(|pl| {
        let payload = pl.borrow().clone();
        let named = |_: &str| -> Option<&[u8]> { None };
        let ctx = BackendInitCtx {
            method: "forward",
            payload: &payload,
            compile_specs: &[],
            named_data: &named,
            args: *p,
        };
        XnnpackBackend.init(&ctx)
    })
}

fn donated_factory(p: &PrepareCtx<'_>) -> Result<Box<dyn Kernel>, KernelError> {
    let mut h = init_handle(p)?;
    let mut slots = h.donate_workspace();
    assert!(
        !slots.is_empty(),
        "an FC graph has run buffers to hand over"
    );
    // Slots may be longer than asked (another delegate's larger buffer).
    for s in &mut slots {
        *s = F32Buf::zeroed(s.len() + 7);
    }
    Ok(Box::new(Donated(h, slots)))
}

fn factory(p: &PrepareCtx<'_>) -> Result<Box<dyn Kernel>, KernelError> {
    Ok(Box::new(AsKernel(init_handle(p)?)) as Box<dyn Kernel>)
}

fn run(payload: Vec<u8>, args: Vec<TestArg>) -> Result<Vec<TestArg>, KernelError> {
    PAYLOAD.with(|p| *p.borrow_mut() = payload);
    let mut reg = Registry::new();
    reg.register_factory("test::xnnpack", factory);
    run_op(&reg, "test::xnnpack", args)
}

#[test]
fn valid_graph_runs() {
    let x: Vec<f32> = (0..8).map(|i| i as f32 * 0.5 - 2.0).collect();
    let out = run(
        data("fc_ok.bin"),
        vec![
            TestArg::Tensor(TestTensor::new(&[2, 4], x.clone())),
            TestArg::Tensor(TestTensor::out(ScalarType::Float, &[2, 3])),
        ],
    )
    .unwrap();
    let got = out[1].tensor().to_vec::<f32>();
    let w: Vec<f32> = (0..12).map(|i| 0.1 * (i as f32 - 6.0)).collect();
    let b = [0.5f32, -0.25, 1.0];
    for r in 0..2 {
        for n in 0..3 {
            let mut acc = b[n];
            for k in 0..4 {
                acc += x[r * 4 + k] * w[n * 4 + k];
            }
            let want = acc.max(0.0);
            assert!(
                (got[r * 3 + n] - want).abs() < 1e-5,
                "{r},{n}: {} vs {want}",
                got[r * 3 + n]
            );
        }
    }
}

fn fc_args() -> Vec<TestArg> {
    let x: Vec<f32> = (0..8).map(|i| i as f32 * 0.25 - 1.0).collect();
    vec![
        TestArg::Tensor(TestTensor::new(&[2, 4], x)),
        TestArg::Tensor(TestTensor::out(ScalarType::Float, &[2, 3])),
    ]
}

#[test]
fn shared_workspace_gives_the_same_results() {
    let own = run(data("fc_ok.bin"), fc_args()).unwrap();
    PAYLOAD.with(|p| *p.borrow_mut() = data("fc_ok.bin"));
    let mut reg = Registry::new();
    reg.register_factory("test::xnnpack_ws", donated_factory);
    let shared = run_op(&reg, "test::xnnpack_ws", fc_args()).unwrap();
    let (a, b) = (
        own[1].tensor().to_vec::<f32>(),
        shared[1].tensor().to_vec::<f32>(),
    );
    assert_eq!(a.len(), 6);
    assert_eq!(
        a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
}

#[test]
fn donated_delegate_refuses_to_run_without_the_workspace() {
    fn check_factory(p: &PrepareCtx<'_>) -> Result<Box<dyn Kernel>, KernelError> {
        let mut h = init_handle(p)?;
        let mut slots = h.donate_workspace();
        // A second donation hands over nothing more.
        assert!(h.donate_workspace().is_empty());
        Ok(Box::new(Probe(h, std::mem::take(&mut slots))))
    }
    struct Probe(Box<dyn DelegateHandle>, Vec<F32Buf>);
    impl Kernel for Probe {
        fn run(&mut self, ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
            let direct = self.0.execute(ctx).unwrap_err().to_string();
            assert!(direct.contains("execute_in"), "{direct}");
            let mut short: Vec<F32Buf> =
                self.1.iter().map(|s| F32Buf::zeroed(s.len() / 2)).collect();
            let e = self.0.execute_in(ctx, &mut short).unwrap_err().to_string();
            assert!(e.contains("workspace"), "{e}");
            self.0.execute_in(ctx, &mut self.1[..]).map(|_| ())
        }
    }
    PAYLOAD.with(|p| *p.borrow_mut() = data("fc_ok.bin"));
    let mut reg = Registry::new();
    reg.register_factory("test::xnnpack_probe", check_factory);
    run_op(&reg, "test::xnnpack_probe", fc_args()).unwrap();
}

#[test]
fn wrong_argument_dtype_fails_at_init() {
    let err = run(
        data("fc_ok.bin"),
        vec![
            TestArg::Tensor(TestTensor::new(&[2, 4], vec![0i32; 8])),
            TestArg::Tensor(TestTensor::out(ScalarType::Float, &[2, 3])),
        ],
    )
    .unwrap_err();
    assert!(err.msg.contains("dtype"), "{err}");
}

#[test]
fn wrong_magic() {
    let mut p = data("fc_ok.bin");
    p[4..8].copy_from_slice(b"XH99");
    assert!(matches!(try_parse(&p), Err(XnnError::Identifier(_))));
    let mut p = data("fc_ok.bin");
    // FlatBuffer identifier at flatbuffer_offset (32) + 4.
    assert_eq!(&p[36..40], b"XN01");
    p[36..40].copy_from_slice(b"XN77");
    assert_eq!(try_parse(&p).unwrap_err(), XnnError::Identifier(*b"XN77"));
}

#[test]
fn truncated_payload_and_constants() {
    let p = data("fc_ok.bin");
    // Cut into the constant region: the header's constant range no longer fits.
    let e = try_parse(&p[..p.len() - 4]).unwrap_err();
    assert!(matches!(e, XnnError::Header(_)), "{e}");
    // A constant_data entry pointing past the region.
    let e = try_parse(&data("fc_const_out_of_range.bin")).unwrap_err();
    assert!(matches!(e, XnnError::Constant { index: 2, .. }), "{e}");
    // Every truncation is an error, never a panic.
    for n in 0..p.len() {
        let _ = try_parse(&p[..n]);
    }
}

#[test]
fn node_referencing_missing_value() {
    let e = try_parse(&data("fc_missing_value.bin")).unwrap_err();
    match &e {
        XnnError::Node {
            index: 0,
            kind: "XNNFullyConnected",
            msg,
        } => assert!(msg.contains("42"), "{msg}"),
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn quant_params_of_wrong_size() {
    let e = try_parse(&data("fc_bad_quant.bin")).unwrap_err();
    match &e {
        XnnError::Value { index: 1, msg } => {
            assert!(msg.contains("2 scales for 3 channels"), "{msg}")
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn unsupported_node_fails_at_init() {
    let e = try_parse(&data("fc_unsupported.bin")).unwrap_err();
    assert!(
        matches!(
            e,
            XnnError::Unsupported {
                index: 1,
                kind: "XNNArgMaxPooling2d",
                ..
            }
        ),
        "{e}"
    );
    let ke: KernelError = e.into();
    assert_eq!(ke.kind, pteron_runtime::KernelErrorKind::NotSupported);
}

#[test]
fn byte_flips_never_panic() {
    let p = data("fc_ok.bin");
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..3000 {
        let mut q = p.clone();
        for _ in 0..3 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = (seed as usize) % q.len();
            q[i] ^= (seed >> 32) as u8 | 1;
        }
        let _ = try_parse(&q);
    }
}

thread_local! {
    /// What the last `Profiled` run saw: `(profile lines, prepared bytes)`.
    static PROFILE: RefCell<(Vec<String>, usize)> = const { RefCell::new((Vec::new(), 0)) };
}

/// Runs with profiling on and records the delegate's profile and prepared bytes.
struct Profiled(Box<dyn DelegateHandle>);
impl Kernel for Profiled {
    fn run(&mut self, ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
        self.0.set_profiling(true);
        let r = self.0.execute(ctx);
        let lines = self
            .0
            .profile()
            .iter()
            .map(|n| format!("{} {} {}", n.node, n.kind, n.detail))
            .collect();
        PROFILE.with(|p| *p.borrow_mut() = (lines, self.0.prepared_bytes()));
        r
    }
}

fn profiled_factory(p: &PrepareCtx<'_>) -> Result<Box<dyn Kernel>, KernelError> {
    Ok(Box::new(Profiled(init_handle(p)?)) as Box<dyn Kernel>)
}

/// The fusion mode is process-wide: tests that set it run one at a time.
static FUSION_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `pw_dw_<variant>.bin` (x[1,7,9,5] -> 1x1 conv -> mid[1,7,9,12] -> 3x3
/// depthwise, see `make_test_payloads.py`) compiled under `mode`: every output's bits,
/// the profile lines and the prepared bytes.
fn run_pw_dw(
    variant: &str,
    mode: Fusion,
    outs: &[&[usize]],
) -> (Vec<Vec<u32>>, Vec<String>, usize) {
    run_fusion_graph(&format!("pw_dw_{variant}.bin"), mode, outs)
}

/// Runs payload `file` (one input x[1,7,9,5]) compiled under `mode`: every output's
/// bits, the profile lines and the prepared bytes.
fn run_fusion_graph(
    file: &str,
    mode: Fusion,
    outs: &[&[usize]],
) -> (Vec<Vec<u32>>, Vec<String>, usize) {
    set_fusion(mode);
    PAYLOAD.with(|p| *p.borrow_mut() = data(file));
    let x: Vec<f32> = (0..7 * 9 * 5)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
        .collect();
    let mut args = vec![TestArg::Tensor(TestTensor::new(&[1, 7, 9, 5], x))];
    for d in outs {
        args.push(TestArg::Tensor(TestTensor::out(ScalarType::Float, d)));
    }
    let mut reg = Registry::new();
    reg.register_factory("test::xnnpack_prof", profiled_factory);
    let res = run_op(&reg, "test::xnnpack_prof", args).unwrap();
    let bits = res[1..]
        .iter()
        .map(|a| {
            a.tensor()
                .to_vec::<f32>()
                .iter()
                .map(|v| v.to_bits())
                .collect()
        })
        .collect();
    let (lines, prepared) = PROFILE.with(|p| p.borrow().clone());
    (bits, lines, prepared)
}

/// A 1x1 conv whose output only a depthwise conv reads is fused into it (same bits
/// as the unfused plan, the expanded value's buffer gone); when that value is also
/// read by another node or is an external output, nothing is fused.
#[test]
fn pointwise_depthwise_fusion() {
    let _one = FUSION_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    let fused = |lines: &[String]| {
        lines
            .iter()
            .any(|l| l.contains("pointwise+depthwise fused"))
    };
    let (off, off_prof, off_bytes) = run_pw_dw("plain", Fusion::Off, &[&[1, 4, 5, 12]]);
    let (on, on_prof, on_bytes) = run_pw_dw("plain", Fusion::All, &[&[1, 4, 5, 12]]);
    assert!(!fused(&off_prof), "{off_prof:?}");
    assert!(fused(&on_prof), "{on_prof:?}");
    // The conv node no longer runs on its own.
    assert!(
        !on_prof.iter().any(|l| l.contains("XNNConv2d")),
        "{on_prof:?}"
    );
    assert!(
        off[0].iter().any(|&b| f32::from_bits(b) > 0.0),
        "all clamped away"
    );
    assert_eq!(off, on, "fused output differs from the unfused plan");
    assert_eq!(
        off_bytes - on_bytes,
        7 * 9 * 12 * 4,
        "the expanded buffer is dropped"
    );
    // The default (sizes below the profitable threshold) leaves this small graph alone.
    let (auto, auto_prof, _) = run_pw_dw("plain", Fusion::Auto, &[&[1, 4, 5, 12]]);
    assert!(!fused(&auto_prof), "{auto_prof:?}");
    assert_eq!(off, auto);
    for (variant, outs) in [
        ("shared", &[&[1usize, 7, 9, 12][..]][..]),
        ("output", &[&[1, 7, 9, 12][..], &[1, 7, 9, 12][..]][..]),
    ] {
        assert_not_fused(&format!("pw_dw_{variant}.bin"), outs, fused);
    }
    set_fusion(Fusion::Auto);
}

/// Payload `file`, whose graph must not fuse, gives no `fused` profile line even with
/// every fusion forced on, and the same bits and prepared bytes as with none.
fn assert_not_fused(file: &str, outs: &[&[usize]], fused: impl Fn(&[String]) -> bool) {
    let (off, _, off_bytes) = run_fusion_graph(file, Fusion::Off, outs);
    let (all, prof, all_bytes) = run_fusion_graph(file, Fusion::All, outs);
    assert!(!fused(&prof), "{file}: {prof:?}");
    assert_eq!(off, all, "{file}");
    assert_eq!(off_bytes, all_bytes, "{file}");
}

/// A convolution whose output only a residual add reads is fused into it (same bits
/// as the unfused plan, the convolution's output buffer gone), for a 1x1 and a 3x3
/// convolution and either operand order; when that output is also read by another
/// node or is an external output, nothing is fused.
#[test]
fn convolution_add_fusion() {
    let _one = FUSION_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    let fused = |lines: &[String]| lines.iter().any(|l| l.contains("convolution+add fused"));
    let shape: &[usize] = &[1, 7, 9, 5];
    for variant in ["plain", "k3"] {
        let file = format!("conv_add_{variant}.bin");
        let (off, off_prof, off_bytes) = run_fusion_graph(&file, Fusion::Off, &[shape]);
        let (on, on_prof, on_bytes) = run_fusion_graph(&file, Fusion::Auto, &[shape]);
        assert!(!fused(&off_prof), "{variant}: {off_prof:?}");
        assert!(fused(&on_prof), "{variant}: {on_prof:?}");
        assert!(
            !on_prof.iter().any(|l| l.contains("XNNConv2d")),
            "{variant}: {on_prof:?}"
        );
        // Both clamps of the add bite somewhere, so the test sees their order.
        let vals: Vec<f32> = off[0].iter().map(|&b| f32::from_bits(b)).collect();
        assert!(
            vals.contains(&-1.0) && vals.contains(&2.5),
            "{variant}: {vals:?}"
        );
        assert!(vals.iter().any(|&v| v > -1.0 && v < 2.5), "{variant}");
        assert_eq!(
            off, on,
            "{variant}: fused output differs from the unfused plan"
        );
        assert_eq!(
            off_bytes - on_bytes,
            7 * 9 * 5 * 4,
            "{variant}: buffer kept"
        );
    }
    for (variant, outs) in [("shared", &[shape][..]), ("output", &[shape, shape][..])] {
        assert_not_fused(&format!("conv_add_{variant}.bin"), outs, fused);
    }
    set_fusion(Fusion::Auto);
}

/// A fused pointwise + depthwise pair whose depthwise output only a pointwise
/// projection reads takes the projection (and the residual add fused into it) over:
/// the same bits as the unfused plan, the depthwise output's buffer gone.
#[test]
fn pointwise_depthwise_projection_fusion() {
    let _one = FUSION_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    for (variant, shape, label) in [
        (
            "proj",
            [1usize, 4, 5, 6],
            "pointwise+depthwise+pointwise fused",
        ),
        (
            "proj_add",
            [1, 7, 9, 5],
            "pointwise+depthwise+pointwise+add fused",
        ),
    ] {
        let (off, off_prof, off_bytes) = run_pw_dw(variant, Fusion::Off, &[&shape]);
        let (all, all_prof, all_bytes) = run_pw_dw(variant, Fusion::All, &[&shape]);
        let has = |lines: &[String]| lines.iter().any(|l| l.ends_with(label));
        assert!(!has(&off_prof), "{variant}: {off_prof:?}");
        assert!(has(&all_prof), "{variant}: {all_prof:?}");
        assert_eq!(all_prof.len(), 1, "{variant}: one step left: {all_prof:?}");
        let vals: Vec<f32> = off[0].iter().map(|&b| f32::from_bits(b)).collect();
        assert!(
            vals.windows(2).any(|p| p[0] != p[1]),
            "{variant}: constant output {vals:?}"
        );
        assert_eq!(
            off, all,
            "{variant}: fused output differs from the unfused plan"
        );
        assert!(
            all_bytes < off_bytes,
            "{variant}: {all_bytes} vs {off_bytes} bytes"
        );
    }
    set_fusion(Fusion::Auto);
}
