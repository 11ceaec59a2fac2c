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
//!   `(l0 + l1) + (l2 + l3)`, then `sum · inv_scale + bias` (two roundings, as the
//!   XNNPACK build in ExecuTorch 1.5.1 does) and the clamp.
//!
//! XNNPACK picks different kernels by CPU, and they round differently, so the
//! arithmetic above is one of two ([`XnnArith`], chosen per [`PackedQd8`] at
//! packing time from [`crate::xnn_arith`]):
//! * [`XnnArith::Avx2`] (XNNPACK's AVX2/SSE `qd8` kernels): as described above.
//! * [`XnnArith::Avx512Vnni`] (XNNPACK's AVX-512 VNNI kernels, which it runs on
//!   unsigned `qdu8` activations): the row's zero point is `rne(-rmin · s)` in
//!   `0..=255` with `s = 255 / (rmax - rmin)`, the quantizing multiplier is `s`
//!   itself ([`Qd8Params::from_range_u8`]; stored shifted by -128 so the same
//!   layout serves both); for `qb4w` each column keeps one float sum that starts
//!   at `ksum · zp_u` and adds, per block, `float(Σ (a + 128) · w)` (exact int32)
//!   times the block scale with one FMA, then `sum · inv_scale + bias`.
//!   Per-channel weights give the same exact integers either way.
//!
//! Checked bit for bit against ExecuTorch 1.5.1's XNNPACK on exported programs
//! (`fixtures/xnn_8da4w_*`; `xnn_8da4w_longk` has K = 4096 and 4096-wide rows,
//! where the two arithmetics differ, and records which one produced it) and on
//! the 2048→8192→2048 stack of `bench/qlinear_compare.py` (batch 1 and 64:
//! every output equal) with the AVX-512 VNNI arithmetic on an AVX-512 VNNI CPU.
//!
//! Weights are packed once ([`PackedQd8`]) in tiles of 8 output columns, or,
//! for `qb4w` packed with the VNNI arithmetic on an AVX-512 VNNI CPU, in the
//! `v16` layout (panels of 16 columns, below); int4 values stay two per byte
//! either way, so a decode step reads half a byte per weight. The layout is
//! chosen at packing time and only one is kept (no extra memory; columns are
//! padded to 16 instead of 8).
//!
//! Kernels: up to 7 rows (decode), tiles of 2 rows × 8 columns unpack the nibbles
//! in registers. From 8 rows on (batches, prompt prefill) with `qb4w` blocks of
//! 32, each 4-column half tile is unpacked once per 64 blocks into bytes and `f32`
//! block scales on the stack (a 12 KiB panel that stays in L1), then multiplied
//! with every row in 4-row register tiles (the block loop in assembly: 8 float
//! lane accumulators, no spills); rows go in passes of up to 64 (about 1 MiB of
//! quantized rows) and the float lanes wait on the stack between panels. Each
//! output's products, int32 block sums and float operations are the same in every
//! path, so all row counts, tiers and thread counts give the same bits.
//!
//! `qb4w` with the VNNI arithmetic on AVX-512 VNNI ([`crate::avx512_vnni`],
//! the layout packed for it) runs the `v16` kernels: per 8 inputs a panel
//! holds 64 bytes, 4 per column, byte `i` with inputs `i` and `4 + i` as 4-bit
//! two's complement; the quantized rows are stored as unsigned `a + 128` in
//! input order. One shift and two ands give `16 · w` as signed bytes, and one
//! `vpdpbusd` with 4 broadcast activation bytes adds 4 inputs of one row to
//! 16 columns, one int32 lane per column (no horizontal sums). Per block the
//! lanes are shifted right by 4 (exact), converted and added to the column's
//! float sum with one FMA with a register of 16 block scales. Register tiles
//! are up to 6 rows × 2 panels (batches, prefill) or 1..2 rows × 4 panels
//! (decode; one row keeps the products of the low and high nibbles in separate
//! registers for more independent chains), rows split evenly; rows go in
//! passes of about 512 KiB, and within a pass each group of panels stays in
//! cache while the rows go by, so a decode step streams the weights once.
//! Panels are split over the threads (rows too when there are few panels).
//! Capped below AVX-512, or with the AVX2 arithmetic, the `v16` layout runs on
//! the scalar path, which reads it; so does the 8-column layout with the VNNI
//! arithmetic (weights packed under a cap, or the arithmetic forced).
//!
//! Otherwise, with AVX-512 VNNI, `qc4w` and `qb4w` with the AVX2 arithmetic use
//! register tiles of up to 8 rows × 8 columns (`vnni`): `vpdpbusd` of the
//! packed nibbles (4 columns per register) with the row's activations yields
//! the same int32 lane sums, and the float lanes of 4 columns fill one `zmm`.
//! Rows go in passes of about 512 KiB; within a pass each tile's weights stay
//! in cache while all the rows go by.
//! Row quantization has an AVX2 form with the same operations per value.

use crate::pool::{num_threads, parallel_for};
use crate::util::SyncPtr;
use crate::LinalgError;
use crate::{isa, Isa, XnnArith};

/// int8 weights pad `k` to a multiple of this.
const QD8_K_ALIGN: usize = 16;
/// Output columns per packed tile.
const NR: usize = 8;

/// Run-time quantization parameters of one activation row.
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Zeroable, bytemuck::Pod)]
#[repr(C)]
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

    /// XNNPACK's unsigned `qdu8` parameters for values in `[min, max]` (its
    /// AVX-512 VNNI path): `s = 255 / (rmax - rmin)`, zero point `rne(-rmin · s)`
    /// in `0..=255`, quantizing multiplier `s` itself. Returned in the signed
    /// form the kernels store (`zero_point - 128`, values `q - 128`), which
    /// quantizes to the same integers shifted by 128.
    pub fn from_range_u8(min: f32, max: f32) -> (Qd8Params, f32) {
        let rmin = min.min(0.0);
        let rmax = max.max(0.0);
        let scale = if rmin == rmax {
            1.0
        } else {
            255.0 / (rmax - rmin)
        };
        let zp = (-rmin * scale).round_ties_even();
        let zp = if zp.is_nan() {
            0
        } else {
            zp.clamp(0.0, 255.0) as i32
        };
        (
            Qd8Params {
                zero_point: zp - 128,
                inv_scale: 1.0 / scale,
            },
            scale,
        )
    }

    /// The parameters rule of `arith` ([`Qd8Params::from_range`] for
    /// [`XnnArith::Avx2`], [`Qd8Params::from_range_u8`] for
    /// [`XnnArith::Avx512Vnni`]).
    pub fn for_arith(arith: XnnArith, min: f32, max: f32) -> (Qd8Params, f32) {
        match arith {
            XnnArith::Avx2 => Qd8Params::from_range(min, max),
            XnnArith::Avx512Vnni => Qd8Params::from_range_u8(min, max),
        }
    }
}

/// Quantizes one row (`x.len() <= out.len()`); `out` past `x.len()` is zeroed.
pub fn qd8_quantize_row(x: &[f32], out: &mut [i8]) -> Qd8Params {
    qd8_quantize_row_with(XnnArith::Avx2, x, out)
}

/// [`qd8_quantize_row`] with the parameters rule of `arith`
/// ([`Qd8Params::for_arith`]).
pub fn qd8_quantize_row_with(arith: XnnArith, x: &[f32], out: &mut [i8]) -> Qd8Params {
    assert!(out.len() >= x.len(), "qd8_quantize_row: out too short");
    #[cfg(target_arch = "x86_64")]
    if isa() == Isa::Avx2Fma {
        // SAFETY: the tier is only selected when AVX2+FMA are present; `out` holds
        // `x.len()` bytes (asserted above).
        return unsafe { avx2::quantize_row(arith, x, out) };
    }
    // Eight independent running extrema (vectorizable); NaNs are skipped.
    let (mut mn, mut mx) = ([f32::INFINITY; 8], [f32::NEG_INFINITY; 8]);
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for i in 0..8 {
            mn[i] = if c[i] < mn[i] { c[i] } else { mn[i] };
            mx[i] = if c[i] > mx[i] { c[i] } else { mx[i] };
        }
    }
    for (i, &v) in chunks.remainder().iter().enumerate() {
        mn[i] = mn[i].min(v);
        mx[i] = mx[i].max(v);
    }
    let (mn, mx) = if x.is_empty() {
        (0.0, 0.0)
    } else {
        (
            mn.iter().fold(f32::INFINITY, |a, &b| a.min(b)),
            mx.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)),
        )
    };
    let (p, mult) = Qd8Params::for_arith(arith, mn, mx);
    quantize_values(x, out, mult, p.zero_point);
    p
}

