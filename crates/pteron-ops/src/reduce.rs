//! Reductions (sum/mean/prod/amax/amin/max/min/argmax/argmin/any/all/var/std),
//! scans (cumsum/cumprod), topk/sort, and creation ops arange/empty.
//!
//! One driver runs every reduction: the reduced and kept dims are coalesced, then
//! either each output reduces one contiguous run (tight loop), or, when the kept
//! inner dim is contiguous, rows are accumulated 64 columns at a time, or (any other
//! layout) a strided walk is used.
#![allow(clippy::needless_range_loop)] // loops index several parallel arrays

use half::{bf16, f16};
use pteron_runtime::{
    Kernel, KernelCtx, KernelError, PrepareCtx, Registry, Scalar, ScalarType, TensorMut, TensorRef,
};

use crate::dispatch_all;
use crate::shape::engine::{tm, ts, walk2};
use crate::util::{norm_dim, Num};

pub(crate) fn register(reg: &mut Registry) {
    reg.register("aten::sum.IntList_out", sum_out);
    reg.register("aten::sum.out", sum_all_out);
    reg.register("aten::mean.out", mean_out);
    reg.register("aten::mean.dtype_out", mean_dtype_out);
    reg.register("aten::prod.out", prod_all_out);
    reg.register("aten::prod.int_out", prod_int_out);
    reg.register("aten::amax.out", amax_out);
    reg.register("aten::amin.out", amin_out);
    reg.register("aten::max.dim_max", max_dim);
    reg.register("aten::min.dim_min", min_dim);
    reg.register("aten::max.unary_out", max_unary);
    reg.register("aten::min.unary_out", min_unary);
    reg.register("aten::argmax.out", argmax_out);
    reg.register("aten::argmin.out", argmin_out);
    reg.register("aten::any.out", any_dim_out);
    reg.register("aten::any.all_out", any_all_out);
    reg.register("aten::any.dims_out", any_dims_out);
    reg.register("aten::all.out", all_dim_out);
    reg.register("aten::all.all_out", all_all_out);
    reg.register("aten::all.dims_out", all_dims_out);
    reg.register("aten::var.correction_out", var_correction_out);
    reg.register("aten::var.out", var_out);
    reg.register("aten::std.correction_out", std_correction_out);
    reg.register("aten::std.out", std_out);
    reg.register("aten::var_mean.correction_out", var_mean_correction_out);
    reg.register("aten::cumsum.out", cumsum_out);
    reg.register("aten::cumprod.out", cumprod_out);
    reg.register_factory("aten::topk.values", topk_factory);
    reg.register_factory("aten::sort.values", sort_factory);
    reg.register("aten::arange.out", arange_out);
    reg.register("aten::arange.start_out", arange_start_out);
    reg.register("aten::empty.out", empty_out);
    reg.register("dim_order_ops::_empty_dim_order.out", empty_dim_order_out);
}

fn err(op: &str, e: KernelError) -> KernelError {
    KernelError::new(e.kind, format!("{op}: {}", e.msg))
}

#[inline]
#[allow(clippy::eq_op)]
fn is_nan<T: PartialEq>(v: T) -> bool {
    v != v
}

// ---------------------------------------------------------------------------
// Output writer

