//! [`Method`]: one loaded execution plan with its planned memory, resolved kernels and
//! delegates; `execute` runs the instruction list without allocating.

use core::cell::{Cell, OnceCell, RefCell};

use pteron_format::{DataLocation, Instruction, ShapeDynamism, TensorDesc, ValueDesc};

use crate::error::{Error, KernelError, MissingOp, Result};
use crate::kernel::{
    distinct_tensor_args, BackendInitCtx, DelegateHandle, Kernel, KernelCtx, NodeProfile,
    PrepareCtx, Registry, Spaces,
};
use crate::memory::{AlignedBuf, Bytes, F32Buf};
use crate::program::{FileData, Program};
use crate::tensor::{strides_for, Shape, Storage, TensorRef, TensorValue};
use crate::value::{Scalar, Value};

/// ExecuTorch's default cap on executed instructions per `execute`.
pub const MAX_INSTRUCTIONS: u64 = 10_000_000;

enum Instr {
    Kernel {
        kernel: Box<dyn Kernel>,
        args: Box<[usize]>,
        /// The distinct tensor values of `args` (see `kernel::distinct_tensor_args`); `None`
        /// when the method has `Move` instructions, which may rebind values.
        tensors: Option<Box<[usize]>>,
        op: usize,
        /// For fused groups whose result had to be staged: copy value `.0` into `.1`
        /// after the kernel.
        post_copy: Option<(usize, usize)>,
    },
    Delegate {
        handle: usize,
        args: Box<[usize]>,
        tensors: Option<Box<[usize]>>,
    },
    Move {
        from: usize,
        to: usize,
    },
    JumpFalse {
        cond: usize,
        dest: usize,
    },
    Free {
        value: usize,
    },
    /// Folded into a preceding fused kernel.
    Nop,
}

/// A method ready to run.
pub struct Method {
    name: String,
    values: Vec<Value>,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
    chains: Vec<Vec<Instr>>,
    delegates: Vec<(String, Box<dyn DelegateHandle>)>,
    /// Buffers the delegates need only while they run, shared by all of them (see
    /// [`DelegateHandle::donate_workspace`]).
    workspace: Vec<F32Buf>,
    op_names: Vec<String>,
    /// Planned arenas first, then buffers owned for unplanned inputs/outputs.
    mutable: Vec<AlignedBuf>,
    /// Program bytes (space `n_mut`), then each external data file.
    readonly: Vec<Bytes>,
    input_set: Vec<bool>,
    num_arenas: usize,
    /// Bytes each planned arena must hold (the plan's buffer sizes).
    arena_needs: Vec<usize>,
    prepared_bytes: usize,
    /// Per-instruction (nanoseconds, calls) when profiling is on; allocated when enabled.
    profile: Option<Vec<(u64, u64)>>,
}

/// Time spent in one operator (or fused group) across profiled executions.
#[derive(Debug, Clone, PartialEq)]
pub struct OpProfile {
    pub op: String,
    pub instructions: usize,
    pub calls: u64,
    pub nanos: u64,
}

/// Memory a loaded method holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryReport {
    /// Planned arenas.
    pub planned: usize,
    /// Buffers for unplanned inputs and outputs.
    pub io_buffers: usize,
    /// Pre-packed weights and scratch owned by kernels and delegates.
    pub prepared: usize,
}

fn elem_bytes(t: &TensorDesc) -> usize {
    t.nbytes()
}

impl Method {
    /// Loads method `name` of `program`, resolving every operator with `registry`.
    /// All operators without a kernel are reported together.
    pub fn load(program: &Program, name: &str, registry: &Registry) -> Result<Method> {
        Self::load_with_arenas(program, name, registry, None)
    }

