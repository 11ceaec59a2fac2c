//! The small-tensor fast paths (elementwise ops on dense operands without a broadcast
//! plan; view copies of one dense block as a plain copy) against naive index-based
//! references, on the shapes that take them and on neighbours that must not.

use proptest::prelude::*;
use pteron_ops::registry;
use pteron_runtime::testing::{run_op, TestArg, TestTensor};
use pteron_runtime::ScalarType;

/// Row-major strides of `dims`.
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// Numpy broadcast shape of `a` and `b`.
fn broadcast(a: &[usize], b: &[usize]) -> Vec<usize> {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| {
            let da = if i + a.len() >= n {
                a[i + a.len() - n]
            } else {
                1
            };
            let db = if i + b.len() >= n {
                b[i + b.len() - n]
            } else {
                1
            };
            assert!(da == db || da == 1 || db == 1, "not broadcastable");
            da.max(db)
        })
        .collect()
}

/// Offset into a row-major tensor of shape `dims` for output index `idx` (rank of
/// the broadcast output), with broadcasting.
fn bcast_offset(dims: &[usize], idx: &[usize]) -> usize {
    let st = strides(dims);
    let off = idx.len() - dims.len();
    (0..dims.len())
        .map(|i| {
            if dims[i] == 1 {
                0
            } else {
                idx[off + i] * st[i]
            }
        })
        .sum()
}

/// `a op b` with broadcasting, elementwise in f32, in row-major output order.
fn reference(
    a: &[usize],
    av: &[f32],
    b: &[usize],
    bv: &[f32],
    op: fn(f32, f32) -> f32,
) -> (Vec<usize>, Vec<f32>) {
    let out = broadcast(a, b);
    let n: usize = out.iter().product();
    let st = strides(&out);
    let vals = (0..n)
        .map(|lin| {
            let idx: Vec<usize> = (0..out.len())
                .map(|i| (lin / st[i]) % out[i].max(1))
                .collect();
            op(av[bcast_offset(a, &idx)], bv[bcast_offset(b, &idx)])
        })
        .collect();
    (out, vals)
}

fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 37.0 - 13.0
        })
        .collect()
}

/// Runs `name(a, b, out)` (the `.out` binary form with `alpha` for add/sub) and
/// returns the output's shape and logical values.
fn run_binary(
    name: &str,
    a: TestTensor,
    b: TestTensor,
    out_bound: &[usize],
) -> (Vec<usize>, Vec<f32>) {
    let reg = registry();
    let mut args = vec![TestArg::Tensor(a), TestArg::Tensor(b)];
    if name != "aten::mul.out" {
        args.push(TestArg::Int(1));
    }
    let o = args.len();
    args.push(TestArg::Tensor(
        TestTensor::out(ScalarType::Float, out_bound).dynamic(),
    ));
    args.push(TestArg::Ref(o));
    let res = run_op(&reg, name, args).unwrap();
    let out = res[o].tensor();
    (out.sizes.clone(), out.to_logical_vec::<f32>())
}

fn check(name: &str, op: fn(f32, f32) -> f32, a: &[usize], b: &[usize]) {
    let (an, bn) = (a.iter().product(), b.iter().product());
    let (av, bv) = (values(an, 1), values(bn, 7));
    let (shape, want) = reference(a, &av, b, &bv, op);
    let (got_shape, got) = run_binary(name, TestTensor::new(a, av), TestTensor::new(b, bv), &shape);
    assert_eq!(got_shape, shape, "{name} {a:?} {b:?}");
    assert_eq!(got, want, "{name} {a:?} {b:?}");
}

#[test]
fn dense_operands_match_reference() {
    let cases: &[(&[usize], &[usize])] = &[
        // Same shape, leading ones on one side, single elements: the fast path.
        (&[1, 1, 288], &[1, 1, 288]),
        (&[1, 1, 288], &[288]),
        (&[288], &[1, 1, 288]),
        (&[1, 1, 288], &[1, 1, 1]),
        (&[1], &[2, 3]),
        (&[2, 3], &[]),
        (&[1, 3], &[1, 1, 3]),
        // A trailing block repeated over leading dims (rotary tables).
        (&[1, 1, 6, 24], &[1, 1, 1, 24]),
        (&[1, 1, 1, 24], &[1, 1, 6, 24]),
        (&[2, 3, 4], &[4]),
        (&[2, 3, 4], &[3, 4]),
        (&[5, 1, 4], &[1, 4]),
        // Neighbours that need the broadcast plan.
        (&[1, 1, 1, 1], &[3]),
        (&[2, 3, 4], &[1, 3, 1]),
        (&[2, 3, 4], &[2, 1, 4]),
        (&[6, 24], &[1, 1, 1, 24]),
        (&[2, 3], &[3, 1, 1]),
        (&[1], &[1]),
        (&[2, 1], &[1, 2]),
    ];
    for &(a, b) in cases {
        check("aten::mul.out", |x, y| x * y, a, b);
        check("aten::add.out", |x, y| x + y, a, b);
        check("aten::sub.out", |x, y| x - y, a, b);
    }
}

#[test]
fn dense_path_respects_dim_order() {
    // A channels-last operand of the same logical shape must not be read flat.
    let dims = [1, 2, 2, 3];
    let av = values(12, 3);
    let bv = values(12, 5);
    let (shape, want) = reference(&dims, &av, &dims, &bv, |x, y| x * y);
    let a = TestTensor::new(&dims, av.clone());
    // `with_dim_order` lays the logical values out channels-last.
    let b = TestTensor::new(&dims, bv).with_dim_order(&[0, 2, 3, 1]);
    let (got_shape, got) = run_binary("aten::mul.out", a, b, &shape);
    assert_eq!(got_shape, shape);
    assert_eq!(got, want);
}

