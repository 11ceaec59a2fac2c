//! [`Program`]: a verified `.pte` plus its external data files, and [`MethodMeta`].

use std::sync::Arc;

use pteron_format::{
    parse_program, parse_ptd, FlatTensorDesc, PlanDesc, ProgramDesc, ScalarType, ShapeDynamism,
    ValueDesc,
};

use crate::error::{Error, Result};
use crate::memory::Bytes;

/// A loaded, verified program. Cheap to clone (shared).
#[derive(Clone)]
pub struct Program {
    pub(crate) bytes: Bytes,
    pub(crate) desc: Arc<ProgramDesc>,
    pub(crate) external: Vec<(Bytes, Arc<FlatTensorDesc>)>,
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
            bytes,
            desc: Arc::new(desc),
            external: Vec::new(),
        })
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

    pub fn bytes(&self) -> &[u8] {
        self.bytes.bytes()
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