/// `out[i] = q(x[i])` with the multiplier and zero point of the row; `out` past
/// `x.len()` is zeroed.
fn quantize_values(x: &[f32], out: &mut [i8], mult: f32, zp: i32) {
    let top = (127 - zp) as f32;
    // Round to nearest even with the 1.5·2^23 trick (valid for |v| <= 2^22; values
    // below -256 saturate to -128 either way), as `cvtps2dq` rounds.
    const MAGIC: f32 = 12_582_912.0;
    for (o, &v) in out.iter_mut().zip(x) {
        let v = (v * mult).min(top).max(-256.0);
        let r = ((v + MAGIC) - MAGIC) as i32;
        *o = (r + zp).clamp(-128, 127) as i8;
    }
    for o in out[x.len()..].iter_mut() {
        *o = 0;
    }
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

/// Position `i` of every 16-byte chunk of an int4 row holds input `PERM[i]` of the
/// chunk, so that the pairwise sums of `maddubs` followed by `madd` land inputs
/// with the same `(k mod 8) / 2` in the same 32-bit lane (XNNPACK's lanes).
const PERM: [usize; 16] = [0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15];

/// Weights packed for [`qd8_gemm`]: `n` output columns of `k` inputs.
///
/// Tiles of 8 columns. int8: per 16 inputs and column pair, 32 bytes
/// (`[c0 k0..8][c1 k0..8][c0 k8..16][c1 k8..16]`). int4: per 32 inputs and column
/// pair, 32 bytes (16 per column; byte `i` holds `w + 8` of input `PERM[i]` in its
/// low nibble and of input `16 + PERM[i]` in its high nibble). `qb4w` packed
/// for the AVX-512 VNNI kernels: panels of 16 columns instead ([`pack_v16`]).
#[derive(Clone, Debug)]
pub struct PackedQd8 {
    kind: Qd8Kind,
    /// Whose arithmetic the results reproduce (row quantization rule and, for
    /// `qb4w`, the float block sums); every layout computes either (the scalar
    /// path reads them all), the fast kernels need the matching one.
    arith: XnnArith,
    n: usize,
    k: usize,
    kp: usize,
    data: Vec<u8>,
    /// `qc*`: `-Σ w` per column (int).
    ksum_i: Vec<i32>,
    /// `qb4w`: XNNPACK's float `ksum` per column.
    ksum_f: Vec<f32>,
    /// `qc*`: per-column scale.
    scale: Vec<f32>,
    /// `qb4w`: `[tile][block][8]` bf16 block scales (`[panel][block][16]` when `v16`).
    bscale: Vec<u16>,
    /// `qb4w` in 16-column panels for the AVX-512 VNNI kernels ([`pack_v16`]).
    v16: bool,
    bias: Vec<f32>,
}

/// Where [`PackedQd8`] reads the weights it packs.
#[derive(Clone, Copy)]
enum WeightSrc<'a> {
    /// `n × k` signed values, row-major.
    Values(&'a [i8]),
    /// `n` rows of `k.div_ceil(2)` bytes, two `w + 8` nibbles per byte, low first.
    Nibbles(&'a [u8]),
}

impl WeightSrc<'_> {
    /// Weight `kk` of column `col` (rows of `k`), in range (checked by the constructors).
    #[inline]
    fn get(&self, k: usize, col: usize, kk: usize) -> i8 {
        match *self {
            WeightSrc::Values(w) => w[col * k + kk],
            WeightSrc::Nibbles(d) => {
                let b = d[col * k.div_ceil(2) + kk / 2];
                let nib = if kk.is_multiple_of(2) {
                    b & 0xf
                } else {
                    b >> 4
                };
                nib as i8 - 8
            }
        }
    }

    /// Weights `k0..k0 + out.len()` of column `col` into `out`.
    fn read(&self, k: usize, col: usize, k0: usize, out: &mut [i8]) {
        match *self {
            WeightSrc::Values(w) => out.copy_from_slice(&w[col * k + k0..col * k + k0 + out.len()]),
            WeightSrc::Nibbles(d) if k0.is_multiple_of(2) => {
                // Whole bytes: two values each, low nibble first.
                let row = &d[col * k.div_ceil(2) + k0 / 2..];
                let last_byte = (out.len().max(1) - 1) / 2;
                let mut pairs = out.chunks_exact_mut(2);
                for (o, &b) in (&mut pairs).zip(row) {
                    o[0] = (b & 0xf) as i8 - 8;
                    o[1] = (b >> 4) as i8 - 8;
                }
                if let [last] = pairs.into_remainder() {
                    *last = (row[last_byte] & 0xf) as i8 - 8;
                }
            }
            WeightSrc::Nibbles(_) => {
                for (i, o) in out.iter_mut().enumerate() {
                    *o = self.get(k, col, k0 + i);
                }
            }
        }
    }
}

/// Output columns per panel of the `v16` layout.
const VN: usize = 16;
/// Panels per group of the `v16` layout: a group's panels are interleaved (per
/// 8 inputs, 64 bytes of each panel in turn; per block, 16 scales of each), so a
/// decode tile of [`VG`] panels reads one sequential stream instead of one per
/// panel (on this VM's memory, four 16 KiB streams read at 32-42 GB/s where one
/// long stream reads at up to 60).
const VG: usize = 4;

/// Where panel `p` of `np` sits in the `v16` layout: `(first panel of its group,
/// its place in the group, panels in the group)`. Weight byte `i` of panel `p` for
/// inputs `8o..8o + 8` is at `g0 · pb + (o · gw + j) · 64 + i` (`pb = 8 · kp`), its
/// scale of block `b`, column `c` at `g0 · nb · 16 + (b · gw + j) · 16 + c`.
fn v16_group(np: usize, p: usize) -> (usize, usize, usize) {
    let g0 = p / VG * VG;
    (g0, p - g0, VG.min(np - g0))
}
/// Largest `qb4w` block packed for the `v16` kernels: their int32 block sums are
/// 16 times the exact ones and must stay below 2^31 (`16 · block · 255 · 8`).
const V16_MAX_BLOCK: usize = 1 << 15;

/// Packs `qb4w` weights (`block` inputs per scale, `kp` a multiple of it) in
/// the `v16` layout of the AVX-512 VNNI kernels ([`v16`]): panels of 16
/// columns, `8 · kp` bytes each; per 8 inputs `8o..8o + 8`, 64 bytes, column
/// `c` at bytes `4c..4c + 4`, byte `i` holding `w[8o + i]` in its low nibble and
/// `w[8o + 4 + i]` in its high nibble, as 4-bit two's complement; the panels of
/// each group of [`VG`] interleaved ([`v16_group`]). Returns the weights,
/// XNNPACK's float `ksum` per column (`16 · panels`, zero past `n`) and the bf16
/// block scales (16 per panel and block, interleaved in the same groups).
fn pack_v16(
    n: usize,
    k: usize,
    kp: usize,
    block: usize,
    w: WeightSrc<'_>,
    scales: &[f32],
) -> (Vec<u8>, Vec<f32>, Vec<u16>) {
    let nb = kp / block;
    let np = n.div_ceil(VN);
    let pb = kp * VN / 2;
    let mut data = vec![0u8; np * pb];
    let mut ksum = vec![0.0f32; np * VN];
    let mut bscale = vec![0u16; np * nb * VN];
    type Cell<'a> = std::sync::Mutex<(&'a mut [u8], &'a mut [f32], &'a mut [u16])>;
    // One cell per group of panels (the last one may be narrower).
    let cells: Vec<Cell<'_>> = data
        .chunks_mut(VG * pb)
        .zip(ksum.chunks_mut(VG * VN))
        .zip(bscale.chunks_mut(VG * nb * VN))
        .map(|((d, ks), bs)| std::sync::Mutex::new((d, ks, bs)))
        .collect();
    // Parallel over panels: packing a large model's weights is a noticeable part
    // of its load time.
    parallel_for(np, |p| {
        let (g0, j, gw) = v16_group(np, p);
        let mut guard = cells[g0 / VG].lock().unwrap_or_else(|e| e.into_inner());
        let (d, ks, bs) = &mut *guard;
        let mut cw = vec![0i8; kp];
        let mut sums = vec![0i32; k.div_ceil(16)];
        // Byte offset of inputs 8o.. of this panel in its group.
        let at = |o: usize| (o * gw + j) * 64;
        for c in 0..VN.min(n - p * VN) {
            let col = p * VN + c;
            let sc = &scales[col * nb..(col + 1) * nb];
            for (b, &s) in sc.iter().enumerate() {
                bs[(b * gw + j) * VN + c] = bf16_bits(s);
            }
            match w {
                WeightSrc::Nibbles(src) if k.is_multiple_of(16) => {
                    // Straight from the stored bytes: per 8 inputs, 4 bytes of
                    // `w + 8` nibbles in input order become two's complement
                    // (xor 8) and are shuffled to `w0 w4 w1 w5 w2 w6 w3 w7`.
                    let row = &src[col * (k / 2)..(col + 1) * (k / 2)];
                    for (o, q) in row.chunks_exact(4).enumerate() {
                        let x = u32::from_le_bytes([q[0], q[1], q[2], q[3]]) ^ 0x8888_8888;
                        let x =
                            ((x & 0x0000_ff00) << 8) | ((x >> 8) & 0x0000_ff00) | (x & 0xff00_00ff);
                        let x =
                            ((x & 0x00f0_00f0) << 4) | ((x >> 4) & 0x00f0_00f0) | (x & 0xf00f_f00f);
                        d[at(o) + 4 * c..at(o) + 4 * c + 4].copy_from_slice(&x.to_le_bytes());
                    }
                    // Σ w per 16 inputs: the nibbles' sum minus 8 · 16.
                    for (s, q) in sums.iter_mut().zip(row.chunks_exact(8)) {
                        let x =
                            u64::from_le_bytes([q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7]]);
                        let m = 0x0f0f_0f0f_0f0f_0f0fu64;
                        let bytes = (x & m) + ((x >> 4) & m);
                        *s = (bytes.wrapping_mul(0x0101_0101_0101_0101) >> 56) as i32 - 128;
                    }
                }
                _ => {
                    w.read(k, col, 0, &mut cw[..k]);
                    for (o, src) in cw.chunks_exact(8).enumerate() {
                        let dst = &mut d[at(o) + 4 * c..at(o) + 4 * c + 4];
                        for (i, b) in dst.iter_mut().enumerate() {
                            *b = (src[i] as u8 & 0xf) | ((src[4 + i] as u8) << 4);
                        }
                    }
                    for (s, ch) in sums.iter_mut().zip(cw[..k].chunks(16)) {
                        *s = ch.iter().map(|&v| v as i32).sum();
                    }
                }
            }
            // XNNPACK's float ksum: 16-input chunks in order, each
            // `-float(Σ w) · scale_block`.
            let mut acc = 0.0f32;
            for (i, &sum) in sums.iter().enumerate() {
                acc -= (sum as f32) * bf16_to_f32(bf16_bits(sc[i * 16 / block]));
            }
            ks[j * VN + c] = acc;
        }
    });
    drop(cells);
    (data, ksum, bscale)
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
        if w.len() != n * k {
            return Err(LinalgError(format!(
                "qd8 weights: {} weights for {n} x {k}",
                w.len()
            )));
        }
        if kind != Qd8Kind::Qc8w && w.iter().any(|&v| !(-8..=7).contains(&v)) {
            return Err(LinalgError(
                "qd8 weights: an int4 weight is outside -8..=7".into(),
            ));
        }
        Self::pack(kind, n, k, WeightSrc::Values(w), scales, bias)
    }

    /// [`PackedQd8::new`] for int4 kinds straight from the stored form: `n`
    /// rows of `k` 4-bit values two per byte, low nibble first, each row padded
    /// to whole bytes, holding `w + 8` (XNNPACK's `qcint4`/`qbint4` constants),
    /// without an unpacked copy (a large model's peak memory at load).
    pub fn from_nibbles(
        kind: Qd8Kind,
        n: usize,
        k: usize,
        data: &[u8],
        scales: &[f32],
        bias: Option<&[f32]>,
    ) -> Result<PackedQd8, LinalgError> {
        if kind == Qd8Kind::Qc8w {
            return Err(LinalgError("qd8 weights: nibbles for int8 weights".into()));
        }
        let need = n.checked_mul(k.div_ceil(2));
        if need.is_none_or(|b| data.len() < b) {
            return Err(LinalgError(format!(
                "qd8 weights: {} bytes of int4 values for {n} x {k}",
                data.len()
            )));
        }
        Self::pack(kind, n, k, WeightSrc::Nibbles(data), scales, bias)
    }

    fn pack(
        kind: Qd8Kind,
        n: usize,
        k: usize,
        w: WeightSrc<'_>,
        scales: &[f32],
        bias: Option<&[f32]>,
    ) -> Result<PackedQd8, LinalgError> {
        let err = |m: String| Err(LinalgError(format!("qd8 weights: {m}")));
        if n == 0 || k == 0 {
            return err(format!("empty weights ({n} x {k})"));
        }
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
        let kp = match kind {
            Qd8Kind::Qc8w => k.next_multiple_of(QD8_K_ALIGN),
            Qd8Kind::Qc4w => k.next_multiple_of(32),
            Qd8Kind::Qb4w { block } => nblocks * block,
        };
        let arith = crate::isa::xnn_arith();
        if let Qd8Kind::Qb4w { block } = kind {
            if block <= V16_MAX_BLOCK && arith == XnnArith::Avx512Vnni && crate::isa::avx512_vnni()
            {
                let (data, ksum_f, bscale) = pack_v16(n, k, kp, block, w, scales);
                let mut bias_v = vec![0.0f32; ksum_f.len()];
                if let Some(b) = bias {
                    bias_v[..n].copy_from_slice(b);
                }
                return Ok(PackedQd8 {
                    kind,
                    arith,
                    v16: true,
                    n,
                    k,
                    kp,
                    data,
                    ksum_i: Vec::new(),
                    ksum_f,
                    scale: Vec::new(),
                    bscale,
                    bias: bias_v,
                });
            }
        }
        let ntiles = n.div_ceil(NR);
        let cols = ntiles * NR;
        // Signed weight of a (padded) column at a (padded) input.
        let wv = |col: usize, kk: usize| -> i8 {
            if col < n && kk < k {
                w.get(k, col, kk)
            } else {
                0
            }
        };
        let tb = if int4 { kp * NR / 2 } else { kp * NR };
        let mut data = vec![0u8; ntiles * tb];
        // Parallel over tiles: packing a large model's weights is a noticeable part
        // of its load time.
        {
            let cell: Vec<std::sync::Mutex<&mut [u8]>> =
                data.chunks_mut(tb).map(std::sync::Mutex::new).collect();
            parallel_for(ntiles, |t| {
                let mut guard = cell[t].lock().unwrap_or_else(|e| e.into_inner());
                let tile: &mut [u8] = &mut guard;
                if int4 {
                    let mut src = [0i8; 32];
                    for g in 0..kp / 32 {
                        for p in 0..4 {
                            for half in 0..2 {
                                let col = t * NR + 2 * p + half;
                                // The 32 inputs of this group (zero past the edges).
                                src.fill(0);
                                if col < n && g * 32 < k {
                                    let e = (g * 32 + 32).min(k);
                                    w.read(k, col, g * 32, &mut src[..e - g * 32]);
                                }
                                let dst = &mut tile[(g * 4 + p) * 32 + half * 16..][..16];
                                for (i, d) in dst.iter_mut().enumerate() {
                                    let lo = (src[PERM[i]] + 8) as u8;
                                    let hi = (src[16 + PERM[i]] + 8) as u8;
                                    *d = lo | (hi << 4);
                                }
                            }
                        }
                    }
                } else {
                    for c in 0..kp / 16 {
                        for p in 0..4 {
                            let dst = &mut tile[(c * 4 + p) * 32..][..32];
                            for half in 0..2 {
                                let col = t * NR + 2 * p + half;
                                for j in 0..8 {
                                    dst[half * 8 + j] = wv(col, c * 16 + j) as u8;
                                    dst[16 + half * 8 + j] = wv(col, c * 16 + 8 + j) as u8;
                                }
                            }
                        }
                    }
                }
            });
        }
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
                ksum_i = (0..cols)
                    .map(|col| {
                        if col < n {
                            -(0..k).map(|kk| w.get(k, col, kk) as i32).sum::<i32>()
                        } else {
                            0
                        }
                    })
                    .collect();
                scale = (0..cols)
                    .map(|col| if col < n { scales[col] } else { 0.0 })
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
                ksum_f = vec![0.0f32; cols];
                bscale = vec![0u16; ntiles * nblocks * NR];
                // Per tile in parallel, as the packing (a large model's load time).
                let cell: Vec<std::sync::Mutex<(&mut [f32], &mut [u16])>> = ksum_f
                    .chunks_mut(NR)
                    .zip(bscale.chunks_mut(nblocks * NR))
                    .map(std::sync::Mutex::new)
                    .collect();
                parallel_for(ntiles, |t| {
                    let mut guard = cell[t].lock().unwrap_or_else(|e| e.into_inner());
                    let (ks, bs) = &mut *guard;
                    for j in 0..NR {
                        let col = t * NR + j;
                        for b in 0..nblocks {
                            bs[b * NR + j] = bf16_bits(sb(col, b));
                        }
                        if col >= n {
                            continue;
                        }
                        // XNNPACK's float ksum: 16-input chunks in order, each
                        // `-float(Σ w) · scale_block` (chunks past k sum to zero and
                        // leave it unchanged).
                        let mut acc = 0.0f32;
                        let mut chunk = [0i8; 16];
                        for c in 0..k.div_ceil(16) {
                            let len = (k - c * 16).min(16);
                            w.read(k, col, c * 16, &mut chunk[..len]);
                            let s: i32 = chunk[..len].iter().map(|&v| v as i32).sum();
                            acc -= (s as f32) * sb(col, (c * 16) / block);
                        }
                        ks[j] = acc;
                    }
                });
            }
        }
        Ok(PackedQd8 {
            kind,
            arith,
            v16: false,
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

    /// The same weights computing with `arith` instead of [`crate::xnn_arith`]'s
    /// choice at packing time (same bits as packing with it; the layout, chosen
    /// at packing time, may then only have the scalar path for it).
    pub fn with_arith(mut self, arith: XnnArith) -> PackedQd8 {
        self.arith = arith;
        self
    }
    /// Whose arithmetic these weights compute with.
    pub fn arith(&self) -> XnnArith {
        self.arith
    }
    /// Output columns.
    pub fn n(&self) -> usize {
        self.n
    }
    /// Inputs per column.
    pub fn k(&self) -> usize {
        self.k
    }
    /// Bytes of one quantized row as [`PackedQd8::quantize_row`] lays it out (the
    /// stride the rows given to [`qd8_gemm`] need at least). A length that is a
    /// multiple of 1 KiB gets 256 bytes of padding, so that the rows a batched
    /// call reads together do not all map to the same L1 cache sets (measured:
    /// 64x8192x2048 `qb4w`, about 8% faster).
    pub fn row_len(&self) -> usize {
        let used = self.kp + 32 * self.row_blocks();
        if used.is_multiple_of(1024) {
            used + 256
        } else {
            used
        }
    }
    /// The weight scheme.
    pub fn kind(&self) -> Qd8Kind {
        self.kind
    }
    /// Bytes held (weights, scales, sums, bias): also what one `m == 1` call streams.
    pub fn bytes(&self) -> usize {
        self.data.len()
            + 4 * (self.ksum_i.len() + self.ksum_f.len() + self.scale.len() + self.bias.len())
            + 2 * self.bscale.len()
    }

    /// Signed weight of column `col` at input `kk < kp` in the `v16` layout.
    fn v16_weight(&self, col: usize, kk: usize) -> i32 {
        let (g0, j, gw) = v16_group(self.n.div_ceil(VN), col / VN);
        let b =
            self.data[g0 * self.kp * VN / 2 + ((kk / 8) * gw + j) * 64 + 4 * (col % VN) + kk % 4];
        let nib = if kk % 8 < 4 { b << 4 } else { b & 0xf0 };
        ((nib as i8) >> 4) as i32
    }

    /// Block scale `b` of column `col` (`qb4w`; `col` below the padded columns).
    fn block_scale(&self, col: usize, b: usize) -> f32 {
        let nb = self.row_blocks_qb();
        if self.v16 {
            let (g0, j, gw) = v16_group(self.n.div_ceil(VN), col / VN);
            return bf16_to_f32(self.bscale[g0 * nb * VN + (b * gw + j) * VN + col % VN]);
        }
        bf16_to_f32(self.bscale[(col / NR * nb + b) * NR + col % NR])
    }

    /// Blocks per column of `qb4w` weights.
    fn row_blocks_qb(&self) -> usize {
        self.kp / self.block_len()
    }

    /// Blocks whose zero-point corrections follow an int4 row (0 for int8).
    fn row_blocks(&self) -> usize {
        if self.v16 {
            return 0;
        }
        match self.kind {
            Qd8Kind::Qc8w => 0,
            Qd8Kind::Qc4w => 1,
            Qd8Kind::Qb4w { block } => self.kp / block,
        }
    }

    fn block_len(&self) -> usize {
        match self.kind {
            Qd8Kind::Qb4w { block } => block,
            _ => self.kp,
        }
    }

    fn tile_bytes(&self) -> usize {
        if self.kind == Qd8Kind::Qc8w {
            self.kp * NR
        } else {
            self.kp * NR / 2
        }
    }

    /// Quantizes one activation row (`x.len() == k`) with XNNPACK's `qd8` rule into
    /// `out` (`row_len()` bytes) in the layout the kernels read: for int4 weights
    /// the inputs are permuted within 16-byte chunks and followed, per block, by
    /// `-8 · Σ a` over each lane's inputs (eight `i32`, `[l0..l3, l0..l3]`: the
    /// weights' zero point correction, added to the sums of `(w + 8) · a`).
    ///
    /// # Panics
    /// When `x.len() != k` or `out` is shorter than `row_len()`.
    pub fn quantize_row(&self, x: &[f32], out: &mut [i8]) -> Qd8Params {
        assert_eq!(x.len(), self.k, "quantize_row: row length");
        let (kp, nb) = (self.kp, self.row_blocks());
        assert!(out.len() >= self.row_len(), "quantize_row: out too short");
        let out = &mut out[..kp + 32 * nb];
        let p = qd8_quantize_row_with(self.arith, x, &mut out[..kp]);
        if self.v16 {
            // The `v16` kernels read `a + 128` as unsigned bytes, in order.
            for v in out.iter_mut() {
                *v ^= i8::MIN;
            }
            return p;
        }
        if nb == 0 {
            return p;
        }
        let bl = self.block_len();
        #[cfg(target_arch = "x86_64")]
        if isa() == Isa::Avx2Fma {
            // SAFETY: the tier is only selected when AVX2+FMA are present; `out`
            // holds `kp + 32 * nb` bytes, `bl` is a multiple of 32 and `kp = nb * bl`.
            unsafe { avx2::permute_row(out.as_mut_ptr(), kp, bl) };
            return p;
        }
        for b in 0..nb {
            let mut lanes = [0i32; 4];
            for kk in b * bl..(b + 1) * bl {
                lanes[(kk % 8) / 2] -= 8 * out[kk] as i32;
            }
            let dst = &mut out[kp + 32 * b..kp + 32 * (b + 1)];
            for (i, &v) in lanes.iter().chain(lanes.iter()).enumerate() {
                for (d, byte) in dst[4 * i..4 * i + 4].iter_mut().zip(v.to_le_bytes()) {
                    *d = byte as i8;
                }
            }
        }
        for chunk in out[..kp].chunks_exact_mut(16) {
            let mut c = [0i8; 16];
            c.copy_from_slice(chunk);
            for (d, &src) in chunk.iter_mut().zip(PERM.iter()) {
                *d = c[src];
            }
        }
        p
    }
}

impl PackedQd8 {
    /// [`PackedQd8::quantize_row`] for `m` rows of `x` (`k` floats each) into
    /// `out` at stride `lda` (`>= row_len()`), their parameters into `params`;
    /// large batches are split over the thread pool (same bits).
    ///
    /// # Panics
    /// When the slices are too short for `m` rows.
    pub fn quantize_rows(
        &self,
        m: usize,
        x: &[f32],
        out: &mut [i8],
        lda: usize,
        params: &mut [Qd8Params],
    ) {
        if m == 0 {
            return;
        }
        let (k, rl) = (self.k, self.row_len());
        assert!(
            x.len() >= m * k && lda >= rl && out.len() >= (m - 1) * lda + rl && params.len() >= m,
            "quantize_rows: slices too short"
        );
        // About 16K values per task: below that one thread is faster.
        let tasks = (m * k / (1 << 14)).clamp(1, m).min(num_threads() * 4);
        let per = m.div_ceil(tasks);
        let (po, pp) = (SyncPtr(out.as_mut_ptr()), SyncPtr(params.as_mut_ptr()));
        parallel_for(m.div_ceil(per), |t| {
            for r in t * per..((t + 1) * per).min(m) {
                // SAFETY: row r of `out` (rl bytes at r * lda, in bounds by the assert)
                // and params[r] are written by this task only; both outlive the call.
                let (row, prm) = unsafe {
                    (
                        core::slice::from_raw_parts_mut(po.get().add(r * lda), rl),
                        &mut *pp.get().add(r),
                    )
                };
                *prm = self.quantize_row(&x[r * k..(r + 1) * k], row);
            }
        });
    }
}

/// Everything one tile call needs.
struct TileArgs<'a> {
    w: &'a PackedQd8,
    tile: usize,
    /// Rows from [`PackedQd8::quantize_row`] (stride `lda`).
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
    let tb = w.tile_bytes();
    let tile = &w.data[t.tile * tb..(t.tile + 1) * tb];
    let mut inv = [0usize; 16];
    for (i, &k) in PERM.iter().enumerate() {
        inv[k] = i;
    }
    // Signed weight of tile column j at input kk.
    let wval = |j: usize, kk: usize| -> i32 {
        if w.v16 {
            return w.v16_weight(t.tile * NR + j, kk);
        }
        let (p, half) = (j / 2, j % 2);
        if int4 {
            let (g, r) = (kk / 32, kk % 32);
            let b = tile[(g * 4 + p) * 32 + half * 16 + inv[r % 16]];
            let u = if r < 16 { b & 0xf } else { b >> 4 };
            u as i32 - 8
        } else {
            let (c, r) = (kk / 16, kk % 16);
            tile[(c * 4 + p) * 32 + (r / 8) * 16 + half * 8 + (r % 8)] as i8 as i32
        }
    };
    for (ri, o) in out.iter_mut().enumerate().take(rows) {
        let r = r0 + ri;
        let row = &t.a[r * t.lda..r * t.lda + w.kp];
        let a = |kk: usize| -> i32 {
            if w.v16 {
                row[kk] as u8 as i32 - 128
            } else if int4 {
                row[(kk / 16) * 16 + inv[kk % 16]] as i32
            } else {
                row[kk] as i32
            }
        };
        let qp = t.params[r];
        for (j, oj) in o.iter_mut().enumerate() {
            let col = t.tile * NR + j;
            let v = match w.kind {
                Qd8Kind::Qc8w | Qd8Kind::Qc4w => {
                    let mut acc = w.ksum_i[col].wrapping_mul(qp.zero_point);
                    for kk in 0..w.kp {
                        acc = acc.wrapping_add(a(kk) * wval(j, kk));
                    }
                    (acc as f32 * qp.inv_scale).mul_add(w.scale[col], w.bias[col])
                }
                Qd8Kind::Qb4w { block } if w.arith == XnnArith::Avx512Vnni => {
                    // Unsigned activations `a + 128` (zero point `zp + 128`), one
                    // exact int32 sum per block, one float FMA per block.
                    let mut acc = w.ksum_f[col] * (qp.zero_point + 128) as f32;
                    let nb = w.kp / block;
                    for b in 0..nb {
                        let mut x = 0i32;
                        for kk in b * block..(b + 1) * block {
                            x += (a(kk) + 128) * wval(j, kk);
                        }
                        let s = w.block_scale(col, b);
                        acc = (x as f32).mul_add(s, acc);
                    }
                    acc * qp.inv_scale + w.bias[col]
                }
                Qd8Kind::Qb4w { block } => {
                    let zpf = qp.zero_point as f32;
                    let mut lanes = [0.0f32 * zpf; 4];
                    lanes[0] = w.ksum_f[col] * zpf;
                    let nb = w.kp / block;
                    for b in 0..nb {
                        let mut acc = [0i32; 4];
                        for kk in b * block..(b + 1) * block {
                            acc[(kk % 8) / 2] += a(kk) * wval(j, kk);
                        }
                        let s = w.block_scale(col, b);
                        for (l, &ac) in lanes.iter_mut().zip(&acc) {
                            *l = (ac as f32).mul_add(s, *l);
                        }
                    }
                    let sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
                    sum * qp.inv_scale + w.bias[col]
                }
            };
            *oj = v.max(t.lo).min(t.hi);
        }
    }
}

