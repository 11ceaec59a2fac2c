//! Bad input never crashes pteron: each malformed file, wrong input or missing piece
//! gets a typed error that says what and where.

use std::path::{Path, PathBuf};

use pteron::format::fb::{Fb, Table};
use pteron::format::{parse_program, FormatError};
use pteron::npy::NpyArray;
use pteron::{Error, Module, Program, Registry, ScalarType};

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(case)
        .join("program.pte")
}

fn bytes(case: &str) -> Vec<u8> {
    std::fs::read(fixture(case)).unwrap()
}

fn plan0(b: &[u8]) -> Table<'_> {
    let fb = Fb::new(b);
    let root = fb.root().unwrap();
    root.vector(1, 4).unwrap().unwrap().table(fb, 0).unwrap()
}

/// Absolute position of field `slot` (width `w`) of table `t`.
fn field(t: &Table<'_>, slot: usize, w: usize) -> usize {
    t.field(slot, w).unwrap().expect("field present")
}

fn values(b: &[u8]) -> (Fb<'_>, pteron::format::fb::Vector) {
    let fb = Fb::new(b);
    (fb, plan0(b).vector(2, 4).unwrap().unwrap())
}

/// Index of the first value whose union tag is `tag` (5 = Tensor) and satisfies `pred`.
fn find_value(b: &[u8], tag: u8, pred: impl Fn(&Table<'_>) -> bool) -> usize {
    let (fb, v) = values(b);
    (0..v.len)
        .find(|&i| {
            let t = v.table(fb, i).unwrap();
            t.u8_or(0, 0).unwrap() == tag && pred(&t.table(1).unwrap().unwrap())
        })
        .expect("value found")
}

fn invalid_at(e: FormatError, at_part: &str, reason_part: &str) {
    match e {
        FormatError::Invalid { at, reason } => {
            assert!(
                at.contains(at_part),
                "location '{at}' should mention '{at_part}'"
            );
            assert!(
                reason.contains(reason_part),
                "reason '{reason}' should mention '{reason_part}'"
            );
        }
        other => panic!("expected an Invalid error at {at_part}, got {other:?}"),
    }
}

#[test]
fn truncated_file() {
    let b = bytes("mlp");
    let e = parse_program(&b[..30]).unwrap_err();
    assert!(matches!(e, FormatError::TooShort { len: 30, .. }), "{e}");
    let e = parse_program(&b[..b.len() - 7]).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
}

#[test]
fn wrong_identifier() {
    let mut b = bytes("mlp");
    b[4..8].copy_from_slice(b"XXXX");
    let e = parse_program(&b).unwrap_err();
    assert!(matches!(e, FormatError::Identifier { .. }), "{e}");
    assert!(e.to_string().contains("XXXX"));
    b[4..8].copy_from_slice(b"ET13");
    let e = parse_program(&b).unwrap_err();
    assert!(e.to_string().contains("incompatible schema version"), "{e}");
}

#[test]
fn corrupted_header_offsets() {
    let mut b = bytes("mlp");
    assert_eq!(&b[8..12], b"eh00");
    b[24..32].copy_from_slice(&u64::MAX.to_le_bytes()); // segment_base_offset
    let e = parse_program(&b).unwrap_err();
    assert!(matches!(e, FormatError::Header { .. }), "{e}");
    let mut b = bytes("mlp");
    b[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes()); // program_size
    let e = parse_program(&b).unwrap_err();
    assert!(e.to_string().contains("program_size"), "{e}");
    let mut b = bytes("mlp");
    let bad_root = b.len() as u32 + 100;
    b[0..4].copy_from_slice(&bad_root.to_le_bytes()); // root offset
    assert!(parse_program(&b).is_err());
}

#[test]
fn unknown_union_tag() {
    let mut b = bytes("mlp");
    let (fb, v) = values(&b);
    let pos = field(&v.table(fb, 3).unwrap(), 0, 1);
    b[pos] = 42;
    invalid_at(
        parse_program(&b).unwrap_err(),
        "values[3]",
        "unknown EValue union tag 42",
    );
}

#[test]
fn out_of_range_value_index() {
    let mut b = bytes("mlp");
    let plan = plan0(&b);
    let fb = Fb::new(&b);
    let chain = plan.vector(5, 4).unwrap().unwrap().table(fb, 0).unwrap();
    let ins = chain.vector(2, 4).unwrap().unwrap().table(fb, 0).unwrap();
    let call = ins.table(1).unwrap().unwrap();
    let args = call.vector(1, 4).unwrap().unwrap();
    let pos = args.pos(1, 4);
    b[pos..pos + 4].copy_from_slice(&9999i32.to_le_bytes());
    invalid_at(
        parse_program(&b).unwrap_err(),
        "instructions[0].args[1]",
        "value index 9999 out of range",
    );
}

#[test]
fn out_of_range_constant_buffer_index() {
    let mut b = bytes("mlp");
    let vi = find_value(&b, 5, |t| t.u32_or(5, 0).unwrap() > 0);
    let (fb, v) = values(&b);
    let tensor = v.table(fb, vi).unwrap().table(1).unwrap().unwrap();
    let pos = field(&tensor, 5, 4);
    b[pos..pos + 4].copy_from_slice(&777u32.to_le_bytes());
    invalid_at(
        parse_program(&b).unwrap_err(),
        &format!("values[{vi}]"),
        "buffer index 777 out of range",
    );
}

#[test]
fn memory_plan_outside_arena() {
    let mut b = bytes("mlp");
    let vi = find_value(&b, 5, |t| {
        t.table(6)
            .unwrap()
            .is_some_and(|a| a.field(1, 4).unwrap().is_some())
    });
    let (fb, v) = values(&b);
    let alloc = v
        .table(fb, vi)
        .unwrap()
        .table(1)
        .unwrap()
        .unwrap()
        .table(6)
        .unwrap()
        .unwrap();
    let pos = field(&alloc, 1, 4);
    b[pos..pos + 4].copy_from_slice(&0x7fff_0000u32.to_le_bytes());
    invalid_at(
        parse_program(&b).unwrap_err(),
        &format!("values[{vi}]"),
        "does not fit in arena",
    );

    let mut b = bytes("mlp");
    let (fb, v) = values(&b);
    let alloc = v
        .table(fb, vi)
        .unwrap()
        .table(1)
        .unwrap()
        .unwrap()
        .table(6)
        .unwrap()
        .unwrap();
    let pos = field(&alloc, 0, 4);
    b[pos..pos + 4].copy_from_slice(&9u32.to_le_bytes());
    invalid_at(
        parse_program(&b).unwrap_err(),
        "memory_id",
        "not a planned arena",
    );
}

#[test]
fn segment_out_of_file() {
    let mut b = bytes("mlp");
    let fb = Fb::new(&b);
    let seg = fb
        .root()
        .unwrap()
        .vector(4, 4)
        .unwrap()
        .unwrap()
        .table(fb, 0)
        .unwrap();
    let pos = field(&seg, 1, 8); // size
    b[pos..pos + 8].copy_from_slice(&(1u64 << 50).to_le_bytes());
    invalid_at(
        parse_program(&b).unwrap_err(),
        "segments[0]",
        "outside the file",
    );
}

#[test]
fn schema_version_too_new() {
    // A minimal FlatBuffer: root table with only `version = 1`.
    let mut b = vec![0u8; 64];
    b[0..4].copy_from_slice(&16u32.to_le_bytes()); // root table at 16
    b[4..8].copy_from_slice(b"ET12");
    b[8..14].copy_from_slice(&[6, 0, 8, 0, 4, 0]); // vtable: 6 bytes, table 8 bytes, field 0 at +4
    b[16..20].copy_from_slice(&8i32.to_le_bytes()); // soffset to the vtable at 8
    b[20..24].copy_from_slice(&1u32.to_le_bytes()); // version
    let e = parse_program(&b).unwrap_err();
    assert_eq!(
        e,
        FormatError::Version {
            found: 1,
            supported: 0
        }
    );
}

/// A registry with a do-nothing kernel for every operator of `program`, to test the
/// executor's own checks independently of kernel coverage.
fn stub_registry(program: &Program) -> Registry {
    let mut reg = Registry::new();
    for name in program.method_names().map(String::from).collect::<Vec<_>>() {
        for (op, _) in program.method_meta(&name).unwrap().operators {
            reg.register(&op, |_| Ok(()));
        }
    }
    reg
}

fn load(case: &str) -> Module {
    let m = Module::from_file(fixture(case)).unwrap();
    let reg = stub_registry(m.program());
    m.with_registry(reg)
}

fn f32_array(shape: &[usize]) -> NpyArray {
    let n: usize = shape.iter().product();
    NpyArray {
        dtype: ScalarType::Float,
        shape: shape.to_vec(),
        data: vec![0u8; n * 4],
    }
}

#[test]
fn wrong_number_of_inputs() {
    let mut m = load("add");
    let a = f32_array(&[2, 3]);
    let meta = m.method_meta("forward").unwrap();
    let shape = match &meta.inputs[0] {
        pteron::IoInfo::Tensor(t) => t.sizes.clone(),
        _ => unreachable!(),
    };
    let a = if a.shape == shape {
        a
    } else {
        f32_array(&shape)
    };
    let e = m.run("forward", &[a.as_tensor().unwrap()]).unwrap_err();
    assert!(e.to_string().contains("takes 2 inputs, 1 given"), "{e}");
    let e = m
        .run(
            "forward",
            &[
                a.as_tensor().unwrap(),
                a.as_tensor().unwrap(),
                a.as_tensor().unwrap(),
            ],
        )
        .unwrap_err();
    assert!(e.to_string().contains("takes 2 inputs, 3 given"), "{e}");
}

#[test]
fn wrong_input_dtype_and_shape() {
    let program = Program::load(pteron::bytes_from_vec(bytes("dynamic_batch_mlp"))).unwrap();
    let meta = program.method_meta("forward").unwrap();
    let t = match &meta.inputs[0] {
        pteron::IoInfo::Tensor(t) => t.clone(),
        _ => unreachable!(),
    };
    assert_eq!(t.dynamism, pteron::ShapeDynamism::DynamicBound);
    let mut m = pteron::Method::load(&program, "forward", &stub_registry(&program)).unwrap();
    let ints = NpyArray {
        dtype: ScalarType::Long,
        shape: t.sizes.clone(),
        data: vec![0u8; t.sizes.iter().product::<usize>() * 8],
    };
    let e = m.set_input(0, ints.as_tensor().unwrap()).unwrap_err();
    assert!(
        e.to_string().contains("expected dtype float32, got int64"),
        "{e}"
    );
    let mut big = t.sizes.clone();
    big[0] += 1;
    let e = m
        .set_input(0, f32_array(&big).as_tensor().unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("does not fit"), "{e}");
    let e = m
        .set_input(0, f32_array(&[1]).as_tensor().unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("expected rank"), "{e}");
    let e = m.execute().unwrap_err();
    assert!(e.to_string().contains("has not been set"), "{e}");
}

#[test]
fn missing_kernels_are_all_listed() {
    let program = Program::load(pteron::bytes_from_vec(bytes("mlp"))).unwrap();
    let e = pteron::Method::load(&program, "forward", &Registry::new())
        .err()
        .expect("load fails");
    match &e {
        Error::MissingKernels { method, missing } => {
            assert_eq!(method, "forward");
            let meta = program.method_meta("forward").unwrap();
            let total: usize = meta.operators.iter().map(|(_, n)| n).sum();
            assert_eq!(missing.len(), total, "every kernel call is reported");
        }
        other => panic!("expected MissingKernels, got {other}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("aten::addmm.out") && msg.contains("instruction"),
        "{msg}"
    );
}

#[test]
fn unknown_method() {
    let mut m = load("add");
    let e = m.method("nope").err().unwrap();
    assert!(
        e.to_string()
            .contains("method 'nope' not found; the program has: forward"),
        "{e}"
    );
}

#[test]
fn missing_external_data() {
    let mut m = load("external_weights");
    let e = m.method("forward").err().unwrap();
    assert!(e.to_string().contains("needs an external data file"), "{e}");
}

#[test]
fn npy_that_is_not_one() {
    let e = pteron::npy::parse_npy(b"PK\x03\x04 this is a zip file", "x.npy").unwrap_err();
    assert!(e.to_string().contains("not an .npy file"), "{e}");
}

/// Deterministic xorshift mutations of real programs: parsing, loading and running a
/// corrupted program must return errors, never panic.
#[test]
fn random_corruption_never_panics() {
    let cases = [
        "mlp",
        "add",
        "softmax",
        "dynamic_seq",
        "zoo_shape",
        "mobilenet_v2",
    ];
    let reg = pteron::default_registry();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let iters: usize = std::env::var("PTERON_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let (mut parsed_ok, mut rejected) = (0, 0);
    for case in cases {
        let original = bytes(case);
        for _ in 0..iters {
            let mut b = original.clone();
            let flips = 1 + (rnd() % 4) as usize;
            for _ in 0..flips {
                // Bias towards the FlatBuffer part, where structure lives.
                let limit = if rnd() % 4 == 0 {
                    b.len()
                } else {
                    b.len().min(4096)
                };
                let pos = (rnd() as usize) % limit;
                b[pos] = rnd() as u8;
            }
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let Ok(p) = Program::load(pteron::bytes_from_vec(b)) else {
                    return false;
                };
                let Ok(mut m) = pteron::Method::load(&p, "forward", &reg) else {
                    return true;
                };
                let meta = p.method_meta("forward").unwrap();
                let inputs: Vec<NpyArray> = meta
                    .inputs
                    .iter()
                    .filter_map(|io| match io {
                        pteron::IoInfo::Tensor(t) => Some(NpyArray {
                            dtype: t.dtype,
                            shape: t.sizes.clone(),
                            data: vec![0u8; t.nbytes],
                        }),
                        _ => None,
                    })
                    .collect();
                for (i, a) in inputs.iter().enumerate() {
                    if m.set_input(i, a.as_tensor().unwrap()).is_err() {
                        return true;
                    }
                }
                let _ = m.execute();
                true
            }));
            match r {
                Ok(true) => parsed_ok += 1,
                Ok(false) => rejected += 1,
                Err(_) => panic!("a corrupted '{case}' program made pteron panic"),
            }
        }
    }
    eprintln!(
        "corruption: {rejected} rejected at parse, {parsed_ok} parsed (then loaded/ran or errored)"
    );
}

