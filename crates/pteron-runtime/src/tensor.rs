//! Tensor shapes, dim orders, element types and the views kernels work with.

use core::cell::Cell;
use core::fmt;

use half::{bf16, f16};
use pteron_format::{ScalarType, ShapeDynamism, MAX_RANK};

use crate::error::KernelError;

/// A tensor shape of at most [`MAX_RANK`] dimensions, stored inline (no allocation).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    rank: u8,
    sizes: [usize; MAX_RANK],
}

impl Shape {
    pub const SCALAR: Shape = Shape {
        rank: 0,
        sizes: [0; MAX_RANK],
    };

    /// `None` if `sizes` has more than [`MAX_RANK`] entries.
    pub fn new(sizes: &[usize]) -> Option<Shape> {
        if sizes.len() > MAX_RANK {
            return None;
        }
        let mut s = Shape::SCALAR;
        s.rank = sizes.len() as u8;
        s.sizes[..sizes.len()].copy_from_slice(sizes);
        Some(s)
    }
    pub fn dims(&self) -> &[usize] {
        &self.sizes[..self.rank as usize]
    }
    pub fn rank(&self) -> usize {
        self.rank as usize
    }
    pub fn numel(&self) -> usize {
        self.dims().iter().product()
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.dims())
    }
}

/// A dim order (outermost to innermost physical dimension), inline.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DimOrder {
    rank: u8,
    order: [u8; MAX_RANK],
}

impl DimOrder {
    pub fn contiguous(rank: usize) -> DimOrder {
        let mut d = DimOrder {
            rank: rank as u8,
            order: [0; MAX_RANK],
        };
        for i in 0..rank {
            d.order[i] = i as u8;
        }
        d
    }
    /// `None` unless `order` is a permutation of `0..len` with `len <= MAX_RANK`.
    pub fn new(order: &[u8]) -> Option<DimOrder> {
        if order.len() > MAX_RANK {
            return None;
        }
        let mut seen = [false; MAX_RANK];
        for &o in order {
            if o as usize >= order.len() || seen[o as usize] {
                return None;
            }
            seen[o as usize] = true;
        }
        let mut d = DimOrder::contiguous(0);
        d.rank = order.len() as u8;
        d.order[..order.len()].copy_from_slice(order);
        Some(d)
    }
    pub fn as_slice(&self) -> &[u8] {
        &self.order[..self.rank as usize]
    }
    pub fn is_contiguous(&self) -> bool {
        self.as_slice()
            .iter()
            .enumerate()
            .all(|(i, &o)| i == o as usize)
    }
    /// True for the 4-D channels-last order `[0, 2, 3, 1]`.
    pub fn is_channels_last(&self) -> bool {
        self.as_slice() == [0, 2, 3, 1]
    }
}

impl fmt::Debug for DimOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_slice())
    }
}

/// Element strides (in elements) for `shape` laid out in `order`, per ExecuTorch's
/// `dim_order_to_stride` (a size-0 dim contributes a factor of 1).
pub fn strides_for(shape: &Shape, order: &DimOrder) -> [usize; MAX_RANK] {
    let mut st = [0usize; MAX_RANK];
    let n = shape.rank();
    if n == 0 {
        return st;
    }
    let o = order.as_slice();
    st[o[n - 1] as usize] = 1;
    for i in (0..n - 1).rev() {
        let inner = o[i + 1] as usize;
        let f = shape.sizes[inner].max(1);
        st[o[i] as usize] = st[inner] * f;
    }
    st
}

/// Plain-old-data element types a tensor's bytes can be viewed as.
pub trait Element: bytemuck::Pod + Copy + Send + Sync + 'static {
    /// The dtype this type views; `u8` also views `Bool` tensors.
    const DTYPE: ScalarType;
    fn matches(dt: ScalarType) -> bool {
        dt == Self::DTYPE
    }
}

macro_rules! element {
    ($($t:ty => $d:ident),*) => { $(impl Element for $t { const DTYPE: ScalarType = ScalarType::$d; })* };
}
element!(f32 => Float, f64 => Double, i8 => Char, i16 => Short, i32 => Int, i64 => Long,
    f16 => Half, bf16 => BFloat16, u16 => UInt16, u32 => UInt32, u64 => UInt64);

impl Element for u8 {
    const DTYPE: ScalarType = ScalarType::Byte;
    fn matches(dt: ScalarType) -> bool {
        matches!(dt, ScalarType::Byte | ScalarType::Bool | ScalarType::QUInt8)
    }
}

