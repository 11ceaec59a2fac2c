//! The `.pte` program: extended header, segments and the `executorch_flatbuffer` schema,
//! decoded into owned descriptions and verified.

use core::ops::Range;

use crate::error::{At, FormatError};
use crate::fb::{Fb, Table};
use crate::scalar_type::ScalarType;

/// Highest `Program.version` this runtime reads.
pub const SUPPORTED_SCHEMA_VERSION: u32 = 0;
/// ExecuTorch's runtime tensor rank limit.
pub const MAX_RANK: usize = 16;
/// Smallest buffer we look at (same as ExecuTorch's `kNumHeadBytes`).
pub const MIN_HEAD_BYTES: usize = 64;

/// The optional `eh00` extended header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtendedHeader {
    pub length: u32,
    pub program_size: u64,
    pub segment_base_offset: u64,
    pub segment_data_size: u64,
}

/// How a tensor's shape may change at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShapeDynamism {
    Static,
    /// `sizes` are upper bounds.
    DynamicBound,
    DynamicUnbound,
}

/// Where a constant tensor's bytes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataLocation {
    Segment,
    External,
}

/// Planned-memory placement of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    /// 1-based memory arena id.
    pub memory_id: u32,
    pub offset: u64,
}

/// A serialized tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorDesc {
    pub scalar_type: ScalarType,
    pub sizes: Vec<usize>,
    pub dim_order: Vec<u8>,
    pub data_buffer_idx: u32,
    pub allocation: Option<Allocation>,
    pub dynamism: ShapeDynamism,
    pub location: DataLocation,
    pub fqn: Option<String>,
    pub mutable_data_segments_idx: u64,
}

impl TensorDesc {
    /// Number of elements for the serialized (upper-bound) sizes.
    pub fn numel(&self) -> usize {
        self.sizes.iter().product()
    }
    /// Byte size for the serialized sizes (verified not to overflow at parse).
    pub fn nbytes(&self) -> usize {
        self.numel() * self.scalar_type.element_size()
    }
}

/// A serialized `EValue`.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueDesc {
    Null,
    Int(i64),
    Bool(bool),
    Double(f64),
    Tensor(TensorDesc),
    String(String),
    /// Value indices of `Int` values (boxed, to allow symbolic ints).
    IntList(Vec<usize>),
    DoubleList(Vec<f64>),
    BoolList(Vec<bool>),
    /// Value indices of `Tensor` values.
    TensorList(Vec<usize>),
    /// Value indices of `Tensor` values; `None` for absent entries.
    OptionalTensorList(Vec<Option<usize>>),
}

impl ValueDesc {
    pub fn kind(&self) -> &'static str {
        match self {
            ValueDesc::Null => "None",
            ValueDesc::Int(_) => "Int",
            ValueDesc::Bool(_) => "Bool",
            ValueDesc::Double(_) => "Double",
            ValueDesc::Tensor(_) => "Tensor",
            ValueDesc::String(_) => "String",
            ValueDesc::IntList(_) => "IntList",
            ValueDesc::DoubleList(_) => "DoubleList",
            ValueDesc::BoolList(_) => "BoolList",
            ValueDesc::TensorList(_) => "TensorList",
            ValueDesc::OptionalTensorList(_) => "OptionalTensorList",
        }
    }
}

/// One instruction of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    Kernel {
        op_index: usize,
        args: Vec<usize>,
    },
    Delegate {
        delegate_index: usize,
        args: Vec<usize>,
    },
    Move {
        from: usize,
        to: usize,
    },
    JumpFalse {
        cond: usize,
        destination: usize,
    },
    Free {
        value: usize,
    },
}

/// An operator name as stored in the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorDesc {
    pub name: String,
    pub overload: String,
}

impl OperatorDesc {
    /// `name.overload`, or `name` for the default overload (ExecuTorch's lookup key).
    pub fn full_name(&self) -> String {
        if self.overload.is_empty() {
            self.name.clone()
        } else {
            format!("{}.{}", self.name, self.overload)
        }
    }
}

/// Where a delegate's processed payload lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelegateData {
    /// Index into `Program.backend_delegate_data`.
    Inline(usize),
    /// Index into `Program.segments`.
    Segment(usize),
}

/// A delegate (lowered subgraph) entry.
#[derive(Debug, Clone, PartialEq)]
pub struct DelegateDesc {
    pub id: String,
    pub data: DelegateData,
    /// `(key, absolute byte range of the value)`.
    pub compile_specs: Vec<(String, Range<usize>)>,
}

/// One method (`ExecutionPlan`).
#[derive(Debug, Clone, PartialEq)]
pub struct PlanDesc {
    pub name: String,
    pub values: Vec<ValueDesc>,
    pub inputs: Vec<usize>,
    pub outputs: Vec<usize>,
    /// Instructions of each chain (all current exporters emit exactly one).
    pub chains: Vec<Vec<Instruction>>,
    pub operators: Vec<OperatorDesc>,
    pub delegates: Vec<DelegateDesc>,
    /// Sizes of planned arenas; entry 0 is a reserved placeholder.
    pub non_const_buffer_sizes: Vec<u64>,
    pub encoded_inp_str: Option<String>,
    pub encoded_out_str: Option<String>,
}

