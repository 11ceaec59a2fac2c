//! Fixed-capacity shapes and per-node shape inference (run at init for the upper
//! bounds and again at execute when the input shapes change).

use crate::error::XnnError;
use crate::graph::{ConvParams, Node, Op, PoolParams, MAX_DIMS};

/// A shape of rank ≤ [`MAX_DIMS`], stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Dims {
    d: [usize; MAX_DIMS],
    n: u8,
}

impl core::fmt::Debug for Dims {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.as_slice().fmt(f)
    }
}

impl Dims {
    pub fn new(s: &[usize]) -> Option<Dims> {
        if s.len() > MAX_DIMS {
            return None;
        }
        let mut d = [0; MAX_DIMS];
        d[..s.len()].copy_from_slice(s);
        Some(Dims {
            d,
            n: s.len() as u8,
        })
    }
    pub fn as_slice(&self) -> &[usize] {
        &self.d[..self.n as usize]
    }
    pub fn rank(&self) -> usize {
        self.n as usize
    }
    pub fn numel(&self) -> usize {
        self.as_slice().iter().product()
    }
    pub fn last(&self) -> usize {
        if self.n == 0 {
            1
        } else {
            self.d[self.n as usize - 1]
        }
    }
    pub fn get(&self, i: usize) -> usize {
        self.d[i]
    }
    pub fn set(&mut self, i: usize, v: usize) {
        self.d[i] = v;
    }
}

struct K {
    kind: &'static str,
}

fn bad(node: usize, n: &K, msg: String) -> XnnError {
    XnnError::node(node, n.kind, msg)
}

pub(crate) fn conv_out(
    inp: usize,
    pa: usize,
    pb: usize,
    k: usize,
    s: usize,
    d: usize,
) -> Option<usize> {
    let d = d.max(1);
    let s = s.max(1);
    let eff = k.checked_sub(1)?.checked_mul(d)?.checked_add(1)?;
    let padded = inp.checked_add(pa)?.checked_add(pb)?;
    if padded < eff {
        return None;
    }
    Some((padded - eff) / s + 1)
}

fn nhwc(node: usize, n: &K, d: &Dims) -> Result<(usize, usize, usize, usize), XnnError> {
    if d.rank() != 4 {
        return Err(bad(
            node,
            n,
            format!("expects a 4-D NHWC input, got {:?}", d),
        ));
    }
    Ok((d.get(0), d.get(1), d.get(2), d.get(3)))
}

fn pool_hw(
    node: usize,
    n: &K,
    p: &PoolParams,
    h: usize,
    w: usize,
) -> Result<(usize, usize), XnnError> {
    let oh = conv_out(h, p.pad_top, p.pad_bottom, p.kh, p.sh, p.dh);
    let ow = conv_out(w, p.pad_left, p.pad_right, p.kw, p.sw, p.dw);
    match (oh, ow) {
        (Some(a), Some(b)) if a > 0 && b > 0 && p.kh > 0 && p.kw > 0 => Ok((a, b)),
        _ => Err(bad(
            node,
            n,
            format!("pooling window {p:?} does not fit a {h}x{w} input"),
        )),
    }
}

fn conv_hw_k(
    node: usize,
    n: &K,
    p: &ConvParams,
    h: usize,
    w: usize,
) -> Result<(usize, usize), XnnError> {
    let oh = conv_out(h, p.pad_top, p.pad_bottom, p.kh, p.sh, p.dh);
    let ow = conv_out(w, p.pad_left, p.pad_right, p.kw, p.sw, p.dw);
    match (oh, ow) {
        (Some(a), Some(b)) if p.kh > 0 && p.kw > 0 => Ok((a, b)),
        _ => Err(bad(
            node,
            n,
            format!("kernel {}x{} does not fit a {h}x{w} input", p.kh, p.kw),
        )),
    }
}

