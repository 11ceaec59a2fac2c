//! Shape and copy kernels: view-like copies (view/permute/expand/slice/...), joins and
//! splits (cat/stack/split/unbind), and data-dependent indexing (in [`index`]).
//! Every view-like op reduces to one strided copy through [`engine`].
#![allow(clippy::needless_range_loop)] // loops index several parallel arrays

use pteron_runtime::{KernelCtx, KernelError, Registry, TensorMut, TensorRef};

use crate::util::norm_dim;

pub(crate) mod engine;
mod index;

use engine::{copy_bytes, istrides, istrides_mut, reshape_into, same_dtype, view_into, Layout};

pub(crate) fn register(reg: &mut Registry) {
    reg.register("aten::view_copy.out", view_copy_out);
    reg.register("aten::_unsafe_view.out", view_copy_out);
    reg.register("aten::permute_copy.out", permute_copy_out);
    reg.register("aten::transpose_copy.int_out", transpose_copy_out);
    reg.register("aten::t_copy.out", t_copy_out);
    reg.register("aten::expand_copy.out", expand_copy_out);
    reg.register("aten::squeeze_copy.dim_out", squeeze_copy_dim_out);
    reg.register("aten::squeeze_copy.dims_out", squeeze_copy_dims_out);
    reg.register("aten::squeeze_copy.out", squeeze_copy_out);
    reg.register("aten::unsqueeze_copy.out", unsqueeze_copy_out);
    reg.register("aten::alias_copy.out", identity_copy_out);
    reg.register("aten::detach_copy.out", identity_copy_out);
    reg.register("aten::lift_fresh_copy.out", identity_copy_out);
    reg.register("aten::as_strided_copy.out", as_strided_copy_out);
    reg.register("aten::cat.out", cat_out);
    reg.register("aten::stack.out", stack_out);
    reg.register("aten::split_copy.Tensor_out", split_copy_out);
    reg.register("aten::split_with_sizes_copy.out", split_with_sizes_copy_out);
    reg.register("aten::unbind_copy.int_out", unbind_copy_out);
    reg.register("aten::slice_copy.Tensor_out", slice_copy_out);
    reg.register("aten::select_copy.int_out", select_copy_out);
    reg.register("aten::slice_scatter.out", slice_scatter_out);
    reg.register("aten::select_scatter.out", select_scatter_out);
    reg.register("aten::narrow_copy.out", narrow_copy_out);
    reg.register("aten::flip.out", flip_out);
    reg.register("aten::roll.out", roll_out);
    reg.register("aten::repeat.out", repeat_out);
    reg.register("aten::tril.out", tril_out);
    reg.register("aten::triu.out", triu_out);
    reg.register("aten::diagonal_copy.out", diagonal_copy_out);
    reg.register("aten::unfold_copy.out", unfold_copy_out);
    index::register(reg);
}

fn err(op: &str, e: KernelError) -> KernelError {
    KernelError::new(e.kind, format!("{op}: {}", e.msg))
}

/// `view_copy.out(Tensor self, SymInt[] size, *, Tensor(a!) out)`: `[self, size, out, ret]`.
fn view_copy_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(4)?;
    let mut out = ctx.out(2)?;
    let x = ctx.tensor(0)?;
    let (sizes, n) = crate::prim::infer_size(&ctx.int_list(1)?, x.numel(), "view_copy")?;
    reshape_into("view_copy", &mut out, &x, &sizes[..n])
}

/// `permute_copy.out(Tensor self, int[] dims, *, Tensor(a!) out)`.
fn permute_copy_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(4)?;
    let mut out = ctx.out(2)?;
    let x = ctx.tensor(0)?;
    let (p, n) = ctx.int_list(1)?.to_array()?;
    let r = x.dim();
    if n != r {
        return Err(KernelError::invalid(format!(
            "permute_copy: {n} dims given for a tensor of rank {r}"
        )));
    }
    let xs = istrides(&x);
    let mut seen = [false; 16];
    let mut dims = [0usize; 16];
    let mut st = [0isize; 16];
    for i in 0..r {
        let d = norm_dim(p[i], r).map_err(|e| err("permute_copy", e))?;
        if seen[d] {
            return Err(KernelError::invalid(format!(
                "permute_copy: dim {d} repeated in {:?}",
                &p[..n]
            )));
        }
        seen[d] = true;
        dims[i] = x.size(d);
        st[i] = xs[d];
    }
    view_into("permute_copy", &mut out, &x, &dims[..r], &st[..r], 0)
}

fn transpose_into(
    op: &str,
    out: &mut TensorMut<'_>,
    x: &TensorRef<'_>,
    d0: i64,
    d1: i64,
) -> Result<(), KernelError> {
    let r = x.dim();
    let (a, b) = if r == 0 {
        norm_dim(d0, 0).map_err(|e| err(op, e))?;
        norm_dim(d1, 0).map_err(|e| err(op, e))?;
        (0, 0)
    } else {
        (
            norm_dim(d0, r).map_err(|e| err(op, e))?,
            norm_dim(d1, r).map_err(|e| err(op, e))?,
        )
    };
    let xs = istrides(x);
    let mut dims = [0usize; 16];
    let mut st = [0isize; 16];
    dims[..r].copy_from_slice(x.sizes());
    st[..r].copy_from_slice(&xs[..r]);
    if r > 0 {
        dims.swap(a, b);
        st.swap(a, b);
    }
    view_into(op, out, x, &dims[..r], &st[..r], 0)
}