/// The 9 instructions of one row and column pair of [`avx2::lanes4_b32`]: the
/// row's 32 activations broadcast per 16 (`act`), maddubs with the pair's
/// unpacked weights (ymm9, ymm10), pair sums, madd with ones (ymm8) into the four
/// int32 lanes of both columns, plus the correction (`corr`), to float, FMA
/// with the pair's block scales (`scale`) into `acc`.
#[cfg(target_arch = "x86_64")]
#[rustfmt::skip]
macro_rules! row_pair {
    ($act:literal, $corr:literal, $t0:literal, $t1:literal, $acc:literal, $scale:literal) => {
        concat!(
            "vbroadcasti128 ", $t0, ", xmmword ptr [", $act, "]\n",
            "vbroadcasti128 ", $t1, ", xmmword ptr [", $act, " + 16]\n",
            "vpmaddubsw ", $t0, ", ymm9, ", $t0, "\n",
            "vpmaddubsw ", $t1, ", ymm10, ", $t1, "\n",
            "vpaddw ", $t0, ", ", $t0, ", ", $t1, "\n",
            "vpmaddwd ", $t0, ", ", $t0, ", ymm8\n",
            "vpaddd ", $t0, ", ", $t0, ", ymmword ptr [", $corr, "]\n",
            "vcvtdq2ps ", $t0, ", ", $t0, "\n",
            "vfmadd231ps ", $acc, ", ", $t0, ", ymmword ptr [", $scale, "]",
        )
    };
}

