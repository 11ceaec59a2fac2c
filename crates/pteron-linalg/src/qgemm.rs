//! Dynamically quantized GEMM (`qd8`): activations quantized to int8 at run time,
//! one scale and zero point per row, times int8 or int4 weights into `f32`, with
//! the arithmetic of XNNPACK's `qd8-f32-qc8w`, `qd8-f32-qc4w` and `qd8-f32-qb4w`
//! kernels, so that results are bit-identical to them and across our own tiers.
//!
//! * Row quantization ([`qd8_quantize_row`]): `rmin = min(0, min x)`,
//!   `rmax = max(0, max x)`, `s = 255 / (rmax - rmin)` (1 when the range is
//!   empty), zero point nudged from whichever end has the smaller error, rounded
//!   to nearest even; `q = clamp(rne(min(x · (1 / (1 / s)), 127 - zp)) + zp)`; the
//!   dequantization scale is `1 / s`.
//! * Per-channel weights (`qc8w`, `qc4w`): the int32 dot product of the quantized
//!   row and the weight column (minus `zp · Σw`, exact), then
//!   `fma(float(acc) · inv_scale, scale[n], bias[n])`, then the output clamp.
//! * Blockwise weights (`qb4w`, the LLM "8da4w" scheme; block scales in bf16):
//!   each column keeps four float partial sums; lane `j` accumulates the int32
//!   dot products over the `k` with `(k mod 8) / 2 == j` of each block, multiplied
//!   by the block scale with a fused multiply-add; lane 0 starts at `zp · ksum`
//!   where `ksum = -Σ_chunks float(Σ_16 w) · scale_b` (accumulated in float in
//!   16-wide chunks, as XNNPACK packs it). The lanes are summed
//!   `(l0 + l1) + (l2 + l3)`, then `fma(sum, inv_scale, bias)` and the clamp.
//!
//! Weights are packed once ([`PackedQd8`]) in tiles of 8 output columns; int4
//! values stay two per byte, so a decode step reads half a byte per weight.

use crate::pool::{num_threads, parallel_for};
use crate::util::SyncPtr;
use crate::LinalgError;
use crate::{isa, Isa};

/// Quantized rows and packed weights pad `k` to a multiple of this.
pub const QD8_K_ALIGN: usize = 16;
/// Output columns per packed tile.
const NR: usize = 8;

/// Run-time quantization parameters of one activation row.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Qd8Params {
    /// Zero point (in `-128..=127`).
    pub zero_point: i32,
    /// Dequantization scale (`real = (q - zero_point) * inv_scale`).
    pub inv_scale: f32,
}

impl Qd8Params {
    /// XNNPACK's asymmetric parameters for values in `[min, max]`; also returns the
    /// multiplier that quantizes (`1 / inv_scale`).
    pub fn from_range(min: f32, max: f32) -> (Qd8Params, f32) {
        let (qmin, qmax) = (-128.0f32, 127.0f32);
        let rmin = min.min(0.0);
        let rmax = max.max(0.0);
        let scale = if rmin == rmax {
            1.0
        } else {
            (qmax - qmin) / (rmax - rmin)
        };
        let lo = rmin * scale;
        let hi = rmax * scale;
        let zp = if (qmin + lo) + (qmax + hi) > 0.0 {
            qmin - lo
        } else {
            qmax - hi
        };
        let zp = zp.max(qmin).min(qmax).round_ties_even();
        let zero_point = if zp.is_nan() { 0 } else { zp as i32 };
        let inv_scale = 1.0 / scale;
        (
            Qd8Params {
                zero_point,
                inv_scale,
            },
            1.0 / inv_scale,
        )
    }
}