/// `transpose_copy.int_out(Tensor self, int dim0, int dim1, *, Tensor(a!) out)`.
fn transpose_copy_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(5)?;
    let mut out = ctx.out(3)?;
    let x = ctx.tensor(0)?;
    transpose_into("transpose_copy", &mut out, &x, ctx.int(1)?, ctx.int(2)?)
}

/// `t_copy.out(Tensor self, *, Tensor(a!) out)`.
fn t_copy_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(3)?;
    let mut out = ctx.out(1)?;
    let x = ctx.tensor(0)?;
    if x.dim() > 2 {
        return Err(KernelError::invalid(format!(
            "t_copy: expected rank <= 2, got shape {:?}",
            x.sizes()
        )));
    }
    if x.dim() < 2 {
        return view_into(
            "t_copy",
            &mut out,
            &x,
            x.sizes(),
            &istrides(&x)[..x.dim()],
            0,
        );
    }
    transpose_into("t_copy", &mut out, &x, 0, 1)
}

/// `expand_copy.out(Tensor self, SymInt[] size, *, bool implicit=False, Tensor(a!) out)`.
fn expand_copy_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(5)?;
    let mut out = ctx.out(3)?;
    let x = ctx.tensor(0)?;
    let (sz, n) = ctx.int_list(1)?.to_array()?;
    let r = x.dim();
    if n < r {
        return Err(KernelError::invalid(format!(
            "expand_copy: {n} sizes given for a tensor of rank {r}"
        )));
    }
    let xs = istrides(&x);
    let mut dims = [0usize; 16];
    let mut st = [0isize; 16];
    let lead = n - r;
    for i in 0..n {
        let want = sz[i];
        if i < lead {
            if want < 0 {
                return Err(KernelError::invalid(format!(
                    "expand_copy: size {want} for a new leading dim"
                )));
            }
            dims[i] = want as usize;
            st[i] = 0;
        } else {
            let have = x.size(i - lead);
            if want == -1 || want as usize == have {
                dims[i] = have;
                st[i] = xs[i - lead];
            } else if have == 1 && want >= 0 {
                dims[i] = want as usize;
                st[i] = 0;
            } else {
                return Err(KernelError::invalid(format!(
                    "expand_copy: cannot expand shape {:?} to {:?}",
                    x.sizes(),
                    &sz[..n]
                )));
            }
        }
    }
    view_into("expand_copy", &mut out, &x, &dims[..n], &st[..n], 0)
}

/// Copies `x` with the dims flagged in `drop` (all of size 1) removed.
fn squeeze_into(
    op: &str,
    out: &mut TensorMut<'_>,
    x: &TensorRef<'_>,
    drop: &[bool; 16],
) -> Result<(), KernelError> {
    let xs = istrides(x);
    let mut dims = [0usize; 16];
    let mut st = [0isize; 16];
    let mut m = 0;
    for i in 0..x.dim() {
        if !(drop[i] && x.size(i) == 1) {
            dims[m] = x.size(i);
            st[m] = xs[i];
            m += 1;
        }
    }
    view_into(op, out, x, &dims[..m], &st[..m], 0)
}

/// `squeeze_copy.dim_out(Tensor self, int dim, *, Tensor(a!) out)`.
fn squeeze_copy_dim_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(4)?;
    let mut out = ctx.out(2)?;
    let x = ctx.tensor(0)?;
    let mut drop = [false; 16];
    if x.dim() > 0 {
        drop[norm_dim(ctx.int(1)?, x.dim()).map_err(|e| err("squeeze_copy", e))?] = true;
    } else {
        norm_dim(ctx.int(1)?, 0).map_err(|e| err("squeeze_copy", e))?;
    }
    squeeze_into("squeeze_copy", &mut out, &x, &drop)
}

/// `squeeze_copy.dims_out(Tensor self, int[] dim, *, Tensor(a!) out)`.
fn squeeze_copy_dims_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(4)?;
    let mut out = ctx.out(2)?;
    let x = ctx.tensor(0)?;
    let (d, n) = ctx.int_list(1)?.to_array()?;
    let mut drop = [false; 16];
    for &v in &d[..n] {
        let k = norm_dim(v, x.dim()).map_err(|e| err("squeeze_copy", e))?;
        if x.dim() > 0 {
            drop[k] = true;
        }
    }
    squeeze_into("squeeze_copy", &mut out, &x, &drop)
}

/// `squeeze_copy.out(Tensor self, *, Tensor(a!) out)`: drops every size-1 dim.
fn squeeze_copy_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(3)?;
    let mut out = ctx.out(1)?;
    let x = ctx.tensor(0)?;
    squeeze_into("squeeze_copy", &mut out, &x, &[true; 16])
}