/// One column pair of [`avx2::lanes4_b32`]'s block: its weights (`w0`, `w1`)
/// into ymm9/ymm10, then [`row_pair!`] for the 4 rows (activations at `{a0}`,
/// `{a0} + {lda}`, `{a2}`, `{a2} + {lda}`; corrections `{kp}` further, reached
/// through `{a1k}` for rows 1 and 3) into the accumulators `r0..r3`.
#[cfg(target_arch = "x86_64")]
#[rustfmt::skip]
macro_rules! pair_rows {
    ($w0:literal, $w1:literal, $scale:literal, $r0:literal, $r1:literal, $r2:literal, $r3:literal) => {
        concat!(
            "vmovdqa ymm9, ymmword ptr [", $w0, "]\n",
            "vmovdqa ymm10, ymmword ptr [", $w1, "]\n",
            row_pair!("{a0}", "{a0} + {kp}", "ymm12", "ymm13", $r0, $scale), "\n",
            row_pair!("{a0} + {lda}", "{a1k}", "ymm14", "ymm15", $r1, $scale), "\n",
            row_pair!("{a2}", "{a2} + {kp}", "ymm12", "ymm13", $r2, $scale), "\n",
            row_pair!("{a2} + {lda}", "{a1k} + 2*{lda}", "ymm14", "ymm15", $r3, $scale),
        )
    };
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)] // register-tile loops index several arrays at once
mod avx2 {
    use super::{PackedQd8, Qd8Kind, Qd8Params, TileArgs, NR, PERM};
    use std::arch::x86_64::*;

