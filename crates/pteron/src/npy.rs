//! Reading and writing NumPy `.npy` files (format versions 1–3, little-endian,
//! C order), the CLI's and tests' tensor interchange format.

use std::io::Write;
use std::path::Path;

use pteron_runtime::{DimOrder, ScalarType, Shape, TensorRef};
use thiserror::Error;

/// Why an `.npy` file could not be read or written.
#[derive(Debug, Error)]
pub enum NpyError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not an .npy file: {reason}")]
    Format { path: String, reason: String },
    #[error("{path}: unsupported dtype '{descr}' (supported: f2 f4 f8 i1 i2 i4 i8 u1 b1, little-endian)")]
    Dtype { path: String, descr: String },
}

/// An owned tensor read from (or to be written to) an `.npy` file, in C order.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub dtype: ScalarType,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl NpyArray {
    /// A view of the array as a contiguous tensor.
    pub fn as_tensor(&self) -> Result<TensorRef<'_>, pteron_runtime::KernelError> {
        TensorRef::new(self.dtype, &self.shape, None, &self.data)
    }

    /// Copies a tensor view (any dim order) into a C-order array.
    pub fn from_tensor(t: &TensorRef<'_>) -> NpyArray {
        let mut data = vec![0u8; t.bytes().len()];
        let shape = Shape::new(t.sizes()).expect("rank checked by the runtime");
        pteron_runtime::copy_reorder(*t, &mut data, shape, DimOrder::contiguous(t.dim()));
        NpyArray {
            dtype: t.dtype(),
            shape: t.sizes().to_vec(),
            data,
        }
    }

    /// Elements as f64 (for summaries and comparisons).
    pub fn to_f64(&self) -> Vec<f64> {
        use half::{bf16, f16};
        let d = &self.data;
        match self.dtype {
            ScalarType::Float => bytemuck::pod_collect_to_vec::<u8, f32>(d)
                .into_iter()
                .map(f64::from)
                .collect(),
            ScalarType::Double => bytemuck::pod_collect_to_vec::<u8, f64>(d),
            ScalarType::Half => bytemuck::pod_collect_to_vec::<u8, f16>(d)
                .into_iter()
                .map(|v| v.to_f64())
                .collect(),
            ScalarType::BFloat16 => bytemuck::pod_collect_to_vec::<u8, bf16>(d)
                .into_iter()
                .map(|v| v.to_f64())
                .collect(),
            ScalarType::Char => d.iter().map(|&b| b as i8 as f64).collect(),
            ScalarType::Byte | ScalarType::Bool => d.iter().map(|&b| b as f64).collect(),
            ScalarType::Short => bytemuck::pod_collect_to_vec::<u8, i16>(d)
                .into_iter()
                .map(f64::from)
                .collect(),
            ScalarType::Int => bytemuck::pod_collect_to_vec::<u8, i32>(d)
                .into_iter()
                .map(f64::from)
                .collect(),
            ScalarType::Long => bytemuck::pod_collect_to_vec::<u8, i64>(d)
                .into_iter()
                .map(|v| v as f64)
                .collect(),
            _ => Vec::new(),
        }
    }
}

fn descr_dtype(descr: &str) -> Option<ScalarType> {
    Some(match descr {
        "<f4" | "f4" => ScalarType::Float,
        "<f8" | "f8" => ScalarType::Double,
        "<f2" | "f2" => ScalarType::Half,
        "|i1" | "i1" | "<i1" => ScalarType::Char,
        "|u1" | "u1" | "<u1" => ScalarType::Byte,
        "|b1" | "b1" | "<b1" => ScalarType::Bool,
        "<i2" | "i2" => ScalarType::Short,
        "<i4" | "i4" => ScalarType::Int,
        "<i8" | "i8" => ScalarType::Long,
        _ => return None,
    })
}

fn dtype_descr(dt: ScalarType) -> Option<&'static str> {
    Some(match dt {
        ScalarType::Float => "<f4",
        ScalarType::Double => "<f8",
        ScalarType::Half => "<f2",
        ScalarType::Char => "|i1",
        ScalarType::Byte => "|u1",
        ScalarType::Bool => "|b1",
        ScalarType::Short => "<i2",
        ScalarType::Int => "<i4",
        ScalarType::Long => "<i8",
        _ => return None,
    })
}

/// Extracts the value of `'key':` from a Python dict literal header.
fn header_field<'h>(h: &'h str, key: &str) -> Option<&'h str> {
    let pat = format!("'{key}':");
    let start = h.find(&pat)? + pat.len();
    let rest = h[start..].trim_start();
    if rest.starts_with('(') {
        let end = rest.find(')')?;
        Some(&rest[..=end])
    } else {
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        Some(rest[..end].trim())
    }
}