/// `unsqueeze_copy.out(Tensor self, int dim, *, Tensor(a!) out)`.
fn unsqueeze_copy_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(4)?;
    let mut out = ctx.out(2)?;
    let x = ctx.tensor(0)?;
    let r = x.dim();
    let d = norm_dim(ctx.int(1)?, r + 1).map_err(|e| err("unsqueeze_copy", e))?;
    if r + 1 > 16 {
        return Err(KernelError::invalid("unsqueeze_copy: rank above 16"));
    }
    let xs = istrides(&x);
    let mut dims = [0usize; 16];
    let mut st = [0isize; 16];
    let mut m = 0;
    for i in 0..=r {
        if i == d {
            dims[m] = 1;
            st[m] = 0;
            m += 1;
        }
        if i < r {
            dims[m] = x.size(i);
            st[m] = xs[i];
            m += 1;
        }
    }
    view_into("unsqueeze_copy", &mut out, &x, &dims[..m], &st[..m], 0)
}

/// `alias_copy.out` / `detach_copy.out` / `lift_fresh_copy.out`: `[self, out, ret]`.
fn identity_copy_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(3)?;
    let mut out = ctx.out(1)?;
    let x = ctx.tensor(0)?;
    view_into("copy", &mut out, &x, x.sizes(), &istrides(&x)[..x.dim()], 0)
}

/// `as_strided_copy.out(Tensor self, SymInt[] size, SymInt[] stride, SymInt? storage_offset=None, *, Tensor(a!) out)`.
/// Strides and offset address `self`'s memory directly.
fn as_strided_copy_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(6)?;
    let mut out = ctx.out(4)?;
    let x = ctx.tensor(0)?;
    let (sz, n) = ctx.int_list(1)?.to_array()?;
    let (st, m) = ctx.int_list(2)?.to_array()?;
    if n != m {
        return Err(KernelError::invalid(format!(
            "as_strided_copy: {n} sizes but {m} strides"
        )));
    }
    let off = ctx.opt_int(3)?.unwrap_or(0);
    let mut dims = [0usize; 16];
    let mut sst = [0isize; 16];
    for i in 0..n {
        if sz[i] < 0 || st[i] < 0 {
            return Err(KernelError::invalid(format!(
                "as_strided_copy: negative size or stride ({:?}, {:?})",
                &sz[..n],
                &st[..n]
            )));
        }
        dims[i] = sz[i] as usize;
        sst[i] = st[i] as isize;
    }
    if off < 0 {
        return Err(KernelError::invalid(format!(
            "as_strided_copy: negative storage offset {off}"
        )));
    }
    view_into(
        "as_strided_copy",
        &mut out,
        &x,
        &dims[..n],
        &sst[..n],
        off as isize,
    )
}

/// Copies `x` into the sub-block of `out` starting at `offset` along `dim`.
fn copy_block(
    op: &str,
    out: &mut TensorMut<'_>,
    x: &TensorRef<'_>,
    dims: &[usize],
    src_st: &[isize],
    dim: usize,
    offset: usize,
) -> Result<(), KernelError> {
    let os = istrides_mut(out);
    let mut l = Layout::new();
    for k in 0..dims.len() {
        l.push(dims[k], os[k], src_st[k])?;
    }
    l.dst_off = os[dim] * offset as isize;
    copy_bytes(x.dtype().element_size(), out.bytes_mut(), x.bytes(), &l).map_err(|e| err(op, e))
}

/// `cat.out(Tensor[] tensors, int dim=0, *, Tensor(a!) out)`.
fn cat_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(4)?;
    let mut out = ctx.out(2)?;
    let list = ctx.tensor_list(0)?;
    let dim = ctx.int(1)?;
    // Reference: the first tensor that is not a legacy empty 1-D tensor.
    let mut refi = None;
    for k in 0..list.len() {
        let (_, s) = list.meta(k)?;
        if !(s.rank() == 1 && s.dims()[0] == 0) {
            refi = Some(k);
            break;
        }
    }
    let Some(refi) = refi else {
        // Every input is empty.
        let r = out.dim();
        let mut z = [0usize; 16];
        if r > 0 {
            z[..r].copy_from_slice(out.shape().dims());
            z[norm_dim(dim, r)?] = 0;
        }
        return out.resize(&z[..r]);
    };
    let (_, rs) = list.meta(refi)?;
    let r = rs.rank();
    if r == 0 {
        return Err(KernelError::invalid(
            "cat: zero-dimensional tensors cannot be concatenated",
        ));
    }
    let d = norm_dim(dim, r).map_err(|e| err("cat", e))?;
    let mut sizes = [0usize; 16];
    sizes[..r].copy_from_slice(rs.dims());
    sizes[d] = 0;
    for k in 0..list.len() {
        let (dt, s) = list.meta(k)?;
        if dt != out.dtype() {
            return Err(KernelError::dtype(format!(
                "cat: tensor {k} has dtype {dt}, out has {}",
                out.dtype()
            )));
        }
        if s.rank() == 1 && s.dims()[0] == 0 {
            continue;
        }
        if s.rank() != r || (0..r).any(|i| i != d && s.dims()[i] != rs.dims()[i]) {
            return Err(KernelError::invalid(format!(
                "cat: tensor {k} has shape {:?}, incompatible with {:?} along dim {d}",
                s.dims(),
                rs.dims()
            )));
        }
        sizes[d] += s.dims()[d];
    }
    out.resize(&sizes[..r])?;
    let mut off = 0;
    for k in 0..list.len() {
        let x = list.get(k)?;
        if (x.dim() == 1 && x.size(0) == 0) || x.numel() == 0 {
            if x.dim() == r {
                off += x.size(d);
            }
            continue;
        }
        copy_block("cat", &mut out, &x, x.sizes(), &istrides(&x)[..r], d, off)?;
        off += x.size(d);
    }
    Ok(())
}