    /// [`super::qd8_quantize_row`] with the same operations per value: running
    /// extrema in 8 lanes (`min(v, m)` keeps `m` for a NaN `v`, as the scalar
    /// comparison does), the same fold and parameters, then per value multiply,
    /// `min(top)`, `max(-256)`, round to nearest even (`cvtps2dq`), plus the zero
    /// point, saturated to int8 by the packs.
    ///
    /// # Safety
    /// AVX2 and FMA must be available; `out.len() >= x.len()`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn quantize_row(
        arith: super::XnnArith,
        x: &[f32],
        out: &mut [i8],
    ) -> Qd8Params {
        let n = x.len();
        let xp = x.as_ptr();
        let full8 = n / 8 * 8;
        let mut vmn = _mm256_set1_ps(f32::INFINITY);
        let mut vmx = _mm256_set1_ps(f32::NEG_INFINITY);
        for i in (0..full8).step_by(8) {
            let v = _mm256_loadu_ps(xp.add(i));
            vmn = _mm256_min_ps(v, vmn);
            vmx = _mm256_max_ps(v, vmx);
        }
        let (mut mn, mut mx) = ([0.0f32; 8], [0.0f32; 8]);
        _mm256_storeu_ps(mn.as_mut_ptr(), vmn);
        _mm256_storeu_ps(mx.as_mut_ptr(), vmx);
        for (i, &v) in x[full8..].iter().enumerate() {
            mn[i] = mn[i].min(v);
            mx[i] = mx[i].max(v);
        }
        let (mn, mx) = if n == 0 {
            (0.0, 0.0)
        } else {
            (
                mn.iter().fold(f32::INFINITY, |a, &b| a.min(b)),
                mx.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)),
            )
        };
        let (p, mult) = Qd8Params::for_arith(arith, mn, mx);
        let zp = p.zero_point;
        let vm = _mm256_set1_ps(mult);
        let top = _mm256_set1_ps((127 - zp) as f32);
        let floor = _mm256_set1_ps(-256.0);
        let vzp = _mm256_set1_epi32(zp);
        let q8 = |i: usize| {
            let v = _mm256_mul_ps(_mm256_loadu_ps(xp.add(i)), vm);
            let v = _mm256_max_ps(_mm256_min_ps(v, top), floor);
            _mm256_add_epi32(_mm256_cvtps_epi32(v), vzp)
        };
        // packs interleave 4-value groups per 128-bit half: put them back in order.
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let full32 = n / 32 * 32;
        let op = out.as_mut_ptr();
        for i in (0..full32).step_by(32) {
            let ab = _mm256_packs_epi32(q8(i), q8(i + 8));
            let cd = _mm256_packs_epi32(q8(i + 16), q8(i + 24));
            let q = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), order);
            _mm256_storeu_si256(op.add(i) as *mut __m256i, q);
        }
        super::quantize_values(&x[full32..], &mut out[full32..], mult, zp);
        p
    }

    /// The int4 row layout after [`quantize_row`]: each 16-byte chunk permuted by
    /// `PERM`, and per block of `bl` inputs the correction `-8 · Σ a` per lane
    /// class as `[l0..l3, l0..l3]` after the `kp` values (exact integer sums, as
    /// the scalar layout).
    ///
    /// # Safety
    /// AVX2 must be available; `out` holds `kp + 32 * (kp / bl)` bytes; `bl` is a
    /// multiple of 32 dividing `kp`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn permute_row(out: *mut i8, kp: usize, bl: usize) {
        let mut pb = [0i8; 32];
        for (i, b) in pb.iter_mut().enumerate() {
            *b = PERM[i % 16] as i8;
        }
        let perm = _mm256_loadu_si256(pb.as_ptr() as *const __m256i);
        let ones8 = _mm256_set1_epi8(1);
        let ones16 = _mm256_set1_epi16(1);
        for b in 0..kp / bl {
            let mut s = _mm256_setzero_si256();
            for g in (b * bl..(b + 1) * bl).step_by(32) {
                let v = _mm256_shuffle_epi8(_mm256_loadu_si256(out.add(g) as *const __m256i), perm);
                _mm256_storeu_si256(out.add(g) as *mut __m256i, v);
                // Dword j of each chunk now holds 4 inputs of class j.
                let d = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, v), ones16);
                s = _mm256_add_epi32(s, d);
            }
            let h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
            let h = _mm_sub_epi32(_mm_setzero_si128(), _mm_slli_epi32(h, 3));
            _mm256_storeu_si256(out.add(kp + 32 * b) as *mut __m256i, _mm256_set_m128i(h, h));
        }
    }

    /// int8 weights: chunk `c` (16 inputs), column pair `p`, as i16
    /// (inputs 0..8, inputs 8..16), each `[col 2p × 8 | col 2p+1 × 8]`.
    #[inline(always)]
    unsafe fn load_pair8(tile: *const u8, c: usize, p: usize) -> (__m256i, __m256i) {
        let base = tile.add((c * 4 + p) * 32);
        let lo = _mm_loadu_si128(base as *const __m128i);
        let hi = _mm_loadu_si128(base.add(16) as *const __m128i);
        (_mm256_cvtepi8_epi16(lo), _mm256_cvtepi8_epi16(hi))
    }

    /// 8 activation bytes at `a`, sign-extended, in both 128-bit halves.
    #[inline(always)]
    unsafe fn load_a8(a: *const i8) -> __m256i {
        _mm256_cvtepi8_epi16(_mm_broadcastq_epi64(_mm_loadl_epi64(a as *const __m128i)))
    }

    /// int8: adds chunks `0..chunks` of rows `a[r]` into `acc[r][p]`.
    #[inline(always)]
    unsafe fn accumulate8<const MR: usize>(
        tile: *const u8,
        a: &[*const i8; MR],
        chunks: usize,
        acc: &mut [[__m256i; 4]; MR],
    ) {
        for c in 0..chunks {
            prefetch_block(tile, c * 128);
            let mut alo = [_mm256_setzero_si256(); MR];
            let mut ahi = [_mm256_setzero_si256(); MR];
            for r in 0..MR {
                alo[r] = load_a8(a[r].add(c * 16));
                ahi[r] = load_a8(a[r].add(c * 16 + 8));
            }
            for p in 0..4 {
                let (wl, wh) = load_pair8(tile, c, p);
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

    /// Bytes ahead of the current block that [`prefetch_block`] fetches.
    const PREFETCH_AHEAD: usize = 2048;

    /// Prefetches the two 64-byte lines [`PREFETCH_AHEAD`] bytes past the block
    /// at `tile + off` (the tiles of a task are contiguous, so this runs into the
    /// next tiles): decode streams the weights from DRAM once, and on Zen 3 the
    /// hardware prefetcher alone leaves ~20% of the bandwidth unused
    /// (`linalg-bench --filter DRAM`). A prefetch never faults, so reaching past
    /// the end of the weights is harmless.
    #[inline(always)]
    fn prefetch_block(tile: *const u8, off: usize) {
        let ahead = tile.wrapping_add(off + PREFETCH_AHEAD) as *const i8;
        // SAFETY: SSE is part of x86-64; a prefetch never faults.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(ahead);
            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
        }
    }

    /// int4: adds groups `g0..g1` (32 inputs each) of rows `a[r]` into `acc[r][p]`
    /// as `Σ (w + 8) · a` per lane (the caller adds the correction `-8 · Σ a`).
    #[inline(always)]
    unsafe fn accumulate4<const MR: usize>(
        tile: *const u8,
        a: &[*const i8; MR],
        g0: usize,
        g1: usize,
        acc: &mut [[__m256i; 4]; MR],
    ) {
        let nib = _mm256_set1_epi8(0x0f);
        let ones = _mm256_set1_epi16(1);
        for g in g0..g1 {
            let mut alo = [_mm256_setzero_si256(); MR];
            let mut ahi = [_mm256_setzero_si256(); MR];
            for r in 0..MR {
                alo[r] = _mm256_broadcastsi128_si256(_mm_loadu_si128(
                    a[r].add(g * 32) as *const __m128i
                ));
                ahi[r] = _mm256_broadcastsi128_si256(_mm_loadu_si128(
                    a[r].add(g * 32 + 16) as *const __m128i
                ));
            }
            prefetch_block(tile, g * 128);
            for p in 0..4 {
                let wv = _mm256_loadu_si256(tile.add((g * 4 + p) * 32) as *const __m256i);
                let wl = _mm256_and_si256(wv, nib);
                let wh = _mm256_and_si256(_mm256_srli_epi16(wv, 4), nib);
                for r in 0..MR {
                    // u4 · i8 pairs: |sum| <= 2 · 15 · 128, no saturation.
                    let s = _mm256_add_epi16(
                        _mm256_maddubs_epi16(wl, alo[r]),
                        _mm256_maddubs_epi16(wh, ahi[r]),
                    );
                    acc[r][p] = _mm256_add_epi32(acc[r][p], _mm256_madd_epi16(s, ones));
                }
            }
        }
    }

    /// One tile for rows `r0..r0 + MR` (all valid).
    ///
    /// # Safety
    /// AVX2 and FMA must be available; the rows `r0..r0+MR` of `t.a` must hold
    /// `row_len()` bytes each (checked by the caller).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile<const MR: usize>(
        t: &TileArgs<'_>,
        r0: usize,
        out: &mut [[f32; NR]; 2],
    ) {
        let w = t.w;
        let tb = w.tile_bytes();
        let tile = w.data.as_ptr().add(t.tile * tb);
        let kp = w.kp;
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
                if w.kind == Qd8Kind::Qc8w {
                    accumulate8::<MR>(tile, &a, kp / 16, &mut acc);
                } else {
                    accumulate4::<MR>(tile, &a, 0, kp / 32, &mut acc);
                    for r in 0..MR {
                        let corr = _mm256_loadu_si256(a[r].add(kp) as *const __m256i);
                        for p in 0..4 {
                            acc[r][p] = _mm256_add_epi32(acc[r][p], corr);
                        }
                    }
                }
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
                let nb = kp / block;
                let gpb = block / 32;
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
                let bs = w.bscale.as_ptr().add(t.tile * nb * NR);
                let mut sidx = [_mm256_setzero_si256(); 4];
                for (p, ix) in sidx.iter_mut().enumerate() {
                    let (e, o) = (2 * p as i32, 2 * p as i32 + 1);
                    *ix = _mm256_setr_epi32(e, e, e, e, o, o, o, o);
                }
                for b in 0..nb {
                    let mut acc = [[_mm256_setzero_si256(); 4]; MR];
                    accumulate4::<MR>(tile, &a, b * gpb, (b + 1) * gpb, &mut acc);
                    let sv = _mm_loadu_si128(bs.add(b * NR) as *const __m128i);
                    let s8 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(sv), 16));
                    let mut corr = [_mm256_setzero_si256(); MR];
                    for r in 0..MR {
                        corr[r] = _mm256_loadu_si256(a[r].add(kp + 32 * b) as *const __m256i);
                    }
                    for p in 0..4 {
                        let sp = _mm256_permutevar8x32_ps(s8, sidx[p]);
                        for r in 0..MR {
                            let v = _mm256_cvtepi32_ps(_mm256_add_epi32(acc[r][p], corr[r]));
                            fo[r][p] = _mm256_fmadd_ps(v, sp, fo[r][p]);
                        }
                    }
                }
                for r in 0..MR {
                    let qp = t.params[r0 + r];
                    let h01 = _mm256_hadd_ps(fo[r][0], fo[r][1]);
                    let h23 = _mm256_hadd_ps(fo[r][2], fo[r][3]);
                    let s = _mm256_permutevar8x32_ps(_mm256_hadd_ps(h01, h23), perm);
                    let f = _mm256_add_ps(_mm256_mul_ps(s, _mm256_set1_ps(qp.inv_scale)), bias);
                    let f = _mm256_min_ps(_mm256_max_ps(f, vlo), vhi);
                    _mm256_storeu_ps(out[r].as_mut_ptr(), f);
                }
            }
        }
    }
    /// Unpacks blocks `b0..b1` (32 inputs each) of columns `4 * half ..
    /// 4 * half + 4` of packed `qb4w` (block 32) tile `tile`, two column pairs,
    /// for [`lanes_b32`]: per block `b` and pair `pi`, `wbuf[((b - b0) * 2 + pi)
    /// * 2 + h]` holds the nibbles `h` (low, high) as bytes and
    /// `sbuf[(b - b0) * 2 + pi]` the pair's scales as `f32`
    /// (`[s(2p) × 4 | s(2p + 1) × 4]`, the layout of the float lanes).
    ///
    /// # Safety
    /// AVX2 must be available; `w` is `Qb4w { block: 32 }`, `tile < n.div_ceil(8)`,
    /// `half < 2`, `b0 <= b1 <= kp / 32`; `wbuf` has room for `4 * (b1 - b0)`
    /// vectors and `sbuf` for `2 * (b1 - b0)`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn unpack_half(
        w: &PackedQd8,
        tile: usize,
        half: usize,
        blocks: core::ops::Range<usize>,
        wbuf: *mut __m256i,
        sbuf: *mut __m256,
    ) {
        let src = w.data.as_ptr().add(tile * w.tile_bytes());
        let nib = _mm256_set1_epi8(0x0f);
        let bs = w.bscale.as_ptr().add(tile * (w.kp / 32) * NR);
        let mut idx = [_mm256_setzero_si256(); 2];
        for (pi, ix) in idx.iter_mut().enumerate() {
            let e = (4 * half + 2 * pi) as i32;
            *ix = _mm256_setr_epi32(e, e, e, e, e + 1, e + 1, e + 1, e + 1);
        }
        for (i, b) in blocks.enumerate() {
            let sv = _mm_loadu_si128(bs.add(b * NR) as *const __m128i);
            let s8 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(sv), 16));
            for pi in 0..2 {
                let v = _mm256_loadu_si256(src.add((b * 4 + 2 * half + pi) * 32) as *const __m256i);
                let d = wbuf.add((i * 2 + pi) * 2);
                _mm256_store_si256(d, _mm256_and_si256(v, nib));
                _mm256_store_si256(d.add(1), _mm256_and_si256(_mm256_srli_epi16(v, 4), nib));
                _mm256_store_ps(
                    sbuf.add(i * 2 + pi) as *mut f32,
                    _mm256_permutevar8x32_ps(s8, idx[pi]),
                );
            }
        }
    }

    /// Float lanes of rows `r0..r0 + MR` for both pairs of the half starting at
    /// column `col0`: lane 0 of each column starts at `ksum · zp`, the others at
    /// `0 · zp`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn init_lanes<const MR: usize>(
        t: &TileArgs<'_>,
        col0: usize,
        r0: usize,
    ) -> [[__m256; 2]; MR] {
        let mut fo = [[_mm256_setzero_ps(); 2]; MR];
        for (r, f) in fo.iter_mut().enumerate() {
            let zp = _mm256_set1_ps(t.params[r0 + r].zero_point as f32);
            for (pi, fp) in f.iter_mut().enumerate() {
                let k0 = t.w.ksum_f[col0 + 2 * pi];
                let k1 = t.w.ksum_f[col0 + 2 * pi + 1];
                *fp = _mm256_mul_ps(_mm256_setr_ps(k0, 0.0, 0.0, 0.0, k1, 0.0, 0.0, 0.0), zp);
            }
        }
        fo
    }

    /// Sums the lanes `(l0 + l1) + (l2 + l3)`, scales, adds the bias, clamps and
    /// stores `ncols <= 4` columns from `col0` of rows `r0..r0 + MR` to `c`.
    ///
    /// # Safety
    /// AVX2 must be available; `c` has room for those rows (stride `ldc`) and
    /// columns.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn store_rows<const MR: usize>(
        t: &TileArgs<'_>,
        fo: &[[__m256; 2]; MR],
        col0: usize,
        r0: usize,
        c: *mut f32,
        ldc: usize,
        ncols: usize,
    ) {
        let bias = _mm_loadu_ps(t.w.bias.as_ptr().add(col0));
        let vlo = _mm_set1_ps(t.lo);
        let vhi = _mm_set1_ps(t.hi);
        for (r, f) in fo.iter().enumerate() {
            let qp = t.params[r0 + r];
            // [c0 (l0+l1), c0 (l2+l3), c2 .., c2 .. | c1 .., c1 .., c3 .., c3 ..]
            let h = _mm256_hadd_ps(f[0], f[1]);
            let h = _mm256_hadd_ps(h, h);
            let s = _mm_unpacklo_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
            let v = _mm_add_ps(_mm_mul_ps(s, _mm_set1_ps(qp.inv_scale)), bias);
            let v = _mm_min_ps(_mm_max_ps(v, vlo), vhi);
            let dst = c.add((r0 + r) * ldc + col0);
            if ncols == 4 {
                _mm_storeu_ps(dst, v);
            } else {
                let mut o = [0.0f32; 4];
                _mm_storeu_ps(o.as_mut_ptr(), v);
                core::ptr::copy_nonoverlapping(o.as_ptr(), dst, ncols);
            }
        }
    }

    /// Adds blocks `b0..b0 + nb` (32 inputs each) of rows `r0..r0 + MR` times
    /// the panel of [`unpack_half`] (which starts at block `b0`) into the float
    /// lanes `fo`: per block the int32 lane sums (pairs of `maddubs` products
    /// summed by `madd`), plus the row's zero-point correction, to float, one
    /// FMA with the block scale, as [`tile`] does.
    ///
    /// # Safety
    /// AVX2 and FMA must be available; the panel holds `nb` blocks; rows
    /// `r0..r0 + MR` of `t.a` hold `row_len()` bytes.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn lanes_b32<const MR: usize>(
        t: &TileArgs<'_>,
        wbuf: *const __m256i,
        sbuf: *const __m256,
        r0: usize,
        b0: usize,
        nb: usize,
        fo: &mut [[__m256; 2]; MR],
    ) {
        let kp = t.w.kp;
        let ones = _mm256_set1_epi16(1);
        for i in 0..nb {
            let b = b0 + i;
            for (r, f) in fo.iter_mut().enumerate() {
                let ar = t.a.as_ptr().add((r0 + r) * t.lda + 32 * b);
                let alo = _mm256_broadcastsi128_si256(_mm_loadu_si128(ar as *const __m128i));
                let ahi =
                    _mm256_broadcastsi128_si256(_mm_loadu_si128(ar.add(16) as *const __m128i));
                let corr = _mm256_loadu_si256(ar.add(kp) as *const __m256i);
                for (pi, fp) in f.iter_mut().enumerate() {
                    let wp = wbuf.add((i * 2 + pi) * 2);
                    let s = _mm256_add_epi16(
                        _mm256_maddubs_epi16(_mm256_load_si256(wp), alo),
                        _mm256_maddubs_epi16(_mm256_load_si256(wp.add(1)), ahi),
                    );
                    let v = _mm256_add_epi32(_mm256_madd_epi16(s, ones), corr);
                    let sc = _mm256_load_ps(sbuf.add(i * 2 + pi) as *const f32);
                    *fp = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), sc, *fp);
                }
            }
        }
    }

    /// [`lanes_b32`] for 4 rows with the block loop in assembly, so that the 8
    /// float lanes, the pair's weights and the temporaries stay in the 16
    /// registers (the compiled intrinsics spill them): the same instructions on
    /// the same values.
    ///
    /// # Safety
    /// As [`lanes_b32`]; `nb >= 1`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn lanes4_b32(
        t: &TileArgs<'_>,
        wbuf: *const __m256i,
        sbuf: *const __m256,
        r0: usize,
        b0: usize,
        nb: usize,
        fo: &mut [[__m256; 2]],
    ) {
        assert_eq!(fo.len(), 4, "lanes4_b32: 4 rows");
        let kp = t.w.kp;
        let lda = t.lda;
        let base = t.a.as_ptr().add(r0 * lda + 32 * b0);
        let [mut f00, mut f01] = fo[0];
        let [mut f10, mut f11] = fo[1];
        let [mut f20, mut f21] = fo[2];
        let [mut f30, mut f31] = fo[3];
        let ones = _mm256_set1_epi16(1);
        // Per block: both pairs (`pair_rows!`), then the pointers move on.
        core::arch::asm!(
            "lea {a2}, [{a0} + 2*{lda}]",
            "2:",
            pair_rows!("{wp}", "{wp} + 32", "{sp}", "ymm0", "ymm2", "ymm4", "ymm6"),
            pair_rows!("{wp} + 64", "{wp} + 96", "{sp} + 32", "ymm1", "ymm3", "ymm5", "ymm7"),
            "add {a0}, 32",
            "add {a1k}, 32",
            "add {a2}, 32",
            "add {wp}, 128",
            "add {sp}, 64",
            "dec {nb}",
            "jnz 2b",
            a0 = inout(reg) base => _,
            a1k = inout(reg) base.add(lda + kp) => _,
            a2 = out(reg) _,
            lda = in(reg) lda,
            kp = in(reg) kp,
            wp = inout(reg) wbuf => _,
            sp = inout(reg) sbuf => _,
            nb = inout(reg) nb => _,
            inout("ymm0") f00,
            inout("ymm1") f01,
            inout("ymm2") f10,
            inout("ymm3") f11,
            inout("ymm4") f20,
            inout("ymm5") f21,
            inout("ymm6") f30,
            inout("ymm7") f31,
            in("ymm8") ones,
            out("ymm9") _,
            out("ymm10") _,
            out("ymm12") _,
            out("ymm13") _,
            out("ymm14") _,
            out("ymm15") _,
            options(nostack, readonly),
        );
        fo.copy_from_slice(&[[f00, f01], [f10, f11], [f20, f21], [f30, f31]]);
    }
}

/// AVX-512 VNNI kernels for `qb4w` (`qd8_f32_qb4w_gemm_{1..8}x8c4__avx512vnni`).
///
/// The packed int4 tile holds, per 32-input group, the 8 columns' 16 bytes one
/// after the other; byte `i` of a column holds inputs `PERM[i]` (low nibble) and
/// `16 + PERM[i]` (high nibble), and the quantized row is permuted the same way.
/// So dword `j` of a column's 16 bytes holds four inputs of the same lane class
/// `(k mod 8) / 2 == j`, and `vpdpbusd` of 64 weight bytes (4 columns) with the
/// row's 16 activations broadcast to the four 128-bit lanes adds exactly the
/// int32 lane sums of [`avx2::tile`] (`Σ (w + 8) · a`; integer sums in any
/// order are exact) into 16 lanes: `[c0 l0..l3 | c1 l0..l3 | c2 .. | c3 ..]`.
/// The float work per block and lane (add the correction, convert, one FMA
/// with the column's block scale) and the final `(l0 + l1) + (l2 + l3)` are the
/// same operations in the same order, so the results are the same bits.
#[cfg(target_arch = "x86_64")]
mod vnni {
    use super::{Qd8Kind, TileArgs, NR};
    use core::arch::x86_64::*;