/// A typed view of an output for writing accumulator values of any kind.
enum OutW<'a> {
    F32(&'a mut [f32]),
    F64(&'a mut [f64]),
    F16(&'a mut [f16]),
    BF16(&'a mut [bf16]),
    I8(&'a mut [i8]),
    I16(&'a mut [i16]),
    I32(&'a mut [i32]),
    I64(&'a mut [i64]),
    U8(&'a mut [u8]),
    Bool(&'a mut [u8]),
}

impl<'a> OutW<'a> {
    fn new(out: &'a mut TensorMut<'_>) -> Result<Self, KernelError> {
        Ok(match out.dtype() {
            ScalarType::Float => OutW::F32(tm(out)?),
            ScalarType::Double => OutW::F64(tm(out)?),
            ScalarType::Half => OutW::F16(tm(out)?),
            ScalarType::BFloat16 => OutW::BF16(tm(out)?),
            ScalarType::Char => OutW::I8(tm(out)?),
            ScalarType::Short => OutW::I16(tm(out)?),
            ScalarType::Int => OutW::I32(tm(out)?),
            ScalarType::Long => OutW::I64(tm(out)?),
            ScalarType::Byte => OutW::U8(tm(out)?),
            ScalarType::Bool => OutW::Bool(tm(out)?),
            other => {
                return Err(KernelError::dtype(format!(
                    "out dtype {other} is not supported"
                )))
            }
        })
    }
    #[inline]
    fn f(&mut self, i: usize, v: f64) {
        match self {
            OutW::F32(s) => s[i] = v as f32,
            OutW::F64(s) => s[i] = v,
            OutW::F16(s) => s[i] = f16::from_f64(v),
            OutW::BF16(s) => s[i] = bf16::from_f64(v),
            OutW::I8(s) => s[i] = v as i64 as i8,
            OutW::I16(s) => s[i] = v as i64 as i16,
            OutW::I32(s) => s[i] = v as i64 as i32,
            OutW::I64(s) => s[i] = v as i64,
            OutW::U8(s) => s[i] = v as i64 as u8,
            OutW::Bool(s) => s[i] = (v != 0.0) as u8,
        }
    }
    #[inline]
    fn i(&mut self, i: usize, v: i64) {
        match self {
            OutW::F32(s) => s[i] = v as f32,
            OutW::F64(s) => s[i] = v as f64,
            OutW::F16(s) => s[i] = f16::from_f64(v as f64),
            OutW::BF16(s) => s[i] = bf16::from_f64(v as f64),
            OutW::I8(s) => s[i] = v as i8,
            OutW::I16(s) => s[i] = v as i16,
            OutW::I32(s) => s[i] = v as i32,
            OutW::I64(s) => s[i] = v,
            OutW::U8(s) => s[i] = v as u8,
            OutW::Bool(s) => s[i] = (v != 0) as u8,
        }
    }
}

// ---------------------------------------------------------------------------
// Reduction plan and driver

/// A reduction: accumulator, per-element step (with the element's row-major index
/// among the reduced elements) and an optional fast contiguous-run step.
trait Red<T: Copy> {
    type Acc: Copy;
    fn init(&self) -> Self::Acc;
    fn step(&self, a: Self::Acc, v: T, i: usize) -> Self::Acc;
    fn run(&self, mut a: Self::Acc, s: &[T]) -> Self::Acc {
        for (i, &v) in s.iter().enumerate() {
            a = self.step(a, v, i);
        }
        a
    }
}

#[derive(Clone, Copy)]
struct Plan {
    kr: usize,
    kd: [usize; 16],
    ks: [isize; 16],
    ko: [isize; 16],
    rr: usize,
    rd: [usize; 16],
    rs: [isize; 16],
    /// Number of reduced elements per output.
    rn: usize,
}

/// Dims to reduce from an optional dim list (`None` or empty = all dims).
fn dim_mask(op: &str, dims: Option<&[i64]>, rank: usize) -> Result<[bool; 16], KernelError> {
    let mut m = [false; 16];
    match dims {
        Some(d) if !d.is_empty() => {
            for &v in d {
                let k = norm_dim(v, rank).map_err(|e| err(op, e))?;
                if rank > 0 {
                    if m[k] {
                        return Err(KernelError::invalid(format!(
                            "{op}: dim {k} appears more than once"
                        )));
                    }
                    m[k] = true;
                }
            }
        }
        _ => m[..rank].iter_mut().for_each(|v| *v = true),
    }
    Ok(m)
}

/// Output shape of a reduction.
fn out_shape(x: &[usize], red: &[bool; 16], keepdim: bool) -> ([usize; 16], usize) {
    let mut o = [0usize; 16];
    let mut n = 0;
    for (i, &s) in x.iter().enumerate() {
        if red[i] {
            if keepdim {
                o[n] = 1;
                n += 1;
            }
        } else {
            o[n] = s;
            n += 1;
        }
    }
    (o, n)
}

fn merge(n: &mut usize, d: &mut [usize; 16], a: &mut [isize; 16], b: Option<&mut [isize; 16]>) {
    let mut bb = [0isize; 16];
    let b = match b {
        Some(b) => b,
        None => &mut bb,
    };
    let mut m = 0usize;
    for k in 0..*n {
        if d[k] == 1 {
            continue;
        }
        if m > 0 {
            let p = m - 1;
            let s = d[k] as isize;
            if a[p] == a[k] * s && b[p] == b[k] * s {
                d[p] *= d[k];
                a[p] = a[k];
                b[p] = b[k];
                continue;
            }
        }
        d[m] = d[k];
        a[m] = a[k];
        b[m] = b[k];
        m += 1;
    }
    *n = m;
}

impl Plan {
    fn new(
        x: &TensorRef<'_>,
        red: &[bool; 16],
        out_st: &[usize; 16],
        keepdim: bool,
        order_free: bool,
    ) -> Plan {
        let xs = x.strides();
        let mut p = Plan {
            kr: 0,
            kd: [0; 16],
            ks: [0; 16],
            ko: [0; 16],
            rr: 0,
            rd: [0; 16],
            rs: [0; 16],
            rn: 1,
        };
        let mut oi = 0;
        for i in 0..x.dim() {
            if red[i] {
                p.rd[p.rr] = x.size(i);
                p.rs[p.rr] = xs[i] as isize;
                p.rr += 1;
                p.rn *= x.size(i);
                if keepdim {
                    oi += 1;
                }
            } else {
                p.kd[p.kr] = x.size(i);
                p.ks[p.kr] = xs[i] as isize;
                p.ko[p.kr] = out_st[oi] as isize;
                p.kr += 1;
                oi += 1;
            }
        }
        if order_free {
            for i in 1..p.rr {
                let mut j = i;
                while j > 0 && p.rs[j - 1] < p.rs[j] {
                    p.rd.swap(j - 1, j);
                    p.rs.swap(j - 1, j);
                    j -= 1;
                }
            }
        }
        merge(&mut p.kr, &mut p.kd, &mut p.ks, Some(&mut p.ko));
        merge(&mut p.rr, &mut p.rd, &mut p.rs, None);
        p
    }
}

const COLS: usize = 64;

/// Runs reduction `r` over `x` per `p`, calling `write(out_offset, acc)` once per output.
fn drive<T: Copy, R: Red<T>>(x: &[T], p: &Plan, r: &R, mut write: impl FnMut(usize, R::Acc)) {
    let (kd, ks, ko) = (&p.kd[..p.kr], &p.ks[..p.kr], &p.ko[..p.kr]);
    if p.rn == 0 {
        walk2(kd, ko, ko, 0, 0, |o, _| write(o as usize, r.init()));
        return;
    }
    // (A) every output reduces one contiguous run.
    if p.rr == 0 || (p.rr == 1 && p.rs[0] == 1) {
        let n = if p.rr == 0 { 1 } else { p.rd[0] };
        walk2(kd, ks, ko, 0, 0, |s, o| {
            let s = s as usize;
            write(o as usize, r.run(r.init(), &x[s..s + n]));
        });
        return;
    }
    let (rd, rs) = (&p.rd[..p.rr], &p.rs[..p.rr]);
    // (B) the kept inner dim is contiguous: accumulate rows, COLS columns at a time.
    if p.kr >= 1 && p.ks[p.kr - 1] == 1 {
        let last = p.kr - 1;
        let (w, ow) = (p.kd[last], p.ko[last]);
        walk2(&kd[..last], &ks[..last], &ko[..last], 0, 0, |s0, o0| {
            let mut c0 = 0;
            while c0 < w {
                let cw = (w - c0).min(COLS);
                let mut acc = [r.init(); COLS];
                let mut i = 0usize;
                let base = s0 + c0 as isize;
                walk2(rd, rs, rs, base, 0, |s, _| {
                    let row = &x[s as usize..s as usize + cw];
                    for (a, &v) in acc[..cw].iter_mut().zip(row) {
                        *a = r.step(*a, v, i);
                    }
                    i += 1;
                });
                for (c, a) in acc[..cw].iter().enumerate() {
                    write((o0 + (c0 + c) as isize * ow) as usize, *a);
                }
                c0 += cw;
            }
        });
        return;
    }
    // (C) strided walk.
    walk2(kd, ks, ko, 0, 0, |s0, o| {
        let mut a = r.init();
        let mut i = 0usize;
        walk2(rd, rs, rs, s0, 0, |s, _| {
            a = r.step(a, x[s as usize], i);
            i += 1;
        });
        write(o as usize, a);
    });
}

// ---------------------------------------------------------------------------
// Reducers

/// Sum with an `f32` accumulator (f32/f16/bf16 inputs), in one of ExecuTorch's
/// two orders (its results reproduced bit for bit):
/// * `lanes8 == false`: one addition after another in element order (its
///   portable `sum` and `mean`, and every strided reduction);
/// * `lanes8 == true`: a contiguous run in 8 lanes (element `i` into lane
///   `i mod 8` while 8 remain), the lanes added in order `((l0 + l1) + l2) + …`,
///   then the remaining elements one by one (its optimized `sum` over one
///   innermost dim).
struct SumF32 {
    lanes8: bool,
}
impl<T: Num> Red<T> for SumF32 {
    type Acc = f32;
    fn init(&self) -> f32 {
        0.0
    }
    #[inline(always)]
    fn step(&self, a: f32, v: T, _: usize) -> f32 {
        a + v.to_f32()
    }
    fn run(&self, a: f32, s: &[T]) -> f32 {
        if !self.lanes8 {
            return s.iter().fold(a, |a, &v| a + v.to_f32());
        }
        let mut lanes = [0f32; 8];
        let mut it = s.chunks_exact(8);
        for c in &mut it {
            for (l, &v) in lanes.iter_mut().zip(c) {
                *l += v.to_f32();
            }
        }
        let total = lanes[1..].iter().fold(lanes[0], |t, &l| t + l);
        let total = it.remainder().iter().fold(total, |t, &v| t + v.to_f32());
        a + total
    }
}

/// Sum with an `f64` accumulator.
struct SumF64;
impl<T: Num> Red<T> for SumF64 {
    type Acc = f64;
    fn init(&self) -> f64 {
        0.0
    }
    #[inline(always)]
    fn step(&self, a: f64, v: T, _: usize) -> f64 {
        a + v.to_f64()
    }
    fn run(&self, a: f64, s: &[T]) -> f64 {
        let mut lanes = [0f64; 4];
        let mut it = s.chunks_exact(4);
        for c in &mut it {
            for k in 0..4 {
                lanes[k] += c[k].to_f64();
            }
        }
        let mut rest = 0f64;
        for &v in it.remainder() {
            rest += v.to_f64();
        }
        a + ((lanes[0] + lanes[2]) + (lanes[1] + lanes[3])) + rest
    }
}

/// Integer sum (wrapping, `i64`).
struct SumI;
impl<T: Num> Red<T> for SumI {
    type Acc = i64;
    fn init(&self) -> i64 {
        0
    }
    #[inline(always)]
    fn step(&self, a: i64, v: T, _: usize) -> i64 {
        a.wrapping_add(v.to_i64())
    }
}

struct ProdF;
impl<T: Num> Red<T> for ProdF {
    type Acc = f64;
    fn init(&self) -> f64 {
        1.0
    }
    #[inline(always)]
    fn step(&self, a: f64, v: T, _: usize) -> f64 {
        a * v.to_f64()
    }
}
struct ProdI;
impl<T: Num> Red<T> for ProdI {
    type Acc = i64;
    fn init(&self) -> i64 {
        1
    }
    #[inline(always)]
    fn step(&self, a: i64, v: T, _: usize) -> i64 {
        a.wrapping_mul(v.to_i64())
    }
}

/// Max/min value with its first index; NaN wins and sticks.
struct Ext {
    max: bool,
}
impl<T: Num> Red<T> for Ext {
    type Acc = (T, i64);
    fn init(&self) -> (T, i64) {
        (T::zero(), -1)
    }
    #[inline(always)]
    fn step(&self, a: (T, i64), v: T, i: usize) -> (T, i64) {
        if a.1 < 0 {
            return (v, i as i64);
        }
        if is_nan(a.0) {
            return a;
        }
        let better = if self.max { v > a.0 } else { v < a.0 };
        if better || is_nan(v) {
            (v, i as i64)
        } else {
            a
        }
    }
}

/// amax/amin: like [`Ext`] without indices (order free).
struct ExtV {
    max: bool,
}
impl<T: Num> Red<T> for ExtV {
    type Acc = (T, bool);
    fn init(&self) -> (T, bool) {
        (T::zero(), false)
    }
    #[inline(always)]
    fn step(&self, a: (T, bool), v: T, _: usize) -> (T, bool) {
        if !a.1 {
            return (v, true);
        }
        if is_nan(a.0) {
            return a;
        }
        let better = if self.max { v > a.0 } else { v < a.0 };
        if better || is_nan(v) {
            (v, true)
        } else {
            a
        }
    }
}

struct AnyAll {
    any: bool,
}
impl<T: Num> Red<T> for AnyAll {
    type Acc = bool;
    fn init(&self) -> bool {
        !self.any
    }
    #[inline(always)]
    fn step(&self, a: bool, v: T, _: usize) -> bool {
        let nz = v != T::zero();
        if self.any {
            a | nz
        } else {
            a & nz
        }
    }
}

/// Welford mean/variance in `f64`: (count, mean, m2).
struct Welford;
impl<T: Num> Red<T> for Welford {
    type Acc = (f64, f64, f64);
    fn init(&self) -> (f64, f64, f64) {
        (0.0, 0.0, 0.0)
    }
    #[inline(always)]
    fn step(&self, a: (f64, f64, f64), v: T, _: usize) -> (f64, f64, f64) {
        let x = v.to_f64();
        let n = a.0 + 1.0;
        let d = x - a.1;
        let mean = a.1 + d / n;
        (n, mean, a.2 + d * (x - mean))
    }
    fn run(&self, a: (f64, f64, f64), s: &[T]) -> (f64, f64, f64) {
        // Two passes over a contiguous run (more accurate and vectorisable), merged.
        if s.is_empty() {
            return a;
        }
        let n = s.len() as f64;
        let mut sum = 0f64;
        for &v in s {
            sum += v.to_f64();
        }
        let mean = sum / n;
        let mut m2 = 0f64;
        for &v in s {
            let d = v.to_f64() - mean;
            m2 += d * d;
        }
        if a.0 == 0.0 {
            return (n, mean, m2);
        }
        let tot = a.0 + n;
        let d = mean - a.1;
        (tot, a.1 + d * n / tot, a.2 + m2 + d * d * a.0 * n / tot)
    }
}

// ---------------------------------------------------------------------------
// Kernels

/// Reads an optional dim list argument into an array.
fn dims_arg(ctx: &KernelCtx<'_>, arg: usize) -> Result<([i64; 16], Option<usize>), KernelError> {
    match ctx.opt_int_list(arg)? {
        None => Ok(([0; 16], None)),
        Some(l) => {
            let (a, n) = l.to_array()?;
            Ok((a, Some(n)))
        }
    }
}

/// Resizes `out` to the reduction's shape and builds the plan.
fn setup(
    op: &str,
    x: &TensorRef<'_>,
    out: &mut TensorMut<'_>,
    dims: Option<&[i64]>,
    keepdim: bool,
    order_free: bool,
) -> Result<Plan, KernelError> {
    let red = dim_mask(op, dims, x.dim())?;
    let (os, n) = out_shape(x.sizes(), &red, keepdim);
    out.resize(&os[..n])?;
    Ok(Plan::new(x, &red, &out.strides(), keepdim, order_free))
}

#[derive(Clone, Copy, PartialEq)]
enum SumKind {
    Sum,
    Mean,
    Prod,
}

fn sum_like(
    op: &str,
    x: &TensorRef<'_>,
    out: &mut TensorMut<'_>,
    dims: Option<&[i64]>,
    keepdim: bool,
    dtype: Option<ScalarType>,
    kind: SumKind,
) -> Result<(), KernelError> {
    if let Some(dt) = dtype {
        if dt != out.dtype() {
            return Err(KernelError::dtype(format!(
                "{op}: dtype {dt} != out dtype {}",
                out.dtype()
            )));
        }
    }
    let od = out.dtype();
    let out_float = od.is_floating();
    let in_float = x.dtype().is_floating();
    if kind == SumKind::Mean && !out_float {
        return Err(KernelError::dtype(format!(
            "{op}: out dtype must be floating, got {od}"
        )));
    }
    if in_float && !out_float {
        return Err(KernelError::dtype(format!(
            "{op}: cannot reduce {} input into {od} out",
            x.dtype()
        )));
    }
    if od == ScalarType::Bool && kind != SumKind::Mean {
        return Err(KernelError::dtype(format!(
            "{op}: Bool out is not supported"
        )));
    }
    let p = setup(op, x, out, dims, keepdim, true)?;
    let rn = p.rn as f64;
    let mut w = OutW::new(out)?;
    let wide = od == ScalarType::Double || x.dtype() == ScalarType::Double || !in_float;
    // ExecuTorch's optimized `sum` (8 lanes) takes one listed dim of a contiguous
    // input into the same dtype; everything else goes to its portable kernel.
    let lanes8 = dims.is_some_and(|d| d.len() == 1) && x.dtype() == od && x.is_contiguous();
    dispatch_all!(x.dtype(), T => {
        let xv = ts::<T>(x)?;
        match kind {
            SumKind::Prod if out_float => drive(xv, &p, &ProdF, |o, a| w.f(o, a)),
            SumKind::Prod => drive(xv, &p, &ProdI, |o, a| w.i(o, a)),
            SumKind::Mean if wide => drive(xv, &p, &SumF64, |o, a| w.f(o, a / rn)),
            SumKind::Mean => drive(xv, &p, &SumF32 { lanes8: false }, |o, a| w.f(o, (a / rn as f32) as f64)),
            SumKind::Sum if !out_float => drive(xv, &p, &SumI, |o, a| w.i(o, a)),
            SumKind::Sum if wide => drive(xv, &p, &SumF64, |o, a| w.f(o, a)),
            SumKind::Sum => drive(xv, &p, &SumF32 { lanes8 }, |o, a| w.f(o, a as f64)),
        }
    });
    Ok(())
}

/// `sum.IntList_out(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None, Tensor(a!) out)`.
fn sum_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(6)?;
    let mut out = ctx.out(4)?;
    let x = ctx.tensor(0)?;
    let (d, n) = dims_arg(ctx, 1)?;
    sum_like(
        "sum",
        &x,
        &mut out,
        n.map(|n| &d[..n]),
        ctx.bool(2)?,
        ctx.opt_dtype(3)?,
        SumKind::Sum,
    )
}

/// `sum.out(Tensor self, *, ScalarType? dtype=None, Tensor(a!) out)`.
fn sum_all_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(4)?;
    let mut out = ctx.out(2)?;
    let x = ctx.tensor(0)?;
    sum_like(
        "sum",
        &x,
        &mut out,
        None,
        false,
        ctx.opt_dtype(1)?,
        SumKind::Sum,
    )
}

/// `mean.out(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None, Tensor(a!) out)`.
fn mean_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(6)?;
    let mut out = ctx.out(4)?;
    let x = ctx.tensor(0)?;
    let (d, n) = dims_arg(ctx, 1)?;
    sum_like(
        "mean",
        &x,
        &mut out,
        n.map(|n| &d[..n]),
        ctx.bool(2)?,
        ctx.opt_dtype(3)?,
        SumKind::Mean,
    )
}

/// `mean.dtype_out(Tensor self, *, ScalarType? dtype=None, Tensor(a!) out)`.
fn mean_dtype_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(4)?;
    let mut out = ctx.out(2)?;
    let x = ctx.tensor(0)?;
    sum_like(
        "mean",
        &x,
        &mut out,
        None,
        false,
        ctx.opt_dtype(1)?,
        SumKind::Mean,
    )
}

/// `prod.out(Tensor self, *, ScalarType? dtype=None, Tensor(a!) out)`.
fn prod_all_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(4)?;
    let mut out = ctx.out(2)?;
    let x = ctx.tensor(0)?;
    sum_like(
        "prod",
        &x,
        &mut out,
        None,
        false,
        ctx.opt_dtype(1)?,
        SumKind::Prod,
    )
}

/// `prod.int_out(Tensor self, int dim, bool keepdim=False, *, ScalarType? dtype=None, Tensor(a!) out)`.
fn prod_int_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(6)?;
    let mut out = ctx.out(4)?;
    let x = ctx.tensor(0)?;
    let d = [ctx.int(1)?];
    sum_like(
        "prod",
        &x,
        &mut out,
        Some(&d),
        ctx.bool(2)?,
        ctx.opt_dtype(3)?,
        SumKind::Prod,
    )
}

fn check_nonempty(op: &str, p: &Plan) -> Result<(), KernelError> {
    if p.rn == 0 {
        return Err(KernelError::invalid(format!(
            "{op}: cannot reduce over a zero-size dimension (no identity)"
        )));
    }
    Ok(())
}

fn amax_like(ctx: &KernelCtx<'_>, op: &str, max: bool) -> Result<(), KernelError> {
    ctx.expect_args(5)?;
    let mut out = ctx.out(3)?;
    let x = ctx.tensor(0)?;
    if out.dtype() != x.dtype() {
        return Err(KernelError::dtype(format!(
            "{op}: out dtype {} != input dtype {}",
            out.dtype(),
            x.dtype()
        )));
    }
    let (d, n) = ctx.int_list(1)?.to_array()?;
    let p = setup(op, &x, &mut out, Some(&d[..n]), ctx.bool(2)?, true)?;
    check_nonempty(op, &p)?;
    dispatch_all!(x.dtype(), T => {
        let xv = ts::<T>(&x)?;
        let o = tm::<T>(&mut out)?;
        drive(xv, &p, &ExtV { max }, |i, a| o[i] = a.0);
    });
    Ok(())
}

/// `amax.out(Tensor self, int[1] dim=[], bool keepdim=False, *, Tensor(a!) out)`.
fn amax_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    amax_like(ctx, "amax", true)
}
/// `amin.out(Tensor self, int[1] dim=[], bool keepdim=False, *, Tensor(a!) out)`.
fn amin_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    amax_like(ctx, "amin", false)
}

/// `max.dim_max(Tensor self, int dim, bool keepdim=False, *, Tensor(a!) max, Tensor(b!) max_values)`:
/// `[self, dim, keepdim, values, indices, ret]`.
fn ext_dim(ctx: &KernelCtx<'_>, op: &str, max: bool) -> Result<(), KernelError> {
    ctx.expect_args(6)?;
    let mut vals = ctx.out(3)?;
    let mut idx = ctx.out(4)?;
    let x = ctx.tensor(0)?;
    if vals.dtype() != x.dtype() {
        return Err(KernelError::dtype(format!(
            "{op}: values dtype {} != input dtype {}",
            vals.dtype(),
            x.dtype()
        )));
    }
    if idx.dtype() != ScalarType::Long {
        return Err(KernelError::dtype(format!(
            "{op}: indices must be Long, got {}",
            idx.dtype()
        )));
    }
    let d = [ctx.int(1)?];
    let keep = ctx.bool(2)?;
    let p = setup(op, &x, &mut vals, Some(&d), keep, false)?;
    check_nonempty(op, &p)?;
    let red = dim_mask(op, Some(&d), x.dim())?;
    let (os, n) = out_shape(x.sizes(), &red, keep);
    idx.resize(&os[..n])?;
    if idx.strides() != vals.strides() {
        return Err(KernelError::unsupported(format!(
            "{op}: values and indices have different dim orders"
        )));
    }
    let iv = tm::<i64>(&mut idx)?;
    dispatch_all!(x.dtype(), T => {
        let xv = ts::<T>(&x)?;
        let o = tm::<T>(&mut vals)?;
        drive(xv, &p, &Ext { max }, |i, a| {
            o[i] = a.0;
            iv[i] = a.1;
        });
    });
    Ok(())
}
fn max_dim(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ext_dim(ctx, "max.dim", true)
}
fn min_dim(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ext_dim(ctx, "min.dim", false)
}

/// `max.unary_out(Tensor self, *, Tensor(a!) out)`: all-element max into a 0-D out.
fn ext_unary(ctx: &KernelCtx<'_>, op: &str, max: bool) -> Result<(), KernelError> {
    ctx.expect_args(3)?;
    let mut out = ctx.out(1)?;
    let x = ctx.tensor(0)?;
    if out.dtype() != x.dtype() {
        return Err(KernelError::dtype(format!(
            "{op}: out dtype {} != input dtype {}",
            out.dtype(),
            x.dtype()
        )));
    }
    let p = setup(op, &x, &mut out, None, false, true)?;
    check_nonempty(op, &p)?;
    dispatch_all!(x.dtype(), T => {
        let xv = ts::<T>(&x)?;
        let o = tm::<T>(&mut out)?;
        drive(xv, &p, &ExtV { max }, |i, a| o[i] = a.0);
    });
    Ok(())
}
fn max_unary(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ext_unary(ctx, "max", true)
}
fn min_unary(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ext_unary(ctx, "min", false)
}

/// `argmax.out(Tensor self, int? dim=None, bool keepdim=False, *, Tensor(a!) out)`.
fn arg_ext(ctx: &KernelCtx<'_>, op: &str, max: bool) -> Result<(), KernelError> {
    ctx.expect_args(5)?;
    let mut out = ctx.out(3)?;
    let x = ctx.tensor(0)?;
    if out.dtype() != ScalarType::Long {
        return Err(KernelError::dtype(format!(
            "{op}: out must be Long, got {}",
            out.dtype()
        )));
    }
    let dim = ctx.opt_int(1)?;
    let keep = ctx.bool(2)?;
    let p = match dim {
        Some(d) => setup(op, &x, &mut out, Some(&[d]), keep, false)?,
        None => {
            // Flattened: with keepdim every dim becomes 1.
            let red = dim_mask(op, None, x.dim())?;
            let (os, n) = out_shape(x.sizes(), &red, keep);
            out.resize(&os[..n])?;
            Plan::new(&x, &red, &out.strides(), keep, false)
        }
    };
    check_nonempty(op, &p)?;
    let o = tm::<i64>(&mut out)?;
    dispatch_all!(x.dtype(), T => {
        let xv = ts::<T>(&x)?;
        drive(xv, &p, &Ext { max }, |i, a| o[i] = a.1);
    });
    Ok(())
}
fn argmax_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    arg_ext(ctx, "argmax", true)
}
fn argmin_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    arg_ext(ctx, "argmin", false)
}

