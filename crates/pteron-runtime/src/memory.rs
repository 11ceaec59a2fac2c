//! Memory: 16-byte-aligned buffers for planned arenas and owned tensors, and the
//! read-only byte sources (program file, `.ptd` files) constants live in.

use std::sync::Arc;

/// `len` zero values, or `None` when the allocator refuses: sizes read from a file
/// can be absurd, and must not abort the process. One fallible zeroed allocation
/// (`alloc_zeroed`, i.e. `calloc`): large buffers get lazily zeroed pages from the
/// OS, so they cost memory, and time, only where they are used. (A fallible probe
/// reservation freed before a `vec!` was tried first: freeing it raises glibc's
/// mmap threshold, after which big zeroed buffers came from the heap and were
/// cleared with memset, half of an LLM program's load time.)
pub fn try_zeroed_vec<T: bytemuck::Zeroable>(len: usize) -> Option<Vec<T>> {
    bytemuck::allocation::try_zeroed_vec(len).ok()
}

/// An `f32` buffer whose data starts on a 64-byte boundary.
///
/// Kernels' activation and scratch buffers: a `Vec<f32>` from the system
/// allocator starts 16 bytes past a cache line when it is large (glibc puts a
/// 16-byte header in front of `mmap`ed blocks), so every 64-byte vector load or
/// store then spans two lines (depthwise convolutions ran about 10-40% slower on such
/// buffers). The buffer is a `Vec<f32>` 15 values longer than asked, used from
/// the first aligned value: it still comes zeroed from `calloc`, whose fresh
/// pages cost memory only where they are touched (an allocation with a 64-byte
/// alignment would be cleared with `memset`, all of it resident).
/// Derefs to `[f32]` of exactly [`len`](F32Buf::len) values.
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
    /// `len` zeros, or `None` when the allocator refuses (sizes read from a file
    /// can be absurd; never abort on them).
    pub fn try_zeroed(len: usize) -> Option<Self> {
        Some(Self::aligned(try_zeroed_vec(len.checked_add(15)?)?, len))
    }
    /// `len` zeros.
    pub fn zeroed(len: usize) -> Self {
        Self::aligned(vec![0.0; len + 15], len)
    }
    /// An aligned copy of `values`.
    pub fn copy_from(values: &[f32]) -> Self {
        let mut b = Self::zeroed(values.len());
        b.copy_from_slice(values);
        b
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

/// A heap buffer aligned to 16 bytes (backed by `u128` words), allocated once.
#[derive(Clone, Default)]
pub struct AlignedBuf {
    words: Vec<u128>,
    len: usize,
}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes.
    pub fn zeroed(len: usize) -> Self {
        AlignedBuf {
            words: vec![0u128; len.div_ceil(16)],
            len,
        }
    }
    /// A zeroed buffer of `len` bytes, or `None` when the allocator refuses
    /// (sizes read from a file can be absurd; never abort on them).
    pub fn try_zeroed(len: usize) -> Option<Self> {
        Some(AlignedBuf {
            words: try_zeroed_vec(len.div_ceil(16))?,
            len,
        })
    }
    /// A copy of `bytes`, aligned.
    pub fn copy_from(bytes: &[u8]) -> Self {
        let mut b = Self::zeroed(bytes.len());
        b.bytes_mut().copy_from_slice(bytes);
        b
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut(&mut self.words)[..self.len]
    }
}

impl core::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "AlignedBuf({} bytes)", self.len)
    }
}

/// Read-only bytes a program or data file is read from: an owned aligned copy, or
/// (in the `pteron` facade) a memory map. Tensor data is viewed in place, so the
/// start must be 16-byte aligned.
pub trait ByteSource: Send + Sync {
    fn bytes(&self) -> &[u8];
}

impl ByteSource for AlignedBuf {
    fn bytes(&self) -> &[u8] {
        AlignedBuf::bytes(self)
    }
}

/// Shared handle to a byte source.
pub type Bytes = Arc<dyn ByteSource>;

/// Wraps `bytes` so that tensor data can be viewed in place: borrows nothing, copies
/// into an aligned buffer.
pub fn bytes_from_slice(bytes: &[u8]) -> Bytes {
    Arc::new(AlignedBuf::copy_from(bytes))
}

/// Takes ownership of a byte vector; copies only if its start is not 16-byte aligned.
pub fn bytes_from_vec(v: Vec<u8>) -> Bytes {
    struct VecSource(Vec<u8>);
    impl ByteSource for VecSource {
        fn bytes(&self) -> &[u8] {
            &self.0
        }
    }
    if (v.as_ptr() as usize).is_multiple_of(16) {
        Arc::new(VecSource(v))
    } else {
        bytes_from_slice(&v)
    }
}

/// Random access to a program file, so that it can be loaded piece by piece (header
/// and FlatBuffers data, constants, then each delegate's data while that delegate is
/// initialised, freed right after) instead of being held in memory whole.
pub trait DataLoader: Send + Sync {
    /// The file's length in bytes.
    fn len(&self) -> u64;
    /// Whether the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The `len` bytes at `offset` (a new aligned buffer, or a view such as a memory
    /// map of that range; the start must be 16-byte aligned, see [`ByteSource`]). A
    /// range past the end of the file is an error (`UnexpectedEof`), never a short
    /// buffer. Dropping the result releases the memory.
    fn load(&self, offset: u64, len: usize) -> std::io::Result<Bytes>;
}

/// A [`DataLoader`] over an open file, reading with positioned reads (`pread`).
pub struct FileLoader {
    file: FileReader,
    len: u64,
}

#[cfg(unix)]
type FileReader = std::fs::File;
#[cfg(not(unix))]
type FileReader = std::sync::Mutex<std::fs::File>;

impl FileLoader {
    /// Opens `path` for reading; its length is taken now.
    pub fn open(path: impl AsRef<std::path::Path>) -> std::io::Result<FileLoader> {
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        #[cfg(not(unix))]
        let file = std::sync::Mutex::new(file);
        Ok(FileLoader { file, len })
    }
}

impl DataLoader for FileLoader {
    fn len(&self) -> u64 {
        self.len
    }
    fn load(&self, offset: u64, len: usize) -> std::io::Result<Bytes> {
        let end = offset.checked_add(len as u64);
        if end.is_none_or(|e| e > self.len) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "range {offset}..+{len} lies past the end of the file ({} bytes)",
                    self.len
                ),
            ));
        }
        let mut buf = AlignedBuf::zeroed(len);
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            self.file.read_exact_at(buf.bytes_mut(), offset)?;
        }
        #[cfg(not(unix))]
        {
            use std::io::{Read, Seek, SeekFrom};
            let mut f = self
                .file
                .lock()
                .map_err(|_| std::io::Error::other("file lock poisoned"))?;
            f.seek(SeekFrom::Start(offset))?;
            f.read_exact(buf.bytes_mut())?;
        }
        Ok(Arc::new(buf))
    }
}

/// A [`DataLoader`] over bytes already in memory (tests, embedded programs).
impl DataLoader for Bytes {
    fn len(&self) -> u64 {
        self.bytes().len() as u64
    }
    fn load(&self, offset: u64, len: usize) -> std::io::Result<Bytes> {
        let b = self.bytes();
        let r = usize::try_from(offset)
            .ok()
            .and_then(|o| Some(o..o.checked_add(len)?))
            .and_then(|r| b.get(r));
        match r {
            Some(s) => Ok(bytes_from_slice(s)),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "range {offset}..+{len} lies past the end of the data ({} bytes)",
                    b.len()
                ),
            )),
        }
    }
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