    /// Most rows of one register tile (16 float accumulators for 8 rows).
    pub(super) const VMR: usize = 8;

    /// Rows `r0..r0 + mr` of a `qb4w` tile through the kernel `$tile`: blocks of
    /// 32 in one register tile of `mr` rows; larger blocks, whose int32 sums live
    /// across groups, at most `MR_LONG` rows at a time (see `vnni_int4`).
    macro_rules! qb4w_rows {
        ($tile:ident, $t:expr, $r0:expr, $mr:expr, $c:expr, $ldc:expr, $ncols:expr) => {
            if $t.w.kind == (Qd8Kind::Qb4w { block: 32 }) {
                match $mr {
                    1 => $tile::<1, true>($t, $r0, $c, $ldc, $ncols),
                    2 => $tile::<2, true>($t, $r0, $c, $ldc, $ncols),
                    3 => $tile::<3, true>($t, $r0, $c, $ldc, $ncols),
                    4 => $tile::<4, true>($t, $r0, $c, $ldc, $ncols),
                    5 => $tile::<5, true>($t, $r0, $c, $ldc, $ncols),
                    6 => $tile::<6, true>($t, $r0, $c, $ldc, $ncols),
                    7 => $tile::<7, true>($t, $r0, $c, $ldc, $ncols),
                    _ => $tile::<8, true>($t, $r0, $c, $ldc, $ncols),
                }
            } else {
                let mut r = 0;
                while r < $mr {
                    let n = ($mr - r).min(MR_LONG);
                    match n {
                        1 => $tile::<1, false>($t, $r0 + r, $c, $ldc, $ncols),
                        2 => $tile::<2, false>($t, $r0 + r, $c, $ldc, $ncols),
                        3 => $tile::<3, false>($t, $r0 + r, $c, $ldc, $ncols),
                        _ => $tile::<4, false>($t, $r0 + r, $c, $ldc, $ncols),
                    }
                    r += n;
                }
            }
        };
    }

    /// Rows `r0..r0 + mr` (`1 <= mr <= VMR`) times the 8 columns of tile
    /// `t.tile` into `c` (the first `ncols` columns from `t.tile * 8`).
    ///
    /// # Safety
    /// AVX-512 F/BW/VL/VNNI must be available; `t.w` is `Qb4w` or `Qc4w`; rows
    /// `r0..r0 + mr` of `t.a` hold `row_len()` bytes each and `t.params` has
    /// them; `c` has room for those rows (stride `ldc`) at columns
    /// `t.tile * 8..t.tile * 8 + ncols`, `ncols <= 8`.
    pub(super) unsafe fn rows(
        t: &TileArgs<'_>,
        r0: usize,
        mr: usize,
        c: *mut f32,
        ldc: usize,
        ncols: usize,
    ) {
        if t.w.kind == Qd8Kind::Qc4w {
            match mr {
                1 => tile_qc4w::<1>(t, r0, c, ldc, ncols),
                2 => tile_qc4w::<2>(t, r0, c, ldc, ncols),
                3 => tile_qc4w::<3>(t, r0, c, ldc, ncols),
                4 => tile_qc4w::<4>(t, r0, c, ldc, ncols),
                5 => tile_qc4w::<5>(t, r0, c, ldc, ncols),
                6 => tile_qc4w::<6>(t, r0, c, ldc, ncols),
                7 => tile_qc4w::<7>(t, r0, c, ldc, ncols),
                _ => tile_qc4w::<8>(t, r0, c, ldc, ncols),
            }
        } else {
            qb4w_rows!(tile, t, r0, mr, c, ldc, ncols);
        }
    }

    /// Most rows of one register tile for blocks over 32.
    pub(super) const MR_LONG: usize = 4;

    /// The low and high nibbles of group `g` of the packed int4 tile `wt` as
    /// bytes (columns 0..4, 4..8).
    #[inline(always)]
    unsafe fn group_nibbles(wt: *const u8, g: usize) -> ([__m512i; 2], [__m512i; 2]) {
        let nib = _mm512_set1_epi8(0x0f);
        let v0 = _mm512_loadu_si512(wt.add(g * 128) as *const _);
        let v1 = _mm512_loadu_si512(wt.add(g * 128 + 64) as *const _);
        (
            [_mm512_and_si512(v0, nib), _mm512_and_si512(v1, nib)],
            [
                _mm512_and_si512(_mm512_srli_epi16(v0, 4), nib),
                _mm512_and_si512(_mm512_srli_epi16(v1, 4), nib),
            ],
        )
    }

    /// Adds row `ap`'s group (32 activations at `ap`) times the group's nibbles
    /// into the int32 lanes `acc` (`vpdpbusd`, 4 columns per register).
    #[inline(always)]
    unsafe fn dot_group(
        ap: *const i8,
        lo: &[__m512i; 2],
        hi: &[__m512i; 2],
        acc: &mut [__m512i; 2],
    ) {
        let alo = _mm512_broadcast_i32x4(_mm_loadu_si128(ap as *const __m128i));
        let ahi = _mm512_broadcast_i32x4(_mm_loadu_si128(ap.add(16) as *const __m128i));
        for h in 0..2 {
            acc[h] = _mm512_dpbusd_epi32(acc[h], lo[h], alo);
            acc[h] = _mm512_dpbusd_epi32(acc[h], hi[h], ahi);
        }
    }

    /// `qc4w` (one scale per column) for `MR` rows: the int32 lane sums over
    /// all of `k` (starting at the row's correction), summed per column (exact
    /// integer sums), plus `ksum · zp`, then `fma(float(acc) · inv_scale, scale,
    /// bias)` and the clamp, as [`super::avx2::tile`] and [`super::tile_scalar`].
    ///
    /// # Safety
    /// As [`rows`], with `t.w` of kind `Qc4w`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn tile_qc4w<const MR: usize>(
        t: &TileArgs<'_>,
        r0: usize,
        c: *mut f32,
        ldc: usize,
        ncols: usize,
    ) {
        let w = t.w;
        let kp = w.kp;
        let wt = w.data.as_ptr().add(t.tile * w.tile_bytes());
        let col0 = t.tile * NR;
        let mut a = [core::ptr::null::<i8>(); MR];
        let mut acc = [[_mm512_setzero_si512(); 2]; MR];
        for r in 0..MR {
            a[r] = t.a.as_ptr().add((r0 + r) * t.lda);
            let corr = _mm512_broadcast_i32x4(_mm_loadu_si128(a[r].add(kp) as *const __m128i));
            acc[r] = [corr, corr];
        }
        for g in 0..kp / 32 {
            let (lo, hi) = group_nibbles(wt, g);
            for r in 0..MR {
                dot_group(a[r].add(g * 32), &lo, &hi, &mut acc[r]);
            }
        }
        let ksum = _mm256_loadu_si256(w.ksum_i.as_ptr().add(col0) as *const __m256i);
        let scale = _mm256_loadu_ps(w.scale.as_ptr().add(col0));
        let bias = _mm256_loadu_ps(w.bias.as_ptr().add(col0));
        let vlo = _mm256_set1_ps(t.lo);
        let vhi = _mm256_set1_ps(t.hi);
        let gather = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0);
        let mask = ((1u16 << ncols) - 1) as u8;
        for (r, ac) in acc.iter().enumerate() {
            let qp = t.params[r0 + r];
            let mut s = [_mm512_setzero_si512(); 2];
            for (sh, &v) in s.iter_mut().zip(ac) {
                let p = _mm512_add_epi32(v, _mm512_shuffle_epi32(v, 0b10_11_00_01));
                *sh = _mm512_add_epi32(p, _mm512_shuffle_epi32(p, 0b01_00_11_10));
            }
            let s = _mm512_castsi512_si256(_mm512_permutex2var_epi32(s[0], gather, s[1]));
            let s = _mm256_add_epi32(
                s,
                _mm256_mullo_epi32(ksum, _mm256_set1_epi32(qp.zero_point)),
            );
            let f = _mm256_mul_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(qp.inv_scale));
            let f = _mm256_fmadd_ps(f, scale, bias);
            let f = _mm256_min_ps(_mm256_max_ps(f, vlo), vhi);
            _mm256_mask_storeu_ps(c.add((r0 + r) * ldc + col0), mask, f);
        }
    }

    /// What both `qb4w` register tiles start from: the tile's packed weights and
    /// block scales, its first column, and the rows' quantized activations.
    struct QbTile<const MR: usize> {
        kp: usize,
        /// Blocks, and groups of 32 inputs per block.
        nb: usize,
        gpb: usize,
        wt: *const u8,
        bs: *const u16,
        col0: usize,
        a: [*const i8; MR],
    }

    impl<const MR: usize> QbTile<MR> {
        /// # Safety
        /// As [`rows`] (`t.w` of kind `Qb4w`, blocks of 32 when `b32`).
        #[inline(always)]
        unsafe fn new(t: &TileArgs<'_>, r0: usize, b32: bool) -> QbTile<MR> {
            let w = t.w;
            let Qd8Kind::Qb4w { block } = w.kind else {
                unreachable!("vnni qb4w tile on {:?} weights", w.kind)
            };
            let kp = w.kp;
            let nb = kp / block;
            let mut a = [core::ptr::null::<i8>(); MR];
            for (r, ar) in a.iter_mut().enumerate() {
                *ar = t.a.as_ptr().add((r0 + r) * t.lda);
            }
            QbTile {
                kp,
                nb,
                gpb: if b32 { 1 } else { block / 32 },
                wt: w.data.as_ptr().add(t.tile * w.tile_bytes()),
                bs: w.bscale.as_ptr().add(t.tile * nb * NR),
                col0: t.tile * NR,
                a,
            }
        }
    }

    /// [`rows`] for `MR` rows; `B32`: the blocks are of 32 inputs (one group).
    ///
    /// # Safety
    /// As [`rows`].
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn tile<const MR: usize, const B32: bool>(
        t: &TileArgs<'_>,
        r0: usize,
        c: *mut f32,
        ldc: usize,
        ncols: usize,
    ) {
        let w = t.w;
        let QbTile {
            kp,
            nb,
            gpb,
            wt,
            bs,
            col0,
            a,
        } = QbTile::<MR>::new(t, r0, B32);
        // Column `4h + d / 4` for lane `d` of half `h`.
        let cidx = [
            _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
            _mm512_setr_epi32(4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7),
        ];
        // The same as 16-bit word indices: the bf16 scale of the lane's column in
        // the high word of each dword (the low word is zeroed by the mask).
        let sidx = [
            _mm512_slli_epi32(cidx[0], 16),
            _mm512_slli_epi32(cidx[1], 16),
        ];
        const HI_WORDS: __mmask32 = 0xAAAA_AAAA;
        // Lane 0 of each column starts at `ksum · zp`, the others at `0 · zp`.
        let ks = _mm512_castps256_ps512(_mm256_loadu_ps(w.ksum_f.as_ptr().add(col0)));
        let init = [
            _mm512_maskz_permutexvar_ps(0x1111, cidx[0], ks),
            _mm512_maskz_permutexvar_ps(0x1111, cidx[1], ks),
        ];
        let mut fo = [[_mm512_setzero_ps(); 2]; MR];
        for (r, f) in fo.iter_mut().enumerate() {
            let zp = _mm512_set1_ps(t.params[r0 + r].zero_point as f32);
            f[0] = _mm512_mul_ps(init[0], zp);
            f[1] = _mm512_mul_ps(init[1], zp);
        }
        for b in 0..nb {
            let sv = _mm512_zextsi128_si512(_mm_loadu_si128(bs.add(b * NR) as *const __m128i));
            let sc = [
                _mm512_castsi512_ps(_mm512_maskz_permutexvar_epi16(HI_WORDS, sidx[0], sv)),
                _mm512_castsi512_ps(_mm512_maskz_permutexvar_epi16(HI_WORDS, sidx[1], sv)),
            ];
            // To float, one FMA with the block scale.
            let finish = |acc: &[__m512i; 2], fo: &mut [__m512; 2]| {
                for h in 0..2 {
                    fo[h] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[h]), sc[h], fo[h]);
                }
            };
            // The int32 sums start at the row's correction `-8 · Σ a`.
            let corr = |r: usize| {
                let v = _mm512_broadcast_i32x4(_mm_loadu_si128(
                    a[r].add(kp + 32 * b) as *const __m128i
                ));
                [v, v]
            };
            let mut acc = [[_mm512_setzero_si512(); 2]; MR];
            if !B32 {
                for (r, ac) in acc.iter_mut().enumerate() {
                    *ac = corr(r);
                }
            }
            for g in b * gpb..(b + 1) * gpb {
                let (lo, hi) = group_nibbles(wt, g);
                for r in 0..MR {
                    if B32 {
                        acc[r] = corr(r);
                    }
                    dot_group(a[r].add(g * 32), &lo, &hi, &mut acc[r]);
                    if B32 {
                        // The block is done: finish the row now (fewer live sums).
                        finish(&acc[r], &mut fo[r]);
                    }
                }
            }
            if !B32 {
                for r in 0..MR {
                    finish(&acc[r], &mut fo[r]);
                }
            }
        }
        let bias = _mm256_loadu_ps(w.bias.as_ptr().add(col0));
        let vlo = _mm256_set1_ps(t.lo);
        let vhi = _mm256_set1_ps(t.hi);
        let gather = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0);
        let mask = ((1u16 << ncols) - 1) as u8;
        for (r, f) in fo.iter().enumerate() {
            let qp = t.params[r0 + r];
            let mut s = [_mm512_setzero_ps(); 2];
            for (sh, &v) in s.iter_mut().zip(f) {
                // Lane 0 of each column: (l0 + l1) + (l2 + l3).
                let p = _mm512_add_ps(v, _mm512_permute_ps(v, 0b10_11_00_01));
                *sh = _mm512_add_ps(p, _mm512_permute_ps(p, 0b01_00_11_10));
            }
            let s = _mm512_castps512_ps256(_mm512_permutex2var_ps(s[0], gather, s[1]));
            let f = _mm256_add_ps(_mm256_mul_ps(s, _mm256_set1_ps(qp.inv_scale)), bias);
            let f = _mm256_min_ps(_mm256_max_ps(f, vlo), vhi);
            _mm256_mask_storeu_ps(c.add((r0 + r) * ldc + col0), mask, f);
        }
    }
}

