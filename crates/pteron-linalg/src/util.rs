//! Small helpers: the aligned `f32` buffer, thread-local scratch, raw pointer wrappers.

use std::cell::RefCell;

/// A zeroed `f32` buffer whose data starts on a 64-byte boundary: packed weights,
/// scratch, and (through `pteron-runtime`) the XNNPACK delegates' run buffers.
///
/// A `Vec<f32>` from the system allocator starts 16 bytes past a cache line when it
/// is large (glibc puts a 16-byte header in front of `mmap`ed blocks), so every
/// 64-byte vector load or store on it spans two lines (depthwise convolutions ran
/// about 10-40% slower on such buffers). This is a `Vec<f32>` 15 values longer than
/// asked, used from its first aligned value: it still comes zeroed from `calloc`,
/// whose fresh pages cost memory only where they are touched (an allocation with a
/// 64-byte alignment would be cleared with `memset`, all of it resident).
/// Derefs to `[f32]` of exactly `len` values.
#[derive(Default)]
pub struct F32Buf {
    v: Vec<f32>,
    off: usize,
    len: usize,
}

impl F32Buf {
    fn aligned(v: Vec<f32>, len: usize) -> Self {
        let off = (64 - v.as_ptr() as usize % 64) % 64 / 4;
        F32Buf { v, off, len }
    }

    /// `len` zeros (no allocation for none).
    pub fn zeroed(len: usize) -> Self {
        if len == 0 {
            return Self::default();
        }
        Self::aligned(vec![0.0; len + 15], len)
    }

    /// `len` zeros, or `None` when the allocator refuses (sizes read from a file
    /// can be absurd; never abort on them).
    pub fn try_zeroed(len: usize) -> Option<Self> {
        if len == 0 {
            return Some(Self::default());
        }
        let v = bytemuck::allocation::try_zeroed_vec(len.checked_add(15)?).ok()?;
        Some(Self::aligned(v, len))
    }

    /// An aligned copy of `values`.
    pub fn copy_from(values: &[f32]) -> Self {
        let mut b = Self::zeroed(values.len());
        b.copy_from_slice(values);
        b
    }

    /// Make sure at least `len` elements are usable (contents are unspecified after growth).
    pub(crate) fn reserve(&mut self, len: usize) {
        if len > self.len {
            *self = Self::zeroed(len);
        }
    }

    /// Bytes allocated.
    pub fn bytes(&self) -> usize {
        self.v.len() * 4
    }
}

impl Clone for F32Buf {
    /// An aligned copy (a plain copy of the `Vec` could start elsewhere in its line).
    fn clone(&self) -> Self {
        Self::copy_from(self)
    }
}

impl core::ops::Deref for F32Buf {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.v[self.off..self.off + self.len]
    }
}

impl core::ops::DerefMut for F32Buf {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.v[self.off..self.off + self.len]
    }
}

impl core::fmt::Debug for F32Buf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "F32Buf({} values)", self.len)
    }
}

/// Scratch reserved per thread up front (f32 elements, 1 MiB). GEMM tiles need at
/// most `(MC + NC) * KC` ≈ 90K elements and depthwise bands about 8K plus one padded
/// row, so kernels never grow it in steady state: `execute` stays allocation-free
/// after the first run for planes up to ~250K elements wide.
pub(crate) const INITIAL_SCRATCH: usize = 1 << 18;

thread_local! {
    static SCRATCH: RefCell<F32Buf> = RefCell::new(F32Buf::zeroed(INITIAL_SCRATCH));
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
            f(&mut buf[..len], kept)
        }
        Err(_) => {
            let mut tmp = F32Buf::zeroed(len);
            f(&mut tmp, false)
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
#[cfg(test)]
mod f32buf_tests {
    use super::F32Buf;

    fn aligned(b: &F32Buf) -> bool {
        (b.as_ptr() as usize).is_multiple_of(64)
    }

    #[test]
    fn buffers_are_zeroed_aligned_and_exactly_long() {
        for len in [0usize, 1, 15, 16, 17, 1000, 300_000] {
            let b = F32Buf::try_zeroed(len).unwrap();
            assert_eq!(b.len(), len);
            assert!(b.iter().all(|&x| x == 0.0));
            assert!(len == 0 || aligned(&b), "len {len}");
            let mut c = F32Buf::copy_from(&(0..len).map(|i| i as f32).collect::<Vec<_>>());
            assert!(len == 0 || aligned(&c));
            c.iter_mut().for_each(|x| *x += 1.0);
            let d = c.clone();
            assert!(len == 0 || aligned(&d));
            assert_eq!(&d[..], &c[..]);
        }
        assert!(F32Buf::default().is_empty());
    }

    #[test]
    fn absurd_sizes_are_refused() {
        assert!(F32Buf::try_zeroed(usize::MAX).is_none());
        assert!(F32Buf::try_zeroed(usize::MAX / 4).is_none());
    }
}
