//! Data-dependent indexing: `index.Tensor`, `index_put`, `index_select`, `gather`,
//! `scatter*`, `masked_select`, `masked_scatter`, `nonzero`, `repeat_interleave`.
#![allow(clippy::needless_range_loop)] // loops index several parallel arrays

use pteron_runtime::{
    KernelCtx, KernelError, OptTensorList, Registry, Scalar, ScalarType, TensorMut, TensorRef,
};

use super::engine::{
    by_size, cast, cast_mut, copy_typed, istrides, istrides_mut, same_dtype, tm, ts, view_into,
    walk2, Layout,
};
use crate::dispatch_all;
use crate::util::{broadcast_shapes, norm_dim, scalar_to, Num};

pub(crate) fn register(reg: &mut Registry) {
    reg.register("aten::index.Tensor_out", index_tensor_out);
    reg.register("aten::index_put.out", index_put_out);
    reg.register("aten::index_put_", index_put_inplace);
    reg.register("aten::index_select.out", index_select_out);
    reg.register("aten::gather.out", gather_out);
    reg.register("aten::scatter.src_out", scatter_src_out);
    reg.register("aten::scatter.value_out", scatter_value_out);
    reg.register("aten::scatter_add.out", scatter_add_out);
    reg.register("aten::masked_select.out", masked_select_out);
    reg.register("aten::masked_scatter.out", masked_scatter_out);
    reg.register("aten::nonzero.out", nonzero_out);
    reg.register("aten::repeat_interleave.Tensor_out", repeat_interleave_out);
}

fn err(op: &str, e: KernelError) -> KernelError {
    KernelError::new(e.kind, format!("{op}: {}", e.msg))
}