/// `SubsegmentOffsets`: offsets of sub-blobs inside one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubsegmentDesc {
    pub segment_index: usize,
    pub offsets: Vec<u64>,
}

/// A whole verified `.pte` file. Ranges are absolute byte ranges of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgramDesc {
    pub header: Option<ExtendedHeader>,
    pub version: u32,
    pub plans: Vec<PlanDesc>,
    /// Legacy inline constants (`Program.constant_buffer`), absolute ranges.
    pub constant_buffer: Vec<Range<usize>>,
    /// Inline delegate payloads, absolute ranges.
    pub backend_delegate_data: Vec<Range<usize>>,
    /// Absolute ranges of every segment, verified inside the file.
    pub segments: Vec<Range<usize>>,
    pub constant_segment: Option<SubsegmentDesc>,
    pub mutable_data_segments: Vec<SubsegmentDesc>,
    /// `(key, segment index)`.
    pub named_data: Vec<(String, usize)>,
}

/// Checks the identifier and classifies the buffer like ExecuTorch's `Program::check_header`.
pub fn check_identifier(bytes: &[u8], expected: &'static str) -> Result<(), FormatError> {
    if bytes.len() < 8 {
        return Err(FormatError::TooShort {
            len: bytes.len(),
            need: 8,
        });
    }
    let id = &bytes[4..8];
    if id != expected.as_bytes() {
        let hint = if id[..2] == expected.as_bytes()[..2] {
            " (a different, incompatible schema version of this format)"
        } else {
            ""
        };
        return Err(FormatError::Identifier {
            found: String::from_utf8_lossy(id).into_owned(),
            expected,
            hint,
        });
    }
    Ok(())
}

fn parse_extended_header(
    bytes: &[u8],
    file_len: u64,
) -> Result<Option<ExtendedHeader>, FormatError> {
    if &bytes[8..12] != b"eh00" {
        return Ok(None);
    }
    let fb = Fb::new(bytes);
    let hdr = |r: Result<u64, crate::fb::FbError>| {
        r.map_err(|e| FormatError::Header {
            header: "eh00",
            reason: e.to_string(),
        })
    };
    let length = fb.u32(12).map_err(|e| FormatError::Header {
        header: "eh00",
        reason: e.to_string(),
    })?;
    if length < 24 {
        return Err(FormatError::Header {
            header: "eh00",
            reason: format!("length {length} is below the minimum of 24"),
        });
    }
    let program_size = hdr(fb.u64(16))?;
    let segment_base_offset = hdr(fb.u64(24))?;
    let segment_data_size = if length >= 32 { hdr(fb.u64(32))? } else { 0 };
    let h = ExtendedHeader {
        length,
        program_size,
        segment_base_offset,
        segment_data_size,
    };
    let len = file_len;
    if program_size > len || program_size < MIN_HEAD_BYTES as u64 {
        return Err(FormatError::Header {
            header: "eh00",
            reason: format!("program_size {program_size} is outside the file ({len} bytes)"),
        });
    }
    if segment_base_offset != 0 {
        if segment_base_offset < program_size {
            return Err(FormatError::Header {
                header: "eh00",
                reason: format!(
                    "segment_base_offset {segment_base_offset} lies inside the program data ({program_size} bytes)"
                ),
            });
        }
        let end = segment_base_offset.checked_add(segment_data_size);
        match end {
            Some(e) if e <= len => {}
            _ => {
                return Err(FormatError::Header {
                    header: "eh00",
                    reason: format!(
                        "segments end at {segment_base_offset}+{segment_data_size}, past the end of the file ({len} bytes): the file is truncated"
                    ),
                })
            }
        }
    }
    Ok(Some(h))
}

/// Parses and verifies a whole `.pte` file.
pub fn parse_program(bytes: &[u8]) -> Result<ProgramDesc, FormatError> {
    parse_program_head(bytes, bytes.len() as u64)
}

/// How many leading bytes of a `.pte` file of `file_len` bytes [`parse_program_head`]
/// needs, read from its first [`MIN_HEAD_BYTES`] bytes (`prefix`, or the whole file if
/// shorter): the FlatBuffers data (`program_size` of the `eh00` header), or the whole
/// file when there is no extended header (no segments).
pub fn program_head_len(prefix: &[u8], file_len: u64) -> Result<usize, FormatError> {
    if prefix.len() < MIN_HEAD_BYTES || file_len < MIN_HEAD_BYTES as u64 {
        return Err(FormatError::TooShort {
            len: prefix.len().min(file_len.min(usize::MAX as u64) as usize),
            need: MIN_HEAD_BYTES,
        });
    }
    check_identifier(prefix, "ET12")?;
    let n = match parse_extended_header(prefix, file_len)? {
        Some(h) => h.program_size,
        None => file_len,
    };
    usize::try_from(n).map_err(|_| FormatError::Header {
        header: "eh00",
        reason: format!("program_size {n} does not fit in memory"),
    })
}

