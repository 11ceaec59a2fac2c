//! Matrix products: `mm`, `bmm`, `addmm`, `baddbmm`, `linear`.
//!
//! `f32` goes to `pteron_linalg::sgemm_batched` (transposition inferred from the
//! operands' dim orders); a constant right-hand operand is packed once at load
//! (`PackedB`). Other dtypes (and layouts the GEMM cannot express) use a strided
//! reference loop accumulating in `f64` (floats) or wrapping `i64` (integers).

use pteron_linalg::{sgemm_batched, sgemm_packed, Activation, Bias, GemmArgs, PackedB};
use pteron_runtime::{
    Kernel, KernelCtx, KernelError, PrepareCtx, Registry, ScalarType, TensorMut, TensorRef,
};

use crate::dispatch_all;
use crate::util::{broadcast_strides, scalar_to, Num};

pub(super) fn register(reg: &mut Registry) {
    reg.register_factory("aten::mm.out", make_mm);
    reg.register_factory("aten::addmm.out", make_addmm);
    reg.register_factory("aten::linear.out", make_linear);
    reg.register("aten::bmm.out", bmm_out);
    reg.register("aten::baddbmm.out", baddbmm_out);
}

/// A (batched) matrix operand: element `(t, i, j)` at `t*bst + i*rst + j*cst`.
#[derive(Clone, Copy, Debug)]
struct View {
    batch: usize,
    rows: usize,
    cols: usize,
    bst: usize,
    rst: usize,
    cst: usize,
}

impl View {
    fn of(op: &str, what: &str, t: &TensorRef<'_>, rank: usize) -> Result<View, KernelError> {
        if t.dim() != rank {
            return Err(KernelError::invalid(format!(
                "{op}: {what} must be {rank}-D, got shape {:?}",
                t.sizes()
            )));
        }
        let s = t.sizes();
        let st = t.strides();
        Ok(if rank == 2 {
            View {
                batch: 1,
                rows: s[0],
                cols: s[1],
                bst: 0,
                rst: st[0],
                cst: st[1],
            }
        } else {
            View {
                batch: s[0],
                rows: s[1],
                cols: s[2],
                bst: st[0],
                rst: st[1],
                cst: st[2],
            }
        })
    }
    fn transposed(self) -> View {
        View {
            rows: self.cols,
            cols: self.rows,
            rst: self.cst,
            cst: self.rst,
            ..self
        }
    }
    /// `(ld, trans)` for the GEMM, if one of the matrix strides is 1.
    fn gemm_layout(&self) -> Option<(usize, bool)> {
        if self.cst == 1 || self.cols <= 1 {
            Some((self.rst.max(self.cols), false))
        } else if self.rst == 1 || self.rows <= 1 {
            Some((self.cst.max(self.rows), true))
        } else {
            None
        }
    }
}

/// The additive term of `addmm`/`baddbmm`/`linear`: a tensor broadcast to the output.
struct AddTerm<'a> {
    t: TensorRef<'a>,
    /// Strides aligned to `[batch, m, n]`.
    st: [usize; 3],
    beta: f64,
}

impl<'a> AddTerm<'a> {
    fn new(op: &str, t: TensorRef<'a>, out_dims: &[usize], beta: f64) -> Result<Self, KernelError> {
        if t.dim() > out_dims.len() {
            return Err(KernelError::invalid(format!(
                "{op}: input shape {:?} cannot broadcast to {out_dims:?}",
                t.sizes()
            )));
        }
        let off = out_dims.len() - t.dim();
        for (i, &s) in t.sizes().iter().enumerate() {
            if s != 1 && s != out_dims[off + i] {
                return Err(KernelError::invalid(format!(
                    "{op}: input shape {:?} cannot broadcast to {out_dims:?}",
                    t.sizes()
                )));
            }
        }
        let bst = broadcast_strides(&t, out_dims);
        let r = out_dims.len();
        let st = if r == 3 {
            [bst[0], bst[1], bst[2]]
        } else {
            [0, bst[0], bst[1]]
        };
        Ok(AddTerm { t, st, beta })
    }
}

