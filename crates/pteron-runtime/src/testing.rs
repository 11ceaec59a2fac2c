//! A harness to run one kernel on hand-made arguments, through the same argument
//! access path the executor uses. For kernel unit tests.
//!
//! ```ignore
//! use pteron_runtime::testing::{run_op, TestArg, TestTensor};
//! let out = run_op(&reg, "aten::add.out", vec![
//!     TestArg::Tensor(TestTensor::new(&[2], vec![1f32, 2.])),
//!     TestArg::Tensor(TestTensor::new(&[2], vec![3f32, 4.])),
//!     TestArg::Int(1),
//!     TestArg::Tensor(TestTensor::out(ScalarType::Float, &[2])),
//!     TestArg::Ref(3),
//! ])?;
//! assert_eq!(out[3].tensor().to_vec::<f32>(), vec![4., 6.]);
//! ```

use core::cell::Cell;
use std::sync::Arc;

use pteron_format::{ScalarType, ShapeDynamism};

use crate::error::KernelError;
use crate::kernel::{Kernel, KernelCtx, KernelFn, PrepareCtx, Registry, Spaces};
use crate::memory::{AlignedBuf, Bytes};
use crate::tensor::{DimOrder, Element, Storage, TensorRef, TensorValue};
use crate::value::{Scalar, Value};

/// An owned tensor for tests. `data` is in memory order (as laid out by `dim_order`).
#[derive(Debug, Clone, PartialEq)]
pub struct TestTensor {
    pub dtype: ScalarType,
    pub sizes: Vec<usize>,
    pub dim_order: Vec<u8>,
    pub data: Vec<u8>,
    /// Bounded-dynamic: kernels may resize it to anything that fits.
    pub dynamic: bool,
}

impl TestTensor {
    /// A contiguous, static tensor from elements.
    pub fn new<T: Element>(sizes: &[usize], data: Vec<T>) -> Self {
        Self::from_bytes(T::DTYPE, sizes, bytemuck::cast_slice(&data).to_vec())
    }
    /// A bool tensor.
    pub fn bools(sizes: &[usize], data: &[bool]) -> Self {
        Self::from_bytes(
            ScalarType::Bool,
            sizes,
            data.iter().map(|b| *b as u8).collect(),
        )
    }
    pub fn from_bytes(dtype: ScalarType, sizes: &[usize], data: Vec<u8>) -> Self {
        assert_eq!(
            data.len(),
            sizes.iter().product::<usize>() * dtype.element_size(),
            "test tensor byte size"
        );
        TestTensor {
            dtype,
            sizes: sizes.to_vec(),
            dim_order: (0..sizes.len() as u8).collect(),
            data,
            dynamic: false,
        }
    }
    /// A zeroed static tensor.
    pub fn zeros(dtype: ScalarType, sizes: &[usize]) -> Self {
        let n = sizes.iter().product::<usize>() * dtype.element_size();
        Self::from_bytes(dtype, sizes, vec![0; n])
    }
    /// A zeroed output with `bound` as its upper-bound shape (resizable).
    pub fn out(dtype: ScalarType, bound: &[usize]) -> Self {
        let mut t = Self::zeros(dtype, bound);
        t.dynamic = true;
        t
    }
    /// Marks the tensor as resizable within its current size.
    pub fn dynamic(mut self) -> Self {
        self.dynamic = true;
        self
    }
    /// Re-lays the (logical, contiguous) data out in `order`.
    pub fn with_dim_order(mut self, order: &[u8]) -> Self {
        let shape = crate::tensor::Shape::new(&self.sizes).expect("rank");
        let src = TensorRef::new(self.dtype, &self.sizes, None, &self.data).expect("tensor");
        let mut dst = vec![0u8; self.data.len()];
        crate::method::copy_reorder(src, &mut dst, shape, DimOrder::new(order).expect("order"));
        self.data = dst;
        self.dim_order = order.to_vec();
        self
    }
    /// Elements in memory order.
    pub fn to_vec<T: Element>(&self) -> Vec<T> {
        assert!(
            T::matches(self.dtype),
            "dtype {} viewed as {}",
            self.dtype,
            T::DTYPE
        );
        bytemuck::pod_collect_to_vec(&self.data)
    }
    /// Elements in logical (contiguous) order, whatever the dim order.
    pub fn to_logical_vec<T: Element>(&self) -> Vec<T> {
        let shape = crate::tensor::Shape::new(&self.sizes).expect("rank");
        let src = TensorRef::new(self.dtype, &self.sizes, Some(&self.dim_order), &self.data)
            .expect("tensor");
        let mut dst = vec![0u8; self.data.len()];
        crate::method::copy_reorder(src, &mut dst, shape, DimOrder::contiguous(self.sizes.len()));
        bytemuck::pod_collect_to_vec(&dst)
    }
}