fn any_all(
    op: &str,
    x: &TensorRef<'_>,
    out: &mut TensorMut<'_>,
    dims: Option<&[i64]>,
    keepdim: bool,
    any: bool,
) -> Result<(), KernelError> {
    if !matches!(out.dtype(), ScalarType::Bool | ScalarType::Byte) {
        return Err(KernelError::dtype(format!(
            "{op}: out must be Bool or Byte, got {}",
            out.dtype()
        )));
    }
    let p = setup(op, x, out, dims, keepdim, true)?;
    let o = tm::<u8>(out)?;
    dispatch_all!(x.dtype(), T => {
        let xv = ts::<T>(x)?;
        drive(xv, &p, &AnyAll { any }, |i, a| o[i] = a as u8);
    });
    Ok(())
}

/// `any.out(Tensor self, int dim, bool keepdim=False, *, Tensor(a!) out)`.
fn any_dim_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(5)?;
    let mut out = ctx.out(3)?;
    let x = ctx.tensor(0)?;
    any_all(
        "any",
        &x,
        &mut out,
        Some(&[ctx.int(1)?]),
        ctx.bool(2)?,
        true,
    )
}
/// `any.all_out(Tensor self, *, Tensor(a!) out)`.
fn any_all_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(3)?;
    let mut out = ctx.out(1)?;
    let x = ctx.tensor(0)?;
    any_all("any", &x, &mut out, None, false, true)
}
/// `any.dims_out(Tensor self, int[]? dim=None, bool keepdim=False, *, Tensor(a!) out)`.
fn any_dims_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(5)?;
    let mut out = ctx.out(3)?;
    let x = ctx.tensor(0)?;
    let (d, n) = dims_arg(ctx, 1)?;
    any_all("any", &x, &mut out, n.map(|n| &d[..n]), ctx.bool(2)?, true)
}
fn all_dim_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(5)?;
    let mut out = ctx.out(3)?;
    let x = ctx.tensor(0)?;
    any_all(
        "all",
        &x,
        &mut out,
        Some(&[ctx.int(1)?]),
        ctx.bool(2)?,
        false,
    )
}
fn all_all_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(3)?;
    let mut out = ctx.out(1)?;
    let x = ctx.tensor(0)?;
    any_all("all", &x, &mut out, None, false, false)
}
fn all_dims_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(5)?;
    let mut out = ctx.out(3)?;
    let x = ctx.tensor(0)?;
    let (d, n) = dims_arg(ctx, 1)?;
    any_all("all", &x, &mut out, n.map(|n| &d[..n]), ctx.bool(2)?, false)
}