/// Integer index data (Long or Int tensors).
#[derive(Clone, Copy)]
enum Idx<'a> {
    L(&'a [i64]),
    I(&'a [i32]),
}

impl<'a> Idx<'a> {
    fn of(op: &str, t: &TensorRef<'a>) -> Result<Self, KernelError> {
        match t.dtype() {
            ScalarType::Long => Ok(Idx::L(ts(t)?)),
            ScalarType::Int => Ok(Idx::I(ts(t)?)),
            other => Err(KernelError::dtype(format!(
                "{op}: index tensors must be Long or Int, got {other}"
            ))),
        }
    }
    #[inline]
    fn get(&self, i: usize) -> i64 {
        match self {
            Idx::L(s) => s[i],
            Idx::I(s) => s[i] as i64,
        }
    }
}

#[inline]
fn wrap(op: &str, v: i64, n: usize) -> Result<usize, KernelError> {
    let w = if v < 0 { v + n as i64 } else { v };
    if w < 0 || w >= n as i64 {
        return Err(KernelError::invalid(format!(
            "{op}: index {v} is out of bounds for size {n}"
        )));
    }
    Ok(w as usize)
}

/// Whether the logical element `p` of a bool/byte mask is set.
#[inline]
fn mask_at(t: &TensorRef<'_>, data: &[u8], p: usize) -> bool {
    if t.is_contiguous() {
        return data[p] != 0;
    }
    let st = t.strides();
    let mut rem = p;
    let mut off = 0;
    for d in (0..t.dim()).rev() {
        let n = t.size(d);
        off += (rem % n) * st[d];
        rem /= n;
    }
    data[off] != 0
}

#[derive(Clone, Copy)]
enum Kind<'a> {
    Int(Idx<'a>),
    Mask(&'a [u8]),
}

#[derive(Clone, Copy)]
struct Entry<'a> {
    t: TensorRef<'a>,
    kind: Kind<'a>,
    /// First self dim indexed.
    dim: usize,
    /// Strides of the index aligned to the broadcast index shape.
    bst: [usize; 16],
    nnz: usize,
    /// Mask cursor: the last (j, p) found.
    cj: usize,
    cp: usize,
}

/// Advanced-indexing plan over a self shape.
struct Plan<'a> {
    e: [Option<Entry<'a>>; 16],
    ne: usize,
    b: [usize; 16],
    br: usize,
    /// Position of the broadcast dims in the result.
    bpos: usize,
    /// Non-indexed self dims in order.
    blk: [usize; 16],
    nblk: usize,
    /// Result shape.
    out: [usize; 16],
    outr: usize,
}

impl<'a> Plan<'a> {
    fn new(op: &str, xs: &[usize], list: &OptTensorList<'a, '_>) -> Result<Self, KernelError> {
        let mut p = Plan {
            e: [None; 16],
            ne: 0,
            b: [0; 16],
            br: 0,
            bpos: 0,
            blk: [0; 16],
            nblk: 0,
            out: [0; 16],
            outr: 0,
        };
        let r = xs.len();
        let mut sd = 0usize;
        let mut indexed = [false; 16];
        let (mut first_k, mut last_k, mut gap) = (usize::MAX, 0usize, false);
        let mut b = [0usize; 16];
        let mut br = 0usize;
        for k in 0..list.len() {
            let Some(t) = list.get(k)? else {
                sd += 1;
                continue;
            };
            if first_k != usize::MAX && last_k + 1 != k {
                gap = true;
            }
            if first_k == usize::MAX {
                first_k = k;
            }
            last_k = k;
            let (kind, m, nnz) = match t.dtype() {
                ScalarType::Bool | ScalarType::Byte => {
                    let data: &[u8] = ts(&t)?;
                    let m = t.dim();
                    if sd + m > r || t.sizes() != &xs[sd..sd + m] {
                        return Err(KernelError::invalid(format!(
                            "{op}: mask of shape {:?} does not match self shape {xs:?} at dim {sd}",
                            t.sizes()
                        )));
                    }
                    let nnz = data.iter().filter(|&&v| v != 0).count();
                    (Kind::Mask(data), m, nnz)
                }
                _ => (Kind::Int(Idx::of(op, &t)?), 1, 0),
            };
            if sd + m > r || (m == 0 && sd >= r && !matches!(kind, Kind::Mask(_))) {
                return Err(KernelError::invalid(format!(
                    "{op}: too many indices for a tensor of rank {r}"
                )));
            }
            let shape: &[usize] = match kind {
                Kind::Mask(_) => core::slice::from_ref(&nnz),
                Kind::Int(_) => t.sizes(),
            };
            let (nb, n) = broadcast_shapes(&b[..br], shape).map_err(|e| err(op, e))?;
            b = nb;
            br = n;
            for i in 0..m {
                indexed[sd + i] = true;
            }
            if p.ne >= 16 {
                return Err(KernelError::invalid(format!("{op}: more than 16 indices")));
            }
            p.e[p.ne] = Some(Entry {
                t,
                kind,
                dim: sd,
                bst: [0; 16],
                nnz,
                cj: usize::MAX,
                cp: 0,
            });
            p.ne += 1;
            sd += m;
        }
        if sd > r {
            return Err(KernelError::invalid(format!(
                "{op}: too many indices for a tensor of rank {r}"
            )));
        }
        if p.ne == 0 {
            return Err(KernelError::invalid(format!(
                "{op}: at least one index must be given"
            )));
        }
        // Index strides aligned to the broadcast shape.
        for e in p.e[..p.ne].iter_mut().flatten() {
            match e.kind {
                Kind::Int(_) => {
                    let st = e.t.strides();
                    let rr = e.t.dim();
                    for i in 0..rr {
                        let oi = br - rr + i;
                        e.bst[oi] = if e.t.size(i) == 1 && b[oi] != 1 {
                            0
                        } else {
                            st[i]
                        };
                    }
                }
                Kind::Mask(_) => {}
            }
        }
        p.b = b;
        p.br = br;
        let first_dim = (0..r).find(|&d| indexed[d]).unwrap_or(0);
        for d in 0..r {
            if !indexed[d] {
                p.blk[p.nblk] = d;
                p.nblk += 1;
            }
        }
        p.bpos = if gap {
            0
        } else {
            (0..first_dim).filter(|&d| !indexed[d]).count()
        };
        if br + p.nblk > 16 {
            return Err(KernelError::invalid(format!("{op}: result rank above 16")));
        }
        let mut o = 0;
        for (i, &d) in p.blk[..p.nblk].iter().enumerate() {
            if i == p.bpos {
                p.out[o..o + br].copy_from_slice(&b[..br]);
                o += br;
            }
            p.out[o] = xs[d];
            o += 1;
        }
        if p.bpos == p.nblk {
            p.out[o..o + br].copy_from_slice(&b[..br]);
            o += br;
        }
        p.outr = o;
        Ok(p)
    }

    /// Result-dim position of non-indexed block dim `i`.
    fn blk_pos(&self, i: usize) -> usize {
        if i < self.bpos {
            i
        } else {
            i + self.br
        }
    }

    /// Element offset into self (strides `xs`) selected by broadcast coordinate `c`.
    fn offset(
        &mut self,
        op: &str,
        c: &[usize],
        xs: &[isize],
        xsz: &[usize],
    ) -> Result<isize, KernelError> {
        let mut off = 0isize;
        let br = self.br;
        for e in self.e[..self.ne].iter_mut().flatten() {
            match e.kind {
                Kind::Int(ix) => {
                    let mut io = 0usize;
                    for i in 0..br {
                        io += c[i] * e.bst[i];
                    }
                    let v = wrap(op, ix.get(io), xsz[e.dim])?;
                    off += v as isize * xs[e.dim];
                }
                Kind::Mask(data) => {
                    let j = if e.nnz == 1 || br == 0 { 0 } else { c[br - 1] };
                    // Find the logical position of the j-th set element.
                    let (mut cj, mut cp) = if e.cj != usize::MAX && j >= e.cj {
                        (e.cj, e.cp)
                    } else {
                        (usize::MAX, 0)
                    };
                    let numel = e.t.numel();
                    while cj != j {
                        let mut q = if cj == usize::MAX { 0 } else { cp + 1 };
                        while q < numel && !mask_at(&e.t, data, q) {
                            q += 1;
                        }
                        if q >= numel {
                            return Err(KernelError::internal(format!(
                                "{op}: mask cursor ran past the mask"
                            )));
                        }
                        cj = if cj == usize::MAX { 0 } else { cj + 1 };
                        cp = q;
                    }
                    e.cj = cj;
                    e.cp = cp;
                    let mut rem = cp;
                    for d in (0..e.t.dim()).rev() {
                        let n = e.t.size(d);
                        off += (rem % n) as isize * xs[e.dim + d];
                        rem /= n;
                    }
                }
            }
        }
        Ok(off)
    }
}

/// Steps a row-major coordinate; false when done.
#[inline]
fn next(c: &mut [usize], dims: &[usize]) -> bool {
    let mut d = dims.len();
    while d > 0 {
        d -= 1;
        c[d] += 1;
        if c[d] < dims[d] {
            return true;
        }
        c[d] = 0;
    }
    false
}

/// `index.Tensor_out(Tensor self, Tensor?[] indices, *, Tensor(a!) out)`.
fn index_tensor_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "index.Tensor";
    ctx.expect_args(4)?;
    let mut out = ctx.out(2)?;
    let x = ctx.tensor(0)?;
    same_dtype(OP, &x, &out)?;
    let list = ctx.opt_tensor_list(1)?;
    let mut p = Plan::new(OP, x.sizes(), &list)?;
    out.resize(&p.out[..p.outr])?;
    if out.numel() == 0 {
        return Ok(());
    }
    let xs = istrides(&x);
    let os = istrides_mut(&out);
    let mut l = Layout::new();
    for i in 0..p.nblk {
        l.push(x.size(p.blk[i]), os[p.blk_pos(i)], xs[p.blk[i]])?;
    }
    let es = x.dtype().element_size();
    let (b, br, bpos) = (p.b, p.br, p.bpos);
    by_size!(es, T => {
        let dst = cast_mut::<T>(out.bytes_mut())?;
        let src = cast::<T>(x.bytes())?;
        let mut c = [0usize; 16];
        loop {
            l.src_off = p.offset(OP, &c[..br], &xs, x.sizes())?;
            let mut d = 0isize;
            for i in 0..br {
                d += c[i] as isize * os[bpos + i];
            }
            l.dst_off = d;
            copy_typed(dst, src, &l)?;
            if !next(&mut c[..br], &b[..br]) {
                break;
            }
        }
    });
    Ok(())
}