/// Parses and verifies a `.pte` file of `file_len` bytes from its leading bytes `head`
/// (at least [`program_head_len`] of them): the FlatBuffers data is read from `head`;
/// segments are only checked to lie inside the file, and their ranges (absolute file
/// offsets) are for the caller to read when needed.
pub fn parse_program_head(bytes: &[u8], file_len: u64) -> Result<ProgramDesc, FormatError> {
    if bytes.len() < MIN_HEAD_BYTES {
        return Err(FormatError::TooShort {
            len: bytes.len(),
            need: MIN_HEAD_BYTES,
        });
    }
    check_identifier(bytes, "ET12")?;
    let header = parse_extended_header(bytes, file_len)?;
    // FlatBuffers data extends to program_size; segments start at segment_base_offset.
    let (fb_len, seg_base) = match header {
        Some(h) => (h.program_size as usize, h.segment_base_offset as usize),
        None => (bytes.len(), 0),
    };
    if fb_len > bytes.len() {
        return Err(FormatError::TooShort {
            len: bytes.len(),
            need: fb_len,
        });
    }
    let fb = Fb::new(&bytes[..fb_len]);
    let root_pos = fb.u32(0).at(|| "root".into())? as usize;
    if root_pos < 8 || root_pos + 4 > fb_len {
        return Err(FormatError::invalid(
            "root",
            format!("root table offset {root_pos} outside the program data ({fb_len} bytes)"),
        ));
    }
    let root = fb.table(root_pos).at(|| "root".into())?;
    let mut p = Parser { fb, bytes };

    let version = root.u32_or(0, 0).at(|| "version".into())?;
    if version > SUPPORTED_SCHEMA_VERSION {
        return Err(FormatError::Version {
            found: version,
            supported: SUPPORTED_SCHEMA_VERSION,
        });
    }

    // Segments first: everything else refers to them.
    let mut segments = Vec::new();
    if let Some(v) = root.vector(4, 4).at(|| "segments".into())? {
        for i in 0..v.len {
            let at = || format!("segments[{i}]");
            let t = v.table(fb, i).at(at)?;
            let off = t.u64_or(0, 0).at(at)?;
            let size = t.u64_or(1, 0).at(at)?;
            if header.is_none() && size > 0 {
                return Err(FormatError::invalid(
                    at(),
                    "a non-empty segment requires the eh00 extended header",
                ));
            }
            let start = (seg_base as u64).checked_add(off);
            let end = start.and_then(|s| s.checked_add(size));
            match (start, end) {
                (Some(s), Some(e)) if e <= file_len => segments.push(s as usize..e as usize),
                _ => {
                    return Err(FormatError::invalid(
                        at(),
                        format!(
                            "segment [{off}, +{size}) past segment base {seg_base} is outside the file ({file_len} bytes)"
                        ),
                    ))
                }
            }
        }
    }

    let mut constant_buffer = Vec::new();
    if let Some(v) = root.vector(2, 4).at(|| "constant_buffer".into())? {
        for i in 0..v.len {
            let at = || format!("constant_buffer[{i}]");
            let t = v.table(fb, i).at(at)?;
            let r = t
                .byte_vector(0)
                .at(at)?
                .map(|(s, b)| s..s + b.len())
                .unwrap_or(0..0);
            constant_buffer.push(r);
        }
    }
    let mut backend_delegate_data = Vec::new();
    if let Some(v) = root.vector(3, 4).at(|| "backend_delegate_data".into())? {
        for i in 0..v.len {
            let at = || format!("backend_delegate_data[{i}]");
            let t = v.table(fb, i).at(at)?;
            let r = t
                .byte_vector(0)
                .at(at)?
                .map(|(s, b)| s..s + b.len())
                .unwrap_or(0..0);
            backend_delegate_data.push(r);
        }
    }
    let constant_segment = match root.table(5).at(|| "constant_segment".into())? {
        Some(t) => Some(p.subsegment(t, "constant_segment".into(), &segments)?),
        None => None,
    };
    if let Some(cs) = &constant_segment {
        if cs.offsets.len() > 1 && constant_buffer.len() > 1 {
            return Err(FormatError::invalid(
                "constant_segment",
                "both constant_buffer and constant_segment hold constants",
            ));
        }
    }
    let mut mutable_data_segments = Vec::new();
    if let Some(v) = root.vector(6, 4).at(|| "mutable_data_segments".into())? {
        for i in 0..v.len {
            let at = || format!("mutable_data_segments[{i}]");
            let t = v.table(fb, i).at(at)?;
            mutable_data_segments.push(p.subsegment(t, at(), &segments)?);
        }
    }
    let mut named_data = Vec::new();
    if let Some(v) = root.vector(7, 4).at(|| "named_data".into())? {
        for i in 0..v.len {
            let at = || format!("named_data[{i}]");
            let t = v.table(fb, i).at(at)?;
            let key = t
                .string(0)
                .at(at)?
                .ok_or_else(|| FormatError::invalid(at(), "missing key"))?;
            let seg = t.u32_or(1, 0).at(at)? as usize;
            if seg >= segments.len() {
                return Err(FormatError::invalid(
                    at(),
                    format!(
                        "segment_index {seg} out of range ({} segments)",
                        segments.len()
                    ),
                ));
            }
            named_data.push((key.to_string(), seg));
        }
    }

    let mut desc = ProgramDesc {
        header,
        version,
        plans: Vec::new(),
        constant_buffer,
        backend_delegate_data,
        segments,
        constant_segment,
        mutable_data_segments,
        named_data,
    };

    let plans_v = root
        .vector(1, 4)
        .at(|| "execution_plan".into())?
        .ok_or_else(|| FormatError::invalid("execution_plan", "missing"))?;
    for i in 0..plans_v.len {
        let t = plans_v.table(fb, i).at(|| format!("execution_plan[{i}]"))?;
        let plan = p.plan(t, i, &desc)?;
        desc.plans.push(plan);
    }
    let _ = &mut p;
    Ok(desc)
}