/// Rows from which `qb4w` (block 32) runs over unpacked weight panels.
const PANEL_MIN_ROWS: usize = 8;
/// Rows per register tile of the panel path.
const PANEL_MR: usize = 4;
/// Blocks (of 32 inputs) per panel: 12 KiB, kept in L1 while the rows pass.
const PANEL_BLOCKS: usize = 64;
/// Bytes of quantized rows the panel path keeps in cache (L2) per pass.
const PANEL_ROW_BYTES: usize = 1024 * 1024;
/// Most rows per pass (their float lanes wait on the stack between panels).
const PANEL_MAX_ROWS: usize = 64;

/// A 4-column weight panel as [`avx2::unpack_half`] writes it.
#[cfg(target_arch = "x86_64")]
#[repr(C, align(32))]
struct Panel {
    w: [u8; PANEL_BLOCKS * 128],
    s: [f32; PANEL_BLOCKS * 16],
}

/// Tiles `tiles` × rows `rows` of a `qb4w` (block 32) GEMM over unpacked
/// panels: rows in passes of at most `PANEL_MAX_ROWS` (about `PANEL_ROW_BYTES`
/// of quantized rows); per pass, each 4-column half tile is unpacked
/// `PANEL_BLOCKS` blocks at a time and multiplied with every row of the pass
/// (the float lanes of the rows wait on the stack between the panels of one
/// half tile, so the per-lane arithmetic and its order are unchanged).
///
/// # Safety
/// AVX2 and FMA must be available; `w` is `Qb4w { block: 32 }`; the rows hold
/// `row_len()` bytes each in `args.a`; `c` has room for the rows at stride
/// `ldc` and `w.n` columns; no other thread writes these tiles and rows of `c`.
#[cfg(target_arch = "x86_64")]
#[inline(never)]
unsafe fn panel_qb4w(
    args: &TileArgs<'_>,
    tiles: core::ops::Range<usize>,
    rows: core::ops::Range<usize>,
    c: *mut f32,
    ldc: usize,
) {
    use core::arch::x86_64::{__m256, __m256i};
    let mut buf = core::mem::MaybeUninit::<Panel>::uninit();
    let wbuf = core::ptr::addr_of_mut!((*buf.as_mut_ptr()).w) as *mut __m256i;
    let sbuf = core::ptr::addr_of_mut!((*buf.as_mut_ptr()).s) as *mut __m256;
    let mut lanes = [[[0.0f32; 8]; 2]; PANEL_MAX_ROWS];
    let w = args.w;
    let (n, nb) = (w.n, w.kp / 32);
    let chunk = (PANEL_ROW_BYTES / args.lda.max(1))
        .next_multiple_of(PANEL_MR)
        .clamp(PANEL_MR, PANEL_MAX_ROWS);
    let mut rc = rows.start;
    while rc < rows.end {
        let rend = (rc + chunk).min(rows.end);
        for tile in tiles.clone() {
            let t = TileArgs { tile, ..*args };
            for half in 0..2 {
                let col0 = tile * NR + 4 * half;
                if col0 >= n {
                    break;
                }
                let ncols = (n - col0).min(4);
                let mut b0 = 0;
                while b0 < nb {
                    let b1 = (b0 + PANEL_BLOCKS).min(nb);
                    avx2::unpack_half(w, tile, half, b0..b1, wbuf, sbuf);
                    let mut r = rc;
                    while r < rend {
                        let mr = (rend - r).min(PANEL_MR);
                        let st = &mut lanes[r - rc..r - rc + mr];
                        let first = b0 == 0;
                        let last = b1 == nb;
                        let k = (b0, b1 - b0);
                        match mr {
                            4 => pass_rows::<4>(
                                &t, wbuf, sbuf, r, k, first, last, st, col0, c, ldc, ncols,
                            ),
                            3 => pass_rows::<3>(
                                &t, wbuf, sbuf, r, k, first, last, st, col0, c, ldc, ncols,
                            ),
                            2 => pass_rows::<2>(
                                &t, wbuf, sbuf, r, k, first, last, st, col0, c, ldc, ncols,
                            ),
                            _ => pass_rows::<1>(
                                &t, wbuf, sbuf, r, k, first, last, st, col0, c, ldc, ncols,
                            ),
                        }
                        r += mr;
                    }
                    b0 = b1;
                }
            }
        }
        rc = rend;
    }
}

/// One panel (blocks `k.0..k.0 + k.1`) times rows `r..r + MR`: the float lanes
/// start from `init_lanes` (first panel) or `st`, and go to `c` (last panel) or
/// back to `st`.
///
/// # Safety
/// As [`panel_qb4w`]; the panel holds those blocks of the half tile at `col0`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn pass_rows<const MR: usize>(
    t: &TileArgs<'_>,
    wbuf: *const core::arch::x86_64::__m256i,
    sbuf: *const core::arch::x86_64::__m256,
    r: usize,
    k: (usize, usize),
    first: bool,
    last: bool,
    st: &mut [[[f32; 8]; 2]],
    col0: usize,
    c: *mut f32,
    ldc: usize,
    ncols: usize,
) {
    use core::arch::x86_64::{_mm256_loadu_ps, _mm256_setzero_ps, _mm256_storeu_ps};
    let mut fo = if first {
        avx2::init_lanes::<MR>(t, col0, r)
    } else {
        let mut fo = [[_mm256_setzero_ps(); 2]; MR];
        for (f, s) in fo.iter_mut().zip(st.iter()) {
            for (v, x) in f.iter_mut().zip(s) {
                *v = _mm256_loadu_ps(x.as_ptr());
            }
        }
        fo
    };
    if MR == 4 {
        avx2::lanes4_b32(t, wbuf, sbuf, r, k.0, k.1, &mut fo[..]);
    } else {
        avx2::lanes_b32::<MR>(t, wbuf, sbuf, r, k.0, k.1, &mut fo);
    }
    if last {
        avx2::store_rows::<MR>(t, &fo, col0, r, c, ldc, ncols);
    } else {
        for (f, s) in fo.iter().zip(st.iter_mut()) {
            for (v, x) in f.iter().zip(s.iter_mut()) {
                _mm256_storeu_ps(x.as_mut_ptr(), *v);
            }
        }
    }
}

/// Bytes of quantized rows the VNNI int4 path keeps in cache (L2) per pass.
const VNNI_ROW_BYTES: usize = 512 * 1024;

/// Tiles `tiles` × rows `rows` of a `qb4w` or `qc4w` GEMM with the VNNI register tiles:
/// rows in passes of about `VNNI_ROW_BYTES`; per pass and tile (whose weights
/// stay in L1/L2 while the rows go by), the rows in tiles of up to 8 (4 for
/// blocks over 32, whose int32 sums live across groups), split evenly.
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI must be available; `w` is `Qb4w` or `Qc4w`; the rows
/// hold `row_len()` bytes each in `args.a` and have params; `c` has room for the rows
/// at stride `ldc` and `w.n` columns; no other thread writes these tiles and
/// rows of `c`.
#[cfg(target_arch = "x86_64")]
unsafe fn vnni_int4(
    args: &TileArgs<'_>,
    tiles: core::ops::Range<usize>,
    rows: core::ops::Range<usize>,
    c: *mut f32,
    ldc: usize,
) {
    let w = args.w;
    let most = if matches!(w.kind, Qd8Kind::Qb4w { block: 32 } | Qd8Kind::Qc4w) {
        vnni::VMR
    } else {
        vnni::MR_LONG
    };
    let pass = (VNNI_ROW_BYTES / args.lda.max(1))
        .next_multiple_of(most)
        .max(most);
    let mut rc = rows.start;
    while rc < rows.end {
        let rend = (rc + pass).min(rows.end);
        let chunks = (rend - rc).div_ceil(most);
        for tile in tiles.clone() {
            let t = TileArgs { tile, ..*args };
            let ncols = (w.n - tile * NR).min(NR);
            let mut r = rc;
            for i in 0..chunks {
                // Even split: chunk sizes differ by at most one row.
                let mr = (rend - r).div_ceil(chunks - i);
                vnni::rows(&t, r, mr, c, ldc, ncols);
                r += mr;
            }
        }
        rc = rend;
    }
}

/// AVX-512 VNNI kernels for `qb4w` weights in the `v16` layout ([`pack_v16`])
/// with XNNPACK's VNNI arithmetic: 16 columns per register, one int32 lane per
/// column, so each `vpdpbusd` adds 4 consecutive inputs of one row to 16
/// columns with no horizontal sums. The weights become signed bytes `16 · w`
/// (low nibbles: shift left 4 and mask `0xf0`; high nibbles: mask), the row's
/// unsigned `a + 128` bytes are broadcast 4 at a time, so per block the lanes
/// hold 16 times the exact int32 sums `Σ (a + 128) · w`; an arithmetic shift
/// right by 4 (exact) makes them the sums themselves, converted and added to
/// each column's float sum with one FMA with its block scale, as
/// [`super::tile_scalar`] does (same operations, same order, same bits).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)] // register-tile loops index several arrays at once
mod v16 {
    use super::{PackedQd8, Qd8Kind, Qd8Params, VN};
    use core::arch::x86_64::*;

    /// Most rows of one register tile.
    pub(super) const MR_MAX: usize = 6;

