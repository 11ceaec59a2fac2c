//! A memory read-bandwidth probe: what the machine allows, the bar that
//! bandwidth-bound work (LLM decode) is measured against. It reads the buffer
//! two ways, plainly and with software prefetch a fixed distance ahead (on some
//! CPUs, Zen 3 among them, the hardware prefetcher alone leaves a fifth of the
//! bandwidth unused), and reports the faster, so that kernels which prefetch are
//! not measured against a bar they can beat.

use std::time::Instant;

use crate::pool::{num_threads, parallel_for};

/// Bytes ahead of the read position that [`sum_words`] prefetches.
const PREFETCH_AHEAD: usize = 2048;

/// Adds up every 64-bit word of `words` (wrapping) with eight independent
/// lanes, which the compiler turns into vector loads and adds: a read that
/// costs about as much as streaming the bytes. With `PREFETCH` (x86-64 only),
/// each 64-byte line also prefetches the line [`PREFETCH_AHEAD`] bytes on.
fn sum_words<const PREFETCH: bool>(words: &[u64]) -> u64 {
    let mut lanes = [0u64; 8];
    let mut chunks = words.chunks_exact(8);
    for c in &mut chunks {
        #[cfg(target_arch = "x86_64")]
        if PREFETCH {
            use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let ahead = c.as_ptr().wrapping_byte_add(PREFETCH_AHEAD) as *const i8;
            // SAFETY: SSE is part of x86-64; a prefetch reads nothing the
            // program sees and never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(ahead) };
        }
        for (l, &w) in lanes.iter_mut().zip(c) {
            *l = l.wrapping_add(w);
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(0u64, |a, &w| a.wrapping_add(w));
    lanes.iter().fold(tail, |a, &l| a.wrapping_add(l))
}

/// Reads all of `words` once, split over the thread pool in contiguous parts
/// (one per thread), and returns the wrapping sum (so the reads cannot be
/// optimized away).
pub fn read_all(words: &[u64]) -> u64 {
    read_all_with(words, false)
}

/// [`read_all`], with software prefetch when `prefetch` is set.
fn read_all_with(words: &[u64], prefetch: bool) -> u64 {
    let parts = num_threads().max(1).min(words.len().max(1));
    let per = words.len().div_ceil(parts);
    let sums: Vec<std::sync::atomic::AtomicU64> = (0..parts)
        .map(|_| std::sync::atomic::AtomicU64::new(0))
        .collect();
    parallel_for(parts, |p| {
        let lo = (p * per).min(words.len());
        let hi = ((p + 1) * per).min(words.len());
        let part = &words[lo..hi];
        let sum = if prefetch {
            sum_words::<true>(part)
        } else {
            sum_words::<false>(part)
        };
        sums[p].store(sum, std::sync::atomic::Ordering::Relaxed);
    });
    sums.iter().fold(0u64, |a, s| {
        a.wrapping_add(s.load(std::sync::atomic::Ordering::Relaxed))
    })
}

/// Result of [`read_bandwidth`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bandwidth {
    /// Median over the passes, bytes per second.
    pub median: f64,
    /// Best pass, bytes per second.
    pub best: f64,
    /// Bytes read per pass.
    pub bytes: usize,
    /// Threads used.
    pub threads: usize,
}

/// Measures main-memory read bandwidth with the current thread count: a buffer
/// of `bytes` (rounded to whole words; pick several times the last-level cache)
/// filled once, then read `passes` times (at least 1) each way (plain, and with
/// software prefetch; alternated, so that both see the same machine state). The
/// result is the way with the higher median.
pub fn read_bandwidth(bytes: usize, passes: usize) -> Bandwidth {
    let words: Vec<u64> = (0..bytes / 8).map(|i| i as u64).collect();
    let mut times = [
        Vec::with_capacity(passes.max(1)),
        Vec::with_capacity(passes.max(1)),
    ];
    let mut sink = 0u64;
    // One untimed pass: page faults and the pool's first wake-up.
    sink = sink.wrapping_add(read_all(&words));
    for _ in 0..passes.max(1) {
        for (way, t) in times.iter_mut().enumerate() {
            let start = Instant::now();
            sink = sink.wrapping_add(read_all_with(&words, way == 1));
            t.push(start.elapsed().as_secs_f64());
        }
    }
    std::hint::black_box(sink);
    for t in &mut times {
        t.sort_by(f64::total_cmp);
    }
    let med = |t: &Vec<f64>| t[t.len() / 2];
    let fast = if med(&times[1]) < med(&times[0]) {
        &times[1]
    } else {
        &times[0]
    };
    let b = (words.len() * 8) as f64;
    Bandwidth {
        median: b / med(fast).max(1e-12),
        best: b / fast[0].max(1e-12),
        bytes: words.len() * 8,
        threads: num_threads(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_all_sums_every_word() {
        for n in [0usize, 1, 7, 8, 9, 1000, 4097] {
            let w: Vec<u64> = (0..n as u64).map(|i| i * 3 + 1).collect();
            let want = w.iter().fold(0u64, |a, &x| a.wrapping_add(x));
            assert_eq!(read_all(&w), want, "n = {n}");
        }
        let w = vec![u64::MAX; 33];
        assert_eq!(read_all(&w), 0u64.wrapping_sub(33));
        for n in [0usize, 9, 1000, 4097] {
            let w: Vec<u64> = (0..n as u64).map(|i| i * 5 + 2).collect();
            assert_eq!(read_all_with(&w, true), read_all(&w), "prefetch, n = {n}");
        }
    }

    #[test]
    fn bandwidth_is_positive_and_ordered() {
        let b = read_bandwidth(1 << 20, 3);
        assert_eq!(b.bytes, 1 << 20);
        assert!(b.median > 0.0 && b.best >= b.median);
    }
}