/// `stack.out(Tensor[] tensors, int dim=0, *, Tensor(a!) out)`.
fn stack_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(4)?;
    let mut out = ctx.out(2)?;
    let list = ctx.tensor_list(0)?;
    if list.is_empty() {
        return Err(KernelError::invalid(
            "stack: expects a non-empty list of tensors",
        ));
    }
    let (_, s0) = list.meta(0)?;
    let r = s0.rank();
    if r + 1 > 16 {
        return Err(KernelError::invalid("stack: rank above 16"));
    }
    let d = norm_dim(ctx.int(1)?, r + 1).map_err(|e| err("stack", e))?;
    let mut sizes = [0usize; 16];
    let mut m = 0;
    for i in 0..=r {
        if i == d {
            sizes[m] = list.len();
            m += 1;
        }
        if i < r {
            sizes[m] = s0.dims()[i];
            m += 1;
        }
    }
    for k in 0..list.len() {
        let (dt, s) = list.meta(k)?;
        if dt != out.dtype() {
            return Err(KernelError::dtype(format!(
                "stack: tensor {k} has dtype {dt}, out has {}",
                out.dtype()
            )));
        }
        if s.dims() != s0.dims() {
            return Err(KernelError::invalid(format!(
                "stack: tensor {k} has shape {:?}, tensor 0 has {:?}",
                s.dims(),
                s0.dims()
            )));
        }
    }
    out.resize(&sizes[..r + 1])?;
    for k in 0..list.len() {
        let x = list.get(k)?;
        let xs = istrides(&x);
        let mut dims = [0usize; 16];
        let mut st = [0isize; 16];
        let mut m = 0;
        for i in 0..=r {
            if i == d {
                dims[m] = 1;
                st[m] = 0;
                m += 1;
            }
            if i < r {
                dims[m] = x.size(i);
                st[m] = xs[i];
                m += 1;
            }
        }
        copy_block("stack", &mut out, &x, &dims[..m], &st[..m], d, k)?;
    }
    Ok(())
}

/// Writes consecutive chunks of `x` along `dim` (sizes from `chunk(k)`) into the
/// output list at argument `arg`.
fn split_into(
    ctx: &KernelCtx<'_>,
    op: &str,
    arg: usize,
    x: &TensorRef<'_>,
    dim: usize,
    chunk: impl Fn(usize) -> usize,
    squeeze: bool,
) -> Result<(), KernelError> {
    let list = ctx.tensor_list(arg)?;
    let xs = istrides(x);
    let r = x.dim();
    let mut off = 0usize;
    for k in 0..list.len() {
        let c = chunk(k);
        if off + c > x.size(dim) {
            return Err(KernelError::invalid(format!(
                "{op}: chunks exceed dim {dim} of size {}",
                x.size(dim)
            )));
        }
        let mut dims = [0usize; 16];
        let mut st = [0isize; 16];
        let mut m = 0;
        for i in 0..r {
            if squeeze && i == dim {
                continue;
            }
            dims[m] = if i == dim { c } else { x.size(i) };
            st[m] = xs[i];
            m += 1;
        }
        let mut o = list.get_mut(k)?;
        view_into(op, &mut o, x, &dims[..m], &st[..m], xs[dim] * off as isize)?;
        off += c;
    }
    if off != x.size(dim) {
        return Err(KernelError::invalid(format!(
            "{op}: chunks cover {off} of {} elements along dim {dim}",
            x.size(dim)
        )));
    }
    Ok(())
}

fn expect_args_or_void(ctx: &KernelCtx<'_>, n: usize) -> Result<(), KernelError> {
    if ctx.num_args() == n || ctx.num_args() == n + 1 {
        Ok(())
    } else {
        ctx.expect_args(n)
    }
}

/// `split_copy.Tensor_out(Tensor self, SymInt split_size, int dim=0, *, Tensor(a!)[] out) -> ()`.
fn split_copy_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    expect_args_or_void(ctx, 4)?;
    let x = ctx.tensor(0)?;
    if x.dim() == 0 {
        return Err(KernelError::invalid(
            "split_copy: cannot split a zero-dimensional tensor",
        ));
    }
    let size = ctx.int(1)?;
    let d = norm_dim(ctx.int(2)?, x.dim()).map_err(|e| err("split_copy", e))?;
    let n = x.size(d);
    let len = ctx.tensor_list(3)?.len();
    if size < 0 || (size == 0 && n != 0) {
        return Err(KernelError::invalid(format!(
            "split_copy: invalid split size {size}"
        )));
    }
    let size = size as usize;
    let expect = if size == 0 {
        1
    } else {
        n.div_ceil(size).max(1)
    };
    if len != expect {
        return Err(KernelError::invalid(format!(
            "split_copy: {len} outputs given, splitting {n} by {size} gives {expect}"
        )));
    }
    split_into(
        ctx,
        "split_copy",
        3,
        &x,
        d,
        |k| size.min(n.saturating_sub(k * size)),
        false,
    )
}