#[inline]
fn add<T: Num>(a: T, b: T) -> T {
    if T::IS_FLOAT {
        T::from_f64(a.to_f64() + b.to_f64())
    } else {
        T::from_i64(a.to_i64().wrapping_add(b.to_i64()))
    }
}

/// Writes (or accumulates) `values` into `out` at the positions selected by `list`.
fn index_put_into(
    op: &str,
    out: &mut TensorMut<'_>,
    list: &OptTensorList<'_, '_>,
    values: &TensorRef<'_>,
    accumulate: bool,
) -> Result<(), KernelError> {
    if values.dtype() != out.dtype() {
        return Err(KernelError::dtype(format!(
            "{op}: values dtype {} != self dtype {}",
            values.dtype(),
            out.dtype()
        )));
    }
    let shape = out.shape();
    let xsz = shape.dims();
    let mut p = Plan::new(op, xsz, list)?;
    let rs = &p.out[..p.outr];
    // Values broadcast to the result shape.
    let vr = values.dim();
    if vr > p.outr {
        return Err(KernelError::invalid(format!(
            "{op}: values of shape {:?} cannot be broadcast to {rs:?}",
            values.sizes()
        )));
    }
    let vst = values.strides();
    let mut vs = [0isize; 16];
    for i in 0..vr {
        let oi = p.outr - vr + i;
        let (have, want) = (values.size(i), rs[oi]);
        if have == want {
            vs[oi] = vst[i] as isize;
        } else if have != 1 {
            return Err(KernelError::invalid(format!(
                "{op}: values of shape {:?} cannot be broadcast to {rs:?}",
                values.sizes()
            )));
        }
    }
    if p.out[..p.outr].contains(&0) {
        return Ok(());
    }
    let os = istrides_mut(out);
    let mut l = Layout::new();
    for i in 0..p.nblk {
        l.push(xsz[p.blk[i]], os[p.blk[i]], vs[p.blk_pos(i)])?;
    }
    let (b, br, bpos) = (p.b, p.br, p.bpos);
    let mut c = [0usize; 16];
    if !accumulate {
        by_size!(values.dtype().element_size(), T => {
            let dst = cast_mut::<T>(out.bytes_mut())?;
            let src = cast::<T>(values.bytes())?;
            loop {
                l.dst_off = p.offset(op, &c[..br], &os, xsz)?;
                let mut s = 0isize;
                for i in 0..br {
                    s += c[i] as isize * vs[bpos + i];
                }
                l.src_off = s;
                copy_typed(dst, src, &l)?;
                if !next(&mut c[..br], &b[..br]) {
                    break;
                }
            }
        });
        return Ok(());
    }
    dispatch_all!(values.dtype(), T => {
        let dst = tm::<T>(out)?;
        let src = ts::<T>(values)?;
        let nd = l.rank;
        loop {
            let d0 = p.offset(op, &c[..br], &os, xsz)?;
            let mut s0 = 0isize;
            for i in 0..br {
                s0 += c[i] as isize * vs[bpos + i];
            }
            walk2(&l.dims[..nd], &l.dst[..nd], &l.src[..nd], d0, s0, |d, s| {
                let (d, s) = (d as usize, s as usize);
                dst[d] = add(dst[d], src[s]);
            });
            if !next(&mut c[..br], &b[..br]) {
                break;
            }
        }
    });
    Ok(())
}

