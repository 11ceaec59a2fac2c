//! The kernel calling convention: [`KernelCtx`] gives a kernel typed, borrow-checked
//! access to its arguments; [`Registry`] maps operator names to kernels and backend ids
//! to backends.
//!
//! Memory safety without `unsafe`: before each call the executor gathers the byte
//! ranges of every tensor argument, merges overlapping ranges into regions and splits
//! each arena into disjoint `&mut [u8]` regions. A region can then be handed out either
//! once mutably (an output) or any number of times immutably (inputs), checked at run
//! time; an output that overlaps an input is reported, never aliased.

use core::cell::Cell;
use std::collections::HashMap;
use std::sync::Arc;

use pteron_format::{ScalarType, ShapeDynamism};
use smallvec::SmallVec;

use crate::error::KernelError;
use crate::memory::{AlignedBuf, Bytes, F32Buf};
use crate::tensor::{Shape, Storage, TensorMut, TensorRef, TensorValue};
use crate::value::{Scalar, Value};

/// A plain kernel function.
pub type KernelFn = fn(&KernelCtx<'_>) -> Result<(), KernelError>;

/// A kernel instance prepared at method load (it may own pre-packed weights and scratch).
pub trait Kernel: Send {
    fn run(&mut self, ctx: &KernelCtx<'_>) -> Result<(), KernelError>;
    /// Bytes this instance allocated at load (pre-packed weights, scratch).
    fn prepared_bytes(&self) -> usize {
        0
    }
}

struct FnKernel(KernelFn);
impl Kernel for FnKernel {
    fn run(&mut self, ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
        (self.0)(ctx)
    }
}

/// Builds a kernel instance for one instruction at method load.
pub type KernelFactory = fn(&PrepareCtx<'_>) -> Result<Box<dyn Kernel>, KernelError>;

/// How an operator is implemented.
#[derive(Clone, Copy)]
pub enum OpImpl {
    Fn(KernelFn),
    Factory(KernelFactory),
}

/// What a backend gets at method load.
pub struct BackendInitCtx<'a, 'd> {
    pub method: &'a str,
    /// The processed payload.
    pub payload: &'d [u8],
    /// `(key, value)` compile specs.
    pub compile_specs: &'a [(String, &'d [u8])],
    /// Looks a named blob up in the program, then in external data files.
    pub named_data: &'a dyn Fn(&str) -> Option<&'d [u8]>,
    /// The call's arguments (inputs then outputs), for shape/dtype inspection.
    pub args: PrepareCtx<'a>,
}

/// A delegate instance, created at method load.
pub trait DelegateHandle: Send {
    /// Runs the delegate; arguments are the delegate inputs followed by its outputs.
    fn execute(&mut self, ctx: &KernelCtx<'_>) -> Result<(), KernelError>;
    /// Hands the method the buffers this delegate needs only while it runs
    /// (activations, scratch), largest first. Delegates of a method run one at a
    /// time, so the method keeps one shared set (per position, the largest buffer
    /// any delegate handed over) and lends it to each [`execute_in`](Self::execute_in):
    /// a method with many delegates then holds one delegate's worth of activations,
    /// not the sum. Called at most once, at load; the default hands over nothing and
    /// the delegate keeps running on its own buffers.
    fn donate_workspace(&mut self) -> Vec<F32Buf> {
        Vec::new()
    }
    /// Runs the delegate on the method's shared workspace: `slots[k]` is at least as
    /// long as the `k`-th buffer [`donate_workspace`](Self::donate_workspace) returned
    /// and holds whatever the previous delegate left there.
    fn execute_in(
        &mut self,
        ctx: &KernelCtx<'_>,
        _slots: &mut [F32Buf],
    ) -> Result<(), KernelError> {
        self.execute(ctx)
    }
    fn prepared_bytes(&self) -> usize {
        0
    }
    /// Turns per-node timing inside the delegate on (allocating its table now) or off.
    fn set_profiling(&mut self, _on: bool) {}
    /// Time per node of the delegate's compiled graph since profiling was turned on,
    /// in execution order; empty when the delegate does not profile.
    fn profile(&self) -> Vec<NodeProfile> {
        Vec::new()
    }
}

/// Time spent in one node of a delegate's compiled graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeProfile {
    /// The node's index in the delegate's graph.
    pub node: usize,
    /// The node type (e.g. `XNNConv2d`).
    pub kind: String,
    /// Shapes and the path taken, for humans (e.g. `[1, 56, 56, 24] -> [1, 56, 56, 144] int8`).
    pub detail: String,
    pub calls: u64,
    pub nanos: u64,
}

/// A delegate backend (e.g. `XnnpackBackend`).
pub trait Backend: Send + Sync {
    fn init(&self, ctx: &BackendInitCtx<'_, '_>) -> Result<Box<dyn DelegateHandle>, KernelError>;
}

/// Builds one kernel for a run of consecutive instructions (a fusion), or declines
/// with `Ok(None)`. It receives one [`PrepareCtx`] per instruction; at run time the
/// fused kernel sees the concatenation of all their argument lists, in order.
pub type FusionFactory = fn(&[PrepareCtx<'_>]) -> Result<Option<Box<dyn Kernel>>, KernelError>;

/// A fusion rule: a sequence of operator names and the factory that fuses them.
#[derive(Clone)]
pub struct FusionRule {
    pub ops: Vec<String>,
    pub factory: FusionFactory,
}

/// Operator kernels by name (`"aten::add.out"`), fusion rules, and backends by id.
#[derive(Clone, Default)]
pub struct Registry {
    ops: HashMap<String, OpImpl>,
    fusions: Vec<FusionRule>,
    backends: HashMap<String, Arc<dyn Backend>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }
    /// Registers a kernel function; a later registration of the same name replaces it.
    pub fn register(&mut self, name: &str, f: KernelFn) {
        self.ops.insert(name.to_string(), OpImpl::Fn(f));
    }
    /// Registers a kernel factory run once per instruction at method load.
    pub fn register_factory(&mut self, name: &str, f: KernelFactory) {
        self.ops.insert(name.to_string(), OpImpl::Factory(f));
    }
    /// Registers a fusion of consecutive instructions calling `ops` in order. The
    /// loader applies it only where each intermediate result is used solely by the next
    /// instruction of the sequence and is not a method output; longer rules win.
    pub fn register_fusion(&mut self, ops: &[&str], factory: FusionFactory) {
        self.fusions.push(FusionRule {
            ops: ops.iter().map(|s| s.to_string()).collect(),
            factory,
        });
        self.fusions
            .sort_by_key(|r| core::cmp::Reverse(r.ops.len()));
    }
    pub fn fusions(&self) -> &[FusionRule] {
        &self.fusions
    }
    pub fn register_backend(&mut self, id: &str, b: Arc<dyn Backend>) {
        self.backends.insert(id.to_string(), b);
    }
    pub fn op(&self, name: &str) -> Option<OpImpl> {
        self.ops.get(name).copied()
    }
    pub fn has_op(&self, name: &str) -> bool {
        self.ops.contains_key(name)
    }
    pub fn backend(&self, id: &str) -> Option<&Arc<dyn Backend>> {
        self.backends.get(id)
    }
    pub fn op_names(&self) -> impl Iterator<Item = &str> {
        self.ops.keys().map(|s| s.as_str())
    }
    pub fn backend_names(&self) -> impl Iterator<Item = &str> {
        self.backends.keys().map(|s| s.as_str())
    }
    pub(crate) fn instantiate(
        &self,
        name: &str,
        ctx: &PrepareCtx<'_>,
    ) -> Option<Result<Box<dyn Kernel>, KernelError>> {
        Some(match self.op(name)? {
            OpImpl::Fn(f) => Ok(Box::new(FnKernel(f))),
            OpImpl::Factory(f) => f(ctx),
        })
    }
}

// ---------------------------------------------------------------------------
// Argument access

#[derive(Default)]
enum Slot<'a> {
    Mut(&'a mut [u8]),
    Shared(&'a [u8]),
    #[default]
    Taken,
}

#[derive(Clone, Copy)]
struct Req {
    value: usize,
    space: u32,
    start: usize,
    end: usize,
    /// Region index for mutable spaces, `u32::MAX` for read-only ones.
    region: u32,
}

const READONLY: u32 = u32::MAX;

/// The memory spaces of a method: mutable arenas/buffers then read-only sources.
pub(crate) struct Spaces<'s> {
    pub mutable: &'s mut [AlignedBuf],
    pub readonly: &'s [Bytes],
}

struct Access<'a> {
    reqs: SmallVec<[Req; 24]>,
    slots: SmallVec<[Cell<Slot<'a>>; 16]>,
    region_start: SmallVec<[usize; 16]>,
    readonly: &'a [Bytes],
    n_mut: u32,
}

fn push_req(reqs: &mut SmallVec<[Req; 24]>, values: &[Value], v: usize) {
    if reqs.iter().any(|r| r.value == v) {
        return;
    }
    if let Some(Value::Tensor(t)) = values.get(v) {
        if let Storage::At { space, offset } = t.storage.get() {
            let len = t.capacity;
            if len > 0 {
                reqs.push(Req {
                    value: v,
                    space,
                    start: offset,
                    end: offset.saturating_add(len),
                    region: READONLY,
                });
            }
        }
    }
}

/// The distinct tensor values an argument list refers to (directly or through tensor
/// lists), in first-use order: what [`Access`] gathers before each call. The method
/// computes it once per instruction at load.
pub(crate) fn distinct_tensor_args(args: &[usize], values: &[Value]) -> Box<[usize]> {
    let mut out: Vec<usize> = Vec::new();
    let mut add = |v: usize| {
        if matches!(values.get(v), Some(Value::Tensor(_))) && !out.contains(&v) {
            out.push(v);
        }
    };
    for &a in args {
        match values.get(a) {
            Some(Value::Tensor(_)) => add(a),
            Some(Value::TensorList(items)) => items.iter().for_each(|&i| add(i)),
            Some(Value::OptTensorList(items)) => items.iter().flatten().for_each(|&i| add(i)),
            _ => {}
        }
    }
    out.into()
}

impl<'a> Access<'a> {
    /// No tensor bound yet (see [`Access::bind`]).
    #[inline(always)]
    fn empty(readonly: &'a [Bytes]) -> Self {
        Access {
            reqs: SmallVec::new(),
            slots: SmallVec::new(),
            region_start: SmallVec::new(),
            readonly,
            n_mut: 0,
        }
    }

    /// Gathers the tensors of `args` and splits the mutable spaces into their
    /// regions. Fills `self` in place: the gathered lists are large inline arrays,
    /// and building them in a local and moving it out cost a copy per call.
    #[inline(always)]
    fn bind(
        &mut self,
        args: &[usize],
        tensors: Option<&[usize]>,
        values: &[Value],
        spaces: Spaces<'a>,
    ) -> Result<(), KernelError> {
        let Access {
            reqs,
            slots,
            region_start,
            readonly,
            n_mut: n_mut_out,
        } = self;
        reqs.clear();
        slots.clear();
        region_start.clear();
        *readonly = spaces.readonly;
        match tensors {
            // Precomputed at load: distinct, tensors only (checked again below).
            Some(ts) => {
                for &v in ts {
                    if let Some(Value::Tensor(t)) = values.get(v) {
                        if let Storage::At { space, offset } = t.storage.get() {
                            if t.capacity > 0 {
                                reqs.push(Req {
                                    value: v,
                                    space,
                                    start: offset,
                                    end: offset.saturating_add(t.capacity),
                                    region: READONLY,
                                });
                            }
                        }
                    }
                }
            }
            None => {
                for &a in args {
                    match values.get(a) {
                        Some(Value::Tensor(_)) => push_req(reqs, values, a),
                        Some(Value::TensorList(items)) => {
                            for &i in items.iter() {
                                push_req(reqs, values, i)
                            }
                        }
                        Some(Value::OptTensorList(items)) => {
                            for i in items.iter().flatten() {
                                push_req(reqs, values, *i)
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        let n_mut = spaces.mutable.len() as u32;
        for r in reqs.iter() {
            let space_len = if r.space < n_mut {
                spaces.mutable[r.space as usize].len()
            } else {
                spaces
                    .readonly
                    .get((r.space - n_mut) as usize)
                    .map(|b| b.bytes().len())
                    .unwrap_or(0)
            };
            if r.end > space_len {
                return Err(KernelError::internal(format!(
                    "value {} at [{}, {}) lies outside its memory space ({} bytes)",
                    r.value, r.start, r.end, space_len
                )));
            }
        }
        // Sort mutable requests by (space, start) and merge overlaps into regions.
        reqs.sort_unstable_by_key(|r| (r.space, r.start));
        let mut bounds: SmallVec<[(u32, usize, usize); 16]> = SmallVec::new();
        for r in reqs.iter_mut() {
            if r.space >= n_mut {
                continue;
            }
            match bounds.last_mut() {
                Some((sp, _, end)) if *sp == r.space && r.start < *end => {
                    *end = (*end).max(r.end);
                }
                _ => bounds.push((r.space, r.start, r.end)),
            }
            r.region = (bounds.len() - 1) as u32;
        }
        // Split each mutable space into its regions.
        let mut bi = 0;
        for (si, buf) in spaces.mutable.iter_mut().enumerate() {
            let mut rest: &'a mut [u8] = buf.bytes_mut();
            let mut consumed = 0usize;
            while bi < bounds.len() && bounds[bi].0 as usize == si {
                let (_, s, e) = bounds[bi];
                let tail = core::mem::take(&mut rest);
                let (_, tail) = tail.split_at_mut(s - consumed);
                let (region, tail) = tail.split_at_mut(e - s);
                rest = tail;
                consumed = e;
                slots.push(Cell::new(Slot::Mut(region)));
                region_start.push(s);
                bi += 1;
            }
        }
        *n_mut_out = n_mut;
        Ok(())
    }

    fn req(&self, v: usize) -> Option<&Req> {
        self.reqs.iter().find(|r| r.value == v)
    }

    fn shared(&self, v: usize, len: usize) -> Result<&'a [u8], KernelError> {
        if len == 0 {
            return Ok(&[]);
        }
        let r = *self
            .req(v)
            .ok_or_else(|| KernelError::invalid(format!("tensor value {v} has no storage")))?;
        if len > r.end - r.start {
            return Err(KernelError::invalid(format!(
                "tensor value {v} needs {len} bytes but its storage holds {}",
                r.end - r.start
            )));
        }
        if r.region == READONLY {
            let src: &'a Bytes = &self.readonly[(r.space - self.n_mut) as usize];
            return Ok(&src.bytes()[r.start..r.start + len]);
        }
        let cell = &self.slots[r.region as usize];
        let base = self.region_start[r.region as usize];
        let region: &'a [u8] = match cell.take() {
            Slot::Mut(m) => m,
            Slot::Shared(s) => s,
            Slot::Taken => {
                return Err(KernelError::invalid(format!(
                    "tensor value {v} overlaps an output of the same call"
                )))
            }
        };
        cell.set(Slot::Shared(region));
        Ok(&region[r.start - base..r.start - base + len])
    }

    fn exclusive(&self, v: usize, cap: usize) -> Result<&'a mut [u8], KernelError> {
        if cap == 0 {
            return Ok(&mut []);
        }
        let r = *self
            .req(v)
            .ok_or_else(|| KernelError::invalid(format!("tensor value {v} has no storage")))?;
        if r.region == READONLY {
            return Err(KernelError::invalid(format!(
                "tensor value {v} is a constant and cannot be written"
            )));
        }
        let cell = &self.slots[r.region as usize];
        let base = self.region_start[r.region as usize];
        match cell.take() {
            Slot::Mut(m) => {
                if r.start != base || m.len() != r.end - r.start {
                    // The region also covers another argument.
                    cell.set(Slot::Mut(m));
                    return Err(KernelError::invalid(format!(
                        "output tensor value {v} overlaps another argument of the same call"
                    )));
                }
                m.get_mut(..cap).ok_or_else(|| {
                    KernelError::invalid(format!(
                        "output tensor value {v} needs {cap} bytes but its storage holds {}",
                        r.end - r.start
                    ))
                })
            }
            other => {
                cell.set(other);
                Err(KernelError::invalid(format!(
                    "output tensor value {v} is already in use by this call (read, or written twice)"
                )))
            }
        }
    }
}

/// What a kernel sees: its arguments by position, with typed accessors.
///
/// Argument positions follow ExecuTorch's stack convention: one per schema argument
/// (including `out`), plus one trailing entry for the return value.
pub struct KernelCtx<'a> {
    args: &'a [usize],
    values: &'a [Value],
    access: Access<'a>,
}

fn bad_kind(arg: usize, expected: &str, v: &Value) -> KernelError {
    KernelError::invalid(format!(
        "argument {arg}: expected {expected}, found {}",
        v.kind()
    ))
}

impl<'a> KernelCtx<'a> {
    pub(crate) fn new(
        args: &'a [usize],
        values: &'a [Value],
        spaces: Spaces<'a>,
    ) -> Result<Self, KernelError> {
        Self::with_tensors(args, None, values, spaces)
    }

    /// Like `new`, with the distinct tensor values of `args` computed at load
    /// ([`distinct_tensor_args`]), which saves walking every argument on each call.
    #[inline]
    pub(crate) fn with_tensors(
        args: &'a [usize],
        tensors: Option<&[usize]>,
        values: &'a [Value],
        spaces: Spaces<'a>,
    ) -> Result<Self, KernelError> {
        let mut ctx = KernelCtx::unbound(args, values, spaces.readonly);
        ctx.bind(tensors, spaces)?;
        Ok(ctx)
    }

    /// A context whose tensors are not reachable until [`KernelCtx::bind`]; the
    /// executor builds one in its own frame and binds it in place.
    #[inline(always)]
    pub(crate) fn unbound(args: &'a [usize], values: &'a [Value], readonly: &'a [Bytes]) -> Self {
        KernelCtx {
            args,
            values,
            access: Access::empty(readonly),
        }
    }

    /// Gathers the tensors of the arguments (`tensors`: the distinct tensor values of
    /// `args`, computed at load, or `None` to walk `args`) and splits `spaces` into
    /// their regions.
    #[inline(always)]
    pub(crate) fn bind(
        &mut self,
        tensors: Option<&[usize]>,
        spaces: Spaces<'a>,
    ) -> Result<(), KernelError> {
        self.access.bind(self.args, tensors, self.values, spaces)
    }

    /// Number of stack entries (schema arguments + return).
    pub fn num_args(&self) -> usize {
        self.args.len()
    }

    /// Fails unless the stack has exactly `n` entries.
    pub fn expect_args(&self, n: usize) -> Result<(), KernelError> {
        if self.args.len() != n {
            return Err(KernelError::invalid(format!(
                "expected {n} arguments (schema arguments + return), got {}",
                self.args.len()
            )));
        }
        Ok(())
    }

    /// The value at argument `arg`.
    pub fn value(&self, arg: usize) -> Result<&'a Value, KernelError> {
        let v = *self.args.get(arg).ok_or_else(|| {
            KernelError::invalid(format!(
                "argument {arg} missing ({} given)",
                self.args.len()
            ))
        })?;
        self.values
            .get(v)
            .ok_or_else(|| KernelError::internal(format!("value index {v} out of range")))
    }

    /// The value index of argument `arg` (for diagnostics).
    pub fn value_index(&self, arg: usize) -> Option<usize> {
        self.args.get(arg).copied()
    }

    pub fn is_none(&self, arg: usize) -> Result<bool, KernelError> {
        Ok(matches!(self.value(arg)?, Value::None))
    }

    fn tensor_value(&self, v: usize) -> Result<&'a TensorValue, KernelError> {
        match self.values.get(v) {
            Some(Value::Tensor(t)) => Ok(t),
            Some(other) => Err(KernelError::invalid(format!(
                "value {v}: expected Tensor, found {}",
                other.kind()
            ))),
            None => Err(KernelError::internal(format!(
                "value index {v} out of range"
            ))),
        }
    }

    fn tensor_at(&self, v: usize) -> Result<TensorRef<'a>, KernelError> {
        let t = self.tensor_value(v)?;
        let data = self.access.shared(v, t.nbytes())?;
        Ok(TensorRef {
            dtype: t.dtype,
            shape: t.shape.get(),
            order: t.order,
            data,
        })
    }

    fn out_at(&self, v: usize) -> Result<TensorMut<'a>, KernelError> {
        let t = self.tensor_value(v)?;
        if !t.writable {
            return Err(KernelError::invalid(format!(
                "tensor value {v} is read-only"
            )));
        }
        let data = self.access.exclusive(v, t.capacity)?;
        Ok(TensorMut { value: t, data })
    }

    /// A read-only tensor argument.
    pub fn tensor(&self, arg: usize) -> Result<TensorRef<'a>, KernelError> {
        match self.value(arg)? {
            Value::Tensor(_) => self.tensor_at(self.args[arg]).map_err(|e| e.at_arg(arg)),
            other => Err(bad_kind(arg, "Tensor", other)),
        }
    }

    /// An optional tensor argument (`Tensor?`).
    pub fn opt_tensor(&self, arg: usize) -> Result<Option<TensorRef<'a>>, KernelError> {
        match self.value(arg)? {
            Value::None => Ok(None),
            _ => self.tensor(arg).map(Some),
        }
    }

    /// A writable tensor argument (an `out`, or `self` of an in-place op). Read its
    /// current contents with [`TensorMut::as_ref`].
    pub fn out(&self, arg: usize) -> Result<TensorMut<'a>, KernelError> {
        match self.value(arg)? {
            Value::Tensor(_) => self.out_at(self.args[arg]).map_err(|e| e.at_arg(arg)),
            other => Err(bad_kind(arg, "Tensor", other)),
        }
    }

    /// The shape and dtype of a tensor argument without borrowing its data.
    pub fn tensor_meta(&self, arg: usize) -> Result<(ScalarType, Shape), KernelError> {
        match self.value(arg)? {
            Value::Tensor(t) => Ok((t.dtype, t.shape.get())),
            other => Err(bad_kind(arg, "Tensor", other)),
        }
    }

    /// A `Tensor[]` argument.
    pub fn tensor_list(&self, arg: usize) -> Result<TensorList<'a, '_>, KernelError> {
        match self.value(arg)? {
            Value::TensorList(items) => Ok(TensorList { ctx: self, items }),
            other => Err(bad_kind(arg, "TensorList", other)),
        }
    }

    /// A `Tensor?[]` argument.
    pub fn opt_tensor_list(&self, arg: usize) -> Result<OptTensorList<'a, '_>, KernelError> {
        match self.value(arg)? {
            Value::OptTensorList(items) => Ok(OptTensorList { ctx: self, items }),
            other => Err(bad_kind(arg, "OptionalTensorList", other)),
        }
    }

    /// A scalar argument (Int, Double or Bool).
    pub fn scalar(&self, arg: usize) -> Result<Scalar, KernelError> {
        match self.value(arg)? {
            Value::Scalar(s) => Ok(s.get()),
            other => Err(bad_kind(arg, "Scalar", other)),
        }
    }
    pub fn opt_scalar(&self, arg: usize) -> Result<Option<Scalar>, KernelError> {
        match self.value(arg)? {
            Value::None => Ok(None),
            _ => self.scalar(arg).map(Some),
        }
    }
    pub fn int(&self, arg: usize) -> Result<i64, KernelError> {
        match self.scalar(arg)? {
            Scalar::Int(i) => Ok(i),
            Scalar::Bool(b) => Ok(b as i64),
            Scalar::Double(_) => Err(KernelError::invalid(format!(
                "argument {arg}: expected Int, found Double"
            ))),
        }
    }
    pub fn opt_int(&self, arg: usize) -> Result<Option<i64>, KernelError> {
        match self.value(arg)? {
            Value::None => Ok(None),
            _ => self.int(arg).map(Some),
        }
    }
    pub fn double(&self, arg: usize) -> Result<f64, KernelError> {
        Ok(self.scalar(arg)?.to_f64())
    }
    pub fn opt_double(&self, arg: usize) -> Result<Option<f64>, KernelError> {
        match self.value(arg)? {
            Value::None => Ok(None),
            _ => self.double(arg).map(Some),
        }
    }
    pub fn bool(&self, arg: usize) -> Result<bool, KernelError> {
        match self.scalar(arg)? {
            Scalar::Bool(b) => Ok(b),
            Scalar::Int(i) => Ok(i != 0),
            Scalar::Double(_) => Err(KernelError::invalid(format!(
                "argument {arg}: expected Bool, found Double"
            ))),
        }
    }
    pub fn opt_bool(&self, arg: usize) -> Result<Option<bool>, KernelError> {
        match self.value(arg)? {
            Value::None => Ok(None),
            _ => self.bool(arg).map(Some),
        }
    }
    /// A `ScalarType` argument (encoded as an Int), or `None`.
    pub fn opt_dtype(&self, arg: usize) -> Result<Option<ScalarType>, KernelError> {
        match self.opt_int(arg)? {
            None => Ok(None),
            Some(c) => u8::try_from(c)
                .ok()
                .and_then(ScalarType::from_code)
                .map(Some)
                .ok_or_else(|| {
                    KernelError::invalid(format!("argument {arg}: unknown dtype code {c}"))
                }),
        }
    }
    pub fn string(&self, arg: usize) -> Result<&'a str, KernelError> {
        match self.value(arg)? {
            Value::String(s) => Ok(s.as_str()),
            other => Err(bad_kind(arg, "String", other)),
        }
    }
    /// An `int[]` argument (boxed Int values resolved now).
    pub fn int_list(&self, arg: usize) -> Result<IntList<'a>, KernelError> {
        match self.value(arg)? {
            Value::IntList(items) => Ok(IntList {
                values: self.values,
                items,
            }),
            other => Err(bad_kind(arg, "IntList", other)),
        }
    }
    pub fn opt_int_list(&self, arg: usize) -> Result<Option<IntList<'a>>, KernelError> {
        match self.value(arg)? {
            Value::None => Ok(None),
            _ => self.int_list(arg).map(Some),
        }
    }
    pub fn double_list(&self, arg: usize) -> Result<&'a [f64], KernelError> {
        match self.value(arg)? {
            Value::DoubleList(d) => Ok(d),
            other => Err(bad_kind(arg, "DoubleList", other)),
        }
    }
    pub fn opt_double_list(&self, arg: usize) -> Result<Option<&'a [f64]>, KernelError> {
        match self.value(arg)? {
            Value::None => Ok(None),
            _ => self.double_list(arg).map(Some),
        }
    }
    pub fn bool_list(&self, arg: usize) -> Result<&'a [bool], KernelError> {
        match self.value(arg)? {
            Value::BoolList(d) => Ok(d),
            other => Err(bad_kind(arg, "BoolList", other)),
        }
    }

    /// Writes a scalar result (the return slot of `sym_size`, `_local_scalar_dense`,
    /// prim ops).
    pub fn set_scalar(&self, arg: usize, s: Scalar) -> Result<(), KernelError> {
        match self.value(arg)? {
            Value::Scalar(c) => {
                c.set(s);
                Ok(())
            }
            other => Err(bad_kind(arg, "Scalar", other)),
        }
    }

    /// Makes tensor argument `out` a view of tensor argument `src`'s bytes with shape
    /// `sizes` (same dtype and element count): ExecuTorch's `et_view`.
    pub fn alias(&self, out: usize, src: usize, sizes: &[usize]) -> Result<(), KernelError> {
        let (s, o) = match (self.value(src)?, self.value(out)?) {
            (Value::Tensor(s), Value::Tensor(o)) => (s, o),
            (a, b) => {
                return Err(KernelError::invalid(format!(
                    "alias needs two tensors, got {} and {}",
                    a.kind(),
                    b.kind()
                )))
            }
        };
        if s.dtype != o.dtype {
            return Err(KernelError::dtype(format!(
                "view from {} to {}",
                s.dtype, o.dtype
            )));
        }
        let numel: usize = sizes.iter().product();
        if numel != s.shape.get().numel() {
            return Err(KernelError::invalid(format!(
                "view of {:?} as {sizes:?} changes the element count",
                s.shape.get().dims()
            )));
        }
        let new_shape = Shape::new(sizes).ok_or_else(|| KernelError::invalid("rank above 16"))?;
        let bytes = numel.saturating_mul(o.dtype.element_size());
        if bytes > o.capacity {
            return Err(KernelError::resize(format!(
                "view as {sizes:?} needs {bytes} bytes, above the output's bound of {} bytes",
                o.capacity
            )));
        }
        if new_shape.rank() != o.shape.get().rank() {
            return Err(KernelError::invalid(format!(
                "view output has rank {}, size list has {}",
                o.shape.get().rank(),
                sizes.len()
            )));
        }
        o.shape.set(new_shape);
        o.storage.set(s.storage.get());
        Ok(())
    }
}