/// One argument of a test call.
#[derive(Debug, Clone, PartialEq)]
pub enum TestArg {
    None,
    Int(i64),
    Double(f64),
    Bool(bool),
    Str(String),
    IntList(Vec<i64>),
    DoubleList(Vec<f64>),
    BoolList(Vec<bool>),
    Tensor(TestTensor),
    /// A read-only constant tensor (as weights are in a program).
    Const(TestTensor),
    TensorList(Vec<TestTensor>),
    OptTensorList(Vec<Option<TestTensor>>),
    /// The same value as argument `i` (e.g. the return slot aliasing `out`).
    Ref(usize),
}

impl TestArg {
    /// The tensor of a `Tensor`/`Const` argument (panics otherwise: tests only).
    pub fn tensor(&self) -> &TestTensor {
        match self {
            TestArg::Tensor(t) | TestArg::Const(t) => t,
            other => panic!("expected a tensor argument, got {other:?}"),
        }
    }
    pub fn list(&self) -> &[TestTensor] {
        match self {
            TestArg::TensorList(t) => t,
            other => panic!("expected a tensor list, got {other:?}"),
        }
    }
}

struct Built {
    values: Vec<Value>,
    args: Vec<usize>,
    mutable: Vec<AlignedBuf>,
    readonly: Vec<Bytes>,
}

fn build(args: &[TestArg]) -> Built {
    let mut b = Built {
        values: Vec::new(),
        args: Vec::new(),
        mutable: Vec::new(),
        readonly: Vec::new(),
    };
    // Constants get ids after all mutable spaces; count mutable tensors first.
    let n_mut: usize = args
        .iter()
        .map(|a| match a {
            TestArg::Tensor(_) => 1,
            TestArg::TensorList(l) => l.len(),
            TestArg::OptTensorList(l) => l.iter().flatten().count(),
            _ => 0,
        })
        .sum();
    let tensor = |b: &mut Built, t: &TestTensor, constant: bool| -> usize {
        let storage = if constant {
            b.readonly.push(Arc::new(AlignedBuf::copy_from(&t.data)));
            Storage::At {
                space: (n_mut + b.readonly.len() - 1) as u32,
                offset: 0,
            }
        } else {
            b.mutable.push(AlignedBuf::copy_from(&t.data));
            Storage::At {
                space: (b.mutable.len() - 1) as u32,
                offset: 0,
            }
        };
        let dynm = if t.dynamic {
            ShapeDynamism::DynamicBound
        } else {
            ShapeDynamism::Static
        };
        let tv = TensorValue::new(t.dtype, &t.sizes, &t.dim_order, dynm, storage, !constant)
            .expect("valid test tensor");
        b.values.push(Value::Tensor(tv));
        b.values.len() - 1
    };
    for a in args {
        let v = match a {
            TestArg::Ref(i) => b.args[*i],
            TestArg::Tensor(t) => tensor(&mut b, t, false),
            TestArg::Const(t) => tensor(&mut b, t, true),
            TestArg::TensorList(l) => {
                let ids: Vec<usize> = l.iter().map(|t| tensor(&mut b, t, false)).collect();
                b.values.push(Value::TensorList(ids.into()));
                b.values.len() - 1
            }
            TestArg::OptTensorList(l) => {
                let ids: Vec<Option<usize>> = l
                    .iter()
                    .map(|t| t.as_ref().map(|t| tensor(&mut b, t, false)))
                    .collect();
                b.values.push(Value::OptTensorList(ids.into()));
                b.values.len() - 1
            }
            other => {
                let v = match other {
                    TestArg::None => Value::None,
                    TestArg::Int(i) => Value::Scalar(Cell::new(Scalar::Int(*i))),
                    TestArg::Double(d) => Value::Scalar(Cell::new(Scalar::Double(*d))),
                    TestArg::Bool(x) => Value::Scalar(Cell::new(Scalar::Bool(*x))),
                    TestArg::Str(s) => Value::String(s.clone()),
                    TestArg::IntList(l) => {
                        let mut ids = Vec::new();
                        for i in l {
                            b.values.push(Value::Scalar(Cell::new(Scalar::Int(*i))));
                            ids.push(b.values.len() - 1);
                        }
                        Value::IntList(ids.into())
                    }
                    TestArg::DoubleList(l) => Value::DoubleList(l.clone().into()),
                    TestArg::BoolList(l) => Value::BoolList(l.clone().into()),
                    _ => unreachable!(),
                };
                b.values.push(v);
                b.values.len() - 1
            }
        };
        b.args.push(v);
    }
    b
}