/// `index_put.out(Tensor self, Tensor?[] indices, Tensor values, bool accumulate=False, *, Tensor(a!) out)`.
fn index_put_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(6)?;
    let mut out = ctx.out(4)?;
    let x = ctx.tensor(0)?;
    view_into(
        "index_put",
        &mut out,
        &x,
        x.sizes(),
        &istrides(&x)[..x.dim()],
        0,
    )?;
    let list = ctx.opt_tensor_list(1)?;
    let values = ctx.tensor(2)?;
    let acc = ctx.bool(3)?;
    index_put_into("index_put", &mut out, &list, &values, acc)
}

/// `index_put_(Tensor(a!) self, Tensor?[] indices, Tensor values, bool accumulate=False)`:
/// `[self, indices, values, accumulate, ret]`.
fn index_put_inplace(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(5)?;
    let mut out = ctx.out(0)?;
    let list = ctx.opt_tensor_list(1)?;
    let values = ctx.tensor(2)?;
    let acc = ctx.bool(3)?;
    index_put_into("index_put_", &mut out, &list, &values, acc)
}

/// `index_select.out(Tensor self, int dim, Tensor index, *, Tensor(a!) out)`.
fn index_select_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "index_select";
    ctx.expect_args(5)?;
    let mut out = ctx.out(3)?;
    let x = ctx.tensor(0)?;
    let index = ctx.tensor(2)?;
    same_dtype(OP, &x, &out)?;
    let r = x.dim();
    let d = norm_dim(ctx.int(1)?, r).map_err(|e| err(OP, e))?;
    if index.dim() > 1 {
        return Err(KernelError::invalid(format!(
            "{OP}: index must be 0-D or 1-D, got {:?}",
            index.sizes()
        )));
    }
    let ix = Idx::of(OP, &index)?;
    let n = index.numel();
    let mut sizes = [0usize; 16];
    sizes[..r].copy_from_slice(x.sizes());
    if r > 0 {
        sizes[d] = n;
    } else if n != 1 {
        return Err(KernelError::invalid(format!(
            "{OP}: index of {n} elements for a 0-D tensor"
        )));
    }
    out.resize(&sizes[..r])?;
    let xs = istrides(&x);
    let os = istrides_mut(&out);
    let xn = if r == 0 { 1 } else { x.size(d) };
    let mut l = Layout::new();
    for k in 0..r {
        if k != d {
            l.push(x.size(k), os[k], xs[k])?;
        }
    }
    let (xd, od) = if r == 0 { (0, 0) } else { (xs[d], os[d]) };
    let ist = if index.dim() == 1 {
        index.strides()[0]
    } else {
        0
    };
    by_size!(x.dtype().element_size(), T => {
        let dst = cast_mut::<T>(out.bytes_mut())?;
        let src = cast::<T>(x.bytes())?;
        for i in 0..n {
            let v = wrap(OP, ix.get(i * ist), xn)?;
            l.src_off = v as isize * xd;
            l.dst_off = i as isize * od;
            copy_typed(dst, src, &l)?;
        }
    });
    Ok(())
}

