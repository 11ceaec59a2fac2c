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

/// The aligned `f32` buffer of the delegates' run buffers (see [`pteron_linalg::F32Buf`]).
pub use pteron_linalg::F32Buf;

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
