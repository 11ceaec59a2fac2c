//! The strided copy engine behind every view-like copy op: copies a source view
//! (sizes, signed element strides, offset) into a destination view, after sorting
//! dims into destination memory order and merging dims that are contiguous in both.
//! Inner runs contiguous in both are `copy_from_slice`; transposes use 32x32 tiles.
#![allow(clippy::needless_range_loop)] // loops index several parallel arrays

use pteron_runtime::{KernelError, TensorMut, TensorRef};

/// Highest rank the engine handles (repeat doubles the rank of its input).
pub(crate) const MAXR: usize = 32;

/// A copy of `dims` elements: destination offset `dst_off + sum(i_k * dst[k])`,
/// source offset `src_off + sum(i_k * src[k])` (element units).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    pub rank: usize,
    pub dims: [usize; MAXR],
    pub dst: [isize; MAXR],
    pub src: [isize; MAXR],
    pub dst_off: isize,
    pub src_off: isize,
}

impl Layout {
    pub fn new() -> Self {
        Layout {
            rank: 0,
            dims: [0; MAXR],
            dst: [0; MAXR],
            src: [0; MAXR],
            dst_off: 0,
            src_off: 0,
        }
    }
    /// Appends a dim.
    pub fn push(&mut self, size: usize, dst: isize, src: isize) -> Result<(), KernelError> {
        if self.rank >= MAXR {
            return Err(KernelError::invalid("copy of rank above 32"));
        }
        self.dims[self.rank] = size;
        self.dst[self.rank] = dst;
        self.src[self.rank] = src;
        self.rank += 1;
        Ok(())
    }
}

/// `(min, max)` element offsets a strided view touches (numel > 0).
fn span(dims: &[usize], st: &[isize], off: isize) -> (isize, isize) {
    let (mut lo, mut hi) = (off, off);
    for (&d, &s) in dims.iter().zip(st) {
        let e = (d as isize - 1) * s;
        if e < 0 {
            lo += e;
        } else {
            hi += e;
        }
    }
    (lo, hi)
}

/// Sorts dims by destination stride (descending), drops size-1 dims and merges dims
/// contiguous in both views, in place (no second layout to zero and copy).
fn simplify(s: &mut Layout) {
    let mut r = 0;
    for k in 0..s.rank {
        if s.dims[k] != 1 {
            s.dims[r] = s.dims[k];
            s.dst[r] = s.dst[k];
            s.src[r] = s.src[k];
            r += 1;
        }
    }
    s.rank = r;
    // Stable insertion sort by |dst stride| descending.
    for i in 1..r {
        let mut j = i;
        while j > 0 && s.dst[j - 1].unsigned_abs() < s.dst[j].unsigned_abs() {
            s.dims.swap(j - 1, j);
            s.dst.swap(j - 1, j);
            s.src.swap(j - 1, j);
            j -= 1;
        }
    }
    // Merge: dim k folds into the kept dim before it when that one steps over it
    // exactly in both views.
    let mut m = 0;
    for k in 0..r {
        if m > 0 {
            let p = m - 1;
            let n = s.dims[k] as isize;
            if s.dst[p] == s.dst[k] * n && s.src[p] == s.src[k] * n {
                s.dims[p] *= s.dims[k];
                s.dst[p] = s.dst[k];
                s.src[p] = s.src[k];
                continue;
            }
        }
        s.dims[m] = s.dims[k];
        s.dst[m] = s.dst[k];
        s.src[m] = s.src[k];
        m += 1;
    }
    s.rank = m;
}

/// Calls `f(dst_off, src_off)` for every index of `dims` (row-major), no allocation.
#[inline]
pub(crate) fn walk2(
    dims: &[usize],
    a: &[isize],
    b: &[isize],
    a0: isize,
    b0: isize,
    mut f: impl FnMut(isize, isize),
) {
    let r = dims.len();
    if dims.contains(&0) {
        return;
    }
    let mut idx = [0usize; MAXR];
    let (mut oa, mut ob) = (a0, b0);
    loop {
        f(oa, ob);
        let mut d = r;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            idx[d] += 1;
            oa += a[d];
            ob += b[d];
            if idx[d] < dims[d] {
                break;
            }
            oa -= a[d] * dims[d] as isize;
            ob -= b[d] * dims[d] as isize;
            idx[d] = 0;
        }
    }
}

