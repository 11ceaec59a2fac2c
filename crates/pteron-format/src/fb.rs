//! A small, fully bounds-checked FlatBuffers reader.
//!
//! Every access returns a [`FbError`] instead of panicking; nothing here trusts the
//! input. Offsets are resolved with checked arithmetic. Table, vector and string
//! positions are absolute byte offsets into the buffer.

use core::fmt;

/// A low-level FlatBuffers decoding failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FbError {
    /// A read of `len` bytes at `pos` falls outside the buffer.
    OutOfBounds { pos: usize, len: usize },
    /// A vtable is malformed (size too small, or table size wrong).
    BadVTable { pos: usize },
    /// A string is not valid UTF-8.
    BadUtf8 { pos: usize },
    /// A required field is absent.
    Missing,
    /// A vector length times its element size overflows.
    Overflow { pos: usize },
    /// The offsets nest too deeply or loop.
    TooDeep,
}

impl fmt::Display for FbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FbError::OutOfBounds { pos, len } => {
                write!(f, "read of {len} bytes at offset {pos} is out of bounds")
            }
            FbError::BadVTable { pos } => write!(f, "malformed vtable for table at offset {pos}"),
            FbError::BadUtf8 { pos } => write!(f, "string at offset {pos} is not valid UTF-8"),
            FbError::Missing => write!(f, "required field is missing"),
            FbError::Overflow { pos } => write!(f, "vector size at offset {pos} overflows"),
            FbError::TooDeep => write!(f, "offsets nest too deeply"),
        }
    }
}

/// A view of a FlatBuffers buffer.
#[derive(Clone, Copy)]
pub struct Fb<'a> {
    buf: &'a [u8],
}

impl<'a> Fb<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Fb { buf }
    }

    pub fn bytes(&self, pos: usize, len: usize) -> Result<&'a [u8], FbError> {
        let end = pos
            .checked_add(len)
            .ok_or(FbError::OutOfBounds { pos, len })?;
        self.buf
            .get(pos..end)
            .ok_or(FbError::OutOfBounds { pos, len })
    }

    fn array<const N: usize>(&self, pos: usize) -> Result<[u8; N], FbError> {
        let b = self.bytes(pos, N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    pub fn u8(&self, pos: usize) -> Result<u8, FbError> {
        Ok(self.array::<1>(pos)?[0])
    }
    pub fn u16(&self, pos: usize) -> Result<u16, FbError> {
        Ok(u16::from_le_bytes(self.array(pos)?))
    }
    pub fn u32(&self, pos: usize) -> Result<u32, FbError> {
        Ok(u32::from_le_bytes(self.array(pos)?))
    }
    pub fn i32(&self, pos: usize) -> Result<i32, FbError> {
        Ok(i32::from_le_bytes(self.array(pos)?))
    }
    pub fn u64(&self, pos: usize) -> Result<u64, FbError> {
        Ok(u64::from_le_bytes(self.array(pos)?))
    }
    pub fn i64(&self, pos: usize) -> Result<i64, FbError> {
        Ok(i64::from_le_bytes(self.array(pos)?))
    }
    pub fn f64(&self, pos: usize) -> Result<f64, FbError> {
        Ok(f64::from_le_bytes(self.array(pos)?))
    }

    /// Follows a `uoffset_t` stored at `pos` (relative to `pos`).
    pub fn deref(&self, pos: usize) -> Result<usize, FbError> {
        let off = self.u32(pos)? as usize;
        let target = pos
            .checked_add(off)
            .ok_or(FbError::OutOfBounds { pos, len: off })?;
        if target >= self.buf.len() {
            return Err(FbError::OutOfBounds {
                pos: target,
                len: 1,
            });
        }
        Ok(target)
    }

    /// The root table, whose absolute offset is stored at byte 0.
    pub fn root(&self) -> Result<Table<'a>, FbError> {
        let pos = self.u32(0)? as usize;
        self.table(pos)
    }

    /// The table at absolute position `pos`.
    pub fn table(&self, pos: usize) -> Result<Table<'a>, FbError> {
        let soff = self.i32(pos)? as i64;
        let vt = (pos as i64)
            .checked_sub(soff)
            .filter(|v| *v >= 0)
            .ok_or(FbError::BadVTable { pos })? as usize;
        let vt_size = self.u16(vt)? as usize;
        if vt_size < 4 || !vt_size.is_multiple_of(2) {
            return Err(FbError::BadVTable { pos });
        }
        // The whole vtable must be readable.
        self.bytes(vt, vt_size)?;
        let tbl_size = self.u16(vt + 2)? as usize;
        if tbl_size < 4 {
            return Err(FbError::BadVTable { pos });
        }
        self.bytes(pos, tbl_size)?;
        Ok(Table {
            fb: *self,
            pos,
            vt,
            vt_size,
            tbl_size,
        })
    }
}