fn cast<T: Element>(dtype: ScalarType, b: &[u8]) -> Result<&[T], KernelError> {
    if !T::matches(dtype) {
        return Err(KernelError::dtype(format!(
            "tensor of dtype {dtype} viewed as {}",
            T::DTYPE
        )));
    }
    if b.is_empty() {
        return Ok(&[]);
    }
    bytemuck::try_cast_slice(b)
        .map_err(|e| KernelError::invalid(format!("misaligned {dtype} tensor data: {e:?}")))
}

fn cast_mut<T: Element>(dtype: ScalarType, b: &mut [u8]) -> Result<&mut [T], KernelError> {
    if !T::matches(dtype) {
        return Err(KernelError::dtype(format!(
            "tensor of dtype {dtype} viewed as {}",
            T::DTYPE
        )));
    }
    if b.is_empty() {
        return Ok(&mut []);
    }
    bytemuck::try_cast_slice_mut(b)
        .map_err(|e| KernelError::invalid(format!("misaligned {dtype} tensor data: {e:?}")))
}

/// A read-only tensor view handed to kernels.
#[derive(Clone, Copy)]
pub struct TensorRef<'a> {
    pub(crate) dtype: ScalarType,
    pub(crate) shape: Shape,
    pub(crate) order: DimOrder,
    pub(crate) data: &'a [u8],
}

impl<'a> TensorRef<'a> {
    /// Builds a view over `data`, which must hold exactly `numel * element_size` bytes.
    pub fn new(
        dtype: ScalarType,
        sizes: &[usize],
        order: Option<&[u8]>,
        data: &'a [u8],
    ) -> Result<Self, KernelError> {
        let shape = Shape::new(sizes).ok_or_else(|| KernelError::invalid("rank above 16"))?;
        let order = match order {
            Some(o) if o.len() == sizes.len() => {
                DimOrder::new(o).ok_or_else(|| KernelError::invalid("bad dim order"))?
            }
            Some(_) => return Err(KernelError::invalid("dim order rank mismatch")),
            None => DimOrder::contiguous(sizes.len()),
        };
        let need = shape
            .dims()
            .iter()
            .try_fold(dtype.element_size(), |a, &s| a.checked_mul(s));
        if need != Some(data.len()) {
            return Err(KernelError::invalid(format!(
                "{} bytes given for a {dtype} tensor of shape {sizes:?}",
                data.len()
            )));
        }
        Ok(TensorRef {
            dtype,
            shape,
            order,
            data,
        })
    }
    pub fn dtype(&self) -> ScalarType {
        self.dtype
    }
    pub fn sizes(&self) -> &[usize] {
        self.shape.dims()
    }
    pub fn shape(&self) -> Shape {
        self.shape
    }
    pub fn size(&self, dim: usize) -> usize {
        self.shape.dims()[dim]
    }
    pub fn dim(&self) -> usize {
        self.shape.rank()
    }
    pub fn numel(&self) -> usize {
        self.shape.numel()
    }
    pub fn dim_order(&self) -> DimOrder {
        self.order
    }
    /// Element strides per logical dimension.
    pub fn strides(&self) -> [usize; MAX_RANK] {
        strides_for(&self.shape, &self.order)
    }
    pub fn is_contiguous(&self) -> bool {
        self.order.is_contiguous()
    }
    pub fn bytes(&self) -> &'a [u8] {
        self.data
    }
    /// The elements in memory order (checks dtype and alignment).
    pub fn as_slice<T: Element>(&self) -> Result<&'a [T], KernelError> {
        cast(self.dtype, self.data)
    }
}

impl fmt::Debug for TensorRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Tensor({} {:?} order {:?})",
            self.dtype, self.shape, self.order
        )
    }
}

/// Run-time state of a tensor value: fixed dtype/dim order, a current shape that may
/// change within its bound, and a storage location.
#[derive(Debug, Clone)]
pub struct TensorValue {
    pub(crate) dtype: ScalarType,
    pub(crate) order: DimOrder,
    pub(crate) dynamism: ShapeDynamism,
    /// Bytes available at the storage location (the bound).
    pub(crate) capacity: usize,
    pub(crate) shape: Cell<Shape>,
    pub(crate) storage: Cell<Storage>,
    pub(crate) writable: bool,
}

/// Where a tensor's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// Not bound yet (unplanned outputs of views, unset inputs).
    Unbound,
    /// `offset` bytes into memory space `space`.
    At { space: u32, offset: usize },
}