const TILE: usize = 32;

/// Copies the view described by `l` from `src` into `dst`, checking every offset
/// range first.
pub(crate) fn copy_typed<T: Copy>(dst: &mut [T], src: &[T], l: &Layout) -> Result<(), KernelError> {
    let dims = &l.dims[..l.rank];
    if dims.contains(&0) {
        return Ok(());
    }
    let (slo, shi) = span(dims, &l.src[..l.rank], l.src_off);
    let (dlo, dhi) = span(dims, &l.dst[..l.rank], l.dst_off);
    if slo < 0 || shi as usize >= src.len() {
        return Err(KernelError::invalid(format!(
            "view reads elements [{slo}, {shi}] of a source of {} elements",
            src.len()
        )));
    }
    if dlo < 0 || dhi as usize >= dst.len() {
        return Err(KernelError::internal(format!(
            "copy writes elements [{dlo}, {dhi}] of a destination of {} elements",
            dst.len()
        )));
    }
    let mut s = *l;
    simplify(&mut s);
    if s.rank == 0 {
        dst[s.dst_off as usize] = src[s.src_off as usize];
        return Ok(());
    }
    let r = s.rank;
    let n = s.dims[r - 1];
    let (di, si) = (s.dst[r - 1], s.src[r - 1]);
    if di == 1 && si == 1 {
        walk2(
            &s.dims[..r - 1],
            &s.dst[..r - 1],
            &s.src[..r - 1],
            s.dst_off,
            s.src_off,
            |d, o| {
                let (d, o) = (d as usize, o as usize);
                dst[d..d + n].copy_from_slice(&src[o..o + n]);
            },
        );
        return Ok(());
    }
    // Transpose-like: the source's unit-stride dim is an outer dim here.
    if di == 1 && r >= 2 && n >= 8 {
        if let Some(k) = (0..r - 1).find(|&k| s.src[k] == 1 && s.dims[k] >= 8) {
            let mut od = [0usize; MAXR];
            let mut oa = [0isize; MAXR];
            let mut ob = [0isize; MAXR];
            let mut m = 0;
            for j in 0..r - 1 {
                if j != k {
                    od[m] = s.dims[j];
                    oa[m] = s.dst[j];
                    ob[m] = s.src[j];
                    m += 1;
                }
            }
            let (nk, dk) = (s.dims[k], s.dst[k]);
            walk2(
                &od[..m],
                &oa[..m],
                &ob[..m],
                s.dst_off,
                s.src_off,
                |d0, s0| {
                    let mut i0 = 0;
                    while i0 < nk {
                        let i1 = (i0 + TILE).min(nk);
                        let mut j0 = 0;
                        while j0 < n {
                            let j1 = (j0 + TILE).min(n);
                            for i in i0..i1 {
                                let drow = (d0 + i as isize * dk) as usize;
                                let srow = s0 + i as isize;
                                for j in j0..j1 {
                                    dst[drow + j] = src[(srow + j as isize * si) as usize];
                                }
                            }
                            j0 = j1;
                        }
                        i0 = i1;
                    }
                },
            );
            return Ok(());
        }
    }
    walk2(
        &s.dims[..r - 1],
        &s.dst[..r - 1],
        &s.src[..r - 1],
        s.dst_off,
        s.src_off,
        |d, o| {
            for j in 0..n as isize {
                dst[(d + j * di) as usize] = src[(o + j * si) as usize];
            }
        },
    );
    Ok(())
}