/// Shared by var/std/var_mean: writes the variance (or std) and optionally the mean.
#[allow(clippy::too_many_arguments)]
fn var_like(
    op: &str,
    x: &TensorRef<'_>,
    out: &mut TensorMut<'_>,
    mean_out: Option<&mut TensorMut<'_>>,
    dims: Option<&[i64]>,
    correction: f64,
    keepdim: bool,
    take_sqrt: bool,
) -> Result<(), KernelError> {
    if !x.dtype().is_floating() {
        return Err(KernelError::dtype(format!(
            "{op}: input must be floating, got {}",
            x.dtype()
        )));
    }
    if out.dtype() != x.dtype() {
        return Err(KernelError::dtype(format!(
            "{op}: out dtype {} != input dtype {}",
            out.dtype(),
            x.dtype()
        )));
    }
    let p = setup(op, x, out, dims, keepdim, true)?;
    let mut mw = match mean_out {
        Some(m) => {
            if m.dtype() != x.dtype() {
                return Err(KernelError::dtype(format!(
                    "{op}: mean dtype {} != input dtype {}",
                    m.dtype(),
                    x.dtype()
                )));
            }
            m.resize(out.shape().dims())?;
            if m.strides() != out.strides() {
                return Err(KernelError::unsupported(format!(
                    "{op}: outputs have different dim orders"
                )));
            }
            Some(OutW::new(m)?)
        }
        None => None,
    };
    let mut w = OutW::new(out)?;
    if x.dtype() == ScalarType::Float && !take_sqrt && mw.is_none() {
        // `var` on f32 with ExecuTorch's portable arithmetic (bit for bit): the
        // sum in element order, `mean = sum / n`, the squared deviations
        // `(v - mean) · (v - mean)` added in element order, divided by
        // `n - correction` in f64; NaN when that is not positive.
        let xv = ts::<f32>(x)?;
        let (kd, ks, ko) = (&p.kd[..p.kr], &p.ks[..p.kr], &p.ko[..p.kr]);
        let (rd, rs) = (&p.rd[..p.rr], &p.rs[..p.rr]);
        let n = p.rn;
        let denom = n as f64 - correction;
        walk2(kd, ks, ko, 0, 0, |s0, o| {
            let v = if n == 0 || denom <= 0.0 {
                f32::NAN
            } else {
                let mut sum = 0f32;
                walk2(rd, rs, rs, s0, 0, |s, _| sum += xv[s as usize]);
                let mean = sum / n as f32;
                let mut sum2 = 0f32;
                walk2(rd, rs, rs, s0, 0, |s, _| {
                    let d = xv[s as usize] - mean;
                    sum2 += d * d;
                });
                (sum2 as f64 / denom) as f32
            };
            w.f(o as usize, v as f64);
        });
        return Ok(());
    }
    dispatch_float!(x.dtype(), T => {
        let xv = ts::<T>(x)?;
        drive(xv, &p, &Welford, |i, a| {
            let v = a.2 / (a.0 - correction).max(0.0);
            w.f(i, if take_sqrt { v.sqrt() } else { v });
            if let Some(m) = mw.as_mut() {
                m.f(i, if a.0 == 0.0 { f64::NAN } else { a.1 });
            }
        });
    });
    Ok(())
}
use crate::dispatch_float;