/// Resolves an `int[]` argument.
#[derive(Clone, Copy)]
pub struct IntList<'a> {
    values: &'a [Value],
    items: &'a [usize],
}

impl<'a> IntList<'a> {
    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    pub fn get(&self, i: usize) -> Result<i64, KernelError> {
        let v = *self
            .items
            .get(i)
            .ok_or_else(|| KernelError::invalid(format!("int list index {i} out of range")))?;
        match self.values.get(v) {
            Some(Value::Scalar(s)) => s
                .get()
                .to_i64()
                .ok_or_else(|| KernelError::invalid(format!("int list element {i} is a Double"))),
            _ => Err(KernelError::invalid(format!(
                "int list element {i} is not an Int"
            ))),
        }
    }
    pub fn iter(&self) -> impl Iterator<Item = Result<i64, KernelError>> + '_ {
        (0..self.items.len()).map(|i| self.get(i))
    }
    /// Copies into a fixed array (at most 16 entries) without allocating.
    pub fn to_array(&self) -> Result<([i64; 16], usize), KernelError> {
        if self.items.len() > 16 {
            return Err(KernelError::invalid(format!(
                "int list of {} entries exceeds 16",
                self.items.len()
            )));
        }
        let mut out = [0i64; 16];
        for (i, o) in out.iter_mut().enumerate().take(self.items.len()) {
            *o = self.get(i)?;
        }
        Ok((out, self.items.len()))
    }
}