struct Parser<'a> {
    fb: Fb<'a>,
    #[allow(dead_code)]
    bytes: &'a [u8],
}

fn index_in(
    at: impl FnOnce() -> String,
    what: &str,
    v: i64,
    len: usize,
) -> Result<usize, FormatError> {
    if v < 0 || v as u64 >= len as u64 {
        return Err(FormatError::invalid(
            at(),
            format!("{what} {v} out of range (have {len})"),
        ));
    }
    Ok(v as usize)
}

impl<'a> Parser<'a> {
    fn subsegment(
        &mut self,
        t: Table<'a>,
        at: String,
        segments: &[Range<usize>],
    ) -> Result<SubsegmentDesc, FormatError> {
        let segment_index = t.u32_or(0, 0).at(|| at.clone())? as usize;
        let mut offsets = Vec::new();
        if let Some(v) = t.vector(1, 8).at(|| format!("{at}.offsets"))? {
            for i in 0..v.len {
                offsets.push(
                    self.fb
                        .u64(v.pos(i, 8))
                        .at(|| format!("{at}.offsets[{i}]"))?,
                );
            }
        }
        let seg_len = match segments.get(segment_index) {
            Some(r) => r.len() as u64,
            None if offsets.len() <= 1 => 0,
            None => {
                return Err(FormatError::invalid(
                    at,
                    format!(
                        "segment_index {segment_index} out of range ({} segments)",
                        segments.len()
                    ),
                ))
            }
        };
        for (i, o) in offsets.iter().enumerate() {
            if *o > seg_len {
                return Err(FormatError::invalid(
                    format!("{at}.offsets[{i}]"),
                    format!("offset {o} is past the end of its segment ({seg_len} bytes)"),
                ));
            }
        }
        Ok(SubsegmentDesc {
            segment_index,
            offsets,
        })
    }