/// Output height and width of a transposed convolution:
/// `stride * (in - 1) + adjustment + dilation * (kernel - 1) + 1 - padding`.
fn deconv_hw(
    node: usize,
    n: &K,
    p: &ConvParams,
    h: usize,
    w: usize,
) -> Result<(usize, usize), XnnError> {
    let dim = |i: usize, s: usize, adj: usize, k: usize, d: usize, p0: usize, p1: usize| {
        if i == 0 || s == 0 || k == 0 || d == 0 || adj >= s.max(d) {
            return None;
        }
        s.checked_mul(i - 1)?
            .checked_add(adj)?
            .checked_add(d.checked_mul(k - 1)?)?
            .checked_add(1)?
            .checked_sub(p0.checked_add(p1)?)
            .filter(|&o| o > 0)
    };
    let oh = dim(h, p.sh, p.adj_h, p.kh, p.dh, p.pad_top, p.pad_bottom);
    let ow = dim(w, p.sw, p.adj_w, p.kw, p.dw, p.pad_left, p.pad_right);
    match (oh, ow) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(bad(
            node,
            n,
            format!(
                "transposed convolution (kernel {}x{}, stride {}x{}, adjustment {}x{}, padding {}/{}/{}/{}) \
                 gives no output for a {h}x{w} input",
                p.kh, p.kw, p.sh, p.sw, p.adj_h, p.adj_w, p.pad_top, p.pad_right, p.pad_bottom, p.pad_left
            ),
        )),
    }
}

/// Broadcast two shapes (numpy rules, aligned right).
pub(crate) fn broadcast(a: &Dims, b: &Dims) -> Option<Dims> {
    let r = a.rank().max(b.rank());
    let mut out = [0usize; MAX_DIMS];
    for (i, o) in out.iter_mut().enumerate().take(r) {
        let da = if i < r - a.rank() {
            1
        } else {
            a.get(i - (r - a.rank()))
        };
        let db = if i < r - b.rank() {
            1
        } else {
            b.get(i - (r - b.rank()))
        };
        *o = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return None;
        };
    }
    Dims::new(&out[..r])
}

/// Output shape of node `node` given the current shapes of every value.
pub(crate) fn infer(
    node: usize,
    nd: &Node,
    shapes: &[Dims],
    filter_dims: Option<&Dims>,
) -> Result<Dims, XnnError> {
    infer_op(node, nd.kind, &nd.op, shapes, filter_dims)
}

/// [`infer`] on an operation and its node type name.
/// Most elements one value may have: its f32 buffer stays addressable in bytes and
/// products of its dims cannot wrap.
const MAX_ELEMENTS: usize = (isize::MAX as usize) / 16;

/// The output dims of one node ([`infer_dims`]), refused when their element count
/// overflows or exceeds [`MAX_ELEMENTS`] (e.g. a huge resize or transposed-convolution
/// stride in a malformed graph).
pub(crate) fn infer_op(
    node: usize,
    kind: &'static str,
    op: &Op,
    shapes: &[Dims],
    filter_dims: Option<&Dims>,
) -> Result<Dims, XnnError> {
    let d = infer_dims(node, kind, op, shapes, filter_dims)?;
    match d
        .as_slice()
        .iter()
        .try_fold(1usize, |a, &x| a.checked_mul(x))
    {
        Some(e) if e <= MAX_ELEMENTS => Ok(d),
        _ => Err(bad(
            node,
            &K { kind },
            format!("output shape {d:?} has too many elements"),
        )),
    }
}