/// Quantizes one row (`x.len() <= out.len()`); `out` past `x.len()` is zeroed.
pub fn qd8_quantize_row(x: &[f32], out: &mut [i8]) -> Qd8Params {
    let (mut mn, mut mx) = (f32::INFINITY, f32::NEG_INFINITY);
    for &v in x {
        mn = mn.min(v);
        mx = mx.max(v);
    }
    if x.is_empty() {
        (mn, mx) = (0.0, 0.0);
    }
    let (p, mult) = Qd8Params::from_range(mn, mx);
    let zp = p.zero_point;
    let top = (127 - zp) as f32;
    for (o, &v) in out.iter_mut().zip(x) {
        let r = (v * mult).min(top).round_ties_even() as i32;
        *o = (r as i64 + zp as i64).clamp(-128, 127) as i8;
    }
    for o in out[x.len()..].iter_mut() {
        *o = 0;
    }
    p
}

/// Weight scheme of a [`PackedQd8`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qd8Kind {
    /// int8 per output channel.
    Qc8w,
    /// int4 per output channel.
    Qc4w,
    /// int4 with one scale per output channel and block of `block` inputs.
    Qb4w {
        /// Inputs per block (a multiple of 32).
        block: usize,
    },
}

/// Weights packed for [`qd8_gemm`]: `n` output columns of `k` inputs.
#[derive(Clone, Debug)]
pub struct PackedQd8 {
    kind: Qd8Kind,
    n: usize,
    k: usize,
    kp: usize,
    /// Per tile: `kp / 16` chunks × 4 column pairs × 16 (int4) or 32 (int8) bytes.
    data: Vec<u8>,
    /// `qc*`: `-Σ w` per column (int).
    ksum_i: Vec<i32>,
    /// `qb4w`: XNNPACK's float `ksum` per column.
    ksum_f: Vec<f32>,
    /// `qc*`: per-column scale (`qc4w`: divided by 16, see the kernels).
    scale: Vec<f32>,
    /// `qb4w`: `[tile][block][8]` bf16 block scales.
    bscale: Vec<u16>,
    bias: Vec<f32>,
}