/// Everything one product needs: `out = beta*add + alpha*(a @ b)`.
struct Problem<'a> {
    a: View,
    b: View,
    add: Option<AddTerm<'a>>,
    alpha: f64,
}

fn check_dtypes(op: &str, dts: &[(&str, ScalarType)], out: ScalarType) -> Result<(), KernelError> {
    for (what, dt) in dts {
        if *dt != out {
            return Err(KernelError::dtype(format!(
                "{op}: {what} has dtype {dt}, expected {out} (the out dtype)"
            )));
        }
    }
    if matches!(out, ScalarType::Bool) {
        return Err(KernelError::dtype(format!("{op}: Bool is not supported")));
    }
    Ok(())
}

/// Runs the product into `out` (already resized to `[batch?, m, n]`).
fn compute(
    p: &Problem<'_>,
    at: &TensorRef<'_>,
    bt: &TensorRef<'_>,
    packed: Option<&PackedB>,
    out: &mut TensorMut<'_>,
) -> Result<(), KernelError> {
    let (a, b) = (p.a, p.b);
    let (batch, m, k, n) = (a.batch.max(b.batch), a.rows, a.cols, b.cols);
    if out.numel() == 0 {
        return Ok(());
    }
    if out.dtype() == ScalarType::Float && out.is_contiguous() && k > 0 {
        if let (Some((lda, ta)), Some((ldb, tb))) = (a.gemm_layout(), b.gemm_layout()) {
            let av = super::slice::<f32>(at)?;
            let bv = super::slice::<f32>(bt)?;
            let c = super::slice_mut::<f32>(out)?;
            let alpha = p.alpha as f32;
            // Single-pass bias: a row vector added with beta == alpha == 1.
            let col_bias: Option<&[f32]> = match &p.add {
                Some(t)
                    if t.beta == 1.0
                        && p.alpha == 1.0
                        && t.st[0] == 0
                        && t.st[1] == 0
                        && (t.st[2] == 1 || n == 1) =>
                {
                    let s = super::slice::<f32>(&t.t)?;
                    if s.len() >= n {
                        Some(&s[..n])
                    } else {
                        None
                    }
                }
                _ => None,
            };
            let bias = col_bias.map_or(Bias::None, Bias::PerColumn);
            let pre = p
                .add
                .as_ref()
                .filter(|t| t.beta != 0.0 && col_bias.is_none());
            let use_packed = packed.filter(|pk| batch == 1 && pk.k() == k && pk.n() == n);
            if let Some(pk) = use_packed {
                sgemm_packed(m, av, lda, ta, pk, c, n, bias, Activation::None);
                if pre.is_some() || alpha != 1.0 {
                    let add = match pre {
                        Some(t) => Some((super::slice::<f32>(&t.t)?, t.st, t.beta as f32)),
                        None => None,
                    };
                    for i in 0..m {
                        for j in 0..n {
                            let v = &mut c[i * n + j];
                            *v *= alpha;
                            if let Some((s, st, beta)) = add {
                                *v += beta * s[i * st[1] + j * st[2]];
                            }
                        }
                    }
                }
                return Ok(());
            }
            let mut beta = 0.0;
            if let Some(t) = pre {
                let s = super::slice::<f32>(&t.t)?;
                let bt = t.beta as f32;
                for bi in 0..batch {
                    for i in 0..m {
                        let row = &mut c[(bi * m + i) * n..(bi * m + i + 1) * n];
                        for (j, v) in row.iter_mut().enumerate() {
                            *v = bt * s[bi * t.st[0] + i * t.st[1] + j * t.st[2]];
                        }
                    }
                }
                beta = 1.0;
            }
            let (sa, sb) = (
                if a.batch == 1 { 0 } else { a.bst },
                if b.batch == 1 { 0 } else { b.bst },
            );
            sgemm_batched(
                batch,
                sa,
                sb,
                m * n,
                GemmArgs {
                    m,
                    n,
                    k,
                    a: av,
                    lda,
                    a_trans: ta,
                    b: bv,
                    ldb,
                    b_trans: tb,
                    c,
                    ldc: n,
                    beta,
                    alpha,
                    bias,
                    act: Activation::None,
                },
            );
            return Ok(());
        }
    }
    let ost = out.strides();
    let ost = if out.dim() == 3 {
        [ost[0], ost[1], ost[2]]
    } else {
        [0, ost[0], ost[1]]
    };
    dispatch_all!(out.dtype(), T => {
        let av = super::slice::<T>(at)?;
        let bv = super::slice::<T>(bt)?;
        let add = match &p.add {
            Some(t) => Some((super::slice::<T>(&t.t)?, t.st, t.beta)),
            None => None,
        };
        let c = super::slice_mut::<T>(out)?;
        generic::<T>(p, batch, av, bv, add, c, ost);
    });
    Ok(())
}