/// `split_with_sizes_copy.out(Tensor self, SymInt[] split_sizes, int dim=0, *, Tensor(a!)[] out) -> ()`.
fn split_with_sizes_copy_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    expect_args_or_void(ctx, 4)?;
    let x = ctx.tensor(0)?;
    if x.dim() == 0 {
        return Err(KernelError::invalid(
            "split_with_sizes_copy: cannot split a zero-dimensional tensor",
        ));
    }
    let sizes = ctx.int_list(1)?;
    let d = norm_dim(ctx.int(2)?, x.dim()).map_err(|e| err("split_with_sizes_copy", e))?;
    let len = ctx.tensor_list(3)?.len();
    if len != sizes.len() {
        return Err(KernelError::invalid(format!(
            "split_with_sizes_copy: {} sizes but {len} outputs",
            sizes.len()
        )));
    }
    let mut total = 0i64;
    for k in 0..sizes.len() {
        let v = sizes.get(k)?;
        if v < 0 {
            return Err(KernelError::invalid(format!(
                "split_with_sizes_copy: negative size {v}"
            )));
        }
        total += v;
    }
    if total as usize != x.size(d) {
        return Err(KernelError::invalid(format!(
            "split_with_sizes_copy: sizes sum to {total}, dim {d} has {}",
            x.size(d)
        )));
    }
    split_into(
        ctx,
        "split_with_sizes_copy",
        3,
        &x,
        d,
        |k| sizes.get(k).unwrap_or(0) as usize,
        false,
    )
}

/// `unbind_copy.int_out(Tensor self, int dim=0, *, Tensor(a!)[] out) -> ()`.
fn unbind_copy_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    expect_args_or_void(ctx, 3)?;
    let x = ctx.tensor(0)?;
    if x.dim() == 0 {
        return Err(KernelError::invalid(
            "unbind_copy: cannot unbind a zero-dimensional tensor",
        ));
    }
    let d = norm_dim(ctx.int(1)?, x.dim()).map_err(|e| err("unbind_copy", e))?;
    let len = ctx.tensor_list(2)?.len();
    if len != x.size(d) {
        return Err(KernelError::invalid(format!(
            "unbind_copy: {len} outputs for dim {d} of size {}",
            x.size(d)
        )));
    }
    split_into(ctx, "unbind_copy", 2, &x, d, |_| 1, true)
}

/// Python-style slice bounds clamped to `[0, n]`: `(start, count)`.
pub(crate) fn slice_bounds(
    start: Option<i64>,
    end: Option<i64>,
    step: i64,
    n: usize,
) -> Result<(usize, usize), KernelError> {
    if step <= 0 {
        return Err(KernelError::invalid(format!(
            "slice step must be positive, got {step}"
        )));
    }
    let n = n as i64;
    let norm = |v: i64| -> i64 {
        let v = if v < 0 { v + n } else { v };
        v.clamp(0, n)
    };
    let s = norm(start.unwrap_or(0));
    let e = norm(end.unwrap_or(n));
    // (e - s - 1) / step + 1 cannot overflow, even for a step near i64::MAX.
    let count = if e > s { (e - s - 1) / step + 1 } else { 0 };
    Ok((s as usize, count as usize))
}

/// The view of `x` sliced along `dim`: dims, strides and offset.
fn slice_view(
    x: &TensorRef<'_>,
    d: usize,
    start: usize,
    count: usize,
    step: i64,
) -> ([usize; 16], [isize; 16], isize) {
    let xs = istrides(x);
    let mut dims = [0usize; 16];
    dims[..x.dim()].copy_from_slice(x.sizes());
    dims[d] = count;
    let mut st = xs;
    st[d] = xs[d] * step as isize;
    (dims, st, xs[d] * start as isize)
}

/// `slice_copy.Tensor_out(Tensor self, int dim=0, SymInt? start=None, SymInt? end=None, SymInt step=1, *, Tensor(a!) out)`.
fn slice_copy_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(7)?;
    let mut out = ctx.out(5)?;
    let x = ctx.tensor(0)?;
    if x.dim() == 0 {
        return Err(KernelError::invalid(
            "slice_copy: cannot slice a zero-dimensional tensor",
        ));
    }
    let d = norm_dim(ctx.int(1)?, x.dim()).map_err(|e| err("slice_copy", e))?;
    let step = ctx.int(4)?;
    let (s, c) = slice_bounds(ctx.opt_int(2)?, ctx.opt_int(3)?, step, x.size(d))
        .map_err(|e| err("slice_copy", e))?;
    // With at most one element the step never applies; otherwise step < size, so the
    // stride product stays within the tensor.
    let step = if c <= 1 { 1 } else { step };
    let (dims, st, off) = slice_view(&x, d, s, c, step);
    view_into(
        "slice_copy",
        &mut out,
        &x,
        &dims[..x.dim()],
        &st[..x.dim()],
        off,
    )
}

fn select_index(op: &str, index: i64, n: usize) -> Result<usize, KernelError> {
    let i = if index < 0 { index + n as i64 } else { index };
    if i < 0 || i >= n as i64 {
        return Err(KernelError::invalid(format!(
            "{op}: index {index} out of range for size {n}"
        )));
    }
    Ok(i as usize)
}