/// A FlatBuffers table.
#[derive(Clone, Copy)]
pub struct Table<'a> {
    fb: Fb<'a>,
    pos: usize,
    vt: usize,
    vt_size: usize,
    tbl_size: usize,
}

/// A vector of `len` elements of `elem` bytes each starting at `start`.
#[derive(Clone, Copy, Debug)]
pub struct Vector {
    pub start: usize,
    pub len: usize,
}

impl<'a> Table<'a> {
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Absolute position of field `slot`, or `None` if absent.
    pub fn field(&self, slot: usize, width: usize) -> Result<Option<usize>, FbError> {
        let entry = 4 + 2 * slot;
        if entry + 2 > self.vt_size {
            return Ok(None);
        }
        let off = self.fb.u16(self.vt + entry)? as usize;
        if off == 0 {
            return Ok(None);
        }
        if off + width > self.tbl_size {
            return Err(FbError::BadVTable { pos: self.pos });
        }
        Ok(Some(self.pos + off))
    }

    pub fn u8_or(&self, slot: usize, default: u8) -> Result<u8, FbError> {
        match self.field(slot, 1)? {
            Some(p) => self.fb.u8(p),
            None => Ok(default),
        }
    }
    pub fn bool_or(&self, slot: usize, default: bool) -> Result<bool, FbError> {
        Ok(self.u8_or(slot, default as u8)? != 0)
    }
    pub fn u32_or(&self, slot: usize, default: u32) -> Result<u32, FbError> {
        match self.field(slot, 4)? {
            Some(p) => self.fb.u32(p),
            None => Ok(default),
        }
    }
    pub fn i32_or(&self, slot: usize, default: i32) -> Result<i32, FbError> {
        match self.field(slot, 4)? {
            Some(p) => self.fb.i32(p),
            None => Ok(default),
        }
    }
    pub fn u64_or(&self, slot: usize, default: u64) -> Result<u64, FbError> {
        match self.field(slot, 8)? {
            Some(p) => self.fb.u64(p),
            None => Ok(default),
        }
    }
    pub fn i64_or(&self, slot: usize, default: i64) -> Result<i64, FbError> {
        match self.field(slot, 8)? {
            Some(p) => self.fb.i64(p),
            None => Ok(default),
        }
    }
    pub fn f64_or(&self, slot: usize, default: f64) -> Result<f64, FbError> {
        match self.field(slot, 8)? {
            Some(p) => self.fb.f64(p),
            None => Ok(default),
        }
    }

    /// A sub-table field.
    pub fn table(&self, slot: usize) -> Result<Option<Table<'a>>, FbError> {
        match self.field(slot, 4)? {
            Some(p) => {
                let t = self.fb.deref(p)?;
                Ok(Some(self.fb.table(t)?))
            }
            None => Ok(None),
        }
    }

    /// A vector field with elements of `elem` bytes.
    pub fn vector(&self, slot: usize, elem: usize) -> Result<Option<Vector>, FbError> {
        match self.field(slot, 4)? {
            Some(p) => {
                let v = self.fb.deref(p)?;
                let len = self.fb.u32(v)? as usize;
                let bytes = len.checked_mul(elem).ok_or(FbError::Overflow { pos: v })?;
                self.fb.bytes(v + 4, bytes)?;
                Ok(Some(Vector { start: v + 4, len }))
            }
            None => Ok(None),
        }
    }

    /// A byte-vector field as a slice and its absolute start.
    pub fn byte_vector(&self, slot: usize) -> Result<Option<(usize, &'a [u8])>, FbError> {
        match self.vector(slot, 1)? {
            Some(v) => Ok(Some((v.start, self.fb.bytes(v.start, v.len)?))),
            None => Ok(None),
        }
    }

    pub fn string(&self, slot: usize) -> Result<Option<&'a str>, FbError> {
        match self.byte_vector(slot)? {
            Some((start, b)) => core::str::from_utf8(b)
                .map(Some)
                .map_err(|_| FbError::BadUtf8 { pos: start }),
            None => Ok(None),
        }
    }

    pub fn fb(&self) -> Fb<'a> {
        self.fb
    }
}

impl Vector {
    /// The table at index `i` of a vector of tables.
    pub fn table<'a>(&self, fb: Fb<'a>, i: usize) -> Result<Table<'a>, FbError> {
        let p = self.start + 4 * i;
        let t = fb.deref(p)?;
        fb.table(t)
    }
    pub fn pos(&self, i: usize, elem: usize) -> usize {
        self.start + i * elem
    }
}