/// Calls `f(a, b, c)` for every index of `dims` with three stride sets.
fn walk3(
    dims: &[usize],
    a: &[isize],
    b: &[isize],
    c: &[isize],
    mut f: impl FnMut(isize, isize, isize) -> Result<(), KernelError>,
) -> Result<(), KernelError> {
    if dims.contains(&0) {
        return Ok(());
    }
    let r = dims.len();
    let mut idx = [0usize; 16];
    let (mut oa, mut ob, mut oc) = (0isize, 0isize, 0isize);
    loop {
        f(oa, ob, oc)?;
        let mut d = r;
        loop {
            if d == 0 {
                return Ok(());
            }
            d -= 1;
            idx[d] += 1;
            oa += a[d];
            ob += b[d];
            oc += c[d];
            if idx[d] < dims[d] {
                break;
            }
            let n = dims[d] as isize;
            oa -= a[d] * n;
            ob -= b[d] * n;
            oc -= c[d] * n;
            idx[d] = 0;
        }
    }
}

/// Checks `index` against `self` (and `src`) for gather/scatter along `d`.
fn check_gather(
    op: &str,
    x: &[usize],
    index: &TensorRef<'_>,
    d: usize,
    src: Option<&TensorRef<'_>>,
) -> Result<(), KernelError> {
    let r = x.len().max(1);
    if index.dim().max(1) != r && index.numel() != 0 {
        return Err(KernelError::invalid(format!(
            "{op}: index rank {} != self rank {}",
            index.dim(),
            x.len()
        )));
    }
    for k in 0..index.dim() {
        if k != d && k < x.len() && index.size(k) > x[k] {
            return Err(KernelError::invalid(format!(
                "{op}: index shape {:?} exceeds self shape {x:?} at dim {k}",
                index.sizes()
            )));
        }
        if let Some(s) = src {
            if k < s.dim() && index.size(k) > s.size(k) {
                return Err(KernelError::invalid(format!(
                    "{op}: index shape {:?} exceeds src shape {:?} at dim {k}",
                    index.sizes(),
                    s.sizes()
                )));
            }
        }
    }
    Ok(())
}

