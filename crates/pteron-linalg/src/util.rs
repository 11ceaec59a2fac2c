//! Small internal helpers: aligned buffers, thread-local scratch, raw pointer wrappers.

use std::cell::RefCell;

/// A zero-initialised `f32` buffer whose usable region starts on a 64-byte boundary.
pub(crate) struct AlignedBuf {
    v: Vec<f32>,
    off: usize,
    len: usize,
}

impl AlignedBuf {
    pub(crate) fn new(len: usize) -> Self {
        let mut b = AlignedBuf {
            v: Vec::new(),
            off: 0,
            len: 0,
        };
        b.reserve(len);
        b.len = len;
        b
    }

    /// Make sure at least `len` elements are usable (contents are unspecified after growth).
    pub(crate) fn reserve(&mut self, len: usize) {
        if len <= self.len {
            return;
        }
        let v = vec![0.0f32; len + 16];
        let addr = v.as_ptr() as usize;
        let off = ((64 - (addr % 64)) % 64) / 4;
        self.v = v;
        self.off = off;
        self.len = len;
    }

    pub(crate) fn as_slice(&self) -> &[f32] {
        &self.v[self.off..self.off + self.len]
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.v[self.off..self.off + self.len]
    }

    pub(crate) fn bytes(&self) -> usize {
        self.v.len() * 4
    }
}

/// Scratch reserved per thread up front (f32 elements, 1 MiB). GEMM tiles need at
/// most `(MC + NC) * KC` ≈ 90K elements and depthwise bands about 8K plus one padded
/// row, so kernels never grow it in steady state: `execute` stays allocation-free
/// after the first run for planes up to ~250K elements wide.
pub(crate) const INITIAL_SCRATCH: usize = 1 << 18;

thread_local! {
    static SCRATCH: RefCell<AlignedBuf> = RefCell::new(AlignedBuf::new(INITIAL_SCRATCH));
}

/// Makes sure this thread's scratch exists (allocating it now rather than later).
pub(crate) fn reserve_scratch() {
    with_scratch(0, |_| ());
}

/// Run `f` with a thread-local, 64-byte aligned scratch slice of at least `len`
/// elements (contents unspecified). Re-entrant: a nested call gets a fresh buffer.
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    with_scratch_kept(len, |buf, _| f(buf))
}

/// [`with_scratch`], also telling `f` whether the slice is this thread's own scratch
/// with its contents kept from the previous call on this thread (not a fresh buffer
/// for a nested call, not regrown), so that a kernel may pick up what it left there.
pub(crate) fn with_scratch_kept<R>(len: usize, f: impl FnOnce(&mut [f32], bool) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            let kept = len <= buf.len;
            buf.reserve(len);
            f(&mut buf.as_mut_slice()[..len], kept)
        }
        Err(_) => {
            let mut tmp = AlignedBuf::new(len);
            f(tmp.as_mut_slice(), false)
        }
    })
}

/// A raw mutable pointer that may be shared between pool tasks which write
/// provably disjoint regions.
/// (`f32` unless said otherwise.)
pub(crate) struct SyncPtr<T = f32>(pub(crate) *mut T);
// Copy for any T (a derive would require `T: Copy`).
impl<T> Clone for SyncPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SyncPtr<T> {}
// SAFETY: SyncPtr is only a carrier; every use site documents why concurrent
// accesses through it touch disjoint memory.
unsafe impl<T> Send for SyncPtr<T> {}
// SAFETY: see above.
unsafe impl<T> Sync for SyncPtr<T> {}

impl<T> SyncPtr<T> {
    /// The raw pointer (a method, so closures capture the whole `SyncPtr`).
    #[inline(always)]
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}

#[inline]
pub(crate) fn div_ceil(a: usize, b: usize) -> usize {
    a.div_ceil(b)
}