/// A `Tensor[]` argument.
pub struct TensorList<'a, 'c> {
    ctx: &'c KernelCtx<'a>,
    items: &'a [usize],
}

impl<'a> TensorList<'a, '_> {
    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    pub fn get(&self, i: usize) -> Result<TensorRef<'a>, KernelError> {
        let v = *self
            .items
            .get(i)
            .ok_or_else(|| KernelError::invalid(format!("tensor list index {i} out of range")))?;
        self.ctx.tensor_at(v)
    }
    /// A writable element (lists of outputs, e.g. `split_copy.Tensor_out`).
    pub fn get_mut(&self, i: usize) -> Result<TensorMut<'a>, KernelError> {
        let v = *self
            .items
            .get(i)
            .ok_or_else(|| KernelError::invalid(format!("tensor list index {i} out of range")))?;
        self.ctx.out_at(v)
    }
    pub fn meta(&self, i: usize) -> Result<(ScalarType, Shape), KernelError> {
        let v = *self
            .items
            .get(i)
            .ok_or_else(|| KernelError::invalid(format!("tensor list index {i} out of range")))?;
        let t = self.ctx.tensor_value(v)?;
        Ok((t.dtype, t.shape.get()))
    }
}

/// A `Tensor?[]` argument.
pub struct OptTensorList<'a, 'c> {
    ctx: &'c KernelCtx<'a>,
    items: &'a [Option<usize>],
}