#[test]
fn dense_path_resizes_between_calls() {
    // The same op on growing then shrinking shapes (prefill then decode).
    for n in [5, 1, 7, 3] {
        check("aten::mul.out", |x, y| x * y, &[1, n, 8], &[8]);
        check("aten::mul.out", |x, y| x * y, &[1, n, 8], &[1, n, 8]);
    }
}

fn dims_strategy() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    // A core shape, then each side gets leading ones or collapses to one element.
    (
        prop::collection::vec(1usize..5, 0..4),
        0usize..3,
        0usize..3,
        0usize..5,
    )
        .prop_map(|(core, la, lb, mode)| {
            let mut a = vec![1; la];
            a.extend(&core);
            let mut b = vec![1; lb];
            b.extend(&core);
            match mode {
                0 => (a, vec![1; lb]),
                1 => (vec![1; la], b),
                // b keeps only a trailing block of the core (a repeated row).
                2 => {
                    let keep = core.len() / 2;
                    let mut b = vec![1; lb];
                    b.extend(&core[core.len() - keep..]);
                    (a, b)
                }
                _ => (a, b),
            }
        })
}

proptest! {
    #[test]
    fn dense_operands_random((a, b) in dims_strategy()) {
        check("aten::mul.out", |x, y| x * y, &a, &b);
        check("aten::sub.out", |x, y| x - y, &a, &b);
    }
}

/// Gathers the `[start, start+len)` slice of `x` (shape `dims`) along `dim`.
fn naive_slice(dims: &[usize], x: &[f32], dim: usize, start: usize, len: usize) -> Vec<f32> {
    let outer: usize = dims[..dim].iter().product();
    let inner: usize = dims[dim + 1..].iter().product();
    let mut out = Vec::new();
    for o in 0..outer {
        for i in start..start + len {
            let base = (o * dims[dim] + i) * inner;
            out.extend_from_slice(&x[base..base + inner]);
        }
    }
    out
}

#[test]
fn dense_views_match_reference() {
    let reg = registry();
    let dims = [3usize, 4, 5];
    let x = values(60, 11);
    // select along dim 0 (one dense block) and dim 2 (strided).
    for (dim, index) in [(0usize, 2usize), (1, 3), (2, 1)] {
        let res = run_op(
            &reg,
            "aten::select_copy.int_out",
            vec![
                TestArg::Tensor(TestTensor::new(&dims, x.clone())),
                TestArg::Int(dim as i64),
                TestArg::Int(index as i64),
                TestArg::Tensor(
                    TestTensor::out(
                        ScalarType::Float,
                        &dims
                            .iter()
                            .enumerate()
                            .filter(|&(k, _)| k != dim)
                            .map(|(_, &d)| d)
                            .collect::<Vec<_>>(),
                    )
                    .dynamic(),
                ),
                TestArg::Ref(3),
            ],
        )
        .unwrap();
        let got = res[3].tensor().to_logical_vec::<f32>();
        assert_eq!(
            got,
            naive_slice(&dims, &x, dim, index, 1),
            "select dim {dim}"
        );
    }
    // slice along each dim with step 1 (dense on dim 0 only) and on dim 0 past a
    // shape change between calls.
    for (dim, start, end) in [(0usize, 1usize, 3usize), (1, 0, 2), (2, 2, 5), (0, 0, 1)] {
        let mut bound = dims.to_vec();
        bound[dim] = end - start;
        let res = run_op(
            &reg,
            "aten::slice_copy.Tensor_out",
            vec![
                TestArg::Tensor(TestTensor::new(&dims, x.clone())),
                TestArg::Int(dim as i64),
                TestArg::Int(start as i64),
                TestArg::Int(end as i64),
                TestArg::Int(1),
                TestArg::Tensor(TestTensor::out(ScalarType::Float, &bound).dynamic()),
                TestArg::Ref(5),
            ],
        )
        .unwrap();
        let got = res[5].tensor().to_logical_vec::<f32>();
        assert_eq!(
            got,
            naive_slice(&dims, &x, dim, start, end - start),
            "slice dim {dim}"
        );
    }
    // unsqueeze and squeeze keep the data; a channels-last input is not read flat.
    let res = run_op(
        &reg,
        "aten::unsqueeze_copy.out",
        vec![
            TestArg::Tensor(TestTensor::new(&dims, x.clone())),
            TestArg::Int(1),
            TestArg::Tensor(TestTensor::out(ScalarType::Float, &[3, 1, 4, 5])),
            TestArg::Ref(2),
        ],
    )
    .unwrap();
    assert_eq!(res[2].tensor().to_logical_vec::<f32>(), x);
    let res = run_op(
        &reg,
        "aten::squeeze_copy.dims_out",
        vec![
            TestArg::Tensor(
                TestTensor::new(&[1, 3, 4, 5], x.clone()).with_dim_order(&[0, 2, 3, 1]),
            ),
            TestArg::IntList(vec![0]),
            TestArg::Tensor(TestTensor::out(ScalarType::Float, &[3, 4, 5])),
            TestArg::Ref(2),
        ],
    )
    .unwrap();
    assert_eq!(res[2].tensor().to_logical_vec::<f32>(), x);
}
