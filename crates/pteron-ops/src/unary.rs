//! Unary elementwise kernels. See the crate docs for conventions.

use pteron_runtime::{KernelCtx, KernelError, Registry};

use crate::dispatch_all;
use crate::util::Num;

pub(crate) fn register(reg: &mut Registry) {
    reg.register("aten::relu.out", relu_out);
}

/// `relu.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)`: stack `[self, out, ret]`.
fn relu_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(3)?;
    let x = ctx.tensor(0)?;
    let mut out = ctx.out(1)?;
    if out.dtype() != x.dtype() {
        return Err(KernelError::dtype(format!("relu: out dtype {} != input dtype {}", out.dtype(), x.dtype())));
    }
    out.resize(x.sizes())?;
    if out.dim_order() != x.dim_order() {
        return Err(KernelError::invalid("relu: input and out dim orders differ"));
    }
    dispatch_all!(x.dtype(), T => {
        let src = x.as_slice::<T>()?;
        let dst = out.as_mut_slice::<T>()?;
        let zero = T::zero();
        for (d, s) in dst.iter_mut().zip(src) {
            *d = if *s > zero || s.to_f64().is_nan() { *s } else { zero };
        }
    });
    Ok(())
}
