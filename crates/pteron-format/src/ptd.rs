//! External tensor data files (`.ptd`, `flat_tensor.fbs`, identifier `FT01`, header `FH01`).

use core::ops::Range;

use crate::error::{At, FormatError};
use crate::fb::Fb;
use crate::scalar_type::ScalarType;

/// Optional layout recorded for a named blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorLayout {
    pub scalar_type: ScalarType,
    pub sizes: Vec<usize>,
    pub dim_order: Vec<u8>,
}

impl TensorLayout {
    pub fn nbytes(&self) -> Option<usize> {
        self.sizes
            .iter()
            .try_fold(self.scalar_type.element_size(), |a, &s| a.checked_mul(s))
    }
}

/// One named blob of a `.ptd` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedBlob {
    pub key: String,
    /// Absolute byte range in the file.
    pub range: Range<usize>,
    pub layout: Option<TensorLayout>,
}

/// A verified `.ptd` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlatTensorDesc {
    pub version: u32,
    pub blobs: Vec<NamedBlob>,
}

impl FlatTensorDesc {
    pub fn get(&self, key: &str) -> Option<&NamedBlob> {
        self.blobs.iter().find(|b| b.key == key)
    }
}

fn hdr_err(reason: impl Into<String>) -> FormatError {
    FormatError::Header {
        header: "FH01",
        reason: reason.into(),
    }
}

/// Parses and verifies a `.ptd` file.
pub fn parse_ptd(bytes: &[u8]) -> Result<FlatTensorDesc, FormatError> {
    if bytes.len() < 48 {
        return Err(FormatError::TooShort {
            len: bytes.len(),
            need: 48,
        });
    }
    crate::program::check_identifier(bytes, "FT01")?;
    if &bytes[8..12] != b"FH01" {
        return Err(hdr_err("missing FH01 header magic"));
    }
    let fb = Fb::new(bytes);
    let rd = |p| fb.u64(p).map_err(|e| hdr_err(e.to_string()));
    let length = fb.u32(12).map_err(|e| hdr_err(e.to_string()))?;
    if length < 40 {
        return Err(hdr_err(format!(
            "length {length} is below the minimum of 40"
        )));
    }
    let fb_off = rd(16)?;
    let fb_size = rd(24)?;
    let seg_base = rd(32)?;
    let seg_size = rd(40)?;
    let len = bytes.len() as u64;
    let fb_end = fb_off
        .checked_add(fb_size)
        .filter(|e| *e <= len)
        .ok_or_else(|| {
            hdr_err(format!(
                "flatbuffer [{fb_off}, +{fb_size}) is outside the file ({len} bytes)"
            ))
        })?;
    seg_base
        .checked_add(seg_size)
        .filter(|e| *e <= len)
        .ok_or_else(|| {
            hdr_err(format!(
                "segment data [{seg_base}, +{seg_size}) is outside the file ({len} bytes): the file is truncated"
            ))
        })?;
    let fb = Fb::new(&bytes[..fb_end as usize]);
    let root_pos = fb.u32(0).at(|| "root".into())? as usize;
    if root_pos < 8 || root_pos + 4 > fb_end as usize {
        return Err(FormatError::invalid(
            "root",
            format!("root offset {root_pos} out of range"),
        ));
    }
    let root = fb.table(root_pos).at(|| "root".into())?;
    let version = root.u32_or(0, 0).at(|| "version".into())?;
    if version > crate::program::SUPPORTED_SCHEMA_VERSION {
        return Err(FormatError::Version {
            found: version,
            supported: crate::program::SUPPORTED_SCHEMA_VERSION,
        });
    }
    let segs_v = root
        .vector(1, 4)
        .at(|| "segments".into())?
        .ok_or_else(|| FormatError::invalid("segments", "missing"))?;
    let mut segments = Vec::new();
    for i in 0..segs_v.len {
        let at = || format!("segments[{i}]");
        let t = segs_v.table(fb, i).at(at)?;
        let off = t.u64_or(0, 0).at(at)?;
        let size = t.u64_or(1, 0).at(at)?;
        let s = seg_base.checked_add(off);
        let e = s.and_then(|s| s.checked_add(size));
        match (s, e) {
            (Some(s), Some(e)) if e <= len => segments.push(s as usize..e as usize),
            _ => {
                return Err(FormatError::invalid(
                    at(),
                    format!("segment [{off}, +{size}) is outside the file"),
                ))
            }
        }
    }
    let nd = root
        .vector(2, 4)
        .at(|| "named_data".into())?
        .ok_or_else(|| FormatError::invalid("named_data", "missing"))?;
    let mut blobs = Vec::new();
    for i in 0..nd.len {
        let at = || format!("named_data[{i}]");
        let t = nd.table(fb, i).at(at)?;
        let key = t
            .string(0)
            .at(at)?
            .ok_or_else(|| FormatError::invalid(at(), "missing key"))?;
        let seg = t.u32_or(1, 0).at(at)? as usize;
        let range = segments.get(seg).cloned().ok_or_else(|| {
            FormatError::invalid(
                at(),
                format!(
                    "segment_index {seg} out of range ({} segments)",
                    segments.len()
                ),
            )
        })?;
        let layout = match t.table(2).at(at)? {
            Some(l) => {
                let code = l.u8_or(0, 0).at(at)?;
                let scalar_type = ScalarType::from_code(code).ok_or_else(|| {
                    FormatError::invalid(
                        format!("{}.tensor_layout", at()),
                        format!("unknown scalar type {code}"),
                    )
                })?;
                let mut sizes = Vec::new();
                if let Some(v) = l.vector(1, 4).at(at)? {
                    if v.len > crate::program::MAX_RANK {
                        return Err(FormatError::invalid(
                            format!("{}.tensor_layout", at()),
                            format!("rank {} too large", v.len),
                        ));
                    }
                    for k in 0..v.len {
                        let s = fb.i32(v.pos(k, 4)).at(at)?;
                        if s < 0 {
                            return Err(FormatError::invalid(
                                format!("{}.tensor_layout.sizes", at()),
                                format!("negative size {s}"),
                            ));
                        }
                        sizes.push(s as usize);
                    }
                }
                let dim_order = l
                    .byte_vector(2)
                    .at(at)?
                    .map(|(_, b)| b.to_vec())
                    .unwrap_or_default();
                let layout = TensorLayout {
                    scalar_type,
                    sizes,
                    dim_order,
                };
                match layout.nbytes() {
                    Some(n) if n <= range.len() => {}
                    _ => {
                        return Err(FormatError::invalid(
                            format!("{}.tensor_layout", at()),
                            format!(
                                "layout needs more bytes than its segment holds ({})",
                                range.len()
                            ),
                        ))
                    }
                }
                Some(layout)
            }
            None => None,
        };
        blobs.push(NamedBlob {
            key: key.to_string(),
            range,
            layout,
        });
    }
    Ok(FlatTensorDesc { version, blobs })
}