fn correction_arg(ctx: &KernelCtx<'_>, arg: usize) -> Result<f64, KernelError> {
    Ok(match ctx.opt_scalar(arg)? {
        None => 1.0,
        Some(s) => s.to_f64(),
    })
}

/// The four `var`/`std` out-variants share one stack layout
/// `[self, dim, correction | unbiased, keepdim, out, ret]`; they differ in how the
/// correction is given (a `Scalar?` correction, or a `bool unbiased`) and in whether
/// the result is square-rooted.
fn var_std(
    ctx: &KernelCtx<'_>,
    name: &str,
    unbiased_flag: bool,
    sqrt: bool,
) -> Result<(), KernelError> {
    ctx.expect_args(6)?;
    let mut out = ctx.out(4)?;
    let x = ctx.tensor(0)?;
    let (d, n) = dims_arg(ctx, 1)?;
    let c = if unbiased_flag {
        if ctx.bool(2)? {
            1.0
        } else {
            0.0
        }
    } else {
        correction_arg(ctx, 2)?
    };
    var_like(
        name,
        &x,
        &mut out,
        None,
        n.map(|n| &d[..n]),
        c,
        ctx.bool(3)?,
        sqrt,
    )
}
/// `var.correction_out(Tensor self, int[1]? dim=None, *, Scalar? correction=None, bool keepdim=False, Tensor(a!) out)`.
fn var_correction_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    var_std(ctx, "var", false, false)
}
/// `std.correction_out(...)`: like `var.correction_out`, square-rooted.
fn std_correction_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    var_std(ctx, "std", false, true)
}
/// `var.out(Tensor self, int[1]? dim, bool unbiased=True, bool keepdim=False, *, Tensor(a!) out)`.
fn var_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    var_std(ctx, "var", true, false)
}
/// `std.out(Tensor self, int[1]? dim, bool unbiased=True, bool keepdim=False, *, Tensor(a!) out)`.
fn std_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    var_std(ctx, "std", true, true)
}
/// `var_mean.correction_out(Tensor self, int[1]? dim=None, *, Scalar? correction=None, bool keepdim=False, Tensor(a!) out0, Tensor(b!) out1)`:
/// `[self, dim, correction, keepdim, out0, out1, ret]`.
fn var_mean_correction_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(7)?;
    let mut out = ctx.out(4)?;
    let mut mean = ctx.out(5)?;
    let x = ctx.tensor(0)?;
    let (d, n) = dims_arg(ctx, 1)?;
    let c = correction_arg(ctx, 2)?;
    var_like(
        "var_mean",
        &x,
        &mut out,
        Some(&mut mean),
        n.map(|n| &d[..n]),
        c,
        ctx.bool(3)?,
        false,
    )
}