#[test]
fn delegate_without_backend() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/xnnpack_linear.pte");
    let program = Program::load(pteron::bytes_from_vec(std::fs::read(p).unwrap())).unwrap();
    let e = pteron::Method::load(&program, "forward", &Registry::new())
        .err()
        .expect("load fails");
    match &e {
        Error::BackendNotFound {
            backend, delegate, ..
        } => {
            assert_eq!(backend, "XnnpackBackend");
            assert_eq!(*delegate, 0);
        }
        other => panic!("expected BackendNotFound, got {other}"),
    }
    assert!(e.to_string().contains("not registered"), "{e}");
}

#[test]
fn caller_provided_arenas_are_checked_and_used() {
    let program = Program::load(pteron::bytes_from_vec(bytes("mlp"))).unwrap();
    let reg = stub_registry(&program);
    let sizes = program.method_meta("forward").unwrap().planned_buffers;
    let small: Vec<pteron::AlignedBuf> = sizes
        .iter()
        .map(|&s| pteron::AlignedBuf::zeroed(s as usize / 2))
        .collect();
    let e = pteron::Method::load_with_arenas(&program, "forward", &reg, Some(small))
        .err()
        .unwrap();
    assert!(e.to_string().contains("needs"), "{e}");
    let ok: Vec<pteron::AlignedBuf> = sizes
        .iter()
        .map(|&s| pteron::AlignedBuf::zeroed(s as usize + 64))
        .collect();
    let m = pteron::Method::load_with_arenas(&program, "forward", &reg, Some(ok)).unwrap();
    let back = m.into_arenas();
    assert_eq!(back.len(), sizes.len());
    assert_eq!(back[0].len(), sizes[0] as usize + 64);
}