/// `gather.out(Tensor self, int dim, Tensor index, *, bool sparse_grad=False, Tensor(a!) out)`.
fn gather_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "gather";
    ctx.expect_args(6)?;
    let mut out = ctx.out(4)?;
    let x = ctx.tensor(0)?;
    let index = ctx.tensor(2)?;
    same_dtype(OP, &x, &out)?;
    let d = norm_dim(ctx.int(1)?, x.dim()).map_err(|e| err(OP, e))?;
    check_gather(OP, x.sizes(), &index, d, None)?;
    let ix = Idx::of(OP, &index)?;
    out.resize(index.sizes())?;
    let r = index.dim();
    let xs = istrides(&x);
    let mut xs0 = xs;
    if r > 0 {
        xs0[d] = 0;
    }
    let (xd, n) = if x.dim() == 0 {
        (0, 1)
    } else {
        (xs[d], x.size(d))
    };
    let is = istrides(&index);
    let os = istrides_mut(&out);
    by_size!(x.dtype().element_size(), T => {
        let dst = cast_mut::<T>(out.bytes_mut())?;
        let src = cast::<T>(x.bytes())?;
        walk3(index.sizes(), &os[..r], &is[..r], &xs0[..r], |o, i, s| {
            let v = wrap(OP, ix.get(i as usize), n)?;
            dst[o as usize] = src[(s + v as isize * xd) as usize];
            Ok(())
        })?;
    });
    Ok(())
}

enum ScatterSrc<'a> {
    Tensor(TensorRef<'a>),
    Value(Scalar),
}

fn scatter_impl(
    ctx: &KernelCtx<'_>,
    op: &str,
    src_is_value: bool,
    accumulate: bool,
) -> Result<(), KernelError> {
    ctx.expect_args(6)?;
    let mut out = ctx.out(4)?;
    let x = ctx.tensor(0)?;
    let index = ctx.tensor(2)?;
    let src = if src_is_value {
        ScatterSrc::Value(ctx.scalar(3)?)
    } else {
        ScatterSrc::Tensor(ctx.tensor(3)?)
    };
    same_dtype(op, &x, &out)?;
    let d = norm_dim(ctx.int(1)?, x.dim()).map_err(|e| err(op, e))?;
    let st = match &src {
        ScatterSrc::Tensor(s) => {
            if s.dtype() != x.dtype() {
                return Err(KernelError::dtype(format!(
                    "{op}: src dtype {} != self dtype {}",
                    s.dtype(),
                    x.dtype()
                )));
            }
            Some(s)
        }
        ScatterSrc::Value(_) => None,
    };
    check_gather(op, x.sizes(), &index, d, st)?;
    let ix = Idx::of(op, &index)?;
    view_into(op, &mut out, &x, x.sizes(), &istrides(&x)[..x.dim()], 0)?;
    let r = index.dim();
    let os = istrides_mut(&out);
    let mut os0 = os;
    if r > 0 {
        os0[d] = 0;
    }
    let (od, n) = if x.dim() == 0 {
        (0, 1)
    } else {
        (os[d], x.size(d))
    };
    let is = istrides(&index);
    let ss = match &src {
        ScatterSrc::Tensor(s) => istrides(s),
        ScatterSrc::Value(_) => [0isize; 16],
    };
    dispatch_all!(x.dtype(), T => {
        let dst = tm::<T>(&mut out)?;
        let (sv, val): (&[T], T) = match &src {
            ScatterSrc::Tensor(s) => (ts::<T>(s)?, T::zero()),
            ScatterSrc::Value(v) => (&[], scalar_to::<T>(*v)),
        };
        walk3(index.sizes(), &os0[..r], &is[..r], &ss[..r], |o, i, s| {
            let v = wrap(op, ix.get(i as usize), n)?;
            let di = (o + v as isize * od) as usize;
            let val = if src_is_value { val } else { sv[s as usize] };
            dst[di] = if accumulate { add(dst[di], val) } else { val };
            Ok(())
        })?;
    });
    Ok(())
}