impl TensorValue {
    pub(crate) fn new(
        dtype: ScalarType,
        sizes: &[usize],
        order: &[u8],
        dynamism: ShapeDynamism,
        storage: Storage,
        writable: bool,
    ) -> Option<Self> {
        let shape = Shape::new(sizes)?;
        let order = DimOrder::new(order)?;
        let capacity = shape
            .dims()
            .iter()
            .try_fold(dtype.element_size(), |a, &s| a.checked_mul(s))?;
        Some(TensorValue {
            dtype,
            order,
            dynamism,
            capacity,
            shape: Cell::new(shape),
            storage: Cell::new(storage),
            writable,
        })
    }
    pub fn dtype(&self) -> ScalarType {
        self.dtype
    }
    pub fn shape(&self) -> Shape {
        self.shape.get()
    }
    pub fn dim_order(&self) -> DimOrder {
        self.order
    }
    pub fn dynamism(&self) -> ShapeDynamism {
        self.dynamism
    }
    pub fn nbytes(&self) -> usize {
        self.shape.get().numel() * self.dtype.element_size()
    }
    pub fn capacity_bytes(&self) -> usize {
        self.capacity
    }

    /// Resizes within the bound, following ExecuTorch's rules: the rank never changes,
    /// static tensors only accept their own shape, bounded tensors any shape that fits.
    pub fn resize(&self, sizes: &[usize]) -> Result<(), KernelError> {
        let cur = self.shape.get();
        if sizes == cur.dims() {
            return Ok(());
        }
        if sizes.len() != cur.rank() {
            return Err(KernelError::resize(format!(
                "cannot change rank from {} to {} (shape {:?} -> {sizes:?})",
                cur.rank(),
                sizes.len(),
                cur.dims()
            )));
        }
        if self.dynamism == ShapeDynamism::Static {
            return Err(KernelError::resize(format!(
                "attempted to resize a static tensor from {:?} to {sizes:?}",
                cur.dims()
            )));
        }
        let need = sizes
            .iter()
            .try_fold(self.dtype.element_size(), |a, &s| a.checked_mul(s));
        match need {
            Some(n) if n <= self.capacity => {}
            _ => {
                return Err(KernelError::resize(format!(
                    "shape {sizes:?} exceeds the tensor's bound of {} bytes ({} elements of {})",
                    self.capacity,
                    self.capacity / self.dtype.element_size().max(1),
                    self.dtype
                )))
            }
        }
        self.shape.set(Shape::new(sizes).expect("rank checked"));
        Ok(())
    }
}

/// A writable tensor handed to kernels: exclusive access to its bytes.
pub struct TensorMut<'a> {
    pub(crate) value: &'a TensorValue,
    pub(crate) data: &'a mut [u8],
}

impl<'a> TensorMut<'a> {
    pub fn dtype(&self) -> ScalarType {
        self.value.dtype
    }
    pub fn shape(&self) -> Shape {
        self.value.shape.get()
    }
    pub fn dim(&self) -> usize {
        self.value.shape.get().rank()
    }
    pub fn numel(&self) -> usize {
        self.value.shape.get().numel()
    }
    pub fn dim_order(&self) -> DimOrder {
        self.value.order
    }
    pub fn strides(&self) -> [usize; MAX_RANK] {
        strides_for(&self.value.shape.get(), &self.value.order)
    }
    pub fn is_contiguous(&self) -> bool {
        self.value.order.is_contiguous()
    }
    /// Resizes the tensor (see [`TensorValue::resize`]).
    pub fn resize(&mut self, sizes: &[usize]) -> Result<(), KernelError> {
        self.value.resize(sizes)
    }
    fn cur_len(&self) -> usize {
        self.value.nbytes()
    }
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        let n = self.cur_len();
        &mut self.data[..n]
    }
    /// The elements (for the current shape) in memory order.
    pub fn as_mut_slice<T: Element>(&mut self) -> Result<&mut [T], KernelError> {
        let n = self.cur_len();
        cast_mut(self.value.dtype, &mut self.data[..n])
    }
    /// A read view of the current contents (for in-place kernels).
    pub fn as_ref(&self) -> TensorRef<'_> {
        let n = self.cur_len();
        TensorRef {
            dtype: self.value.dtype,
            shape: self.value.shape.get(),
            order: self.value.order,
            data: &self.data[..n],
        }
    }
}