fn generic<T: Num>(
    p: &Problem<'_>,
    batch: usize,
    av: &[T],
    bv: &[T],
    add: Option<(&[T], [usize; 3], f64)>,
    c: &mut [T],
    ost: [usize; 3],
) {
    let (a, b) = (p.a, p.b);
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let (sa, sb) = (
        if a.batch == 1 { 0 } else { a.bst },
        if b.batch == 1 { 0 } else { b.bst },
    );
    let alpha_i = p.alpha as i64;
    for t in 0..batch {
        for i in 0..m {
            for j in 0..n {
                let addv = add
                    .filter(|x| x.2 != 0.0)
                    .map(|(s, st, beta)| (s[t * st[0] + i * st[1] + j * st[2]], beta));
                let o = &mut c[t * ost[0] + i * ost[1] + j * ost[2]];
                if T::IS_FLOAT {
                    let mut acc = 0.0f64;
                    for q in 0..k {
                        acc += av[t * sa + i * a.rst + q * a.cst].to_f64()
                            * bv[t * sb + q * b.rst + j * b.cst].to_f64();
                    }
                    let mut v = p.alpha * acc;
                    if let Some((x, beta)) = addv {
                        v += beta * x.to_f64();
                    }
                    *o = T::from_f64(v);
                } else {
                    let mut acc = 0i64;
                    for q in 0..k {
                        let x = av[t * sa + i * a.rst + q * a.cst].to_i64();
                        let y = bv[t * sb + q * b.rst + j * b.cst].to_i64();
                        acc = acc.wrapping_add(x.wrapping_mul(y));
                    }
                    let mut v = alpha_i.wrapping_mul(acc);
                    if let Some((x, beta)) = addv {
                        v = v.wrapping_add((beta as i64).wrapping_mul(x.to_i64()));
                    }
                    *o = T::from_i64(v);
                }
            }
        }
    }
}

fn check_inner(op: &str, a: &View, b: &View) -> Result<(), KernelError> {
    if a.cols != b.rows {
        return Err(KernelError::invalid(format!(
            "{op}: inner dimensions differ: {}x{} @ {}x{}",
            a.rows, a.cols, b.rows, b.cols
        )));
    }
    if a.batch != b.batch {
        return Err(KernelError::invalid(format!(
            "{op}: batch sizes differ: {} vs {}",
            a.batch, b.batch
        )));
    }
    Ok(())
}

/// Scalar coefficient as f64 (ints and bools allowed; floats rejected for integer outputs).
fn coef(ctx: &KernelCtx<'_>, arg: usize, op: &str, out: ScalarType) -> Result<f64, KernelError> {
    let s = ctx.scalar(arg)?;
    if s.is_floating()
        && !matches!(
            out,
            ScalarType::Float | ScalarType::Double | ScalarType::Half | ScalarType::BFloat16
        )
    {
        return Err(KernelError::dtype(format!(
            "{op}: a floating alpha/beta needs a floating out dtype, got {out}"
        )));
    }
    Ok(scalar_to::<f64>(s))
}