/// `scatter.src_out(Tensor self, int dim, Tensor index, Tensor src, *, Tensor(a!) out)`.
fn scatter_src_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    scatter_impl(ctx, "scatter", false, false)
}
/// `scatter.value_out(Tensor self, int dim, Tensor index, Scalar value, *, Tensor(a!) out)`.
fn scatter_value_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    scatter_impl(ctx, "scatter", true, false)
}
/// `scatter_add.out(Tensor self, int dim, Tensor index, Tensor src, *, Tensor(a!) out)`.
fn scatter_add_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    scatter_impl(ctx, "scatter_add", false, true)
}

fn bool_mask<'a>(op: &str, m: &TensorRef<'a>) -> Result<&'a [u8], KernelError> {
    match m.dtype() {
        ScalarType::Bool | ScalarType::Byte => ts::<u8>(m),
        other => Err(KernelError::dtype(format!(
            "{op}: mask must be Bool, got {other}"
        ))),
    }
}

/// Broadcast strides of `t` against `dims` (checked).
fn bstrides(op: &str, t: &TensorRef<'_>, dims: &[usize]) -> Result<[isize; 16], KernelError> {
    let st = t.strides();
    let (r, n) = (t.dim(), dims.len());
    let mut o = [0isize; 16];
    for i in 0..r {
        let oi = n - r + i;
        if t.size(i) == dims[oi] {
            o[oi] = st[i] as isize;
        } else if t.size(i) != 1 {
            return Err(KernelError::invalid(format!(
                "{op}: shape {:?} cannot be broadcast to {dims:?}",
                t.sizes()
            )));
        }
    }
    Ok(o)
}

/// `masked_select.out(Tensor self, Tensor mask, *, Tensor(a!) out)`.
fn masked_select_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "masked_select";
    ctx.expect_args(4)?;
    let mut out = ctx.out(2)?;
    let x = ctx.tensor(0)?;
    let mask = ctx.tensor(1)?;
    same_dtype(OP, &x, &out)?;
    let md = bool_mask(OP, &mask)?;
    let (b, br) = broadcast_shapes(x.sizes(), mask.sizes()).map_err(|e| err(OP, e))?;
    let dims = &b[..br];
    let xs = bstrides(OP, &x, dims)?;
    let ms = bstrides(OP, &mask, dims)?;
    let mut count = 0usize;
    walk2(dims, &ms[..br], &ms[..br], 0, 0, |m, _| {
        count += (md[m as usize] != 0) as usize
    });
    out.resize(&[count])?;
    by_size!(x.dtype().element_size(), T => {
        let dst = cast_mut::<T>(out.bytes_mut())?;
        let src = cast::<T>(x.bytes())?;
        let mut k = 0;
        walk2(dims, &ms[..br], &xs[..br], 0, 0, |m, s| {
            if md[m as usize] != 0 {
                dst[k] = src[s as usize];
                k += 1;
            }
        });
    });
    Ok(())
}

/// `masked_scatter.out(Tensor self, Tensor mask, Tensor source, *, Tensor(a!) out)`.
fn masked_scatter_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "masked_scatter";
    ctx.expect_args(5)?;
    let mut out = ctx.out(3)?;
    let x = ctx.tensor(0)?;
    let mask = ctx.tensor(1)?;
    let source = ctx.tensor(2)?;
    same_dtype(OP, &x, &out)?;
    if source.dtype() != x.dtype() {
        return Err(KernelError::dtype(format!(
            "{OP}: source dtype {} != self dtype {}",
            source.dtype(),
            x.dtype()
        )));
    }
    let md = bool_mask(OP, &mask)?;
    let (b, br) = broadcast_shapes(x.sizes(), mask.sizes()).map_err(|e| err(OP, e))?;
    let dims = &b[..br];
    let xs = bstrides(OP, &x, dims)?;
    let ms = bstrides(OP, &mask, dims)?;
    let mut count = 0usize;
    walk2(dims, &ms[..br], &ms[..br], 0, 0, |m, _| {
        count += (md[m as usize] != 0) as usize
    });
    if count > source.numel() {
        return Err(KernelError::invalid(format!(
            "{OP}: mask selects {count} elements but source has {}",
            source.numel()
        )));
    }
    if !source.is_contiguous() {
        return Err(KernelError::unsupported(format!(
            "{OP}: source must be contiguous"
        )));
    }
    out.resize(dims)?;
    let os = istrides_mut(&out);
    by_size!(x.dtype().element_size(), T => {
        let src = cast::<T>(x.bytes())?;
        let sv = cast::<T>(source.bytes())?;
        let dst = cast_mut::<T>(out.bytes_mut())?;
        let mut k = 0;
        walk3(dims, &os[..br], &xs[..br], &ms[..br], |o, s, m| {
            dst[o as usize] = if md[m as usize] != 0 {
                k += 1;
                sv[k - 1]
            } else {
                src[s as usize]
            };
            Ok(())
        })?;
    });
    Ok(())
}

