//! Memory: 16-byte-aligned buffers for planned arenas and owned tensors, and the
//! read-only byte sources (program file, `.ptd` files) constants live in.

use std::sync::Arc;

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