/// Runs `$body` with `$T` bound to an unsigned type of `$size` bytes.
macro_rules! by_size {
    ($size:expr, $T:ident => $body:expr) => {{
        match $size {
            1 => {
                type $T = u8;
                $body
            }
            2 => {
                type $T = u16;
                $body
            }
            4 => {
                type $T = u32;
                $body
            }
            8 => {
                type $T = u64;
                $body
            }
            other => {
                return Err(pteron_runtime::KernelError::dtype(format!(
                    "element size {other} is not supported"
                )))
            }
        }
    }};
}
pub(crate) use by_size;

pub(crate) fn cast<T: bytemuck::Pod>(b: &[u8]) -> Result<&[T], KernelError> {
    if b.is_empty() {
        return Ok(&[]);
    }
    bytemuck::try_cast_slice(b)
        .map_err(|e| KernelError::invalid(format!("misaligned tensor data: {e:?}")))
}
pub(crate) fn cast_mut<T: bytemuck::Pod>(b: &mut [u8]) -> Result<&mut [T], KernelError> {
    if b.is_empty() {
        return Ok(&mut []);
    }
    bytemuck::try_cast_slice_mut(b)
        .map_err(|e| KernelError::invalid(format!("misaligned tensor data: {e:?}")))
}

/// Copies a view of raw element bytes (`esize` bytes per element).
pub(crate) fn copy_bytes(
    esize: usize,
    dst: &mut [u8],
    src: &[u8],
    l: &Layout,
) -> Result<(), KernelError> {
    by_size!(esize, T => copy_typed::<T>(cast_mut::<T>(dst)?, cast::<T>(src)?, l))
}

/// Signed element strides of a tensor.
pub(crate) fn istrides(t: &TensorRef<'_>) -> [isize; 16] {
    let st = t.strides();
    let mut o = [0isize; 16];
    for i in 0..t.dim() {
        o[i] = st[i] as isize;
    }
    o
}
pub(crate) fn istrides_mut(t: &TensorMut<'_>) -> [isize; 16] {
    let st = t.strides();
    let mut o = [0isize; 16];
    for i in 0..t.dim() {
        o[i] = st[i] as isize;
    }
    o
}

/// Fails unless `out` has the dtype of `x`.
pub(crate) fn same_dtype(
    op: &str,
    x: &TensorRef<'_>,
    out: &TensorMut<'_>,
) -> Result<(), KernelError> {
    if x.dtype() != out.dtype() {
        return Err(KernelError::dtype(format!(
            "{op}: out dtype {} != input dtype {}",
            out.dtype(),
            x.dtype()
        )));
    }
    Ok(())
}

/// Resizes `out` to `dims` and fills it with the view of `x` given by per-dim source
/// strides `src_st` and offset `src_off` (handles any dim order of `out`).
pub(crate) fn view_into(
    op: &str,
    out: &mut TensorMut<'_>,
    x: &TensorRef<'_>,
    dims: &[usize],
    src_st: &[isize],
    src_off: isize,
) -> Result<(), KernelError> {
    same_dtype(op, x, out)?;
    out.resize(dims)?;
    if out.is_contiguous() {
        if let Some(n) = dense_run(dims, src_st) {
            // The view is one dense block of the source (squeeze, unsqueeze, a
            // select or slice of outer dims): a plain copy, no layout walk.
            return copy_run(op, out, x, src_off, n);
        }
    }
    let ost = istrides_mut(out);
    let mut l = Layout::new();
    for k in 0..dims.len() {
        l.push(dims[k], ost[k], src_st[k])?;
    }
    l.src_off = src_off;
    copy_bytes(x.dtype().element_size(), out.bytes_mut(), x.bytes(), &l)
        .map_err(|e| KernelError::new(e.kind, format!("{op}: {}", e.msg)))
}

/// `Some(numel)` when the view with sizes `dims` and element strides `st` is one dense
/// row-major block (size-1 dims may have any stride).
fn dense_run(dims: &[usize], st: &[isize]) -> Option<usize> {
    let mut want = 1isize;
    for (&d, &s) in dims.iter().zip(st).rev() {
        if d == 1 {
            continue;
        }
        if s != want {
            return None;
        }
        want = want.checked_mul(d as isize)?;
    }
    Some(want as usize)
}