/// Programs that once made pteron panic (found by `cargo fuzz run load_method`): each
/// must load, run or fail with an error, never panic.
#[test]
fn fuzz_regressions_do_not_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz_regressions");
    let reg = pteron::default_registry();
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        n += 1;
        let Ok(p) = Program::load(pteron::bytes_from_vec(std::fs::read(&path).unwrap())) else {
            continue;
        };
        let names: Vec<String> = p.method_names().map(String::from).collect();
        for name in names {
            let Ok(mut m) = pteron::Method::load(&p, &name, &reg) else {
                continue;
            };
            let meta = p.method_meta(&name).unwrap();
            let inputs: Vec<NpyArray> = meta
                .inputs
                .iter()
                .filter_map(|io| match io {
                    pteron::IoInfo::Tensor(t) => Some(NpyArray {
                        dtype: t.dtype,
                        shape: t.sizes.clone(),
                        data: vec![0u8; t.nbytes],
                    }),
                    _ => None,
                })
                .collect();
            if inputs
                .iter()
                .enumerate()
                .all(|(i, a)| m.set_input(i, a.as_tensor().unwrap()).is_ok())
            {
                let _ = m.execute();
            }
        }
    }
    assert!(n > 0);
}

/// A planned arena size the allocator refuses (1 PiB) is a typed load error naming
/// the arena, not an abort.
#[test]
fn absurd_arena_size_is_an_error() {
    let mut b = bytes("mlp");
    let sizes = plan0(&b)
        .vector(8, 8)
        .unwrap()
        .expect("non_const_buffer_sizes");
    assert!(sizes.len >= 2, "mlp plans an arena");
    let pos = sizes.pos(1, 8);
    b[pos..pos + 8].copy_from_slice(&(1i64 << 50).to_le_bytes());
    let p = Program::load(pteron::bytes_from_vec(b)).expect("sizes are not checked at parse");
    let reg = pteron::default_registry();
    let err = match pteron::Method::load(&p, "forward", &reg) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a 1 PiB arena loaded"),
    };
    assert!(
        err.contains("arena 1") && err.contains("cannot be allocated"),
        "{err}"
    );
}