/// Runs operator `name`'s factory (if any) on `b`'s arguments, as method load would.
fn instantiate(registry: &Registry, name: &str, b: &Built) -> Result<Box<dyn Kernel>, KernelError> {
    let pctx = PrepareCtx {
        args: &b.args,
        values: &b.values,
        readonly: &b.readonly,
        n_mut: b.mutable.len() as u32,
    };
    registry
        .instantiate(name, &pctx)
        .ok_or_else(|| KernelError::internal(format!("operator {name} is not registered")))?
}

fn read_back(b: &Built, args: &[TestArg]) -> Vec<TestArg> {
    let n_mut = b.mutable.len();
    let tensor_of = |v: usize| -> TestTensor {
        let t = b.values[v].as_tensor().expect("tensor");
        let (space, off) = match t.storage.get() {
            Storage::At { space, offset } => (space as usize, offset),
            Storage::Unbound => (usize::MAX, 0),
        };
        let data = if space == usize::MAX {
            Vec::new()
        } else if space < n_mut {
            b.mutable[space].bytes()[off..off + t.nbytes()].to_vec()
        } else {
            b.readonly[space - n_mut].bytes()[off..off + t.nbytes()].to_vec()
        };
        TestTensor {
            dtype: t.dtype,
            sizes: t.shape.get().dims().to_vec(),
            dim_order: t.order.as_slice().to_vec(),
            data,
            dynamic: t.dynamism != ShapeDynamism::Static,
        }
    };
    args.iter()
        .enumerate()
        .map(|(i, a)| {
            let v = b.args[i];
            match (a, &b.values[v]) {
                (TestArg::Tensor(_) | TestArg::Const(_) | TestArg::Ref(_), Value::Tensor(_)) => {
                    TestArg::Tensor(tensor_of(v))
                }
                (_, Value::TensorList(ids)) => {
                    TestArg::TensorList(ids.iter().map(|&i| tensor_of(i)).collect())
                }
                (_, Value::Scalar(s)) => match s.get() {
                    Scalar::Int(i) => TestArg::Int(i),
                    Scalar::Double(d) => TestArg::Double(d),
                    Scalar::Bool(x) => TestArg::Bool(x),
                },
                _ => a.clone(),
            }
        })
        .collect()
}

/// Runs a kernel function on `args` and returns every argument's final state.
pub fn run_kernel(f: KernelFn, args: Vec<TestArg>) -> Result<Vec<TestArg>, KernelError> {
    let mut b = build(&args);
    {
        let spaces = Spaces {
            mutable: &mut b.mutable,
            readonly: &b.readonly,
        };
        let ctx = KernelCtx::new(&b.args, &b.values, spaces)?;
        f(&ctx)?;
    }
    Ok(read_back(&b, &args))
}

/// Instantiates operator `name` once, as [`run_op`] does, then runs it `runs`
/// times on the same arguments and returns the median time of one run (for
/// kernel timing tests; outputs are discarded).
pub fn time_op(
    registry: &Registry,
    name: &str,
    args: Vec<TestArg>,
    runs: usize,
) -> Result<std::time::Duration, KernelError> {
    let mut b = build(&args);
    let mut k = instantiate(registry, name, &b)?;
    let mut times = Vec::with_capacity(runs + 1);
    for _ in 0..=runs.max(1) {
        // A context per call, as the executor makes one per instruction.
        let spaces = Spaces {
            mutable: &mut b.mutable,
            readonly: &b.readonly,
        };
        let t = std::time::Instant::now();
        let ctx = KernelCtx::new(&b.args, &b.values, spaces)?;
        k.run(&ctx)?;
        times.push(t.elapsed());
    }
    times.remove(0);
    times.sort();
    Ok(times[times.len() / 2])
}

/// Instantiates operator `name` from `registry` (running its factory, if any, as
/// method load would) and runs it on `args`.
pub fn run_op(
    registry: &Registry,
    name: &str,
    args: Vec<TestArg>,
) -> Result<Vec<TestArg>, KernelError> {
    let mut b = build(&args);
    let mut k = instantiate(registry, name, &b)?;
    {
        let spaces = Spaces {
            mutable: &mut b.mutable,
            readonly: &b.readonly,
        };
        let ctx = KernelCtx::new(&b.args, &b.values, spaces)?;
        k.run(&ctx)?;
    }
    Ok(read_back(&b, &args))
}