// ---------------------------------------------------------------------------
// Scans

fn scan(ctx: &KernelCtx<'_>, op: &str, prod: bool) -> Result<(), KernelError> {
    ctx.expect_args(5)?;
    let mut out = ctx.out(3)?;
    let x = ctx.tensor(0)?;
    if let Some(dt) = ctx.opt_dtype(2)? {
        if dt != out.dtype() {
            return Err(KernelError::dtype(format!(
                "{op}: dtype {dt} != out dtype {}",
                out.dtype()
            )));
        }
    }
    let od = out.dtype();
    let float = od.is_floating();
    if x.dtype().is_floating() && !float {
        return Err(KernelError::dtype(format!(
            "{op}: cannot scan {} into {od}",
            x.dtype()
        )));
    }
    if od == ScalarType::Bool {
        return Err(KernelError::dtype(format!(
            "{op}: Bool out is not supported"
        )));
    }
    let r = x.dim();
    let d = norm_dim(ctx.int(1)?, r).map_err(|e| err(op, e))?;
    out.resize(x.sizes())?;
    if x.numel() == 0 {
        return Ok(());
    }
    let xs = x.strides();
    let os = out.strides();
    let mut kd = [0usize; 16];
    let mut ks = [0isize; 16];
    let mut ko = [0isize; 16];
    let mut kr = 0;
    for i in 0..r {
        if i != d {
            kd[kr] = x.size(i);
            ks[kr] = xs[i] as isize;
            ko[kr] = os[i] as isize;
            kr += 1;
        }
    }
    merge(&mut kr, &mut kd, &mut ks, Some(&mut ko));
    let (n, sx, so) = if r == 0 {
        (1, 0, 0)
    } else {
        (x.size(d), xs[d] as isize, os[d] as isize)
    };
    let mut w = OutW::new(&mut out)?;
    dispatch_all!(x.dtype(), T => {
        let xv = ts::<T>(&x)?;
        if kr >= 1 && ks[kr - 1] == 1 && ko[kr - 1] == 1 && sx != 1 {
            // Scan rows: COLS columns of running accumulators at a time.
            let last = kr - 1;
            let wdt = kd[last];
            walk2(&kd[..last], &ks[..last], &ko[..last], 0, 0, |s0, o0| {
                let mut c0 = 0;
                while c0 < wdt {
                    let cw = (wdt - c0).min(COLS);
                    let mut af = [if prod { 1f64 } else { 0f64 }; COLS];
                    let mut ai = [if prod { 1i64 } else { 0i64 }; COLS];
                    for j in 0..n {
                        let sb = (s0 + c0 as isize + j as isize * sx) as usize;
                        let ob = (o0 + c0 as isize + j as isize * so) as usize;
                        for c in 0..cw {
                            let v = xv[sb + c];
                            if float {
                                af[c] = if prod { af[c] * v.to_f64() } else { af[c] + v.to_f64() };
                                w.f(ob + c, af[c]);
                            } else {
                                ai[c] = if prod { ai[c].wrapping_mul(v.to_i64()) } else { ai[c].wrapping_add(v.to_i64()) };
                                w.i(ob + c, ai[c]);
                            }
                        }
                    }
                    c0 += cw;
                }
            });
        } else {
            walk2(&kd[..kr], &ks[..kr], &ko[..kr], 0, 0, |s0, o0| {
                let mut af = if prod { 1f64 } else { 0f64 };
                let mut ai = if prod { 1i64 } else { 0i64 };
                for j in 0..n as isize {
                    let v = xv[(s0 + j * sx) as usize];
                    let o = (o0 + j * so) as usize;
                    if float {
                        af = if prod { af * v.to_f64() } else { af + v.to_f64() };
                        w.f(o, af);
                    } else {
                        ai = if prod { ai.wrapping_mul(v.to_i64()) } else { ai.wrapping_add(v.to_i64()) };
                        w.i(o, ai);
                    }
                }
            });
        }
    });
    Ok(())
}