/// `select_copy.int_out(Tensor self, int dim, SymInt index, *, Tensor(a!) out)`.
fn select_copy_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(5)?;
    let mut out = ctx.out(3)?;
    let x = ctx.tensor(0)?;
    if x.dim() == 0 {
        return Err(KernelError::invalid(
            "select_copy: cannot select from a zero-dimensional tensor",
        ));
    }
    let d = norm_dim(ctx.int(1)?, x.dim()).map_err(|e| err("select_copy", e))?;
    let i = select_index("select_copy", ctx.int(2)?, x.size(d))?;
    let xs = istrides(&x);
    let mut dims = [0usize; 16];
    let mut st = [0isize; 16];
    let mut m = 0;
    for k in 0..x.dim() {
        if k != d {
            dims[m] = x.size(k);
            st[m] = xs[k];
            m += 1;
        }
    }
    view_into(
        "select_copy",
        &mut out,
        &x,
        &dims[..m],
        &st[..m],
        xs[d] * i as isize,
    )
}

/// Copies `self` into `out`, then `src` into the sub-view of `out` given by `dims`,
/// per-dim `out` stride multipliers `mul` and element offset `base` (along out strides).
fn scatter_view(
    op: &str,
    out: &mut TensorMut<'_>,
    x: &TensorRef<'_>,
    src: &TensorRef<'_>,
    view: impl Fn(&[isize; 16]) -> ([usize; 16], [isize; 16], usize, isize),
) -> Result<(), KernelError> {
    same_dtype(op, x, out)?;
    if src.dtype() != x.dtype() {
        return Err(KernelError::dtype(format!(
            "{op}: src dtype {} != self dtype {}",
            src.dtype(),
            x.dtype()
        )));
    }
    view_into(op, out, x, x.sizes(), &istrides(x)[..x.dim()], 0)?;
    let os = istrides_mut(out);
    let (dims, dst_st, m, dst_off) = view(&os);
    if src.sizes() != &dims[..m] {
        return Err(KernelError::invalid(format!(
            "{op}: src shape {:?} != expected {:?}",
            src.sizes(),
            &dims[..m]
        )));
    }
    let ss = istrides(src);
    let mut l = Layout::new();
    for k in 0..m {
        l.push(dims[k], dst_st[k], ss[k])?;
    }
    l.dst_off = dst_off;
    copy_bytes(x.dtype().element_size(), out.bytes_mut(), src.bytes(), &l).map_err(|e| err(op, e))
}

/// `slice_scatter.out(Tensor self, Tensor src, int dim=0, SymInt? start=None, SymInt? end=None, SymInt step=1, *, Tensor(a!) out)`.
fn slice_scatter_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(8)?;
    let mut out = ctx.out(6)?;
    let x = ctx.tensor(0)?;
    let src = ctx.tensor(1)?;
    if x.dim() == 0 {
        return Err(KernelError::invalid("slice_scatter: zero-dimensional self"));
    }
    let d = norm_dim(ctx.int(2)?, x.dim()).map_err(|e| err("slice_scatter", e))?;
    let step = ctx.int(5)?;
    let (s, c) = slice_bounds(ctx.opt_int(3)?, ctx.opt_int(4)?, step, x.size(d))
        .map_err(|e| err("slice_scatter", e))?;
    let step = if c <= 1 { 1 } else { step }; // see slice_copy_out
    let r = x.dim();
    scatter_view("slice_scatter", &mut out, &x, &src, |os| {
        let mut dims = [0usize; 16];
        dims[..r].copy_from_slice(x.sizes());
        dims[d] = c;
        let mut st = *os;
        st[d] = os[d] * step as isize;
        (dims, st, r, os[d] * s as isize)
    })
}

/// `select_scatter.out(Tensor self, Tensor src, int dim, SymInt index, *, Tensor(a!) out)`.
fn select_scatter_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(6)?;
    let mut out = ctx.out(4)?;
    let x = ctx.tensor(0)?;
    let src = ctx.tensor(1)?;
    if x.dim() == 0 {
        return Err(KernelError::invalid(
            "select_scatter: zero-dimensional self",
        ));
    }
    let d = norm_dim(ctx.int(2)?, x.dim()).map_err(|e| err("select_scatter", e))?;
    let i = select_index("select_scatter", ctx.int(3)?, x.size(d))?;
    let r = x.dim();
    scatter_view("select_scatter", &mut out, &x, &src, |os| {
        let mut dims = [0usize; 16];
        let mut st = [0isize; 16];
        let mut m = 0;
        for k in 0..r {
            if k != d {
                dims[m] = x.size(k);
                st[m] = os[k];
                m += 1;
            }
        }
        (dims, st, m, os[d] * i as isize)
    })
}

/// `narrow_copy.out(Tensor self, int dim, SymInt start, SymInt length, *, Tensor(a!) out)`.
fn narrow_copy_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(6)?;
    let mut out = ctx.out(4)?;
    let x = ctx.tensor(0)?;
    if x.dim() == 0 {
        return Err(KernelError::invalid("narrow_copy: zero-dimensional self"));
    }
    let d = norm_dim(ctx.int(1)?, x.dim()).map_err(|e| err("narrow_copy", e))?;
    let n = x.size(d) as i64;
    let start = ctx.int(2)?;
    let len = ctx.int(3)?;
    let s = if start < 0 { start + n } else { start };
    if s < 0 || len < 0 || s + len > n {
        return Err(KernelError::invalid(format!(
            "narrow_copy: start {start} length {len} out of range for size {n}"
        )));
    }
    let (dims, st, off) = slice_view(&x, d, s as usize, len as usize, 1);
    view_into(
        "narrow_copy",
        &mut out,
        &x,
        &dims[..x.dim()],
        &st[..x.dim()],
        off,
    )
}