/// Parses `.npy` bytes; `path` is only used in messages.
pub fn parse_npy(bytes: &[u8], path: &str) -> Result<NpyArray, NpyError> {
    let ferr = |reason: &str| NpyError::Format {
        path: path.to_string(),
        reason: reason.to_string(),
    };
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(ferr("missing \\x93NUMPY magic"));
    }
    let major = bytes[6];
    let (hlen, hstart) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(ferr("truncated header"));
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(ferr(&format!("unsupported format version {v}"))),
    };
    let hend = hstart
        .checked_add(hlen)
        .filter(|e| *e <= bytes.len())
        .ok_or_else(|| ferr("truncated header"))?;
    let header =
        std::str::from_utf8(&bytes[hstart..hend]).map_err(|_| ferr("header is not text"))?;
    let descr = header_field(header, "descr").ok_or_else(|| ferr("header has no 'descr'"))?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let dtype = descr_dtype(descr).ok_or_else(|| NpyError::Dtype {
        path: path.to_string(),
        descr: descr.to_string(),
    })?;
    let fortran = header_field(header, "fortran_order")
        .ok_or_else(|| ferr("header has no 'fortran_order'"))?;
    if fortran != "False" {
        return Err(ferr(
            "Fortran-ordered arrays are not supported (save with np.ascontiguousarray)",
        ));
    }
    let shape_s = header_field(header, "shape").ok_or_else(|| ferr("header has no 'shape'"))?;
    let inner = shape_s.trim_start_matches('(').trim_end_matches(')');
    let mut shape = Vec::new();
    for part in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        shape.push(
            part.parse::<usize>()
                .map_err(|_| ferr(&format!("bad shape entry '{part}'")))?,
        );
    }
    if shape.len() > 16 {
        return Err(ferr("more than 16 dimensions"));
    }
    let n = shape
        .iter()
        .try_fold(dtype.element_size(), |a, &s| a.checked_mul(s))
        .ok_or_else(|| ferr("shape overflows"))?;
    let data = &bytes[hend..];
    if data.len() != n {
        return Err(ferr(&format!(
            "expected {n} data bytes for shape {shape:?}, found {}",
            data.len()
        )));
    }
    if dtype == ScalarType::Bool && data.iter().any(|b| *b > 1) {
        return Err(ferr("bool array holds values other than 0 and 1"));
    }
    Ok(NpyArray {
        dtype,
        shape,
        data: data.to_vec(),
    })
}

/// Reads an `.npy` file.
pub fn read_npy(path: impl AsRef<Path>) -> Result<NpyArray, NpyError> {
    let p = path.as_ref();
    let bytes = std::fs::read(p).map_err(|source| NpyError::Io {
        path: p.display().to_string(),
        source,
    })?;
    parse_npy(&bytes, &p.display().to_string())
}

/// Serialises an array as `.npy` (version 1.0) bytes.
pub fn to_npy_bytes(a: &NpyArray) -> Result<Vec<u8>, NpyError> {
    let descr = dtype_descr(a.dtype).ok_or_else(|| NpyError::Dtype {
        path: "<output>".into(),
        descr: a.dtype.name().into(),
    })?;
    let shape = match a.shape.len() {
        0 => "()".to_string(),
        1 => format!("({},)", a.shape[0]),
        _ => format!(
            "({})",
            a.shape
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let total = 10 + h.len() + 1;
    let pad = (64 - total % 64) % 64;
    h.push_str(&" ".repeat(pad));
    h.push('\n');
    let mut out = Vec::with_capacity(10 + h.len() + a.data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(&a.data);
    Ok(out)
}

/// Writes an `.npy` file.
pub fn write_npy(path: impl AsRef<Path>, a: &NpyArray) -> Result<(), NpyError> {
    let p = path.as_ref();
    let bytes = to_npy_bytes(a)?;
    let io = |source| NpyError::Io {
        path: p.display().to_string(),
        source,
    };
    let mut f = std::fs::File::create(p).map_err(io)?;
    f.write_all(&bytes).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_garbage() {
        let a = NpyArray {
            dtype: ScalarType::Float,
            shape: vec![2, 3],
            data: bytemuck::cast_slice(&[1f32, 2., 3., 4., 5., 6.]).to_vec(),
        };
        let b = to_npy_bytes(&a).unwrap();
        assert_eq!((b.len() - a.data.len()) % 64, 0);
        assert_eq!(parse_npy(&b, "x").unwrap(), a);
        assert!(matches!(
            parse_npy(b"hello world", "x"),
            Err(NpyError::Format { .. })
        ));
        let mut t = b.clone();
        t.truncate(t.len() - 1);
        assert!(matches!(parse_npy(&t, "x"), Err(NpyError::Format { .. })));
        let bad = String::from_utf8(b.clone())
            .unwrap_or_default()
            .replace("<f4", "<c8");
        if !bad.is_empty() {
            assert!(matches!(
                parse_npy(bad.as_bytes(), "x"),
                Err(NpyError::Dtype { .. })
            ));
        }
    }
}