fn bf16_bits(x: f32) -> u16 {
    // Round to nearest even; the scales given are normally already bf16 values.
    let b = x.to_bits();
    if x.is_nan() {
        return (b >> 16) as u16 | 0x40;
    }
    (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

impl PackedQd8 {
    /// Packs `w` (`n` rows of `k` signed values, row-major: output channel major,
    /// as XNNPACK's `OI` filters), in `-128..=127` for `Qc8w` or `-8..=7` for the
    /// int4 kinds (stored value minus the zero point 8). `scales` has `n` entries
    /// (`n * ceil(k / block)` for `Qb4w`, block-major within a column; rounded to
    /// bf16 as XNNPACK does), `bias` `n` or none.
    pub fn new(
        kind: Qd8Kind,
        n: usize,
        k: usize,
        w: &[i8],
        scales: &[f32],
        bias: Option<&[f32]>,
    ) -> Result<PackedQd8, LinalgError> {
        let err = |m: String| Err(LinalgError(format!("qd8 weights: {m}")));
        if n == 0 || k == 0 {
            return err(format!("empty weights ({n} x {k})"));
        }
        if w.len() != n * k {
            return err(format!("{} weights for {n} x {k}", w.len()));
        }
        let kp = k.next_multiple_of(QD8_K_ALIGN);
        let nblocks = match kind {
            Qd8Kind::Qb4w { block } => {
                if block == 0 || block % 32 != 0 {
                    return err(format!("block size {block} is not a multiple of 32"));
                }
                k.div_ceil(block)
            }
            _ => 1,
        };
        if scales.len() != n * nblocks {
            return err(format!(
                "{} scales for {n} columns x {nblocks} blocks",
                scales.len()
            ));
        }
        if let Some(b) = bias {
            if b.len() != n {
                return err(format!("{} biases for {n} columns", b.len()));
            }
        }
        let int4 = kind != Qd8Kind::Qc8w;
        if int4 && w.iter().any(|&v| !(-8..=7).contains(&v)) {
            return err("an int4 weight is outside -8..=7".into());
        }
        // Qb4w: K padded up to whole blocks.
        let kp = match kind {
            Qd8Kind::Qb4w { block } => kp.max(nblocks * block),
            _ => kp,
        };
        let ntiles = n.div_ceil(NR);
        let chunks = kp / QD8_K_ALIGN;
        let pair_bytes = if int4 { 16 } else { 32 };
        let tile_bytes = chunks * 4 * pair_bytes;
        let mut data = vec![0u8; ntiles * tile_bytes];
        let wv = |col: usize, kk: usize| -> i8 {
            if col < n && kk < k {
                w[col * k + kk]
            } else {
                0
            }
        };
        for t in 0..ntiles {
            let tile = &mut data[t * tile_bytes..(t + 1) * tile_bytes];
            for c in 0..chunks {
                for p in 0..4 {
                    let dst = &mut tile[(c * 4 + p) * pair_bytes..(c * 4 + p + 1) * pair_bytes];
                    for half in 0..2 {
                        let col = t * NR + 2 * p + half;
                        for j in 0..8 {
                            let k0 = c * 16 + j;
                            if int4 {
                                let lo = (wv(col, k0) as u8) & 0xf;
                                let hi = (wv(col, k0 + 8) as u8) & 0xf;
                                dst[half * 8 + j] = lo | (hi << 4);
                            } else {
                                dst[half * 8 + j] = wv(col, k0) as u8;
                                dst[16 + half * 8 + j] = wv(col, k0 + 8) as u8;
                            }
                        }
                    }
                }
            }
        }
        let cols = ntiles * NR;
        let mut bias_v = vec![0.0f32; cols];
        if let Some(b) = bias {
            bias_v[..n].copy_from_slice(b);
        }
        let mut ksum_i = Vec::new();
        let mut ksum_f = Vec::new();
        let mut scale = Vec::new();
        let mut bscale = Vec::new();
        match kind {
            Qd8Kind::Qc8w | Qd8Kind::Qc4w => {
                // int4 values are unpacked as 16·w (the nibble in the high half of a
                // byte): the sums are 16× too and the scale is divided by 16 (exact:
                // a power of two).
                let m = if int4 { 16 } else { 1 };
                ksum_i = (0..cols)
                    .map(|col| -m * (0..k).map(|kk| wv(col, kk) as i32).sum::<i32>())
                    .collect();
                let f = if int4 { 1.0 / 16.0 } else { 1.0 };
                scale = (0..cols)
                    .map(|col| if col < n { scales[col] * f } else { 0.0 })
                    .collect();
            }
            Qd8Kind::Qb4w { block } => {
                let sb = |col: usize, b: usize| -> f32 {
                    if col < n {
                        bf16_to_f32(bf16_bits(scales[col * nblocks + b]))
                    } else {
                        0.0
                    }
                };
                ksum_f = (0..cols)
                    .map(|col| {
                        let mut acc = 0.0f32;
                        for c in 0..chunks {
                            let s: i32 = (c * 16..c * 16 + 16).map(|kk| wv(col, kk) as i32).sum();
                            let b = (c * 16) / block;
                            if b < nblocks {
                                acc -= (s as f32) * sb(col, b);
                            }
                        }
                        acc
                    })
                    .collect();
                let kpb = kp / block;
                bscale = vec![0u16; ntiles * kpb * NR];
                for t in 0..ntiles {
                    for b in 0..kpb {
                        for j in 0..NR {
                            let col = t * NR + j;
                            let v = if b < nblocks { sb(col, b) } else { 0.0 };
                            bscale[(t * kpb + b) * NR + j] = bf16_bits(v);
                        }
                    }
                }
            }
        }
        Ok(PackedQd8 {
            kind,
            n,
            k,
            kp,
            data,
            ksum_i,
            ksum_f,
            scale,
            bscale,
            bias: bias_v,
        })
    }

    /// Output columns.
    pub fn n(&self) -> usize {
        self.n
    }
    /// Inputs per column.
    pub fn k(&self) -> usize {
        self.k
    }
    /// Row length the quantized activations must have (`k` padded).
    pub fn k_padded(&self) -> usize {
        self.kp
    }
    /// The weight scheme.
    pub fn kind(&self) -> Qd8Kind {
        self.kind
    }
    /// Bytes held (weights, scales, sums, bias).
    pub fn bytes(&self) -> usize {
        self.data.len()
            + 4 * (self.ksum_i.len() + self.ksum_f.len() + self.scale.len() + self.bias.len())
            + 2 * self.bscale.len()
    }
    /// Bytes one full pass over the weights reads (what a `m == 1` call streams).
    pub fn weight_bytes_per_pass(&self) -> usize {
        self.bytes()
    }

    fn tile_bytes(&self) -> usize {
        let pair = if self.kind == Qd8Kind::Qc8w { 32 } else { 16 };
        (self.kp / QD8_K_ALIGN) * 4 * pair
    }
}

/// Everything one tile call needs.
struct TileArgs<'a> {
    w: &'a PackedQd8,
    tile: usize,
    /// Rows of quantized activations (`kp` bytes each, stride `lda`).
    a: &'a [i8],
    lda: usize,
    params: &'a [Qd8Params],
    lo: f32,
    hi: f32,
}

/// Scalar reference of one tile for `rows` consecutive rows starting at `r0`;
/// writes `out[r][j]` for the 8 columns of the tile.
fn tile_scalar(t: &TileArgs<'_>, r0: usize, rows: usize, out: &mut [[f32; NR]; 2]) {
    let w = t.w;
    let int4 = w.kind != Qd8Kind::Qc8w;
    let pair_bytes = if int4 { 16 } else { 32 };
    let tb = w.tile_bytes();
    let tile = &w.data[t.tile * tb..(t.tile + 1) * tb];
    // Weight value (as the kernels see it: 16·w for int4) of tile column j at k.
    let wval = |j: usize, kk: usize| -> i32 {
        let (c, r) = (kk / 16, kk % 16);
        let (p, half) = (j / 2, j % 2);
        let base = (c * 4 + p) * pair_bytes;
        if int4 {
            let b = tile[base + half * 8 + (r % 8)];
            if r < 8 {
                (b << 4) as i8 as i32
            } else {
                (b & 0xf0) as i8 as i32
            }
        } else {
            tile[base + (r / 8) * 16 + half * 8 + (r % 8)] as i8 as i32
        }
    };
    for (ri, o) in out.iter_mut().enumerate().take(rows) {
        let r = r0 + ri;
        let a = &t.a[r * t.lda..r * t.lda + w.kp];
        let qp = t.params[r];
        for (j, oj) in o.iter_mut().enumerate() {
            let col = t.tile * NR + j;
            let v = match w.kind {
                Qd8Kind::Qc8w | Qd8Kind::Qc4w => {
                    let mut acc = w.ksum_i[col].wrapping_mul(qp.zero_point);
                    for (kk, &av) in a.iter().enumerate() {
                        acc = acc.wrapping_add(av as i32 * wval(j, kk));
                    }
                    (acc as f32 * qp.inv_scale).mul_add(w.scale[col], w.bias[col])
                }
                Qd8Kind::Qb4w { block } => {
                    let zpf = qp.zero_point as f32;
                    let mut lanes = [0.0f32 * zpf; 4];
                    lanes[0] = w.ksum_f[col] * zpf;
                    let kpb = w.kp / block;
                    for b in 0..kpb {
                        let mut acc = [0i32; 4];
                        for kk in b * block..(b + 1) * block {
                            acc[(kk % 8) / 2] += a[kk] as i32 * wval(j, kk);
                        }
                        let s = bf16_to_f32(w.bscale[(t.tile * kpb + b) * NR + j]) * (1.0 / 16.0);
                        for (l, &ac) in lanes.iter_mut().zip(&acc) {
                            *l = (ac as f32).mul_add(s, *l);
                        }
                    }
                    let sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
                    sum.mul_add(qp.inv_scale, w.bias[col])
                }
            };
            *oj = v.max(t.lo).min(t.hi);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)] // register-tile loops index several arrays at once
mod avx2 {
    use super::{bf16_to_f32, Qd8Kind, TileArgs, NR};
    use std::arch::x86_64::*;

    /// Unpacks chunk `c`, column pair `p` of a tile into (k 0..8, k 8..16) as i16
    /// (16·w for int4), each as [col 2p × 8 | col 2p+1 × 8].
    #[inline(always)]
    unsafe fn load_pair(tile: *const u8, int4: bool, c: usize, p: usize) -> (__m256i, __m256i) {
        if int4 {
            let wb = _mm_loadu_si128(tile.add((c * 4 + p) * 16) as *const __m128i);
            let m = _mm_set1_epi8(0xf0u8 as i8);
            let lo = _mm_and_si128(_mm_slli_epi32(wb, 4), m);
            let hi = _mm_and_si128(wb, m);
            (_mm256_cvtepi8_epi16(lo), _mm256_cvtepi8_epi16(hi))
        } else {
            let base = tile.add((c * 4 + p) * 32);
            let lo = _mm_loadu_si128(base as *const __m128i);
            let hi = _mm_loadu_si128(base.add(16) as *const __m128i);
            (_mm256_cvtepi8_epi16(lo), _mm256_cvtepi8_epi16(hi))
        }
    }

    /// 8 activation bytes at `a`, sign-extended, in both 128-bit halves.
    #[inline(always)]
    unsafe fn load_a8(a: *const i8) -> __m256i {
        _mm256_cvtepi8_epi16(_mm_broadcastq_epi64(_mm_loadl_epi64(a as *const __m128i)))
    }

    /// Adds chunks `c0..c1` of rows `a[r]` into `acc[r][p]`.
    #[inline(always)]
    unsafe fn accumulate<const MR: usize>(
        tile: *const u8,
        int4: bool,
        a: &[*const i8; MR],
        c0: usize,
        c1: usize,
        acc: &mut [[__m256i; 4]; MR],
    ) {
        for c in c0..c1 {
            let mut alo = [_mm256_setzero_si256(); MR];
            let mut ahi = [_mm256_setzero_si256(); MR];
            for r in 0..MR {
                alo[r] = load_a8(a[r].add(c * 16));
                ahi[r] = load_a8(a[r].add(c * 16 + 8));
            }
            for p in 0..4 {
                let (wl, wh) = load_pair(tile, int4, c, p);
                for r in 0..MR {
                    let s = _mm256_add_epi32(
                        _mm256_madd_epi16(alo[r], wl),
                        _mm256_madd_epi16(ahi[r], wh),
                    );
                    acc[r][p] = _mm256_add_epi32(acc[r][p], s);
                }
            }
        }
    }

    /// One tile for rows `r0..r0 + MR` (all valid).
    ///
    /// # Safety
    /// AVX2 and FMA must be available; the rows `r0..r0+MR` of `t.a` must hold
    /// `kp` bytes each (checked by the caller).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile<const MR: usize>(
        t: &TileArgs<'_>,
        r0: usize,
        out: &mut [[f32; NR]; 2],
    ) {
        let w = t.w;
        let int4 = w.kind != Qd8Kind::Qc8w;
        let tb = w.tile_bytes();
        let tile = w.data.as_ptr().add(t.tile * tb);
        let chunks = w.kp / 16;
        let mut a = [core::ptr::null::<i8>(); MR];
        for (r, ar) in a.iter_mut().enumerate() {
            *ar = t.a.as_ptr().add((r0 + r) * t.lda);
        }
        let col0 = t.tile * NR;
        let perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let bias = _mm256_loadu_ps(w.bias.as_ptr().add(col0));
        let vlo = _mm256_set1_ps(t.lo);
        let vhi = _mm256_set1_ps(t.hi);
        match w.kind {
            Qd8Kind::Qc8w | Qd8Kind::Qc4w => {
                let mut acc = [[_mm256_setzero_si256(); 4]; MR];
                accumulate::<MR>(tile, int4, &a, 0, chunks, &mut acc);
                let ksum = _mm256_loadu_si256(w.ksum_i.as_ptr().add(col0) as *const __m256i);
                let scale = _mm256_loadu_ps(w.scale.as_ptr().add(col0));
                for r in 0..MR {
                    let qp = t.params[r0 + r];
                    let h01 = _mm256_hadd_epi32(acc[r][0], acc[r][1]);
                    let h23 = _mm256_hadd_epi32(acc[r][2], acc[r][3]);
                    let s = _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(h01, h23), perm);
                    let s = _mm256_add_epi32(
                        s,
                        _mm256_mullo_epi32(ksum, _mm256_set1_epi32(qp.zero_point)),
                    );
                    let f = _mm256_mul_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(qp.inv_scale));
                    let f = _mm256_fmadd_ps(f, scale, bias);
                    let f = _mm256_min_ps(_mm256_max_ps(f, vlo), vhi);
                    _mm256_storeu_ps(out[r].as_mut_ptr(), f);
                }
            }
            Qd8Kind::Qb4w { block } => {
                let kpb = w.kp / block;
                let cpb = block / 16;
                let mut fo = [[_mm256_setzero_ps(); 4]; MR];
                for (r, f) in fo.iter_mut().enumerate() {
                    let zp = _mm256_set1_ps(t.params[r0 + r].zero_point as f32);
                    for (p, fp) in f.iter_mut().enumerate() {
                        let k0 = w.ksum_f[col0 + 2 * p];
                        let k1 = w.ksum_f[col0 + 2 * p + 1];
                        let init = _mm256_setr_ps(k0, 0.0, 0.0, 0.0, k1, 0.0, 0.0, 0.0);
                        *fp = _mm256_mul_ps(init, zp);
                    }
                }
                let sixteenth = _mm256_set1_ps(1.0 / 16.0);
                let bs = w.bscale.as_ptr().add(t.tile * kpb * NR);
                for b in 0..kpb {
                    let mut acc = [[_mm256_setzero_si256(); 4]; MR];
                    accumulate::<MR>(tile, int4, &a, b * cpb, (b + 1) * cpb, &mut acc);
                    let sv = _mm_loadu_si128(bs.add(b * NR) as *const __m128i);
                    let s8 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(sv), 16));
                    let s8 = _mm256_mul_ps(s8, sixteenth);
                    for p in 0..4 {
                        let idx = _mm256_setr_epi32(
                            2 * p as i32,
                            2 * p as i32,
                            2 * p as i32,
                            2 * p as i32,
                            2 * p as i32 + 1,
                            2 * p as i32 + 1,
                            2 * p as i32 + 1,
                            2 * p as i32 + 1,
                        );
                        let sp = _mm256_permutevar8x32_ps(s8, idx);
                        for r in 0..MR {
                            fo[r][p] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[r][p]), sp, fo[r][p]);
                        }
                    }
                }
                for r in 0..MR {
                    let qp = t.params[r0 + r];
                    let h01 = _mm256_hadd_ps(fo[r][0], fo[r][1]);
                    let h23 = _mm256_hadd_ps(fo[r][2], fo[r][3]);
                    let s = _mm256_permutevar8x32_ps(_mm256_hadd_ps(h01, h23), perm);
                    let f = _mm256_fmadd_ps(s, _mm256_set1_ps(qp.inv_scale), bias);
                    let f = _mm256_min_ps(_mm256_max_ps(f, vlo), vhi);
                    _mm256_storeu_ps(out[r].as_mut_ptr(), f);
                }
            }
        }
        let _ = bf16_to_f32;
    }
}