/// `flip.out(Tensor self, int[] dims, *, Tensor(a!) out)`.
fn flip_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(4)?;
    let mut out = ctx.out(2)?;
    let x = ctx.tensor(0)?;
    let (fd, n) = ctx.int_list(1)?.to_array()?;
    let mut st = istrides(&x);
    let mut off = 0isize;
    let mut seen = [false; 16];
    for &v in &fd[..n] {
        let d = norm_dim(v, x.dim()).map_err(|e| err("flip", e))?;
        if x.dim() == 0 {
            continue;
        }
        if seen[d] {
            return Err(KernelError::invalid(format!(
                "flip: dim {d} appears twice in {:?}",
                &fd[..n]
            )));
        }
        seen[d] = true;
        if x.size(d) > 0 {
            off += st[d] * (x.size(d) as isize - 1);
        }
        st[d] = -st[d];
    }
    view_into("flip", &mut out, &x, x.sizes(), &st[..x.dim()], off)
}

/// `roll.out(Tensor self, SymInt[1] shifts, int[1] dims=[], *, Tensor(a!) out)`.
fn roll_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(5)?;
    let mut out = ctx.out(3)?;
    let x = ctx.tensor(0)?;
    same_dtype("roll", &x, &out)?;
    let (sh, ns) = ctx.int_list(1)?.to_array()?;
    let (rd, nd) = ctx.int_list(2)?.to_array()?;
    let es = x.dtype().element_size();
    out.resize(x.sizes())?;
    if x.numel() == 0 {
        return Ok(());
    }
    if nd == 0 {
        // Roll the flattened tensor.
        if ns != 1 {
            return Err(KernelError::invalid(format!(
                "roll: {ns} shifts given without dims"
            )));
        }
        if !x.is_contiguous() || !out.is_contiguous() {
            return Err(KernelError::unsupported(
                "roll without dims needs contiguous tensors",
            ));
        }
        let n = x.numel() as i64;
        let s = (sh[0].rem_euclid(n)) as usize * es;
        let src = x.bytes();
        let total = src.len();
        let dst = out.bytes_mut();
        dst[s..].copy_from_slice(&src[..total - s]);
        dst[..s].copy_from_slice(&src[total - s..]);
        return Ok(());
    }
    if ns != nd {
        return Err(KernelError::invalid(format!(
            "roll: {ns} shifts but {nd} dims"
        )));
    }
    let r = x.dim();
    let mut shift = [0usize; 16];
    for k in 0..nd {
        let d = norm_dim(rd[k], r).map_err(|e| err("roll", e))?;
        let n = x.size(d) as i64;
        shift[d] = ((shift[d] as i64 + sh[k]).rem_euclid(n)) as usize;
    }
    // Each dim splits into two pieces: out[s..n] = in[0..n-s], out[0..s] = in[n-s..n].
    let xs = istrides(&x);
    let os = istrides_mut(&out);
    let pieces = 1usize << r;
    for mask in 0..pieces {
        let mut l = Layout::new();
        let mut skip = false;
        for d in 0..r {
            let n = x.size(d);
            let s = shift[d];
            let hi = mask >> d & 1 == 1;
            let (len, dst0, src0) = if hi { (s, 0, n - s) } else { (n - s, s, 0) };
            if len == 0 {
                skip = true;
                break;
            }
            l.push(len, os[d], xs[d])?;
            l.dst_off += os[d] * dst0 as isize;
            l.src_off += xs[d] * src0 as isize;
        }
        if !skip {
            copy_bytes(es, out.bytes_mut(), x.bytes(), &l).map_err(|e| err("roll", e))?;
        }
    }
    Ok(())
}

/// `repeat.out(Tensor self, SymInt[] repeats, *, Tensor(a!) out)`.
fn repeat_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(4)?;
    let mut out = ctx.out(2)?;
    let x = ctx.tensor(0)?;
    same_dtype("repeat", &x, &out)?;
    let (rep, n) = ctx.int_list(1)?.to_array()?;
    let r = x.dim();
    if n < r {
        return Err(KernelError::invalid(format!(
            "repeat: {n} repeats given for a tensor of rank {r}"
        )));
    }
    let lead = n - r;
    let xs = istrides(&x);
    let mut sizes = [0usize; 16];
    let mut insz = [1usize; 16];
    let mut inst = [0isize; 16];
    for i in 0..n {
        if rep[i] < 0 {
            return Err(KernelError::invalid(format!(
                "repeat: negative repeat {}",
                rep[i]
            )));
        }
        if i >= lead {
            insz[i] = x.size(i - lead);
            inst[i] = xs[i - lead];
        }
        sizes[i] = insz[i] * rep[i] as usize;
    }
    out.resize(&sizes[..n])?;
    let os = istrides_mut(&out);
    // Out dim i splits into (repeat, size) with strides (size * os, os).
    let mut l = Layout::new();
    for i in 0..n {
        l.push(rep[i] as usize, os[i] * insz[i] as isize, 0)?;
        l.push(insz[i], os[i], inst[i])?;
    }
    copy_bytes(x.dtype().element_size(), out.bytes_mut(), x.bytes(), &l)
        .map_err(|e| err("repeat", e))
}