    /// A vector of fixed-width numbers (`width` bytes each, read by `read`).
    fn num_vec<T>(
        &self,
        t: &Table<'a>,
        slot: usize,
        width: usize,
        read: fn(&Fb<'a>, usize) -> Result<T, crate::fb::FbError>,
        at: &dyn Fn() -> String,
    ) -> Result<Vec<T>, FormatError> {
        let mut out = Vec::new();
        if let Some(v) = t.vector(slot, width).at(at)? {
            for i in 0..v.len {
                out.push(read(&self.fb, v.pos(i, width)).at(at)?);
            }
        }
        Ok(out)
    }

    fn int_vec(
        &self,
        t: &Table<'a>,
        slot: usize,
        at: &dyn Fn() -> String,
    ) -> Result<Vec<i32>, FormatError> {
        self.num_vec(t, slot, 4, Fb::i32, at)
    }

    fn i64_vec(
        &self,
        t: &Table<'a>,
        slot: usize,
        at: &dyn Fn() -> String,
    ) -> Result<Vec<i64>, FormatError> {
        self.num_vec(t, slot, 8, Fb::i64, at)
    }

    fn plan(
        &mut self,
        t: Table<'a>,
        pi: usize,
        prog: &ProgramDesc,
    ) -> Result<PlanDesc, FormatError> {
        let fb = self.fb;
        let base = format!("execution_plan[{pi}]");
        let name = t
            .string(0)
            .at(|| format!("{base}.name"))?
            .ok_or_else(|| FormatError::invalid(format!("{base}.name"), "missing"))?
            .to_string();
        let base = format!("execution_plan[{pi}] ({name})");
        let (encoded_inp_str, encoded_out_str) =
            match t.table(1).at(|| format!("{base}.container_meta_type"))? {
                Some(c) => (
                    c.string(0)
                        .at(|| format!("{base}.container_meta_type"))?
                        .map(String::from),
                    c.string(1)
                        .at(|| format!("{base}.container_meta_type"))?
                        .map(String::from),
                ),
                None => (None, None),
            };

        let non_const_buffer_sizes: Vec<u64> = self
            .i64_vec(&t, 8, &|| format!("{base}.non_const_buffer_sizes"))?
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                u64::try_from(s).map_err(|_| {
                    FormatError::invalid(
                        format!("{base}.non_const_buffer_sizes[{i}]"),
                        format!("negative size {s}"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        if t.field(8, 4).at(|| base.clone())?.is_none() {
            return Err(FormatError::invalid(
                format!("{base}.non_const_buffer_sizes"),
                "missing",
            ));
        }

        // Values.
        let vals = t
            .vector(2, 4)
            .at(|| format!("{base}.values"))?
            .ok_or_else(|| FormatError::invalid(format!("{base}.values"), "missing"))?;
        let n_values = vals.len;
        let mut values = Vec::with_capacity(n_values);
        for vi in 0..n_values {
            let at = || format!("{base}.values[{vi}]");
            let ev = vals.table(fb, vi).at(at)?;
            let tag = ev.u8_or(0, 0).at(at)?;
            let payload = ev.table(1).at(at)?;
            let need = |p: Option<Table<'a>>| {
                p.ok_or_else(|| FormatError::invalid(at(), "union payload missing"))
            };
            let v = match tag {
                1 => ValueDesc::Null,
                2 => ValueDesc::Int(need(payload)?.i64_or(0, 0).at(at)?),
                3 => ValueDesc::Bool(need(payload)?.bool_or(0, false).at(at)?),
                4 => ValueDesc::Double(need(payload)?.f64_or(0, 0.0).at(at)?),
                5 => ValueDesc::Tensor(self.tensor(
                    need(payload)?,
                    &at,
                    &non_const_buffer_sizes,
                    prog,
                )?),
                6 => ValueDesc::String(need(payload)?.string(0).at(at)?.unwrap_or("").to_string()),
                7 => {
                    let items = self.i64_vec(&need(payload)?, 0, &at)?;
                    let mut out = Vec::with_capacity(items.len());
                    for (k, it) in items.into_iter().enumerate() {
                        out.push(index_in(
                            || format!("{}.int_list[{k}]", at()),
                            "value index",
                            it,
                            n_values,
                        )?);
                    }
                    ValueDesc::IntList(out)
                }
                8 => {
                    let pt = need(payload)?;
                    let mut out = Vec::new();
                    if let Some(v) = pt.vector(0, 8).at(at)? {
                        for k in 0..v.len {
                            out.push(fb.f64(v.pos(k, 8)).at(at)?);
                        }
                    }
                    ValueDesc::DoubleList(out)
                }
                9 => {
                    let pt = need(payload)?;
                    let b = pt.byte_vector(0).at(at)?.map(|(_, b)| b).unwrap_or(&[]);
                    ValueDesc::BoolList(b.iter().map(|x| *x != 0).collect())
                }
                10 => {
                    let items = self.int_vec(&need(payload)?, 0, &at)?;
                    let mut out = Vec::with_capacity(items.len());
                    for (k, it) in items.into_iter().enumerate() {
                        out.push(index_in(
                            || format!("{}.tensor_list[{k}]", at()),
                            "value index",
                            it as i64,
                            n_values,
                        )?);
                    }
                    ValueDesc::TensorList(out)
                }
                11 => {
                    let items = self.int_vec(&need(payload)?, 0, &at)?;
                    let mut out = Vec::with_capacity(items.len());
                    for (k, it) in items.into_iter().enumerate() {
                        if it == -1 {
                            out.push(None);
                        } else {
                            out.push(Some(index_in(
                                || format!("{}.optional_tensor_list[{k}]", at()),
                                "value index",
                                it as i64,
                                n_values,
                            )?));
                        }
                    }
                    ValueDesc::OptionalTensorList(out)
                }
                other => {
                    return Err(FormatError::invalid(
                        at(),
                        format!("unknown EValue union tag {other}"),
                    ))
                }
            };
            values.push(v);
        }
        // Cross-value checks: list elements must have the right kinds.
        for (vi, v) in values.iter().enumerate() {
            let at = || format!("{base}.values[{vi}]");
            match v {
                ValueDesc::IntList(items) => {
                    for (k, &it) in items.iter().enumerate() {
                        if !matches!(values[it], ValueDesc::Int(_)) {
                            return Err(FormatError::invalid(
                                format!("{}.int_list[{k}]", at()),
                                format!(
                                    "refers to value {it}, a {} (expected Int)",
                                    values[it].kind()
                                ),
                            ));
                        }
                    }
                }
                ValueDesc::TensorList(items) => {
                    for (k, &it) in items.iter().enumerate() {
                        if !matches!(values[it], ValueDesc::Tensor(_)) {
                            return Err(FormatError::invalid(
                                format!("{}.tensor_list[{k}]", at()),
                                format!(
                                    "refers to value {it}, a {} (expected Tensor)",
                                    values[it].kind()
                                ),
                            ));
                        }
                    }
                }
                ValueDesc::OptionalTensorList(items) => {
                    for (k, it) in items.iter().enumerate() {
                        if let Some(it) = *it {
                            if !matches!(values[it], ValueDesc::Tensor(_) | ValueDesc::Null) {
                                return Err(FormatError::invalid(
                                    format!("{}.optional_tensor_list[{k}]", at()),
                                    format!(
                                        "refers to value {it}, a {} (expected Tensor or None)",
                                        values[it].kind()
                                    ),
                                ));
                            }
                        }
                    }
                }
                _ => {}
            }
        }

        let idx_list = |slot: usize, what: &str| -> Result<Vec<usize>, FormatError> {
            let at = || format!("{base}.{what}");
            let raw = self.int_vec(&t, slot, &at)?;
            if t.field(slot, 4).at(at)?.is_none() {
                return Err(FormatError::invalid(at(), "missing"));
            }
            raw.into_iter()
                .enumerate()
                .map(|(k, v)| {
                    index_in(
                        || format!("{}[{k}]", at()),
                        "value index",
                        v as i64,
                        n_values,
                    )
                })
                .collect()
        };
        let inputs = idx_list(3, "inputs")?;
        let outputs = idx_list(4, "outputs")?;

        // Operators.
        let mut operators = Vec::new();
        if let Some(v) = t.vector(6, 4).at(|| format!("{base}.operators"))? {
            for k in 0..v.len {
                let at = || format!("{base}.operators[{k}]");
                let o = v.table(fb, k).at(at)?;
                let name = o
                    .string(0)
                    .at(at)?
                    .ok_or_else(|| FormatError::invalid(at(), "missing name"))?;
                let overload = o.string(1).at(at)?.unwrap_or("");
                operators.push(OperatorDesc {
                    name: name.to_string(),
                    overload: overload.to_string(),
                });
            }
        }

        // Delegates.
        let mut delegates = Vec::new();
        if let Some(v) = t.vector(7, 4).at(|| format!("{base}.delegates"))? {
            for k in 0..v.len {
                let at = || format!("{base}.delegates[{k}]");
                let d = v.table(fb, k).at(at)?;
                let id = d
                    .string(0)
                    .at(at)?
                    .ok_or_else(|| FormatError::invalid(at(), "missing id"))?;
                let r = d.table(1).at(at)?.ok_or_else(|| {
                    FormatError::invalid(at(), "missing processed data reference")
                })?;
                let loc = r.u8_or(0, 0).at(at)?;
                let idx = r.u32_or(1, 0).at(at)? as usize;
                let data = match loc {
                    0 => {
                        index_in(
                            || format!("{}.processed", at()),
                            "inline data index",
                            idx as i64,
                            prog.backend_delegate_data.len(),
                        )?;
                        DelegateData::Inline(idx)
                    }
                    1 => {
                        index_in(
                            || format!("{}.processed", at()),
                            "segment index",
                            idx as i64,
                            prog.segments.len(),
                        )?;
                        DelegateData::Segment(idx)
                    }
                    other => {
                        return Err(FormatError::invalid(
                            format!("{}.processed.location", at()),
                            format!("unknown data location {other}"),
                        ))
                    }
                };
                let mut compile_specs = Vec::new();
                if let Some(cv) = d.vector(2, 4).at(at)? {
                    for c in 0..cv.len {
                        let ct = cv.table(fb, c).at(at)?;
                        let key = ct.string(0).at(at)?.unwrap_or("").to_string();
                        let val = ct
                            .byte_vector(1)
                            .at(at)?
                            .map(|(s, b)| s..s + b.len())
                            .unwrap_or(0..0);
                        compile_specs.push((key, val));
                    }
                }
                delegates.push(DelegateDesc {
                    id: id.to_string(),
                    data,
                    compile_specs,
                });
            }
        }

        // Chains.
        let chains_v = t
            .vector(5, 4)
            .at(|| format!("{base}.chains"))?
            .ok_or_else(|| FormatError::invalid(format!("{base}.chains"), "missing"))?;
        let mut chains = Vec::new();
        for c in 0..chains_v.len {
            let cat = || format!("{base}.chains[{c}]");
            let ct = chains_v.table(fb, c).at(cat)?;
            let mut instrs = Vec::new();
            let iv = ct.vector(2, 4).at(cat)?;
            let n_instr = iv.map(|v| v.len).unwrap_or(0);
            if let Some(iv) = iv {
                for k in 0..iv.len {
                    let at = || format!("{base}.chains[{c}].instructions[{k}]");
                    let it = iv.table(fb, k).at(at)?;
                    let tag = it.u8_or(0, 0).at(at)?;
                    let a = it
                        .table(1)
                        .at(at)?
                        .ok_or_else(|| FormatError::invalid(at(), "instruction payload missing"))?;
                    let vidx = |v: i64, what: &str| {
                        index_in(|| format!("{}.{what}", at()), "value index", v, n_values)
                    };
                    let args = |slot: usize| -> Result<Vec<usize>, FormatError> {
                        let raw = self.int_vec(&a, slot, &at)?;
                        raw.into_iter()
                            .enumerate()
                            .map(|(j, v)| {
                                index_in(
                                    || format!("{}.args[{j}]", at()),
                                    "value index",
                                    v as i64,
                                    n_values,
                                )
                            })
                            .collect()
                    };
                    let ins = match tag {
                        1 => {
                            let op = a.i32_or(0, 0).at(at)? as i64;
                            let op_index = index_in(
                                || format!("{}.op_index", at()),
                                "operator index",
                                op,
                                operators.len(),
                            )?;
                            Instruction::Kernel {
                                op_index,
                                args: args(1)?,
                            }
                        }
                        2 => {
                            let d = a.i32_or(0, 0).at(at)? as i64;
                            let delegate_index = index_in(
                                || format!("{}.delegate_index", at()),
                                "delegate index",
                                d,
                                delegates.len(),
                            )?;
                            Instruction::Delegate {
                                delegate_index,
                                args: args(1)?,
                            }
                        }
                        3 => Instruction::Move {
                            from: vidx(a.i32_or(0, 0).at(at)? as i64, "move_from")?,
                            to: vidx(a.i32_or(1, 0).at(at)? as i64, "move_to")?,
                        },
                        4 => {
                            let cond = vidx(a.i32_or(0, 0).at(at)? as i64, "cond_value_index")?;
                            let dest = a.i32_or(1, 0).at(at)? as i64;
                            if dest < 0 || dest as u64 > n_instr as u64 {
                                return Err(FormatError::invalid(
                                    format!("{}.destination_instruction", at()),
                                    format!("jump target {dest} outside the chain ({n_instr} instructions)"),
                                ));
                            }
                            Instruction::JumpFalse {
                                cond,
                                destination: dest as usize,
                            }
                        }
                        5 => Instruction::Free {
                            value: vidx(a.i32_or(0, 0).at(at)? as i64, "value_index")?,
                        },
                        other => {
                            return Err(FormatError::invalid(
                                at(),
                                format!("unknown instruction union tag {other}"),
                            ))
                        }
                    };
                    instrs.push(ins);
                }
            }
            chains.push(instrs);
        }

        Ok(PlanDesc {
            name,
            values,
            inputs,
            outputs,
            chains,
            operators,
            delegates,
            non_const_buffer_sizes,
            encoded_inp_str,
            encoded_out_str,
        })
    }

    fn tensor(
        &mut self,
        t: Table<'a>,
        at: &dyn Fn() -> String,
        buffer_sizes: &[u64],
        prog: &ProgramDesc,
    ) -> Result<TensorDesc, FormatError> {
        let fb = self.fb;
        let tat = || format!("{}.tensor", at());
        let code = t.u8_or(0, 0).at(tat)?;
        let scalar_type = ScalarType::from_code(code).ok_or_else(|| {
            FormatError::invalid(
                format!("{}.scalar_type", tat()),
                format!("unknown scalar type code {code}"),
            )
        })?;
        let storage_offset = t.i32_or(1, 0).at(tat)?;
        if storage_offset != 0 {
            return Err(FormatError::invalid(
                format!("{}.storage_offset", tat()),
                format!("non-zero storage offset {storage_offset} is not supported"),
            ));
        }
        let sizes_v = t
            .vector(2, 4)
            .at(tat)?
            .ok_or_else(|| FormatError::invalid(format!("{}.sizes", tat()), "missing"))?;
        if sizes_v.len > MAX_RANK {
            return Err(FormatError::invalid(
                format!("{}.sizes", tat()),
                format!("rank {} exceeds the limit of {MAX_RANK}", sizes_v.len),
            ));
        }
        let mut sizes = Vec::with_capacity(sizes_v.len);
        for k in 0..sizes_v.len {
            let s = fb.i32(sizes_v.pos(k, 4)).at(tat)?;
            if s < 0 {
                return Err(FormatError::invalid(
                    format!("{}.sizes[{k}]", tat()),
                    format!("negative size {s}"),
                ));
            }
            sizes.push(s as usize);
        }
        let dim_order = match t.byte_vector(3).at(tat)? {
            Some((_, b)) => b.to_vec(),
            None => (0..sizes.len() as u8).collect(),
        };
        if dim_order.len() != sizes.len() {
            return Err(FormatError::invalid(
                format!("{}.dim_order", tat()),
                format!(
                    "has {} entries for a rank-{} tensor",
                    dim_order.len(),
                    sizes.len()
                ),
            ));
        }
        let mut seen = [false; MAX_RANK];
        for &d in &dim_order {
            if (d as usize) >= sizes.len() || seen[d as usize] {
                return Err(FormatError::invalid(
                    format!("{}.dim_order", tat()),
                    format!("{dim_order:?} is not a permutation of 0..{}", sizes.len()),
                ));
            }
            seen[d as usize] = true;
        }
        let numel = sizes
            .iter()
            .try_fold(1usize, |a, &s| a.checked_mul(s))
            .and_then(|n| n.checked_mul(scalar_type.element_size()))
            .filter(|n| *n <= isize::MAX as usize)
            .ok_or_else(|| {
                FormatError::invalid(
                    format!("{}.sizes", tat()),
                    format!("{sizes:?} overflows the byte size"),
                )
            })?;
        let nbytes = numel;
        let data_buffer_idx = t.u32_or(5, 0).at(tat)?;
        let allocation = match t.table(6).at(tat)? {
            Some(a) => {
                let memory_id = a.u32_or(0, 0).at(tat)?;
                let lo = a.u32_or(1, 0).at(tat)? as u64;
                let hi = a.u32_or(2, 0).at(tat)? as u64;
                let offset = lo | (hi << 32);
                Some(Allocation { memory_id, offset })
            }
            None => None,
        };
        let dynamism = match t.u8_or(8, 0).at(tat)? {
            0 => ShapeDynamism::Static,
            1 => ShapeDynamism::DynamicBound,
            2 => ShapeDynamism::DynamicUnbound,
            o => {
                return Err(FormatError::invalid(
                    format!("{}.shape_dynamism", tat()),
                    format!("unknown value {o}"),
                ))
            }
        };
        let (location, fqn, mutable_data_segments_idx) = match t.table(9).at(tat)? {
            Some(e) => {
                let idx = e.u64_or(0, 0).at(tat)?;
                let fqn = e.string(1).at(tat)?.map(String::from);
                let loc = match e.u8_or(2, 0).at(tat)? {
                    0 => DataLocation::Segment,
                    1 => DataLocation::External,
                    o => {
                        return Err(FormatError::invalid(
                            format!("{}.extra_tensor_info.location", tat()),
                            format!("unknown value {o}"),
                        ))
                    }
                };
                (loc, fqn, idx)
            }
            None => (DataLocation::Segment, None, 0),
        };
        let desc = TensorDesc {
            scalar_type,
            sizes,
            dim_order,
            data_buffer_idx,
            allocation,
            dynamism,
            location,
            fqn,
            mutable_data_segments_idx,
        };

        // Data placement checks (table 1.6 of the internals reference).
        if let Some(a) = allocation {
            if a.memory_id == 0 || a.memory_id as usize >= buffer_sizes.len() {
                return Err(FormatError::invalid(
                    format!("{}.allocation_info.memory_id", tat()),
                    format!(
                        "memory id {} is not a planned arena (the method has {})",
                        a.memory_id,
                        buffer_sizes.len().saturating_sub(1)
                    ),
                ));
            }
            let arena = buffer_sizes[a.memory_id as usize];
            let end = a.offset.checked_add(nbytes as u64);
            if end.is_none_or(|e| e > arena) {
                return Err(FormatError::invalid(
                    format!("{}.allocation_info", tat()),
                    format!(
                        "[{}, +{nbytes}) does not fit in arena {} of {arena} bytes",
                        a.offset, a.memory_id
                    ),
                ));
            }
        }
        if location == DataLocation::External {
            if desc.fqn.is_none() {
                return Err(FormatError::invalid(
                    format!("{}.extra_tensor_info", tat()),
                    "external tensor has no fully qualified name",
                ));
            }
        } else if data_buffer_idx > 0 {
            let idx = data_buffer_idx as usize;
            if allocation.is_some() {
                // Mutable tensor with initial data, always from mutable_data_segments[0].
                let seg = prog.mutable_data_segments.first().ok_or_else(|| {
                    FormatError::invalid(
                        format!("{}.data_buffer_idx", tat()),
                        "initial mutable data requested but the program has no mutable data segment",
                    )
                })?;
                check_subsegment(seg, idx, nbytes, &prog.segments, &|| {
                    format!("{}.data_buffer_idx", tat())
                })?;
            } else if let Some(cs) = prog
                .constant_segment
                .as_ref()
                .filter(|c| c.offsets.len() > 1)
            {
                check_subsegment(cs, idx, nbytes, &prog.segments, &|| {
                    format!("{}.data_buffer_idx", tat())
                })?;
            } else {
                let r = prog.constant_buffer.get(idx).ok_or_else(|| {
                    FormatError::invalid(
                        format!("{}.data_buffer_idx", tat()),
                        format!(
                            "constant {idx} does not exist ({} inline constants)",
                            prog.constant_buffer.len()
                        ),
                    )
                })?;
                if r.len() < nbytes {
                    return Err(FormatError::invalid(
                        format!("{}.data_buffer_idx", tat()),
                        format!(
                            "inline constant {idx} holds {} bytes, tensor needs {nbytes}",
                            r.len()
                        ),
                    ));
                }
            }
        }
        Ok(desc)
    }
}

fn check_subsegment(
    s: &SubsegmentDesc,
    idx: usize,
    nbytes: usize,
    segments: &[Range<usize>],
    at: &dyn Fn() -> String,
) -> Result<(), FormatError> {
    let off = *s.offsets.get(idx).ok_or_else(|| {
        FormatError::invalid(
            at(),
            format!(
                "buffer index {idx} out of range ({} offsets)",
                s.offsets.len()
            ),
        )
    })?;
    let seg_len = segments.get(s.segment_index).map(|r| r.len()).unwrap_or(0) as u64;
    if off.checked_add(nbytes as u64).is_none_or(|e| e > seg_len) {
        return Err(FormatError::invalid(
            at(),
            format!("data [{off}, +{nbytes}) runs past its segment ({seg_len} bytes)"),
        ));
    }
    Ok(())
}

impl ProgramDesc {
    /// Absolute byte range of a constant tensor's data (`data_buffer_idx > 0`, no allocation).
    pub fn constant_range(&self, t: &TensorDesc) -> Option<Range<usize>> {
        let idx = t.data_buffer_idx as usize;
        if idx == 0 {
            return None;
        }
        if let Some(cs) = self
            .constant_segment
            .as_ref()
            .filter(|c| c.offsets.len() > 1)
        {
            let seg = self.segments.get(cs.segment_index)?;
            let start = seg.start + *cs.offsets.get(idx)? as usize;
            return Some(start..start + t.nbytes());
        }
        let r = self.constant_buffer.get(idx)?;
        Some(r.start..r.start + t.nbytes())
    }

    /// Absolute byte range of a mutable tensor's initial data.
    pub fn mutable_init_range(&self, t: &TensorDesc) -> Option<Range<usize>> {
        let idx = t.data_buffer_idx as usize;
        let ms = self.mutable_data_segments.first()?;
        let seg = self.segments.get(ms.segment_index)?;
        let start = seg.start + *ms.offsets.get(idx)? as usize;
        Some(start..start + t.nbytes())
    }

    /// Absolute byte range of a delegate's processed payload.
    pub fn delegate_range(&self, d: &DelegateDesc) -> Option<Range<usize>> {
        match d.data {
            DelegateData::Inline(i) => self.backend_delegate_data.get(i).cloned(),
            DelegateData::Segment(i) => self.segments.get(i).cloned(),
        }
    }

    /// Absolute byte range of a named blob stored in the program.
    pub fn named_data_range(&self, key: &str) -> Option<Range<usize>> {
        self.named_data
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, s)| self.segments.get(*s).cloned())
    }

    pub fn plan(&self, name: &str) -> Option<&PlanDesc> {
        self.plans.iter().find(|p| p.name == name)
    }
}