/// `c[m × n] = clamp(dequant(a) · Wᵀ + bias, lo, hi)` for quantized rows `a`
/// (`m` rows of `w.k_padded()` bytes at stride `lda`, from [`qd8_quantize_row`]) with
/// their `params`. `c` has row stride `ldc`.
///
/// # Panics
/// When the slices are too short for the sizes given (callers size them at load).
#[allow(clippy::too_many_arguments)]
pub fn qd8_gemm(
    m: usize,
    a: &[i8],
    lda: usize,
    params: &[Qd8Params],
    w: &PackedQd8,
    c: &mut [f32],
    ldc: usize,
    lo: f32,
    hi: f32,
) {
    if m == 0 {
        return;
    }
    let (n, kp) = (w.n, w.kp);
    assert!(
        lda >= kp && a.len() >= (m - 1) * lda + kp,
        "qd8_gemm: a too short"
    );
    assert!(params.len() >= m, "qd8_gemm: params too short");
    assert!(
        ldc >= n && c.len() >= (m - 1) * ldc + n,
        "qd8_gemm: c too short"
    );
    let ntiles = n.div_ceil(NR);
    let nt = num_threads();
    let work = m * n * kp;
    let (tchunks, rblocks) = if nt <= 1 || work < (1 << 17) {
        (1, 1)
    } else {
        let tc = ntiles.min(nt * 4);
        let rb = if tc >= nt * 2 {
            1
        } else {
            m.div_ceil(2).min((nt * 4).div_ceil(tc))
        };
        (tc, rb)
    };
    let rows_per = m.div_ceil(rblocks).next_multiple_of(2);
    let rblocks = m.div_ceil(rows_per);
    let tiles_per = ntiles.div_ceil(tchunks);
    let tchunks = ntiles.div_ceil(tiles_per);
    let kern = isa();
    let cp = SyncPtr(c.as_mut_ptr());
    let clen = c.len();
    parallel_for(tchunks * rblocks, |task| {
        let (tcix, rb) = (task % tchunks, task / tchunks);
        let (r_start, r_end) = (rb * rows_per, ((rb + 1) * rows_per).min(m));
        for tile in tcix * tiles_per..((tcix + 1) * tiles_per).min(ntiles) {
            let args = TileArgs {
                w,
                tile,
                a,
                lda,
                params,
                lo,
                hi,
            };
            let ncols = (n - tile * NR).min(NR);
            let mut r = r_start;
            while r < r_end {
                let rows = (r_end - r).min(2);
                let mut out = [[0.0f32; NR]; 2];
                match kern {
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2Fma => {
                        // SAFETY: the tier is only selected when AVX2+FMA are present;
                        // rows r..r+rows exist in `a` (asserted above: m rows of kp bytes).
                        unsafe {
                            if rows == 2 {
                                avx2::tile::<2>(&args, r, &mut out);
                            } else {
                                avx2::tile::<1>(&args, r, &mut out);
                            }
                        }
                    }
                    _ => tile_scalar(&args, r, rows, &mut out),
                }
                for (ri, o) in out.iter().enumerate().take(rows) {
                    let off = (r + ri) * ldc + tile * NR;
                    debug_assert!(off + ncols <= clen);
                    // SAFETY: each task writes columns of its own tiles in its own rows
                    // (disjoint across tasks); `off + ncols <= c.len()` by the assert on
                    // `c` above, and `c` outlives the parallel_for.
                    unsafe {
                        core::ptr::copy_nonoverlapping(o.as_ptr(), cp.get().add(off), ncols);
                    }
                }
                r += rows;
            }
        }
    });
}