fn tri_out(ctx: &KernelCtx<'_>, op: &str, lower: bool) -> Result<(), KernelError> {
    ctx.expect_args(4)?;
    let mut out = ctx.out(2)?;
    let x = ctx.tensor(0)?;
    let k = ctx.int(1)?;
    if x.dim() < 2 {
        return Err(KernelError::invalid(format!(
            "{op}: input must have at least 2 dims, got {:?}",
            x.sizes()
        )));
    }
    view_into(op, &mut out, &x, x.sizes(), &istrides(&x)[..x.dim()], 0)?;
    let r = x.dim();
    let (rows, cols) = (x.size(r - 2), x.size(r - 1));
    let os = istrides_mut(&out);
    let batch = &x.sizes()[..r - 2];
    let es = x.dtype().element_size();
    let bytes = out.bytes_mut();
    engine::by_size!(es, T => {
        let o = engine::cast_mut::<T>(bytes)?;
        let zero = T::default();
        engine::walk2(batch, &os[..r - 2], &os[..r - 2], 0, 0, |b, _| {
            for i in 0..rows {
                for j in 0..cols {
                    let keep = if lower { j as i64 - i as i64 <= k } else { j as i64 - i as i64 >= k };
                    if !keep {
                        o[(b + i as isize * os[r - 2] + j as isize * os[r - 1]) as usize] = zero;
                    }
                }
            }
        });
    });
    Ok(())
}

/// `tril.out(Tensor self, SymInt diagonal=0, *, Tensor(a!) out)`.
fn tril_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    tri_out(ctx, "tril", true)
}
/// `triu.out(Tensor self, SymInt diagonal=0, *, Tensor(a!) out)`.
fn triu_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    tri_out(ctx, "triu", false)
}

/// `diagonal_copy.out(Tensor self, int offset=0, int dim1=0, int dim2=1, *, Tensor(a!) out)`.
fn diagonal_copy_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(6)?;
    let mut out = ctx.out(4)?;
    let x = ctx.tensor(0)?;
    let r = x.dim();
    if r < 2 {
        return Err(KernelError::invalid(format!(
            "diagonal_copy: input must have at least 2 dims, got {:?}",
            x.sizes()
        )));
    }
    let off = ctx.int(1)?;
    let d1 = norm_dim(ctx.int(2)?, r).map_err(|e| err("diagonal_copy", e))?;
    let d2 = norm_dim(ctx.int(3)?, r).map_err(|e| err("diagonal_copy", e))?;
    if d1 == d2 {
        return Err(KernelError::invalid(
            "diagonal_copy: dim1 and dim2 must differ",
        ));
    }
    let xs = istrides(&x);
    let (n1, n2) = (x.size(d1) as i64, x.size(d2) as i64);
    let (len, start) = if off >= 0 {
        ((n1.min(n2 - off)).max(0), xs[d2] * off as isize)
    } else {
        ((n2.min(n1 + off)).max(0), xs[d1] * (-off) as isize)
    };
    let start = if len == 0 { 0 } else { start };
    let mut dims = [0usize; 16];
    let mut st = [0isize; 16];
    let mut m = 0;
    for k in 0..r {
        if k != d1 && k != d2 {
            dims[m] = x.size(k);
            st[m] = xs[k];
            m += 1;
        }
    }
    dims[m] = len as usize;
    st[m] = xs[d1] + xs[d2];
    m += 1;
    view_into("diagonal_copy", &mut out, &x, &dims[..m], &st[..m], start)
}

/// `unfold_copy.out(Tensor self, int dimension, int size, int step, *, Tensor(a!) out)`.
fn unfold_copy_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(6)?;
    let mut out = ctx.out(4)?;
    let x = ctx.tensor(0)?;
    let r = x.dim();
    let d = norm_dim(ctx.int(1)?, r).map_err(|e| err("unfold_copy", e))?;
    let size = ctx.int(2)?;
    let step = ctx.int(3)?;
    let n = if r == 0 { 1 } else { x.size(d) as i64 };
    if size < 0 || size > n || step <= 0 {
        return Err(KernelError::invalid(format!(
            "unfold_copy: size {size} step {step} invalid for dim of size {n}"
        )));
    }
    if r + 1 > 16 {
        return Err(KernelError::invalid("unfold_copy: rank above 16"));
    }
    let xs = istrides(&x);
    let mut dims = [0usize; 16];
    let mut st = [0isize; 16];
    dims[..r].copy_from_slice(x.sizes());
    st[..r].copy_from_slice(&xs[..r]);
    let inner = if r == 0 { 1 } else { xs[d] };
    if r > 0 {
        dims[d] = ((n - size) / step + 1) as usize;
        // With a single window the step never applies (and may be huge).
        let step = if dims[d] <= 1 { 1 } else { step };
        st[d] = xs[d] * step as isize;
    }
    dims[r] = size as usize;
    st[r] = inner;
    let rank = if r == 0 { 1 } else { r + 1 };
    view_into("unfold_copy", &mut out, &x, &dims[..rank], &st[..rank], 0)
}