    /// Like [`Method::load`], but runs in caller-provided planned arenas (one per entry
    /// of [`crate::MethodMeta::planned_buffers`], each at least that large). Their
    /// contents are used as they are (mutable buffers without initial values start
    /// from whatever the arena holds, as in ExecuTorch). Get them back with
    /// [`Method::into_arenas`].
    pub fn load_with_arenas(
        program: &Program,
        name: &str,
        registry: &Registry,
        arenas: Option<Vec<AlignedBuf>>,
    ) -> Result<Method> {
        let plan = program.plan(name)?;
        let mname = plan.name.clone();
        let unsupported = |reason: String| Error::Unsupported {
            method: mname.clone(),
            reason,
        };

        // Planned arenas.
        let sizes: Vec<usize> = plan
            .non_const_buffer_sizes
            .iter()
            .skip(1)
            .map(|&s| s as usize)
            .collect();
        let mut mutable: Vec<AlignedBuf> = match arenas {
            None => sizes
                .iter()
                .enumerate()
                .map(|(i, &s)| {
                    AlignedBuf::try_zeroed(s).ok_or_else(|| {
                        unsupported(format!(
                            "planned arena {} of {s} bytes cannot be allocated",
                            i + 1
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(given) => {
                if given.len() != sizes.len() {
                    return Err(unsupported(format!(
                        "{} planned arena(s) given, the method needs {}",
                        given.len(),
                        sizes.len()
                    )));
                }
                for (i, (g, &need)) in given.iter().zip(&sizes).enumerate() {
                    if g.len() < need {
                        return Err(unsupported(format!(
                            "planned arena {i} holds {} bytes, the method needs {need}",
                            g.len()
                        )));
                    }
                }
                given
            }
        };
        let num_arenas = mutable.len();
        // Read-only spaces: the program's resident pieces, then each external file.
        let n_pieces = program.pieces.len();
        let mut readonly: Vec<Bytes> = program.pieces.iter().map(|(_, b)| b.clone()).collect();
        readonly.extend(program.external.iter().map(|(b, _)| b.clone()));
        // Read-only space ids are only known once every owned buffer exists; record
        // them as (readonly index, offset) and fix up afterwards.
        enum Pending {
            Ro(usize, usize),
            Owned(usize),
        }
        let mut pending: Vec<(usize, Pending)> = Vec::new();
        let mut owned: Vec<AlignedBuf> = Vec::new();
        let is_io = |v: usize| plan.inputs.contains(&v) || plan.outputs.contains(&v);

        let mut values = Vec::with_capacity(plan.values.len());
        for (vi, vd) in plan.values.iter().enumerate() {
            let v = match vd {
                ValueDesc::Null => Value::None,
                ValueDesc::Int(i) => Value::Scalar(Cell::new(Scalar::Int(*i))),
                ValueDesc::Bool(b) => Value::Scalar(Cell::new(Scalar::Bool(*b))),
                ValueDesc::Double(d) => Value::Scalar(Cell::new(Scalar::Double(*d))),
                ValueDesc::String(s) => Value::String(s.clone()),
                ValueDesc::IntList(l) => Value::IntList(l.clone().into()),
                ValueDesc::DoubleList(l) => Value::DoubleList(l.clone().into()),
                ValueDesc::BoolList(l) => Value::BoolList(l.clone().into()),
                ValueDesc::TensorList(l) => Value::TensorList(l.clone().into()),
                ValueDesc::OptionalTensorList(l) => Value::OptTensorList(l.clone().into()),
                ValueDesc::Tensor(t) => {
                    if t.dynamism == ShapeDynamism::DynamicUnbound {
                        return Err(unsupported(format!(
                            "value {vi}: tensors with unbounded dynamic shapes are not supported (export with bounded Dims)"
                        )));
                    }
                    let nbytes = elem_bytes(t);
                    let mut writable = true;
                    let storage = if t.location == DataLocation::External {
                        let key = t.fqn.clone().unwrap_or_default();
                        let ext_err = |reason: String| Error::ExternalData {
                            method: mname.clone(),
                            value: vi,
                            key: key.clone(),
                            reason,
                        };
                        let found = program
                            .external
                            .iter()
                            .enumerate()
                            .find_map(|(k, (_, d))| d.get(&key).map(|b| (k, b.clone())));
                        let (k, blob) = found.ok_or_else(|| {
                            ext_err(if program.external.is_empty() {
                                "the program needs an external data file (.ptd) and none was given"
                                    .into()
                            } else {
                                "not found in the given data files".into()
                            })
                        })?;
                        if let Some(l) = &blob.layout {
                            if l.scalar_type != t.scalar_type || l.sizes != t.sizes {
                                return Err(ext_err(format!(
                                    "layout mismatch: file has {} {:?}, program expects {} {:?}",
                                    l.scalar_type, l.sizes, t.scalar_type, t.sizes
                                )));
                            }
                        }
                        if blob.range.len() < nbytes {
                            return Err(ext_err(format!(
                                "holds {} bytes, tensor needs {nbytes}",
                                blob.range.len()
                            )));
                        }
                        match t.allocation {
                            Some(a) => {
                                let src = &program.external[k].0.bytes()
                                    [blob.range.start..blob.range.start + nbytes];
                                let arena = &mut mutable[a.memory_id as usize - 1];
                                arena.bytes_mut()[a.offset as usize..a.offset as usize + nbytes]
                                    .copy_from_slice(src);
                                Storage::At {
                                    space: a.memory_id - 1,
                                    offset: a.offset as usize,
                                }
                            }
                            None => {
                                writable = false;
                                pending.push((vi, Pending::Ro(n_pieces + k, blob.range.start)));
                                Storage::Unbound
                            }
                        }
                    } else if let Some(a) = t.allocation {
                        if t.data_buffer_idx > 0 {
                            let r = program.desc.mutable_init_range(t).ok_or_else(|| {
                                unsupported(format!("value {vi}: initial mutable data not found"))
                            })?;
                            let src = program.file_range("initial mutable data", r)?;
                            mutable[a.memory_id as usize - 1].bytes_mut()
                                [a.offset as usize..a.offset as usize + nbytes]
                                .copy_from_slice(src.bytes());
                        }
                        Storage::At {
                            space: a.memory_id - 1,
                            offset: a.offset as usize,
                        }
                    } else if t.data_buffer_idx > 0 {
                        writable = false;
                        let r = program.desc.constant_range(t).ok_or_else(|| {
                            unsupported(format!("value {vi}: constant data not found"))
                        })?;
                        let (k, off) = program.resident(&r).ok_or_else(|| {
                            unsupported(format!("value {vi}: constant data is not resident"))
                        })?;
                        pending.push((vi, Pending::Ro(k, off)));
                        Storage::Unbound
                    } else if is_io(vi) {
                        pending.push((vi, Pending::Owned(owned.len())));
                        owned.push(AlignedBuf::try_zeroed(nbytes).ok_or_else(|| {
                            unsupported(format!(
                                "value {vi}: {nbytes} bytes for an input/output cannot be allocated"
                            ))
                        })?);
                        Storage::Unbound
                    } else {
                        Storage::Unbound
                    };
                    let tv = TensorValue::new(
                        t.scalar_type,
                        &t.sizes,
                        &t.dim_order,
                        t.dynamism,
                        storage,
                        writable,
                    )
                    .ok_or_else(|| unsupported(format!("value {vi}: invalid tensor")))?;
                    Value::Tensor(tv)
                }
            };
            values.push(v);
        }
        let io_bytes: usize = owned.iter().map(|b| b.len()).sum();
        let first_owned = mutable.len() as u32;
        mutable.extend(owned);
        let n_mut = mutable.len() as u32;
        for (vi, p) in pending {
            if let Value::Tensor(t) = &values[vi] {
                t.storage.set(match p {
                    Pending::Ro(k, off) => Storage::At {
                        space: n_mut + k as u32,
                        offset: off,
                    },
                    Pending::Owned(k) => Storage::At {
                        space: first_owned + k as u32,
                        offset: 0,
                    },
                });
            }
        }

        // Delegates.
        let mut delegates = Vec::with_capacity(plan.delegates.len());
        let mut workspace: Vec<F32Buf> = Vec::new();
        let mut prepared_bytes = 0usize;
        // Find the args of each delegate's (first) call for the init context.
        let mut delegate_args: Vec<&[usize]> = vec![&[]; plan.delegates.len()];
        for chain in &plan.chains {
            for ins in chain {
                if let Instruction::Delegate {
                    delegate_index,
                    args,
                } = ins
                {
                    delegate_args[*delegate_index] = args;
                }
            }
        }
        let head = program.bytes();
        for (di, d) in plan.delegates.iter().enumerate() {
            let backend = registry
                .backend(&d.id)
                .ok_or_else(|| Error::BackendNotFound {
                    method: mname.clone(),
                    delegate: di,
                    backend: d.id.clone(),
                    available: {
                        let mut v: Vec<String> =
                            registry.backend_names().map(String::from).collect();
                        v.sort();
                        v
                    },
                })?;
            // The payload and the named data this delegate asks for are read now (when
            // the program is not resident) and dropped after its init: a backend keeps
            // what it needs (packed weights), so peak memory holds one delegate's data.
            let payload_data = match program.desc.delegate_range(d) {
                Some(r) => Some(program.file_range(&format!("delegate {di} payload"), r)?),
                None => None,
            };
            let payload = payload_data.as_ref().map(|p| p.bytes()).unwrap_or(&[]);
            let named_cells: Vec<OnceCell<Option<FileData<'_>>>> = program
                .desc
                .named_data
                .iter()
                .map(|_| OnceCell::new())
                .collect();
            let read_error: RefCell<Option<Error>> = RefCell::new(None);
            let named = |key: &str| -> Option<&[u8]> {
                let desc = &program.desc;
                if let Some(i) = desc.named_data.iter().position(|(k, _)| k == key) {
                    let r = desc.segments.get(desc.named_data[i].1)?.clone();
                    let cell = named_cells.get(i)?;
                    let data = cell.get_or_init(|| {
                        match program.file_range(&format!("named data '{key}'"), r) {
                            Ok(d) => Some(d),
                            Err(e) => {
                                *read_error.borrow_mut() = Some(e);
                                None
                            }
                        }
                    });
                    return data.as_ref().map(|d| d.bytes());
                }
                program.external.iter().find_map(|(b, d)| {
                    d.get(key)
                        .and_then(|blob| b.bytes().get(blob.range.clone()))
                })
            };
            let specs: Vec<(String, &[u8])> = d
                .compile_specs
                .iter()
                .map(|(k, r)| (k.clone(), head.get(r.clone()).unwrap_or(&[])))
                .collect();
            let ctx = BackendInitCtx {
                method: &mname,
                payload,
                compile_specs: &specs,
                named_data: &named,
                args: PrepareCtx {
                    args: delegate_args[di],
                    values: &values,
                    readonly: &readonly,
                    n_mut,
                },
            };
            let h = backend.init(&ctx);
            if let Some(e) = read_error.take() {
                return Err(e);
            }
            let mut h = h.map_err(|source| Error::BackendInit {
                method: mname.clone(),
                delegate: di,
                backend: d.id.clone(),
                source,
            })?;
            // One shared workspace: per position, the largest buffer handed over (the
            // others were never touched, so dropping them costs nothing).
            for (k, b) in h.donate_workspace().into_iter().enumerate() {
                match workspace.get_mut(k) {
                    Some(w) if w.len() >= b.len() => {}
                    Some(w) => *w = b,
                    None => workspace.push(b),
                }
            }
            prepared_bytes += h.prepared_bytes();
            delegates.push((d.id.clone(), h));
        }

        // Instructions; collect every missing operator before failing.
        let mut op_names: Vec<String> = plan.operators.iter().map(|o| o.full_name()).collect();
        let uses = count_uses(plan);
        let mut missing = Vec::new();
        let mut chains = Vec::with_capacity(plan.chains.len());
        let mut global_ix = 0usize;
        // Tensor argument lists are computed once, unless a `Move` may rebind values.
        let precompute = !plan
            .chains
            .iter()
            .flatten()
            .any(|i| matches!(i, Instruction::Move { .. }));
        for chain in &plan.chains {
            let jump_targets: Vec<usize> = chain
                .iter()
                .filter_map(|i| match i {
                    Instruction::JumpFalse { destination, .. } => Some(*destination),
                    _ => None,
                })
                .collect();
            let mut instrs: Vec<Instr> = Vec::with_capacity(chain.len());
            let mut k = 0usize;
            while k < chain.len() {
                let ix = global_ix + k;
                let ins = &chain[k];
                // Try fusion rules starting here.
                if let Instruction::Kernel { .. } = ins {
                    if let Some((len, kernel, label, redirect)) = try_fuse(
                        registry,
                        chain,
                        k,
                        &op_names,
                        &uses,
                        &plan.outputs,
                        &jump_targets,
                        &values,
                        &readonly,
                        n_mut,
                    )
                    .map_err(|(source, op)| Error::Prepare {
                        method: mname.clone(),
                        instruction: ix,
                        op,
                        source,
                    })? {
                        let args: Vec<usize> = chain[k..k + len]
                            .iter()
                            .flat_map(|i| match i {
                                Instruction::Kernel { args, .. } => args.clone(),
                                _ => Vec::new(),
                            })
                            .map(|a| match redirect {
                                Some((staged, fin)) if a == fin => staged,
                                _ => a,
                            })
                            .collect();
                        prepared_bytes += kernel.prepared_bytes();
                        op_names.push(label);
                        instrs.push(Instr::Kernel {
                            tensors: precompute.then(|| distinct_tensor_args(&args, &values)),
                            kernel,
                            args: args.into(),
                            op: op_names.len() - 1,
                            post_copy: redirect,
                        });
                        for _ in 1..len {
                            instrs.push(Instr::Nop);
                        }
                        k += len;
                        continue;
                    }
                }
                k += 1;
                let i = match ins {
                    Instruction::Kernel { op_index, args } => {
                        let ctx = PrepareCtx {
                            args,
                            values: &values,
                            readonly: &readonly,
                            n_mut,
                        };
                        match registry.instantiate(&op_names[*op_index], &ctx) {
                            None => {
                                missing.push(MissingOp {
                                    instruction: ix,
                                    op: op_names[*op_index].clone(),
                                });
                                continue;
                            }
                            Some(Err(source)) => {
                                return Err(Error::Prepare {
                                    method: mname.clone(),
                                    instruction: ix,
                                    op: op_names[*op_index].clone(),
                                    source,
                                })
                            }
                            Some(Ok(kernel)) => {
                                prepared_bytes += kernel.prepared_bytes();
                                Instr::Kernel {
                                    kernel,
                                    args: args.clone().into(),
                                    tensors: precompute
                                        .then(|| distinct_tensor_args(args, &values)),
                                    op: *op_index,
                                    post_copy: None,
                                }
                            }
                        }
                    }
                    Instruction::Delegate {
                        delegate_index,
                        args,
                    } => Instr::Delegate {
                        handle: *delegate_index,
                        args: args.clone().into(),
                        tensors: precompute.then(|| distinct_tensor_args(args, &values)),
                    },
                    Instruction::Move { from, to } => Instr::Move {
                        from: *from,
                        to: *to,
                    },
                    Instruction::JumpFalse { cond, destination } => Instr::JumpFalse {
                        cond: *cond,
                        dest: *destination,
                    },
                    Instruction::Free { value } => Instr::Free { value: *value },
                };
                instrs.push(i);
            }
            global_ix += chain.len();
            chains.push(instrs);
        }
        if !missing.is_empty() {
            return Err(Error::MissingKernels {
                method: mname,
                missing,
            });
        }
        let _ = io_bytes;
        prepared_bytes += workspace.iter().map(|w| w.len() * 4).sum::<usize>();
        Ok(Method {
            name: mname,
            input_set: vec![false; plan.inputs.len()],
            inputs: plan.inputs.clone(),
            outputs: plan.outputs.clone(),
            values,
            chains,
            delegates,
            workspace,
            op_names,
            mutable,
            readonly,
            num_arenas,
            arena_needs: sizes,
            prepared_bytes,
            profile: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn num_inputs(&self) -> usize {
        self.inputs.len()
    }
    pub fn num_outputs(&self) -> usize {
        self.outputs.len()
    }

    /// Memory held by this method.
    pub fn memory(&self) -> MemoryReport {
        MemoryReport {
            planned: self.mutable[..self.num_arenas]
                .iter()
                .map(|b| b.len())
                .sum(),
            io_buffers: self.mutable[self.num_arenas..]
                .iter()
                .map(|b| b.len())
                .sum(),
            prepared: self.prepared_bytes,
        }
    }

    fn input_err(&self, index: usize, reason: String) -> Error {
        Error::Input {
            method: self.name.clone(),
            index,
            reason,
        }
    }

    /// The input value at `index` as declared (for its dtype, bound and dim order).
    pub fn input_value(&self, index: usize) -> Option<&Value> {
        self.inputs.get(index).map(|&v| &self.values[v])
    }

    /// Sets tensor input `index` from `src`, whose bytes are in `src`'s own dim order
    /// (contiguous for plain arrays). Data is copied into the method's memory and
    /// converted to the input's dim order.
    pub fn set_input(&mut self, index: usize, src: TensorRef<'_>) -> Result<()> {
        let n = self.inputs.len();
        let vi = *self
            .inputs
            .get(index)
            .ok_or_else(|| self.input_err(index, format!("the method has {n} inputs")))?;
        let t = match &self.values[vi] {
            Value::Tensor(t) => t,
            other => {
                return Err(
                    self.input_err(index, format!("expected a {}, got a tensor", other.kind()))
                )
            }
        };
        if t.dtype != src.dtype {
            return Err(self.input_err(
                index,
                format!("expected dtype {}, got {}", t.dtype, src.dtype),
            ));
        }
        if t.shape.get().rank() != src.dim() {
            return Err(self.input_err(
                index,
                format!(
                    "expected rank {} (shape {:?}), got shape {:?}",
                    t.shape.get().rank(),
                    t.shape.get().dims(),
                    src.sizes()
                ),
            ));
        }
        t.resize(src.sizes()).map_err(|e| {
            let bound = match t.dynamism {
                ShapeDynamism::Static => "static shape",
                _ => "upper bound",
            };
            self.input_err(
                index,
                format!("shape {:?} does not fit: {} ({bound})", src.sizes(), e.msg),
            )
        })?;
        let (space, offset) = match t.storage.get() {
            Storage::At { space, offset } if (space as usize) < self.mutable.len() => {
                (space as usize, offset)
            }
            _ => return Err(self.input_err(index, "input has no writable storage".into())),
        };
        let dst_order = t.order;
        let shape = t.shape.get();
        let nbytes = t.nbytes();
        let dst = &mut self.mutable[space].bytes_mut()[offset..offset + nbytes];
        copy_reorder(src, dst, shape, dst_order);
        self.input_set[index] = true;
        Ok(())
    }

    /// Sets a non-tensor input. ExecuTorch bakes these into the program: the value must
    /// equal the traced one (Doubles within 1e-4 absolute / 1e-5 relative).
    pub fn set_input_scalar(&mut self, index: usize, s: Scalar) -> Result<()> {
        let vi = *self
            .inputs
            .get(index)
            .ok_or_else(|| self.input_err(index, "no such input".into()))?;
        let cur = match &self.values[vi] {
            Value::Scalar(c) => c.get(),
            other => {
                return Err(
                    self.input_err(index, format!("expected a {}, got a scalar", other.kind()))
                )
            }
        };
        let ok = match (cur, s) {
            (Scalar::Int(a), Scalar::Int(b)) => a == b,
            (Scalar::Bool(a), Scalar::Bool(b)) => a == b,
            (Scalar::Double(a), Scalar::Double(b)) => {
                (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-4 + 1e-5 * b.abs()
            }
            _ => false,
        };
        if !ok {
            return Err(self.input_err(
                index,
                format!(
                    "this program was traced with {cur:?} and accepts no other value (got {s:?})"
                ),
            ));
        }
        self.input_set[index] = true;
        Ok(())
    }

    /// Runs the method. Every input must have been set. Nothing is allocated here.
    pub fn execute(&mut self) -> Result<()> {
        // Non-tensor inputs carry their traced value; only tensors must be set.
        let unset = (0..self.inputs.len()).find(|&i| {
            !self.input_set[i] && matches!(self.values[self.inputs[i]], Value::Tensor(_))
        });
        if let Some(i) = unset {
            return Err(self.input_err(i, "has not been set".into()));
        }
        let Method {
            name,
            values,
            chains,
            delegates,
            workspace,
            op_names,
            mutable,
            readonly,
            profile,
            ..
        } = self;
        let mut executed: u64 = 0;
        let mut base = 0usize;
        for chain in chains.iter_mut() {
            let n = chain.len();
            let mut pc = 0usize;
            while pc < n {
                executed += 1;
                if executed > MAX_INSTRUCTIONS {
                    return Err(Error::InstructionLimit {
                        method: name.clone(),
                        limit: MAX_INSTRUCTIONS,
                    });
                }
                let ix = base + pc;
                let mut next = pc + 1;
                let started = profile.as_ref().map(|_| std::time::Instant::now());
                match &mut chain[pc] {
                    Instr::Kernel {
                        kernel,
                        args,
                        tensors,
                        op,
                        post_copy,
                    } => {
                        let wrap = |source: KernelError| Error::Kernel {
                            method: name.clone(),
                            instruction: ix,
                            op: op_names[*op].clone(),
                            source,
                        };
                        let spaces = Spaces {
                            mutable: &mut mutable[..],
                            readonly: &readonly[..],
                        };
                        let mut ctx = KernelCtx::unbound(args, values, spaces.readonly);
                        ctx.bind(tensors.as_deref(), spaces).map_err(wrap)?;
                        kernel.run(&ctx).map_err(wrap)?;
                        drop(ctx);
                        if let Some((from, to)) = *post_copy {
                            copy_tensor_value(values, mutable, from, to).map_err(wrap)?;
                        }
                    }
                    Instr::Delegate {
                        handle,
                        args,
                        tensors,
                    } => {
                        let (id, h) = &mut delegates[*handle];
                        let wrap = |source: KernelError| Error::Kernel {
                            method: name.clone(),
                            instruction: ix,
                            op: format!("delegate {handle} ({id})"),
                            source,
                        };
                        let spaces = Spaces {
                            mutable: &mut mutable[..],
                            readonly: &readonly[..],
                        };
                        let mut ctx = KernelCtx::unbound(args, values, spaces.readonly);
                        ctx.bind(tensors.as_deref(), spaces).map_err(wrap)?;
                        h.execute_in(&ctx, workspace).map_err(wrap)?;
                    }
                    Instr::Move { from, to } => {
                        let v = values[*from].clone();
                        values[*to] = v;
                    }
                    Instr::JumpFalse { cond, dest } => {
                        let c = match &values[*cond] {
                            Value::Scalar(s) => match s.get() {
                                Scalar::Bool(b) => b,
                                other => {
                                    return Err(Error::Execution {
                                        method: name.clone(),
                                        instruction: ix,
                                        reason: format!(
                                            "jump condition is {}, expected Bool",
                                            other.kind()
                                        ),
                                    })
                                }
                            },
                            Value::Tensor(t) => {
                                let spaces = Spaces {
                                    mutable: &mut mutable[..],
                                    readonly: &readonly[..],
                                };
                                let one = [*cond];
                                let ctx =
                                    KernelCtx::new(&one, values, spaces).map_err(|source| {
                                        Error::Kernel {
                                            method: name.clone(),
                                            instruction: ix,
                                            op: "jump_false".into(),
                                            source,
                                        }
                                    })?;
                                let tr = ctx.tensor(0).map_err(|source| Error::Kernel {
                                    method: name.clone(),
                                    instruction: ix,
                                    op: "jump_false".into(),
                                    source,
                                })?;
                                if t.dtype != pteron_format::ScalarType::Bool {
                                    return Err(Error::Execution {
                                        method: name.clone(),
                                        instruction: ix,
                                        reason: format!(
                                            "jump condition tensor has dtype {}, expected bool",
                                            t.dtype
                                        ),
                                    });
                                }
                                tr.bytes().iter().all(|b| *b != 0)
                            }
                            other => {
                                return Err(Error::Execution {
                                    method: name.clone(),
                                    instruction: ix,
                                    reason: format!(
                                        "jump condition is {}, expected Bool",
                                        other.kind()
                                    ),
                                })
                            }
                        };
                        if !c {
                            next = *dest;
                        }
                    }
                    Instr::Nop => {}
                    Instr::Free { value } => match &values[*value] {
                        Value::Tensor(t) => t.storage.set(Storage::Unbound),
                        other => {
                            return Err(Error::Execution {
                                method: name.clone(),
                                instruction: ix,
                                reason: format!("free of a {}, expected Tensor", other.kind()),
                            })
                        }
                    },
                }
                if let (Some(t0), Some(p)) = (started, profile.as_mut()) {
                    if let Some(slot) = p.get_mut(ix) {
                        slot.0 += t0.elapsed().as_nanos() as u64;
                        slot.1 += 1;
                    }
                }
                pc = next;
            }
            base += n;
        }
        Ok(())
    }

    /// The output value at `index`.
    pub fn output_value(&self, index: usize) -> Result<&Value> {
        let vi = *self.outputs.get(index).ok_or_else(|| Error::Output {
            method: self.name.clone(),
            index,
            reason: format!("the method has {} outputs", self.outputs.len()),
        })?;
        Ok(&self.values[vi])
    }

    /// A view of tensor output `index` (valid until the next `execute`), in its own dim order.
    pub fn output(&self, index: usize) -> Result<TensorRef<'_>> {
        let out_err = |reason: String| Error::Output {
            method: self.name.clone(),
            index,
            reason,
        };
        let t = match self.output_value(index)? {
            Value::Tensor(t) => t,
            other => return Err(out_err(format!("is a {}, not a tensor", other.kind()))),
        };
        let n_mut = self.mutable.len();
        let data: &[u8] = match t.storage.get() {
            Storage::At { space, offset } => {
                let s = space as usize;
                let src = if s < n_mut {
                    self.mutable[s].bytes()
                } else {
                    self.readonly[s - n_mut].bytes()
                };
                src.get(offset..offset + t.nbytes())
                    .ok_or_else(|| out_err("storage out of range".into()))?
            }
            Storage::Unbound => return Err(out_err("has no data (unbound tensor)".into())),
        };
        Ok(TensorRef {
            dtype: t.dtype,
            shape: t.shape.get(),
            order: t.order,
            data,
        })
    }

    /// Turns per-instruction timing on (allocates its table now) or off. Timing costs
    /// two clock reads per instruction.
    pub fn set_profiling(&mut self, on: bool) {
        let n: usize = self.chains.iter().map(|c| c.len()).sum();
        self.profile = on.then(|| vec![(0, 0); n]);
        for (_, d) in &mut self.delegates {
            d.set_profiling(on);
        }
    }

    /// Per delegate instance (by handle, with its backend id), the time per node of its
    /// compiled graph, for backends that profile (see [`Method::set_profiling`]).
    pub fn delegate_profile(&self) -> Vec<(usize, String, Vec<NodeProfile>)> {
        self.delegates
            .iter()
            .enumerate()
            .filter_map(|(i, (id, d))| {
                let p = d.profile();
                (!p.is_empty()).then(|| (i, id.clone(), p))
            })
            .collect()
    }

    /// Time per operator (fused groups under their joined name), most expensive first.
    pub fn profile(&self) -> Vec<OpProfile> {
        let Some(p) = &self.profile else {
            return Vec::new();
        };
        let mut out: Vec<OpProfile> = Vec::new();
        let mut ix = 0;
        for chain in &self.chains {
            for ins in chain {
                let (nanos, calls) = p[ix];
                ix += 1;
                let name = match ins {
                    Instr::Kernel { op, .. } => self.op_names[*op].clone(),
                    Instr::Delegate { handle, .. } => {
                        format!("delegate {} ({})", handle, self.delegates[*handle].0)
                    }
                    Instr::Nop => continue,
                    Instr::Move { .. } => "move".into(),
                    Instr::JumpFalse { .. } => "jump_false".into(),
                    Instr::Free { .. } => "free".into(),
                };
                match out.iter_mut().find(|o| o.op == name) {
                    Some(o) => {
                        o.instructions += 1;
                        o.calls += calls;
                        o.nanos += nanos;
                    }
                    None => out.push(OpProfile {
                        op: name,
                        instructions: 1,
                        calls,
                        nanos,
                    }),
                }
            }
        }
        out.sort_by_key(|o| core::cmp::Reverse(o.nanos));
        out
    }

    /// Exchanges planned arena `index` (memory id `index + 1`) with `other`'s, without
    /// copying. Methods exported with shared mutable buffers (`share_mutable_buffers`:
    /// KV caches in memory id 2 at the same offsets in every method, e.g. `prefill` /
    /// `decode`) must run on the same arena: hand it to the method about to run. Fails,
    /// changing nothing, if either buffer is too small for the method receiving it.
    pub fn exchange_arena(&mut self, other: &mut Method, index: usize) -> Result<()> {
        let (Some(&need_a), Some(&need_b)) =
            (self.arena_needs.get(index), other.arena_needs.get(index))
        else {
            return Err(Error::Unsupported {
                method: self.name.clone(),
                reason: format!(
                    "planned arena {index} is not in both '{}' ({} arenas) and '{}' ({} arenas)",
                    self.name, self.num_arenas, other.name, other.num_arenas
                ),
            });
        };
        let (len_a, len_b) = (self.mutable[index].len(), other.mutable[index].len());
        if len_b < need_a || len_a < need_b {
            return Err(Error::Unsupported {
                method: self.name.clone(),
                reason: format!(
                    "planned arena {index}: '{}' needs {need_a} bytes and '{}' {need_b}, their buffers hold {len_a} and {len_b}",
                    self.name, other.name
                ),
            });
        }
        core::mem::swap(&mut self.mutable[index], &mut other.mutable[index]);
        Ok(())
    }

    /// Gives back the planned arenas (e.g. to reuse them for another load).
    pub fn into_arenas(mut self) -> Vec<AlignedBuf> {
        self.mutable.truncate(self.num_arenas);
        self.mutable
    }

    /// Operator names of the method, by operator index.
    pub fn operator_names(&self) -> &[String] {
        &self.op_names
    }
}

/// Copies `src` (in its own dim order) into `dst` laid out in `dst_order`.
pub fn copy_reorder(
    src: TensorRef<'_>,
    dst: &mut [u8],
    shape: Shape,
    dst_order: crate::tensor::DimOrder,
) {
    let es = src.dtype().element_size();
    if src.dim_order() == dst_order || shape.numel() <= 1 {
        dst.copy_from_slice(src.bytes());
        return;
    }
    let s_str = strides_for(&shape, &src.dim_order());
    let d_str = strides_for(&shape, &dst_order);
    let dims = shape.dims();
    let rank = dims.len();
    let mut idx = [0usize; 16];
    let sb = src.bytes();
    for _ in 0..shape.numel() {
        let mut so = 0;
        let mut d = 0;
        for k in 0..rank {
            so += idx[k] * s_str[k];
            d += idx[k] * d_str[k];
        }
        dst[d * es..(d + 1) * es].copy_from_slice(&sb[so * es..(so + 1) * es]);
        for k in (0..rank).rev() {
            idx[k] += 1;
            if idx[k] < dims[k] {
                break;
            }
            idx[k] = 0;
        }
    }
}

/// How many times each value is referenced by an instruction (directly or inside a
/// list), plus once more for method outputs.
fn count_uses(plan: &pteron_format::PlanDesc) -> Vec<u32> {
    let mut uses = vec![0u32; plan.values.len()];
    let bump = |v: usize, uses: &mut Vec<u32>| {
        uses[v] += 1;
        match &plan.values[v] {
            ValueDesc::TensorList(l) => l.iter().for_each(|&i| uses[i] += 1),
            ValueDesc::OptionalTensorList(l) => l.iter().flatten().for_each(|&i| uses[i] += 1),
            _ => {}
        }
    };
    for chain in &plan.chains {
        for ins in chain {
            match ins {
                Instruction::Kernel { args, .. } | Instruction::Delegate { args, .. } => {
                    for &a in args {
                        bump(a, &mut uses)
                    }
                }
                Instruction::Move { from, to } => {
                    bump(*from, &mut uses);
                    bump(*to, &mut uses);
                }
                Instruction::JumpFalse { cond, .. } => bump(*cond, &mut uses),
                Instruction::Free { value } => bump(*value, &mut uses),
            }
        }
    }
    for &o in &plan.outputs {
        uses[o] += 1;
    }
    uses
}

/// (instructions fused, kernel, label, staging redirect (staged value, final value)).
type Fused = Option<(usize, Box<dyn Kernel>, String, Option<(usize, usize)>)>;

/// Applies the first fusion rule that matches at `start` and whose factory accepts.
#[allow(clippy::too_many_arguments)]
fn try_fuse(
    registry: &Registry,
    chain: &[Instruction],
    start: usize,
    op_names: &[String],
    uses: &[u32],
    outputs: &[usize],
    jump_targets: &[usize],
    values: &[Value],
    readonly: &[Bytes],
    n_mut: u32,
) -> core::result::Result<Fused, (KernelError, String)> {
    'rules: for rule in registry.fusions() {
        let len = rule.ops.len();
        if len < 2 || start + len > chain.len() {
            continue;
        }
        if jump_targets.iter().any(|&t| t > start && t < start + len) {
            continue;
        }
        let mut ctxs = Vec::with_capacity(len);
        for (j, name) in rule.ops.iter().enumerate() {
            let Instruction::Kernel { op_index, args } = &chain[start + j] else {
                continue 'rules;
            };
            if &op_names[*op_index] != name {
                continue 'rules;
            }
            if j + 1 < len {
                // Every result (the return slot, or each element of a returned list)
                // must be used only here and by the next instruction, never be a method
                // output, and the next instruction must consume at least one of them.
                let Some(&ret) = args.last() else {
                    continue 'rules;
                };
                let Instruction::Kernel { args: next, .. } = &chain[start + j + 1] else {
                    continue 'rules;
                };
                let results: &[usize] = match &values[ret] {
                    Value::Tensor(_) => core::slice::from_ref(&ret),
                    Value::TensorList(items) => items,
                    _ => continue 'rules,
                };
                let mut feeds_next = false;
                for &r in results {
                    let here = uses_in(args, r, values);
                    let there = uses_in(next, r, values);
                    feeds_next |= there > 0;
                    if outputs.contains(&r) || uses[r] != here + there {
                        continue 'rules;
                    }
                }
                if !feeds_next {
                    continue 'rules;
                }
            }
            ctxs.push(PrepareCtx {
                args,
                values,
                readonly,
                n_mut,
            });
        }
        let redirect = match fusion_aliasing(&chain[start..start + len], values) {
            Aliasing::Free => None,
            Aliasing::Stage { staged, fin } => Some((staged, fin)),
            Aliasing::Refuse => continue,
        };
        let label = rule.ops.join("+");
        match (rule.factory)(&ctxs) {
            Ok(Some(k)) => return Ok(Some((len, k, label, redirect))),
            Ok(None) => continue,
            Err(e) => return Err((e, label)),
        }
    }
    Ok(None)
}

/// References to value `v` in an argument list, directly or inside a tensor list.
fn uses_in(args: &[usize], v: usize, values: &[Value]) -> u32 {
    args.iter()
        .map(|&a| {
            let inner = match &values[a] {
                Value::TensorList(l) => l.iter().filter(|&&i| i == v).count(),
                Value::OptTensorList(l) => l.iter().filter(|i| **i == Some(v)).count(),
                _ => 0,
            };
            (a == v) as u32 + inner as u32
        })
        .sum()
}

/// Tensor values referenced by `args`, directly or through lists.
fn tensor_args<'v>(args: &'v [usize], values: &'v [Value]) -> impl Iterator<Item = usize> + 'v {
    args.iter().flat_map(move |&a| -> Vec<usize> {
        match &values[a] {
            Value::Tensor(_) => vec![a],
            Value::TensorList(l) => l.to_vec(),
            Value::OptTensorList(l) => l.iter().flatten().copied().collect(),
            _ => Vec::new(),
        }
    })
}

enum Aliasing {
    /// No result overlaps an input of an earlier instruction.
    Free,
    /// The single final result `fin` overlaps an earlier input, but the first
    /// instruction's result `staged` (same dtype, large enough, overlapping none of the
    /// group's inputs) can hold the result; the runtime copies it to `fin` afterwards.
    Stage {
        staged: usize,
        fin: usize,
    },
    Refuse,
}

/// A fused kernel reads the group's first inputs while writing its last results, which
/// the unfused program never did at the same time: the memory planner may legally have
/// placed them at the same bytes. Decide whether the group can run fused as is, with
/// its result staged in the first instruction's result, or not at all.
fn fusion_aliasing(group: &[Instruction], values: &[Value]) -> Aliasing {
    let range = |v: usize| -> Option<(u32, usize, usize)> {
        match &values[v] {
            Value::Tensor(t) => match t.storage.get() {
                Storage::At { space, offset } => Some((space, offset, offset + t.capacity_bytes())),
                Storage::Unbound => None,
            },
            _ => None,
        }
    };
    let overlap = |a: (u32, usize, usize), b: (u32, usize, usize)| {
        a.0 == b.0 && a.1 < b.2 && b.1 < a.2 && a.1 < a.2 && b.1 < b.2
    };
    let Some(Instruction::Kernel { args: last, .. }) = group.last() else {
        return Aliasing::Refuse;
    };
    let results: Vec<usize> = last
        .last()
        .map(|&r| tensor_args(core::slice::from_ref(&r), values).collect())
        .unwrap_or_default();
    let mut inputs: Vec<usize> = Vec::new();
    for ins in &group[..group.len() - 1] {
        let Instruction::Kernel { args, .. } = ins else {
            return Aliasing::Refuse;
        };
        inputs.extend(tensor_args(args, values));
    }
    let mut clash = false;
    for &r in &results {
        let Some(rr) = range(r) else {
            return Aliasing::Refuse;
        };
        for &v in &inputs {
            let Some(vr) = range(v) else {
                return Aliasing::Refuse;
            };
            if v != r && overlap(rr, vr) {
                clash = true;
            }
        }
    }
    if !clash {
        return Aliasing::Free;
    }
    // Stage through the first instruction's result.
    let (&[fin], Some(Instruction::Kernel { args: first, .. })) =
        (results.as_slice(), group.first())
    else {
        return Aliasing::Refuse;
    };
    let Some(&staged) = first.last() else {
        return Aliasing::Refuse;
    };
    let (Value::Tensor(st), Value::Tensor(ft)) = (&values[staged], &values[fin]) else {
        return Aliasing::Refuse;
    };
    // The fused kernel writes the final result into `staged` and resizes it, so the
    // two must agree on dtype, (upper-bound) shape and dynamism.
    if st.dtype() != ft.dtype() || st.shape() != ft.shape() || st.dynamism() != ft.dynamism() {
        return Aliasing::Refuse;
    }
    let Some(sr) = range(staged) else {
        return Aliasing::Refuse;
    };
    for &v in inputs.iter().filter(|&&v| v != staged) {
        let Some(vr) = range(v) else {
            return Aliasing::Refuse;
        };
        if overlap(sr, vr) {
            return Aliasing::Refuse;
        }
    }
    Aliasing::Stage { staged, fin }
}

/// Copies tensor value `from` (bytes and shape) into tensor value `to`; both live in
/// mutable memory. Overlap is allowed (memmove semantics).
fn copy_tensor_value(
    values: &[Value],
    mutable: &mut [AlignedBuf],
    from: usize,
    to: usize,
) -> core::result::Result<(), KernelError> {
    let (Some(Value::Tensor(f)), Some(Value::Tensor(t))) = (values.get(from), values.get(to))
    else {
        return Err(KernelError::internal("staged copy between non-tensors"));
    };
    t.resize(f.shape().dims())?;
    let n = f.nbytes();
    let (
        Storage::At {
            space: sf,
            offset: of,
        },
        Storage::At {
            space: st,
            offset: ot,
        },
    ) = (f.storage.get(), t.storage.get())
    else {
        return Err(KernelError::internal("staged copy of an unbound tensor"));
    };
    let (sf, st) = (sf as usize, st as usize);
    if sf >= mutable.len() || st >= mutable.len() {
        return Err(KernelError::internal("staged copy outside mutable memory"));
    }
    if sf == st {
        let buf = mutable[sf].bytes_mut();
        if of + n > buf.len() || ot + n > buf.len() {
            return Err(KernelError::internal("staged copy out of range"));
        }
        buf.copy_within(of..of + n, ot);
    } else {
        let [a, b] = mutable
            .get_disjoint_mut([sf, st])
            .map_err(|_| KernelError::internal("staged copy spaces"))?;
        let src = a
            .bytes()
            .get(of..of + n)
            .ok_or_else(|| KernelError::internal("staged copy out of range"))?;
        b.bytes_mut()
            .get_mut(ot..ot + n)
            .ok_or_else(|| KernelError::internal("staged copy out of range"))?
            .copy_from_slice(src);
    }
    Ok(())
}