/// `cumsum.out(Tensor self, int dim, *, ScalarType? dtype=None, Tensor(a!) out)`.
fn cumsum_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    scan(ctx, "cumsum", false)
}
/// `cumprod.out(Tensor self, int dim, *, ScalarType? dtype=None, Tensor(a!) out)`.
fn cumprod_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    scan(ctx, "cumprod", true)
}

// ---------------------------------------------------------------------------
// topk / sort

/// Scratch for sorting one line of indices, sized at load from the input bound.
struct SortKernel {
    idx: Vec<usize>,
    topk: bool,
}

fn sort_scratch(ctx: &PrepareCtx<'_>, topk: bool) -> Result<Box<dyn Kernel>, KernelError> {
    let (_, shape, _) = ctx.tensor_meta(0)?;
    let n = shape.dims().iter().copied().max().unwrap_or(1).max(1);
    Ok(Box::new(SortKernel {
        idx: vec![0; n],
        topk,
    }))
}
fn topk_factory(ctx: &PrepareCtx<'_>) -> Result<Box<dyn Kernel>, KernelError> {
    sort_scratch(ctx, true)
}
fn sort_factory(ctx: &PrepareCtx<'_>) -> Result<Box<dyn Kernel>, KernelError> {
    sort_scratch(ctx, false)
}

