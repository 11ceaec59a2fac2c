//! [`Program`]: a verified `.pte` plus its external data files, and [`MethodMeta`].

use core::ops::Range;
use std::sync::Arc;

use pteron_format::{
    parse_program, parse_program_head, parse_ptd, program_head_len, FlatTensorDesc, PlanDesc,
    ProgramDesc, ScalarType, ShapeDynamism, ValueDesc, MIN_HEAD_BYTES,
};

use crate::error::{Error, Result};
use crate::memory::{Bytes, DataLoader, FileLoader};

/// A loaded, verified program. Cheap to clone (shared).
///
/// The file is held either whole (loaded from memory: [`Program::load`]) or in pieces
/// ([`Program::from_loader`], [`Program::from_file`]): the FlatBuffers data and the
/// constant segment stay in memory, and every other segment (initial mutable data,
/// delegate payloads, named data such as XNNPACK weights) is read when a method is
/// loaded and dropped once copied into its arenas or packed by its delegate.
#[derive(Clone)]
pub struct Program {
    /// Resident pieces of the file: `(file offset, bytes)`, the FlatBuffers data first.
    pub(crate) pieces: Vec<(usize, Bytes)>,
    /// Where non-resident ranges are read from (`None`: the whole file is resident).
    pub(crate) loader: Option<Arc<dyn DataLoader>>,
    pub(crate) file_len: usize,
    pub(crate) desc: Arc<ProgramDesc>,
    pub(crate) external: Vec<(Bytes, Arc<FlatTensorDesc>)>,
}

/// Bytes of one range of the program file: borrowed from a resident piece, or read.
pub(crate) enum FileData<'a> {
    Borrowed(&'a [u8]),
    Owned(Bytes),
}

impl FileData<'_> {
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            FileData::Borrowed(b) => b,
            FileData::Owned(b) => b.bytes(),
        }
    }
}

/// Static description of a tensor input or output.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub dtype: ScalarType,
    /// Serialized sizes (upper bounds for dynamic tensors).
    pub sizes: Vec<usize>,
    pub dim_order: Vec<u8>,
    pub dynamism: ShapeDynamism,
    /// True if the runtime owns planned memory for it.
    pub memory_planned: bool,
    pub nbytes: usize,
}

/// Static description of a method input or output value.
#[derive(Debug, Clone, PartialEq)]
pub enum IoInfo {
    Tensor(TensorInfo),
    /// A non-tensor value (Int, Double, Bool, String, None...), named by kind.
    Other(&'static str),
}

/// What a method needs and does, without loading it.
#[derive(Debug, Clone)]
pub struct MethodMeta {
    pub name: String,
    pub inputs: Vec<IoInfo>,
    pub outputs: Vec<IoInfo>,
    /// Sizes of planned arenas (the reserved entry 0 removed).
    pub planned_buffers: Vec<u64>,
    /// Operator names with the number of instructions calling each, in first-use order.
    pub operators: Vec<(String, usize)>,
    /// Delegates: backend id and payload size.
    pub delegates: Vec<(String, usize)>,
    pub num_instructions: usize,
}

fn io_info(plan: &PlanDesc, v: usize) -> IoInfo {
    match &plan.values[v] {
        ValueDesc::Tensor(t) => IoInfo::Tensor(TensorInfo {
            dtype: t.scalar_type,
            sizes: t.sizes.clone(),
            dim_order: t.dim_order.clone(),
            dynamism: t.dynamism,
            memory_planned: t.allocation.is_some() || t.data_buffer_idx != 0,
            nbytes: t.nbytes(),
        }),
        other => IoInfo::Other(other.kind()),
    }
}

impl Program {
    /// Parses and verifies a program held in `bytes`.
    pub fn load(bytes: Bytes) -> Result<Program> {
        let desc = parse_program(bytes.bytes())?;
        Ok(Program {
            file_len: bytes.bytes().len(),
            pieces: vec![(0, bytes)],
            loader: None,
            desc: Arc::new(desc),
            external: Vec::new(),
        })
    }

    /// Opens, parses and verifies the `.pte` file at `path`, reading it piece by piece
    /// (see [`Program::from_loader`]).
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Program> {
        let path = path.as_ref();
        let loader = FileLoader::open(path).map_err(|source| Error::Read {
            what: format!("{} (open)", path.display()),
            offset: 0,
            len: 0,
            source,
        })?;
        Self::from_loader(Arc::new(loader))
    }