// ---------------------------------------------------------------------------
// Kernels

/// A matrix-product kernel with an optional pre-packed constant operand.
struct MatOp {
    packed: Option<PackedB>,
    run: fn(&MatOp, &KernelCtx<'_>) -> Result<(), KernelError>,
}

impl Kernel for MatOp {
    fn run(&mut self, ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
        (self.run)(self, ctx)
    }
    fn prepared_bytes(&self) -> usize {
        self.packed.as_ref().map_or(0, |p| p.bytes())
    }
}

/// Packs constant f32 argument `arg` as B (`[k, n]`, or `[n, k]` when `trans`).
fn pack_const(p: &PrepareCtx<'_>, arg: usize, trans: bool) -> Option<PackedB> {
    let c = p.constant(arg).ok().flatten()?;
    if c.dtype() != ScalarType::Float || c.dim() != 2 || c.numel() == 0 {
        return None;
    }
    let v = View {
        batch: 1,
        rows: c.size(0),
        cols: c.size(1),
        bst: 0,
        rst: c.strides()[0],
        cst: c.strides()[1],
    };
    let v = if trans { v.transposed() } else { v };
    let (ld, t) = v.gemm_layout()?;
    Some(PackedB::new(
        v.rows,
        v.cols,
        super::slice::<f32>(&c).ok()?,
        ld,
        t,
    ))
}

fn make_mm(p: &PrepareCtx<'_>) -> Result<Box<dyn Kernel>, KernelError> {
    Ok(Box::new(MatOp {
        packed: pack_const(p, 1, false),
        run: mm_run,
    }))
}

fn make_addmm(p: &PrepareCtx<'_>) -> Result<Box<dyn Kernel>, KernelError> {
    Ok(Box::new(MatOp {
        packed: pack_const(p, 2, false),
        run: addmm_run,
    }))
}

fn make_linear(p: &PrepareCtx<'_>) -> Result<Box<dyn Kernel>, KernelError> {
    Ok(Box::new(MatOp {
        packed: pack_const(p, 1, true),
        run: linear_run,
    }))
}

/// `mm.out(Tensor self, Tensor mat2, *, Tensor(a!) out)`: `[self, mat2, out, ret]`.
fn mm_run(k: &MatOp, ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "mm";
    ctx.expect_args(4)?;
    let mut out = ctx.out(2)?;
    let a = ctx.tensor(0)?;
    let b = ctx.tensor(1)?;
    check_dtypes(OP, &[("self", a.dtype()), ("mat2", b.dtype())], out.dtype())?;
    let (av, bv) = (View::of(OP, "self", &a, 2)?, View::of(OP, "mat2", &b, 2)?);
    check_inner(OP, &av, &bv)?;
    out.resize(&[av.rows, bv.cols])?;
    let p = Problem {
        a: av,
        b: bv,
        add: None,
        alpha: 1.0,
    };
    compute(&p, &a, &b, k.packed.as_ref(), &mut out)
}

/// `addmm.out(Tensor self, Tensor mat1, Tensor mat2, *, Scalar beta=1, Scalar alpha=1,
/// Tensor(a!) out)`: `[self, mat1, mat2, beta, alpha, out, ret]`.
fn addmm_run(k: &MatOp, ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "addmm";
    ctx.expect_args(7)?;
    let mut out = ctx.out(5)?;
    let s = ctx.tensor(0)?;
    let a = ctx.tensor(1)?;
    let b = ctx.tensor(2)?;
    let odt = out.dtype();
    check_dtypes(
        OP,
        &[
            ("self", s.dtype()),
            ("mat1", a.dtype()),
            ("mat2", b.dtype()),
        ],
        odt,
    )?;
    let beta = coef(ctx, 3, OP, odt)?;
    let alpha = coef(ctx, 4, OP, odt)?;
    let (av, bv) = (View::of(OP, "mat1", &a, 2)?, View::of(OP, "mat2", &b, 2)?);
    check_inner(OP, &av, &bv)?;
    let dims = [av.rows, bv.cols];
    let add = AddTerm::new(OP, s, &dims, beta)?;
    out.resize(&dims)?;
    let p = Problem {
        a: av,
        b: bv,
        add: Some(add),
        alpha,
    };
    compute(&p, &a, &b, k.packed.as_ref(), &mut out)
}

/// `linear.out(Tensor input, Tensor weight, Tensor? bias=None, *, Tensor(a!) out)`:
/// `[input, weight, bias, out, ret]`.
fn linear_run(k: &MatOp, ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "linear";
    ctx.expect_args(5)?;
    let mut out = ctx.out(3)?;
    let x = ctx.tensor(0)?;
    let w = ctx.tensor(1)?;
    let bias = ctx.opt_tensor(2)?;
    let odt = out.dtype();
    check_dtypes(OP, &[("input", x.dtype()), ("weight", w.dtype())], odt)?;
    if let Some(b) = &bias {
        check_dtypes(OP, &[("bias", b.dtype())], odt)?;
    }
    let wv = View::of(OP, "weight", &w, 2)?.transposed();
    if x.dim() == 0 {
        return Err(KernelError::invalid(format!(
            "{OP}: input must have at least one dimension"
        )));
    }
    let kdim = x.size(x.dim() - 1);
    let av = if x.dim() == 2 {
        View::of(OP, "input", &x, 2)?
    } else if x.dim() == 1 || x.is_contiguous() {
        View {
            batch: 1,
            rows: x.numel() / kdim.max(1),
            cols: kdim,
            bst: 0,
            rst: kdim,
            cst: 1,
        }
    } else {
        return Err(KernelError::unsupported(format!(
            "{OP}: a non-contiguous input of rank {} is not supported",
            x.dim()
        )));
    };
    let av = if x.dim() != 2 && kdim == 0 {
        View {
            rows: x.sizes()[..x.dim() - 1].iter().product(),
            ..av
        }
    } else {
        av
    };
    check_inner(OP, &av, &wv)?;
    let mut dims = [0usize; 16];
    let r = x.dim();
    dims[..r].copy_from_slice(x.sizes());
    dims[r - 1] = wv.cols;
    out.resize(&dims[..r])?;
    let add = match bias {
        Some(b) => Some(AddTerm::new(OP, b, &[av.rows, wv.cols], 1.0)?),
        None => None,
    };
    let p = Problem {
        a: av,
        b: wv,
        add,
        alpha: 1.0,
    };
    if !out.is_contiguous() && r != 2 {
        return Err(KernelError::unsupported(format!(
            "{OP}: a non-contiguous out of rank {r} is not supported"
        )));
    }
    // View the output as 2-D [rows, n] for the product.
    compute_flat(&p, &x, &w, k.packed.as_ref(), &mut out)
}

/// `compute` for an output whose leading dims are flattened into rows.
fn compute_flat(
    p: &Problem<'_>,
    at: &TensorRef<'_>,
    bt: &TensorRef<'_>,
    packed: Option<&PackedB>,
    out: &mut TensorMut<'_>,
) -> Result<(), KernelError> {
    if out.dim() == 2 {
        return compute(p, at, bt, packed, out);
    }
    // Contiguous output of any rank: identical memory to [rows, n].
    let (m, n) = (p.a.rows, p.b.cols);
    if m * n == 0 {
        return Ok(());
    }
    if out.dtype() == ScalarType::Float && p.a.cols > 0 {
        if let (Some((lda, ta)), Some((ldb, tb))) = (p.a.gemm_layout(), p.b.gemm_layout()) {
            let av = super::slice::<f32>(at)?;
            let bv = super::slice::<f32>(bt)?;
            let bias = match &p.add {
                Some(t) if t.st[1] == 0 && (t.st[2] == 1 || n == 1) => {
                    let s = super::slice::<f32>(&t.t)?;
                    (s.len() >= n).then(|| Bias::PerColumn(&s[..n]))
                }
                Some(_) => None,
                None => Some(Bias::None),
            };
            if let Some(bias) = bias {
                let c = super::slice_mut::<f32>(out)?;
                match packed.filter(|pk| pk.k() == p.a.cols && pk.n() == n) {
                    Some(pk) => sgemm_packed(m, av, lda, ta, pk, c, n, bias, Activation::None),
                    None => sgemm_batched(
                        1,
                        0,
                        0,
                        0,
                        GemmArgs {
                            m,
                            n,
                            k: p.a.cols,
                            a: av,
                            lda,
                            a_trans: ta,
                            b: bv,
                            ldb,
                            b_trans: tb,
                            c,
                            ldc: n,
                            beta: 0.0,
                            alpha: 1.0,
                            bias,
                            act: Activation::None,
                        },
                    ),
                }
                return Ok(());
            }
        }
    }
    dispatch_all!(out.dtype(), T => {
        let av = super::slice::<T>(at)?;
        let bv = super::slice::<T>(bt)?;
        let add = match &p.add {
            Some(t) => Some((super::slice::<T>(&t.t)?, t.st, t.beta)),
            None => None,
        };
        let c = super::slice_mut::<T>(out)?;
        generic::<T>(p, 1, av, bv, add, c, [0, n, 1]);
    });
    Ok(())
}

/// `bmm.out(Tensor self, Tensor mat2, *, Tensor(a!) out)`: `[self, mat2, out, ret]`.
fn bmm_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "bmm";
    ctx.expect_args(4)?;
    let mut out = ctx.out(2)?;
    let a = ctx.tensor(0)?;
    let b = ctx.tensor(1)?;
    check_dtypes(OP, &[("self", a.dtype()), ("mat2", b.dtype())], out.dtype())?;
    let (av, bv) = (View::of(OP, "self", &a, 3)?, View::of(OP, "mat2", &b, 3)?);
    check_inner(OP, &av, &bv)?;
    out.resize(&[av.batch, av.rows, bv.cols])?;
    let p = Problem {
        a: av,
        b: bv,
        add: None,
        alpha: 1.0,
    };
    compute(&p, &a, &b, None, &mut out)
}