/// Copies elements `[off, off + n)` of `x` into contiguous `out` (which holds `n`).
fn copy_run(
    op: &str,
    out: &mut TensorMut<'_>,
    x: &TensorRef<'_>,
    off: isize,
    n: usize,
) -> Result<(), KernelError> {
    if n == 0 {
        return Ok(());
    }
    let es = x.dtype().element_size();
    let src = x.bytes();
    let start = usize::try_from(off).ok().and_then(|o| o.checked_mul(es));
    let end = start.and_then(|s| s.checked_add(n.checked_mul(es)?));
    match (start, end) {
        (Some(a), Some(b)) if b <= src.len() => {
            let dst = out.bytes_mut();
            if dst.len() != b - a {
                return Err(KernelError::internal(format!(
                    "{op}: copy of {} bytes into an output of {} bytes",
                    b - a,
                    dst.len()
                )));
            }
            dst.copy_from_slice(&src[a..b]);
            Ok(())
        }
        _ => Err(KernelError::invalid(format!(
            "{op}: view reads elements [{off}, {off} + {n}) of a source of {} elements",
            x.numel()
        ))),
    }
}

/// Copies `x` (logical order) into `out` reshaped to `dims` (same element count).
pub(crate) fn reshape_into(
    op: &str,
    out: &mut TensorMut<'_>,
    x: &TensorRef<'_>,
    dims: &[usize],
) -> Result<(), KernelError> {
    same_dtype(op, x, out)?;
    let n: usize = dims.iter().product();
    if n != x.numel() {
        return Err(KernelError::invalid(format!(
            "{op}: cannot view shape {:?} as {dims:?}",
            x.sizes()
        )));
    }
    out.resize(dims)?;
    let es = x.dtype().element_size();
    if x.is_contiguous() && out.is_contiguous() {
        out.bytes_mut().copy_from_slice(x.bytes());
        return Ok(());
    }
    let mut l = Layout::new();
    if out.is_contiguous() {
        // Walk the source's logical dims; the destination is flat row-major.
        let xs = istrides(x);
        let mut acc = 1isize;
        let mut dst = [0isize; 16];
        for k in (0..x.dim()).rev() {
            dst[k] = acc;
            acc *= x.size(k) as isize;
        }
        for k in 0..x.dim() {
            l.push(x.size(k), dst[k], xs[k])?;
        }
    } else if x.is_contiguous() {
        let os = istrides_mut(out);
        let mut acc = 1isize;
        let mut src = [0isize; 16];
        for k in (0..dims.len()).rev() {
            src[k] = acc;
            acc *= dims[k] as isize;
        }
        for k in 0..dims.len() {
            l.push(dims[k], os[k], src[k])?;
        }
    } else {
        return Err(KernelError::unsupported(format!(
            "{op}: input dim order {:?} and out dim order {:?} are both non-contiguous",
            x.dim_order(),
            out.dim_order()
        )));
    }
    copy_bytes(es, out.bytes_mut(), x.bytes(), &l)
}

/// `t.as_slice()` that also accepts empty tensors (whose data pointer may be unaligned).
pub(crate) fn ts<'a, T: pteron_runtime::Element>(
    t: &TensorRef<'a>,
) -> Result<&'a [T], KernelError> {
    if t.numel() == 0 {
        if !T::matches(t.dtype()) {
            return Err(KernelError::dtype(format!(
                "tensor of dtype {} viewed as {}",
                t.dtype(),
                T::DTYPE
            )));
        }
        return Ok(&[]);
    }
    t.as_slice()
}

/// `t.as_mut_slice()` that also accepts empty tensors.
pub(crate) fn tm<'a, T: pteron_runtime::Element>(
    t: &'a mut TensorMut<'_>,
) -> Result<&'a mut [T], KernelError> {
    if t.numel() == 0 {
        if !T::matches(t.dtype()) {
            return Err(KernelError::dtype(format!(
                "tensor of dtype {} viewed as {}",
                t.dtype(),
                T::DTYPE
            )));
        }
        return Ok(&mut []);
    }
    t.as_mut_slice()
}
