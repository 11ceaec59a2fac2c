//! A memory read-bandwidth probe: what the machine allows, the bar that
//! bandwidth-bound work (LLM decode) is measured against.

use std::time::Instant;

use crate::pool::{num_threads, parallel_for};

/// Adds up every 64-bit word of `words` (wrapping) with eight independent
/// lanes, which the compiler turns into vector loads and adds: a read that
/// costs about as much as streaming the bytes.
fn sum_words(words: &[u64]) -> u64 {
    let mut lanes = [0u64; 8];
    let mut chunks = words.chunks_exact(8);
    for c in &mut chunks {
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
    let parts = num_threads().max(1).min(words.len().max(1));
    let per = words.len().div_ceil(parts);
    let sums: Vec<std::sync::atomic::AtomicU64> = (0..parts)
        .map(|_| std::sync::atomic::AtomicU64::new(0))
        .collect();
    parallel_for(parts, |p| {
        let lo = (p * per).min(words.len());
        let hi = ((p + 1) * per).min(words.len());
        sums[p].store(
            sum_words(&words[lo..hi]),
            std::sync::atomic::Ordering::Relaxed,
        );
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
/// filled once, then read `passes` times (at least 1) by [`read_all`].
pub fn read_bandwidth(bytes: usize, passes: usize) -> Bandwidth {
    let words: Vec<u64> = (0..bytes / 8).map(|i| i as u64).collect();
    let mut times = Vec::with_capacity(passes.max(1));
    let mut sink = 0u64;
    // One untimed pass: page faults and the pool's first wake-up.
    sink = sink.wrapping_add(read_all(&words));
    for _ in 0..passes.max(1) {
        let t = Instant::now();
        sink = sink.wrapping_add(read_all(&words));
        times.push(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(sink);
    times.sort_by(f64::total_cmp);
    let b = (words.len() * 8) as f64;
    Bandwidth {
        median: b / times[times.len() / 2].max(1e-12),
        best: b / times[0].max(1e-12),
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
    }

    #[test]
    fn bandwidth_is_positive_and_ordered() {
        let b = read_bandwidth(1 << 20, 3);
        assert_eq!(b.bytes, 1 << 20);
        assert!(b.median > 0.0 && b.best >= b.median);
    }
}