fn infer_dims(
    node: usize,
    kind: &'static str,
    op: &Op,
    shapes: &[Dims],
    filter_dims: Option<&Dims>,
) -> Result<Dims, XnnError> {
    let n = &K { kind };
    let s = |v: usize| shapes[v];
    let mk = |d: &[usize]| Dims::new(d).ok_or_else(|| bad(node, n, "rank too large".into()));
    match op {
        Op::Binary { a, b, .. } => broadcast(&s(*a), &s(*b)).ok_or_else(|| {
            bad(
                node,
                n,
                format!("shapes {:?} and {:?} do not broadcast", s(*a), s(*b)),
            )
        }),
        Op::Unary { input, .. } | Op::Softmax { input, .. } => Ok(s(*input)),
        Op::FullyConnected { input, flags, .. } => {
            let f = filter_dims.ok_or_else(|| bad(node, n, "filter shape unknown".into()))?;
            if f.rank() != 2 {
                return Err(bad(node, n, format!("filter must be 2-D, got {f:?}")));
            }
            let (k, nout) = if flags & 1 != 0 {
                (f.get(0), f.get(1))
            } else {
                (f.get(1), f.get(0))
            };
            let i = s(*input);
            if i.rank() == 0 || i.last() != k {
                return Err(bad(
                    node,
                    n,
                    format!("input {i:?} does not end in {k} channels"),
                ));
            }
            let mut o = i;
            o.set(i.rank() - 1, nout);
            Ok(o)
        }
        Op::Conv { p, input, .. } | Op::Deconv { p, input, .. } => {
            let (b, h, w, c) = nhwc(node, n, &s(*input))?;
            if c != p.groups * p.group_in {
                return Err(bad(
                    node,
                    n,
                    format!(
                        "input has {c} channels, expected {} groups x {}",
                        p.groups, p.group_in
                    ),
                ));
            }
            let (oh, ow) = if matches!(op, Op::Deconv { .. }) {
                deconv_hw(node, n, p, h, w)?
            } else {
                conv_hw_k(node, n, p, h, w)?
            };
            mk(&[b, oh, ow, p.groups * p.group_out])
        }
        Op::AvgPool { p, input, .. } | Op::MaxPool { p, input, .. } => {
            let (b, h, w, c) = nhwc(node, n, &s(*input))?;
            let (oh, ow) = pool_hw(node, n, p, h, w)?;
            mk(&[b, oh, ow, c])
        }
        Op::GlobalAvgPool { input, .. } => {
            let (b, _, _, c) = nhwc(node, n, &s(*input))?;
            mk(&[b, 1, 1, c])
        }
        Op::Transpose { perm, input, .. } => {
            let i = s(*input);
            if perm.len() != i.rank() {
                return Err(bad(
                    node,
                    n,
                    format!(
                        "permutation of {} dims for a rank-{} input",
                        perm.len(),
                        i.rank()
                    ),
                ));
            }
            let mut seen = [false; MAX_DIMS];
            let mut o = [0; MAX_DIMS];
            for (k, &p) in perm.iter().enumerate() {
                if p >= i.rank() || seen[p] {
                    return Err(bad(node, n, format!("{perm:?} is not a permutation")));
                }
                seen[p] = true;
                o[k] = i.get(p);
            }
            mk(&o[..perm.len()])
        }
        Op::Reshape {
            new_shape, input, ..
        } => {
            let numel = s(*input).numel();
            let zeros = new_shape.iter().filter(|&&d| d == 0).count();
            let mut o = [0; MAX_DIMS];
            if new_shape.len() > MAX_DIMS {
                return Err(bad(node, n, "rank too large".into()));
            }
            o[..new_shape.len()].copy_from_slice(new_shape);
            if zeros == 1 && numel > 0 {
                let known: usize = new_shape.iter().filter(|&&d| d != 0).product();
                if known == 0 || numel % known != 0 {
                    return Err(bad(
                        node,
                        n,
                        format!("cannot infer a dim of {new_shape:?} for {numel} elements"),
                    ));
                }
                let z = new_shape.iter().position(|&d| d == 0).unwrap_or(0);
                o[z] = numel / known;
            } else if zeros > 1 {
                return Err(bad(
                    node,
                    n,
                    format!("{new_shape:?} has more than one inferred dim"),
                ));
            }
            let d = mk(&o[..new_shape.len()])?;
            if d.numel() != numel {
                // A dynamic leading dim: scale the first dim when the rest matches.
                let rest: usize = d.as_slice().iter().skip(1).product();
                if d.rank() > 0 && rest > 0 && numel % rest == 0 {
                    let mut d2 = d;
                    d2.set(0, numel / rest);
                    return Ok(d2);
                }
                return Err(bad(
                    node,
                    n,
                    format!(
                        "reshape of {:?} to {new_shape:?} changes the element count",
                        s(*input)
                    ),
                ));
            }
            Ok(d)
        }
        Op::Pad {
            pre, post, input, ..
        } => {
            let i = s(*input);
            if pre.len() < i.rank() || post.len() < i.rank() {
                return Err(bad(
                    node,
                    n,
                    format!("padding lists shorter than rank {}", i.rank()),
                ));
            }
            let mut o = i;
            for k in 0..i.rank() {
                o.set(k, i.get(k) + pre[k] + post[k]);
            }
            Ok(o)
        }
        Op::Slice {
            offsets,
            sizes,
            input,
            ..
        } => {
            let i = s(*input);
            if offsets.len() != i.rank() || sizes.len() != i.rank() {
                return Err(bad(
                    node,
                    n,
                    format!(
                        "slice of rank {} on a rank-{} input",
                        offsets.len(),
                        i.rank()
                    ),
                ));
            }
            let mut o = i;
            for k in 0..i.rank() {
                let sz = if sizes[k] == 0 {
                    i.get(k).saturating_sub(offsets[k])
                } else {
                    sizes[k]
                };
                if offsets[k].checked_add(sz).is_none_or(|e| e > i.get(k)) {
                    return Err(bad(
                        node,
                        n,
                        format!(
                            "slice [{}, +{sz}) outside dim {k} of size {}",
                            offsets[k],
                            i.get(k)
                        ),
                    ));
                }
                o.set(k, sz);
            }
            Ok(o)
        }
        Op::Concat { axis, inputs, .. } => {
            let first = s(inputs[0]);
            if *axis >= first.rank() {
                return Err(bad(
                    node,
                    n,
                    format!("axis {axis} out of range for rank {}", first.rank()),
                ));
            }
            let mut o = first;
            let mut total = 0;
            for &v in inputs {
                let d = s(v);
                if d.rank() != first.rank()
                    || (0..d.rank()).any(|k| k != *axis && d.get(k) != first.get(k))
                {
                    return Err(bad(
                        node,
                        n,
                        format!("inputs {first:?} and {d:?} differ outside axis {axis}"),
                    ));
                }
                total += d.get(*axis);
            }
            o.set(*axis, total);
            Ok(o)
        }
        Op::ResizeBilinear {
            new_h,
            new_w,
            input,
            ..
        } => {
            let (b, _, _, c) = nhwc(node, n, &s(*input))?;
            mk(&[b, *new_h, *new_w, c])
        }
        Op::Bmm { a, b, flags, .. } => {
            let (da, db) = (s(*a), s(*b));
            if da.rank() < 2 || db.rank() < 2 {
                return Err(bad(node, n, "batch matrix multiply needs rank >= 2".into()));
            }
            let (m, k) = (da.get(da.rank() - 2), da.get(da.rank() - 1));
            let (kb, nn) = if flags & 1 != 0 {
                (db.get(db.rank() - 1), db.get(db.rank() - 2))
            } else {
                (db.get(db.rank() - 2), db.get(db.rank() - 1))
            };
            if k != kb {
                return Err(bad(node, n, format!("inner dims {k} and {kb} differ")));
            }
            let ba = Dims::new(&da.as_slice()[..da.rank() - 2]).unwrap_or_default();
            let bb = Dims::new(&db.as_slice()[..db.rank() - 2]).unwrap_or_default();
            let bo = broadcast(&ba, &bb)
                .ok_or_else(|| bad(node, n, "batch dims do not broadcast".into()))?;
            let mut o = [0; MAX_DIMS];
            let r = bo.rank();
            if r + 2 > MAX_DIMS {
                return Err(bad(node, n, "rank too large".into()));
            }
            o[..r].copy_from_slice(bo.as_slice());
            o[r] = m;
            o[r + 1] = nn;
            mk(&o[..r + 2])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::ConvParams;

    #[test]
    fn outputs_with_too_many_elements_are_refused() {
        let shapes = [
            Dims::new(&[1, 2, 3, 4]).expect("dims"),
            Dims::new(&[]).expect("dims"),
        ];
        let resize = |new_h: usize, new_w: usize| Op::ResizeBilinear {
            new_h,
            new_w,
            flags: 0,
            input: 0,
            out: 1,
        };
        let ok = infer_op(0, "XNNStaticResizeBilinear2D", &resize(5, 6), &shapes, None);
        assert_eq!(ok.expect("fits").as_slice(), &[1, 5, 6, 4]);
        // The product wraps in usize.
        let e = infer_op(
            0,
            "XNNStaticResizeBilinear2D",
            &resize(1 << 40, 1 << 40),
            &shapes,
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("too many elements"), "{e}");
        // No wrap, but more than a buffer can address.
        let e = infer_op(
            0,
            "XNNStaticResizeBilinear2D",
            &resize(1 << 58, 1),
            &shapes,
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("too many elements"), "{e}");
        // A transposed convolution whose stride blows the output up.
        let p = ConvParams {
            pad_top: 0,
            pad_right: 0,
            pad_bottom: 0,
            pad_left: 0,
            kh: 1,
            kw: 1,
            sh: u32::MAX as usize,
            sw: u32::MAX as usize,
            dh: 1,
            dw: 1,
            group_in: 4,
            group_out: 1 << 20,
            groups: 1,
            adj_h: 0,
            adj_w: 0,
        };
        let deconv = Op::Deconv {
            p,
            input: 0,
            filter: 0,
            bias: None,
            out: 1,
        };
        let e = infer_op(3, "XNNConvTranspose2d", &deconv, &shapes, None).unwrap_err();
        assert!(e.to_string().contains("too many elements"), "{e}");
    }
}