/// `nonzero.out(Tensor self, *, Tensor(a!) out)`: `out` is `[n, rank]` Long.
fn nonzero_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "nonzero";
    ctx.expect_args(3)?;
    let mut out = ctx.out(1)?;
    let x = ctx.tensor(0)?;
    if out.dtype() != ScalarType::Long {
        return Err(KernelError::dtype(format!(
            "{OP}: out must be Long, got {}",
            out.dtype()
        )));
    }
    let r = x.dim();
    let xs = istrides(&x);
    dispatch_all!(x.dtype(), T => {
        let src = ts::<T>(&x)?;
        let zero = T::zero();
        let mut count = 0usize;
        walk2(x.sizes(), &xs[..r], &xs[..r], 0, 0, |s, _| count += (src[s as usize] != zero) as usize);
        out.resize(&[count, r])?;
        if !out.is_contiguous() {
            return Err(KernelError::unsupported(format!("{OP}: out must be contiguous")));
        }
        let dst = tm::<i64>(&mut out)?;
        let mut k = 0;
        let mut c = [0usize; 16];
        if x.numel() > 0 {
            loop {
                let mut s = 0isize;
                for i in 0..r {
                    s += c[i] as isize * xs[i];
                }
                if src[s as usize] != zero {
                    for i in 0..r {
                        dst[k * r + i] = c[i] as i64;
                    }
                    k += 1;
                }
                if !next(&mut c[..r], x.sizes()) {
                    break;
                }
            }
        }
    });
    Ok(())
}

/// `repeat_interleave.Tensor_out(Tensor repeats, *, SymInt? output_size=None, Tensor(a!) out)`.
fn repeat_interleave_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "repeat_interleave";
    ctx.expect_args(4)?;
    let mut out = ctx.out(2)?;
    let rep = ctx.tensor(0)?;
    if rep.dim() > 1 {
        return Err(KernelError::invalid(format!(
            "{OP}: repeats must be 0-D or 1-D, got {:?}",
            rep.sizes()
        )));
    }
    if out.dtype() != rep.dtype() {
        return Err(KernelError::dtype(format!(
            "{OP}: out dtype {} != repeats dtype {}",
            out.dtype(),
            rep.dtype()
        )));
    }
    let ix = Idx::of(OP, &rep)?;
    let n = rep.numel();
    let mut total = 0i64;
    for i in 0..n {
        let v = ix.get(i);
        if v < 0 {
            return Err(KernelError::invalid(format!(
                "{OP}: repeats must be non-negative, got {v}"
            )));
        }
        total += v;
    }
    if let Some(s) = ctx.opt_int(1)? {
        if s != total {
            return Err(KernelError::invalid(format!(
                "{OP}: output_size {s} != sum of repeats {total}"
            )));
        }
    }
    out.resize(&[total as usize])?;
    let mut k = 0usize;
    match rep.dtype() {
        ScalarType::Long => {
            let dst = tm::<i64>(&mut out)?;
            for i in 0..n {
                for _ in 0..ix.get(i) {
                    dst[k] = i as i64;
                    k += 1;
                }
            }
        }
        _ => {
            let dst = tm::<i32>(&mut out)?;
            for i in 0..n {
                for _ in 0..ix.get(i) {
                    dst[k] = i as i32;
                    k += 1;
                }
            }
        }
    }
    Ok(())
}