impl Kernel for SortKernel {
    fn prepared_bytes(&self) -> usize {
        self.idx.len() * core::mem::size_of::<usize>()
    }
    fn run(&mut self, ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
        // topk: [self, k, dim, largest, sorted, values, indices, ret]
        // sort: [self, dim, descending, values, indices, ret]
        let (op, k_arg, dim_arg, vo) = if self.topk {
            ("topk", Some(1), 2, 5)
        } else {
            ("sort", None, 1, 3)
        };
        ctx.expect_args(if self.topk { 8 } else { 6 })?;
        let mut vals = ctx.out(vo)?;
        let mut inds = ctx.out(vo + 1)?;
        let x = ctx.tensor(0)?;
        if vals.dtype() != x.dtype() {
            return Err(KernelError::dtype(format!(
                "{op}: values dtype {} != input dtype {}",
                vals.dtype(),
                x.dtype()
            )));
        }
        if inds.dtype() != ScalarType::Long {
            return Err(KernelError::dtype(format!(
                "{op}: indices must be Long, got {}",
                inds.dtype()
            )));
        }
        let r = x.dim();
        let d = norm_dim(ctx.int(dim_arg)?, r).map_err(|e| err(op, e))?;
        let n = if r == 0 { 1 } else { x.size(d) };
        let (k, largest) = match k_arg {
            Some(a) => {
                let k = ctx.int(a)?;
                if k < 0 || k as usize > n {
                    return Err(KernelError::invalid(format!(
                        "{op}: k {k} out of range for dim of size {n}"
                    )));
                }
                (k as usize, ctx.bool(3)?)
            }
            None => (n, ctx.bool(2)?),
        };
        if n > self.idx.len() {
            return Err(KernelError::internal(format!(
                "{op}: dim of size {n} exceeds the scratch sized at load ({})",
                self.idx.len()
            )));
        }
        let mut sizes = [0usize; 16];
        sizes[..r].copy_from_slice(x.sizes());
        if r > 0 {
            sizes[d] = k;
        }
        vals.resize(&sizes[..r])?;
        inds.resize(&sizes[..r])?;
        if vals.strides() != inds.strides() {
            return Err(KernelError::unsupported(format!(
                "{op}: values and indices have different dim orders"
            )));
        }
        if x.numel() == 0 || k == 0 {
            return Ok(());
        }
        let xs = x.strides();
        let os = vals.strides();
        let mut kd = [0usize; 16];
        let mut ks = [0isize; 16];
        let mut ko = [0isize; 16];
        let mut kr = 0;
        for i in 0..r {
            if i != d {
                kd[kr] = x.size(i);
                ks[kr] = xs[i] as isize;
                ko[kr] = os[i] as isize;
                kr += 1;
            }
        }
        let (sx, so) = if r == 0 {
            (0, 0)
        } else {
            (xs[d] as isize, os[d] as isize)
        };
        let idx = &mut self.idx[..n];
        let iv = tm::<i64>(&mut inds)?;
        dispatch_all!(x.dtype(), T => {
            let xv = ts::<T>(&x)?;
            let o = tm::<T>(&mut vals)?;
            walk2(&kd[..kr], &ks[..kr], &ko[..kr], 0, 0, |s0, o0| {
                let at = |i: usize| xv[(s0 + i as isize * sx) as usize];
                // NaN ranks above every number; ties keep the lower index first.
                let cmp = |a: &usize, b: &usize| -> core::cmp::Ordering {
                    use core::cmp::Ordering::*;
                    let (va, vb) = (at(*a), at(*b));
                    let ord = match (is_nan(va), is_nan(vb)) {
                        (true, true) => Equal,
                        (true, false) => Greater,
                        (false, true) => Less,
                        _ => va.partial_cmp(&vb).unwrap_or(Equal),
                    };
                    let ord = if largest { ord.reverse() } else { ord };
                    ord.then(a.cmp(b))
                };
                for (i, v) in idx.iter_mut().enumerate() {
                    *v = i;
                }
                if k < n {
                    idx.select_nth_unstable_by(k - 1, cmp);
                }
                idx[..k].sort_unstable_by(cmp);
                for (j, &i) in idx[..k].iter().enumerate() {
                    let oo = (o0 + j as isize * so) as usize;
                    o[oo] = at(i);
                    iv[oo] = i as i64;
                }
            });
        });
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Creation

fn arange_impl(
    out: &mut TensorMut<'_>,
    start: Scalar,
    end: Scalar,
    step: Scalar,
) -> Result<(), KernelError> {
    let (s, e, st) = (start.to_f64(), end.to_f64(), step.to_f64());
    if st == 0.0 {
        return Err(KernelError::invalid("arange: step must be nonzero"));
    }
    if !s.is_finite() || !e.is_finite() {
        return Err(KernelError::invalid(format!(
            "arange: unsupported range {s} -> {e}"
        )));
    }
    if (st > 0.0 && e < s) || (st < 0.0 && e > s) {
        return Err(KernelError::invalid(format!(
            "arange: upper bound and lower bound inconsistent with step sign ({s}, {e}, {st})"
        )));
    }
    let od = out.dtype();
    let int_out = !od.is_floating();
    let trunc = |v: Scalar| -> i64 {
        match v {
            Scalar::Double(d) => d as i64,
            other => other.to_i64().unwrap_or(0),
        }
    };
    let size = ((e - s) / st).ceil();
    if !(0.0..=1e15).contains(&size) {
        return Err(KernelError::invalid(format!("arange: invalid size {size}")));
    }
    let size = size as usize;
    if out.dim() != 1 {
        return Err(KernelError::invalid(format!(
            "arange: out must be 1-D, has rank {}",
            out.dim()
        )));
    }
    out.resize(&[size])?;
    let mut w = OutW::new(out)?;
    if int_out {
        let (a, c) = (trunc(start), trunc(step));
        for i in 0..size {
            w.i(i, a.wrapping_add(c.wrapping_mul(i as i64)));
        }
    } else {
        for i in 0..size {
            w.f(i, s + st * i as f64);
        }
    }
    Ok(())
}

/// `arange.out(Scalar end, *, Tensor(a!) out)`.
fn arange_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(3)?;
    let mut out = ctx.out(1)?;
    arange_impl(&mut out, Scalar::Int(0), ctx.scalar(0)?, Scalar::Int(1))
}
/// `arange.start_out(Scalar start, Scalar end, Scalar step=1, *, Tensor(a!) out)`.
fn arange_start_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(5)?;
    let mut out = ctx.out(3)?;
    arange_impl(&mut out, ctx.scalar(0)?, ctx.scalar(1)?, ctx.scalar(2)?)
}

fn resize_to_list(
    ctx: &KernelCtx<'_>,
    out: &mut TensorMut<'_>,
    op: &str,
) -> Result<(), KernelError> {
    let (s, n) = ctx.int_list(0)?.to_array()?;
    let mut sizes = [0usize; 16];
    for i in 0..n {
        if s[i] < 0 {
            return Err(KernelError::invalid(format!(
                "{op}: negative size {} in {:?}",
                s[i],
                &s[..n]
            )));
        }
        sizes[i] = s[i] as usize;
    }
    out.resize(&sizes[..n])
}

/// `empty.out(SymInt[] size, *, MemoryFormat? memory_format=None, Tensor(a!) out)`.
fn empty_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(4)?;
    let mut out = ctx.out(2)?;
    resize_to_list(ctx, &mut out, "empty")
}

/// `_empty_dim_order.out(int[] size, *, int[]? dim_order=None, Tensor(a!) out)`.
fn empty_dim_order_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(4)?;
    let mut out = ctx.out(2)?;
    if let Some(l) = ctx.opt_int_list(1)? {
        let (o, n) = l.to_array()?;
        let have = out.dim_order();
        if n != have.as_slice().len() || (0..n).any(|i| o[i] != have.as_slice()[i] as i64) {
            return Err(KernelError::invalid(format!(
                "_empty_dim_order: dim_order {:?} differs from the out tensor's {:?}",
                &o[..n],
                have
            )));
        }
    }
    resize_to_list(ctx, &mut out, "_empty_dim_order")
}