impl<'a> OptTensorList<'a, '_> {
    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    pub fn get(&self, i: usize) -> Result<Option<TensorRef<'a>>, KernelError> {
        match self.items.get(i) {
            None => Err(KernelError::invalid(format!(
                "tensor list index {i} out of range"
            ))),
            Some(None) => Ok(None),
            Some(Some(v)) => match self.ctx.values.get(*v) {
                Some(Value::None) => Ok(None),
                _ => self.ctx.tensor_at(*v).map(Some),
            },
        }
    }
}

// ---------------------------------------------------------------------------
// Load-time view

/// What a kernel factory or backend sees at load: argument kinds, shapes and dtypes,
/// and the bytes of constant tensors (for weight pre-packing).
#[derive(Clone, Copy)]
pub struct PrepareCtx<'a> {
    pub(crate) args: &'a [usize],
    pub(crate) values: &'a [Value],
    pub(crate) readonly: &'a [Bytes],
    pub(crate) n_mut: u32,
}

impl<'a> PrepareCtx<'a> {
    pub fn num_args(&self) -> usize {
        self.args.len()
    }
    /// The value index of argument `arg` (to see which arguments of fused instructions
    /// are the same value).
    pub fn value_index(&self, arg: usize) -> Option<usize> {
        self.args.get(arg).copied()
    }
    pub fn value(&self, arg: usize) -> Result<&'a Value, KernelError> {
        let v = *self
            .args
            .get(arg)
            .ok_or_else(|| KernelError::invalid(format!("argument {arg} missing")))?;
        self.values
            .get(v)
            .ok_or_else(|| KernelError::internal("value index out of range"))
    }
    /// dtype, current (upper-bound) shape and dynamism of a tensor argument.
    pub fn tensor_meta(
        &self,
        arg: usize,
    ) -> Result<(ScalarType, Shape, ShapeDynamism), KernelError> {
        match self.value(arg)? {
            Value::Tensor(t) => Ok((t.dtype, t.shape.get(), t.dynamism)),
            other => Err(bad_kind(arg, "Tensor", other)),
        }
    }
    /// The data of a constant tensor argument (weights), or `None` if it is not constant.
    pub fn constant(&self, arg: usize) -> Result<Option<TensorRef<'a>>, KernelError> {
        match self.value(arg)? {
            Value::Tensor(t) => {
                if let Storage::At { space, offset } = t.storage.get() {
                    if space >= self.n_mut && !t.writable {
                        let src = &self.readonly[(space - self.n_mut) as usize];
                        let data = src
                            .bytes()
                            .get(offset..offset + t.nbytes())
                            .ok_or_else(|| KernelError::internal("constant outside its source"))?;
                        return Ok(Some(TensorRef {
                            dtype: t.dtype,
                            shape: t.shape.get(),
                            order: t.order,
                            data,
                        }));
                    }
                }
                Ok(None)
            }
            Value::None => Ok(None),
            other => Err(bad_kind(arg, "Tensor", other)),
        }
    }
    /// A scalar argument known at load (constants only; run-time Ints may change).
    pub fn scalar(&self, arg: usize) -> Result<Scalar, KernelError> {
        match self.value(arg)? {
            Value::Scalar(s) => Ok(s.get()),
            other => Err(bad_kind(arg, "Scalar", other)),
        }
    }
    /// An `int[]` argument as known at load.
    pub fn int_list(&self, arg: usize) -> Result<IntList<'a>, KernelError> {
        match self.value(arg)? {
            Value::IntList(items) => Ok(IntList {
                values: self.values,
                items,
            }),
            other => Err(bad_kind(arg, "IntList", other)),
        }
    }
}