/// `baddbmm.out(Tensor self, Tensor batch1, Tensor batch2, *, Scalar beta=1,
/// Scalar alpha=1, Tensor(a!) out)`: `[self, batch1, batch2, beta, alpha, out, ret]`.
fn baddbmm_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "baddbmm";
    ctx.expect_args(7)?;
    let mut out = ctx.out(5)?;
    let s = ctx.tensor(0)?;
    let a = ctx.tensor(1)?;
    let b = ctx.tensor(2)?;
    let odt = out.dtype();
    check_dtypes(
        OP,
        &[
            ("self", s.dtype()),
            ("batch1", a.dtype()),
            ("batch2", b.dtype()),
        ],
        odt,
    )?;
    let beta = coef(ctx, 3, OP, odt)?;
    let alpha = coef(ctx, 4, OP, odt)?;
    let (av, bv) = (
        View::of(OP, "batch1", &a, 3)?,
        View::of(OP, "batch2", &b, 3)?,
    );
    check_inner(OP, &av, &bv)?;
    let dims = [av.batch, av.rows, bv.cols];
    let add = AddTerm::new(OP, s, &dims, beta)?;
    out.resize(&dims)?;
    let p = Problem {
        a: av,
        b: bv,
        add: Some(add),
        alpha,
    };
    compute(&p, &a, &b, None, &mut out)
}