    /// Parses and verifies a program read through `loader`: its leading bytes (header
    /// and FlatBuffers data) and its constant segment are read now and kept; initial
    /// mutable data is read by [`crate::Method::load`] into the method's arenas, and
    /// delegate payloads and named data while the delegate that uses them is
    /// initialised, then freed. Peak memory is then
    /// what the methods keep (constants, packed weights, arenas) plus the largest
    /// delegate's data, instead of the whole file plus what the methods keep.
    pub fn from_loader(loader: Arc<dyn DataLoader>) -> Result<Program> {
        let file_len = loader.len();
        let read = |what: &str, offset: u64, len: usize| {
            loader.load(offset, len).map_err(|source| Error::Read {
                what: what.to_string(),
                offset,
                len,
                source,
            })
        };
        let prefix_len = file_len.min(MIN_HEAD_BYTES as u64) as usize;
        let prefix = read("the file header", 0, prefix_len)?;
        let head_len = program_head_len(prefix.bytes(), file_len)?;
        let head = read("the program data", 0, head_len)?;
        let desc = parse_program_head(head.bytes(), file_len)?;
        let mut pieces: Vec<(usize, Bytes)> = vec![(0, head)];
        // Constants are viewed in place by methods: keep them. (Initial mutable data is
        // read when a method loads, into its arenas, and not kept.)
        let keep = desc
            .constant_segment
            .as_ref()
            .filter(|c| c.offsets.len() > 1)
            .and_then(|c| Some((c.segment_index, desc.segments.get(c.segment_index)?)));
        if let Some((si, r)) = keep {
            if !r.is_empty() && !pieces.iter().any(|(s, b)| covers(*s, b, r)) {
                let buf = read(&format!("segment {si}"), r.start as u64, r.len())?;
                pieces.push((r.start, buf));
            }
        }
        Ok(Program {
            pieces,
            loader: Some(loader),
            file_len: file_len as usize,
            desc: Arc::new(desc),
            external: Vec::new(),
        })
    }

    /// The resident piece holding file range `r`: `(piece index, offset in the piece)`.
    pub(crate) fn resident(&self, r: &Range<usize>) -> Option<(usize, usize)> {
        self.pieces
            .iter()
            .position(|(s, b)| covers(*s, b, r))
            .map(|k| (k, r.start - self.pieces[k].0))
    }

    /// The bytes of file range `r`: borrowed when resident, read otherwise.
    pub(crate) fn file_range(&self, what: &str, r: Range<usize>) -> Result<FileData<'_>> {
        if let Some((k, off)) = self.resident(&r) {
            return Ok(FileData::Borrowed(
                &self.pieces[k].1.bytes()[off..off + r.len()],
            ));
        }
        let err = |source| Error::Read {
            what: what.to_string(),
            offset: r.start as u64,
            len: r.len(),
            source,
        };
        match &self.loader {
            Some(l) => Ok(FileData::Owned(
                l.load(r.start as u64, r.len()).map_err(err)?,
            )),
            None => Err(err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "range outside the program bytes",
            ))),
        }
    }

    /// The file's length in bytes.
    pub fn file_len(&self) -> usize {
        self.file_len
    }

    /// Attaches an external tensor-data file (`.ptd`); external constants are looked up
    /// in attached files in order.
    pub fn add_data_file(&mut self, bytes: Bytes) -> Result<()> {
        let d = parse_ptd(bytes.bytes())?;
        self.external.push((bytes, Arc::new(d)));
        Ok(())
    }

    pub fn desc(&self) -> &ProgramDesc {
        &self.desc
    }

    /// The program's resident leading bytes: the whole file when loaded from memory,
    /// the header and FlatBuffers data when loaded piece by piece.
    pub fn bytes(&self) -> &[u8] {
        self.pieces[0].1.bytes()
    }

    pub fn method_names(&self) -> impl Iterator<Item = &str> {
        self.desc.plans.iter().map(|p| p.name.as_str())
    }

    pub(crate) fn plan(&self, name: &str) -> Result<&PlanDesc> {
        self.desc.plan(name).ok_or_else(|| Error::MethodNotFound {
            name: name.to_string(),
            available: self.method_names().map(String::from).collect(),
        })
    }

    /// Describes method `name`.
    pub fn method_meta(&self, name: &str) -> Result<MethodMeta> {
        let plan = self.plan(name)?;
        let mut operators: Vec<(String, usize)> = Vec::new();
        let mut n_instr = 0;
        for chain in &plan.chains {
            for ins in chain {
                n_instr += 1;
                if let pteron_format::Instruction::Kernel { op_index, .. } = ins {
                    let n = plan.operators[*op_index].full_name();
                    match operators.iter_mut().find(|(o, _)| *o == n) {
                        Some((_, c)) => *c += 1,
                        None => operators.push((n, 1)),
                    }
                }
            }
        }
        Ok(MethodMeta {
            name: plan.name.clone(),
            inputs: plan.inputs.iter().map(|&v| io_info(plan, v)).collect(),
            outputs: plan.outputs.iter().map(|&v| io_info(plan, v)).collect(),
            planned_buffers: plan
                .non_const_buffer_sizes
                .iter()
                .skip(1)
                .copied()
                .collect(),
            operators,
            delegates: plan
                .delegates
                .iter()
                .map(|d| {
                    (
                        d.id.clone(),
                        self.desc.delegate_range(d).map(|r| r.len()).unwrap_or(0),
                    )
                })
                .collect(),
            num_instructions: n_instr,
        })
    }
}

/// Whether the piece at file offset `start` holding `b` contains file range `r`.
fn covers(start: usize, b: &Bytes, r: &Range<usize>) -> bool {
    r.start >= start && r.end <= start + b.bytes().len()
}