    /// What every register tile of one call needs.
    pub(super) struct Rows<'a> {
        pub w: &'a PackedQd8,
        /// Row 0 of the quantized rows (`row_len()` bytes each, stride `lda`).
        pub a: *const i8,
        pub lda: usize,
        pub params: &'a [Qd8Params],
        /// Row 0, column 0 of the output (stride `ldc`).
        pub c: *mut f32,
        pub ldc: usize,
        pub lo: f32,
        pub hi: f32,
    }

    /// Rows `r0..r0 + MR` times panels `p0..p0 + NP` (16 columns each). `S` is
    /// 2 to put the products of the high nibbles in separate int32 registers
    /// (more independent chains for a single row; integer sums, exact), else 1.
    ///
    /// # Safety
    /// AVX-512 F/BW/VL/VNNI must be available; `g.w` is `v16` `Qb4w`; rows
    /// `r0..r0 + MR` of `g.a` hold `kp` bytes each and `g.params` has them;
    /// `p0 + NP <= n.div_ceil(16)`; `g.c` has room for those rows (stride
    /// `ldc`) at columns `16 · p0..min(n, 16 · (p0 + NP))`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn strip<const MR: usize, const NP: usize, const S: usize>(
        g: &Rows<'_>,
        r0: usize,
        p0: usize,
    ) {
        let w = g.w;
        let Qd8Kind::Qb4w { block } = w.kind else {
            unreachable!("v16 tile on {:?} weights", w.kind)
        };
        let kp = w.kp;
        let (nb, opb, pb) = (kp / block, block / 8, kp * VN / 2);
        // Per panel: its first bytes and scales, and the strides between inputs
        // 8o and 8o + 8 (bytes) and between blocks (scales) in its group.
        let mut wp = [core::ptr::null::<u8>(); NP];
        let mut bp = [core::ptr::null::<u16>(); NP];
        let mut wstep = [0usize; NP];
        let mut bstep = [0usize; NP];
        for p in 0..NP {
            let (g0, j, gw) = super::v16_group(w.n.div_ceil(VN), p0 + p);
            wp[p] = w.data.as_ptr().add(g0 * pb + j * 64);
            bp[p] = w.bscale.as_ptr().add(g0 * nb * VN + j * VN);
            wstep[p] = gw * 64;
            bstep[p] = gw * VN;
        }
        let mut a = [core::ptr::null::<u8>(); MR];
        let mut fo = [[_mm512_setzero_ps(); NP]; MR];
        for r in 0..MR {
            a[r] = g.a.add((r0 + r) * g.lda) as *const u8;
            let zp = _mm512_set1_ps((g.params[r0 + r].zero_point + 128) as f32);
            for p in 0..NP {
                let ks = _mm512_loadu_ps(w.ksum_f.as_ptr().add((p0 + p) * VN));
                fo[r][p] = _mm512_mul_ps(ks, zp);
            }
        }
        let hi4 = _mm512_set1_epi8(-16);
        for b in 0..nb {
            let mut acc = [[[_mm512_setzero_si512(); NP]; MR]; S];
            for o in b * opb..(b + 1) * opb {
                let mut wl = [_mm512_setzero_si512(); NP];
                let mut wh = [_mm512_setzero_si512(); NP];
                for p in 0..NP {
                    let v = _mm512_loadu_si512(wp[p].add(o * wstep[p]) as *const _);
                    wl[p] = _mm512_and_si512(_mm512_slli_epi16(v, 4), hi4);
                    wh[p] = _mm512_and_si512(v, hi4);
                }
                for r in 0..MR {
                    let al = _mm512_set1_epi32((a[r].add(o * 8) as *const i32).read_unaligned());
                    let ah =
                        _mm512_set1_epi32((a[r].add(o * 8 + 4) as *const i32).read_unaligned());
                    for p in 0..NP {
                        acc[0][r][p] = _mm512_dpbusd_epi32(acc[0][r][p], al, wl[p]);
                        acc[S - 1][r][p] = _mm512_dpbusd_epi32(acc[S - 1][r][p], ah, wh[p]);
                    }
                }
            }
            for p in 0..NP {
                let sv = _mm256_loadu_si256(bp[p].add(b * bstep[p]) as *const __m256i);
                let sc = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(sv), 16));
                for r in 0..MR {
                    let mut x = acc[0][r][p];
                    if S == 2 {
                        x = _mm512_add_epi32(x, acc[1][r][p]);
                    }
                    let x = _mm512_cvtepi32_ps(_mm512_srai_epi32(x, 4));
                    fo[r][p] = _mm512_fmadd_ps(x, sc, fo[r][p]);
                }
            }
        }
        let (vlo, vhi) = (_mm512_set1_ps(g.lo), _mm512_set1_ps(g.hi));
        for p in 0..NP {
            let col0 = (p0 + p) * VN;
            let mask = (((1u32 << (w.n - col0).min(VN)) - 1) & 0xffff) as __mmask16;
            let bias = _mm512_loadu_ps(w.bias.as_ptr().add(col0));
            for r in 0..MR {
                let inv = _mm512_set1_ps(g.params[r0 + r].inv_scale);
                let f = _mm512_add_ps(_mm512_mul_ps(fo[r][p], inv), bias);
                let f = _mm512_min_ps(_mm512_max_ps(f, vlo), vhi);
                _mm512_mask_storeu_ps(g.c.add((r0 + r) * g.ldc + col0), mask, f);
            }
        }
    }

    /// Rows `r0..r0 + mr` (`1 <= mr <= MR_MAX`) times panels `p0..p0 + NP`.
    ///
    /// # Safety
    /// As [`strip`].
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn rows_np<const NP: usize>(g: &Rows<'_>, r0: usize, mr: usize, p0: usize) {
        match mr {
            1 => strip::<1, NP, 2>(g, r0, p0),
            2 => strip::<2, NP, 1>(g, r0, p0),
            3 => strip::<3, NP, 1>(g, r0, p0),
            4 => strip::<4, NP, 1>(g, r0, p0),
            5 => strip::<5, NP, 1>(g, r0, p0),
            _ => strip::<6, NP, 1>(g, r0, p0),
        }
    }

    /// Panels per register tile for tiles of `mr` rows (the widest that keeps
    /// the accumulators, weights and broadcasts in the 32 registers).
    pub(super) fn panels_for(mr: usize) -> usize {
        if mr <= 2 {
            4
        } else {
            2
        }
    }

    /// Rows `rows` times panels `panels`: rows in passes of about
    /// `super::VNNI_ROW_BYTES` (split evenly); per pass and group of panels
    /// (whose weights stay in L1/L2 while the rows go by), the rows in register
    /// tiles of up to [`MR_MAX`], split evenly.
    ///
    /// # Safety
    /// AVX-512 F/BW/VL/VNNI must be available; `g.w` is `v16` `Qb4w`; the rows
    /// hold `kp` bytes each in `g.a` and have params; `panels` are below
    /// `n.div_ceil(16)`; `g.c` has room for the rows at stride `ldc` and `n`
    /// columns; no other thread writes these rows and columns.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn run(
        g: &Rows<'_>,
        rows: core::ops::Range<usize>,
        panels: core::ops::Range<usize>,
    ) {
        let m = rows.len();
        if m == 0 {
            return;
        }
        let passes = (m * g.lda).div_ceil(super::VNNI_ROW_BYTES).clamp(1, m);
        let per_pass = m.div_ceil(passes);
        let mut rc = rows.start;
        while rc < rows.end {
            let rend = (rc + per_pass).min(rows.end);
            let chunks = (rend - rc).div_ceil(MR_MAX);
            let np = panels_for((rend - rc).div_ceil(chunks));
            let mut p = panels.start;
            while p < panels.end {
                let step = if panels.end - p >= np { np } else { 1 };
                let mut r = rc;
                for i in 0..chunks {
                    // Even split: chunk sizes differ by at most one row.
                    let mr = (rend - r).div_ceil(chunks - i);
                    match step {
                        4 => rows_np::<4>(g, r, mr, p),
                        2 => rows_np::<2>(g, r, mr, p),
                        _ => rows_np::<1>(g, r, mr, p),
                    }
                    r += mr;
                }
                p += step;
            }
            rc = rend;
        }
    }
}

/// How a `qd8_gemm` call is split: `(column groups, row blocks)` over `units`
/// column groups and `m` rows. One task below `min_work` multiply-adds (a
/// dispatch costs more than it saves); otherwise up to four column groups per
/// thread, and rows split too when there are fewer than two groups per thread.
fn split_work(nt: usize, work: usize, min_work: usize, units: usize, m: usize) -> (usize, usize) {
    if nt <= 1 || work < min_work {
        return (1, 1);
    }
    let groups = units.min(nt * 4);
    let rblocks = if groups >= nt * 2 {
        1
    } else {
        m.div_ceil(2).min((nt * 4).div_ceil(groups))
    };
    (groups, rblocks)
}

/// `c[m × n] = clamp(dequant(a) · Wᵀ + bias, lo, hi)` for quantized rows `a`
/// (`m` rows at stride `lda >= w.row_len()`, from [`PackedQd8::quantize_row`]) with
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
    // The kernels read each row's values and, for int4, its corrections after them.
    let used = kp + 32 * w.row_blocks();
    assert!(
        lda >= used && a.len() >= (m - 1) * lda + used,
        "qd8_gemm: a too short"
    );
    assert!(params.len() >= m, "qd8_gemm: params too short");
    assert!(
        ldc >= n && c.len() >= (m - 1) * ldc + n,
        "qd8_gemm: c too short"
    );
    let nt = num_threads();
    let work = m * n * kp;
    #[cfg(target_arch = "x86_64")]
    if w.v16 && w.arith == XnnArith::Avx512Vnni && crate::isa::avx512_vnni() {
        let npan = n.div_ceil(VN);
        let unit = v16::panels_for(m.min(v16::MR_MAX));
        let nstrips = npan.div_ceil(unit);
        // One thread under ~64K multiply-adds (these panels are fast enough that
        // the LLM's 288x288 and 288x768 decode products already gain from a
        // second thread); otherwise panel groups over the threads, and rows too
        // when there are few groups.
        let (pchunks, rblocks) = split_work(nt, work, 1 << 16, nstrips, m);
        let per_chunk = nstrips.div_ceil(pchunks) * unit;
        let pchunks = npan.div_ceil(per_chunk);
        let rows_per = m.div_ceil(rblocks);
        let rblocks = m.div_ceil(rows_per);
        let g = v16::Rows {
            w,
            a: a.as_ptr(),
            lda,
            params,
            c: c.as_mut_ptr(),
            ldc,
            lo,
            hi,
        };
        let g = SyncPtr(&g as *const v16::Rows<'_> as *mut v16::Rows<'_>);
        parallel_for(pchunks * rblocks, |task| {
            let (pc, rb) = (task % pchunks, task / pchunks);
            let rows = rb * rows_per..((rb + 1) * rows_per).min(m);
            let panels = pc * per_chunk..((pc + 1) * per_chunk).min(npan);
            // SAFETY: AVX-512 F/BW/VL/VNNI checked by avx512_vnni(); `v16` is
            // only packed for `Qb4w`; the rows exist in `a` (kp bytes each),
            // `params` and `c`, and `c` has `n` columns (asserted above); the
            // panels are below `n.div_ceil(16)`; tasks write disjoint rows x
            // panels; `g` outlives the parallel_for and is only read.
            unsafe { v16::run(&*g.get(), rows, panels) };
        });
        return;
    }
    let ntiles = n.div_ceil(NR);
    // Below ~1M multiply-adds (tens of microseconds) one thread is faster than a
    // dispatch, especially when another process holds a core.
    let (tchunks, rblocks) = split_work(nt, work, 1 << 20, ntiles, m);
    let rows_per = m.div_ceil(rblocks).next_multiple_of(2);
    let rblocks = m.div_ceil(rows_per);
    let tiles_per = ntiles.div_ceil(tchunks);
    let tchunks = ntiles.div_ceil(tiles_per);
    let kern = isa();
    let vnni = cfg!(target_arch = "x86_64")
        && matches!(w.kind, Qd8Kind::Qb4w { .. } | Qd8Kind::Qc4w)
        && crate::isa::avx512_vnni();
    // XNNPACK's VNNI arithmetic for `qb4w` has no AVX2 kernel: without VNNI
    // (a forced `PTERON_XNN_ARITH` or a cap) it runs on the scalar path.
    // Its VNNI kernels (above) read the `v16` layout only; with the 8-column
    // tiles (weights packed under a cap, then run uncapped) it also runs on the
    // scalar path, as does the `v16` layout capped or with the AVX2 arithmetic.
    let u8_arith = w.arith == XnnArith::Avx512Vnni && matches!(w.kind, Qd8Kind::Qb4w { .. });
    let vnni = vnni && !u8_arith && !w.v16;
    let kern = if u8_arith || w.v16 { Isa::Scalar } else { kern };
    let panel = cfg!(target_arch = "x86_64")
        && !vnni
        && kern == Isa::Avx2Fma
        && w.kind == (Qd8Kind::Qb4w { block: 32 })
        && m >= PANEL_MIN_ROWS;
    let cp = SyncPtr(c.as_mut_ptr());
    let clen = c.len();
    parallel_for(tchunks * rblocks, |task| {
        let (tcix, rb) = (task % tchunks, task / tchunks);
        let (r_start, r_end) = (rb * rows_per, ((rb + 1) * rows_per).min(m));
        #[cfg(target_arch = "x86_64")]
        if vnni {
            let args = TileArgs {
                w,
                tile: 0,
                a,
                lda,
                params,
                lo,
                hi,
            };
            let tiles = tcix * tiles_per..((tcix + 1) * tiles_per).min(ntiles);
            // SAFETY: AVX-512 F/BW/VL/VNNI checked by avx512_vnni(); int4 kind checked
            // above; rows r_start..r_end exist in `a`, `params` and `c` (asserted
            // above); the tiles and rows of this task are disjoint from the other
            // tasks'.
            unsafe { vnni_int4(&args, tiles, r_start..r_end, cp.get(), ldc) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if panel {
            let args = TileArgs {
                w,
                tile: 0,
                a,
                lda,
                params,
                lo,
                hi,
            };
            let tiles = tcix * tiles_per..((tcix + 1) * tiles_per).min(ntiles);
            // SAFETY: AVX2+FMA checked by the tier; qb4w with kp <= PANEL_KP checked
            // above; rows r_start..r_end exist in `a` and `c` (asserted above); the
            // tiles and rows of this task are disjoint from the other tasks'.
            unsafe { panel_qb4w(&args, tiles, r_start..r_end, cp.get(), ldc) };
            return;
        }
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
