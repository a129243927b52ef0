//! Fused ops for the model, apart from the model files: every `unsafe` block and every
//! `std::arch` intrinsic of the crate lives here. `cpu` holds the CPU fast paths, `portable` the
//! same functions from candle primitives (fallback and test oracle), `activation` the activation
//! type both sides share. Nothing here imports from `crate::model`.

pub mod activation;
pub mod cpu;
#[cfg(feature = "nccl")]
pub mod nccl;
pub mod portable;

pub use activation::Activation;

use candle_core::{DType, Tensor};

use crate::error::Result;

pub use cpu::attention::VarlenAttention;
pub use cpu::mmap::safetensors as mmap_safetensors;
pub use cpu::bf16::Bf16Linear;

/// Softmax over the last dimension, differentiable: one fused pass per row on the CPU (f32, f64).
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
        return Ok(x.contiguous()?.apply_op1(cpu::softmax::SoftmaxLastDim)?);
    }
    portable::softmax_last_dim(x)
}

/// Cross-entropy per row of `logits` [rows, classes] against `targets` (one class per row), [rows],
/// differentiable: one fused pass per row on the CPU (f32), else log-softmax and gather.
pub fn cross_entropy_rows(logits: &Tensor, targets: &[u32]) -> Result<Tensor> {
    if logits.device().is_cpu() && logits.dtype() == DType::F32 && logits.rank() == 2 {
        let op = cpu::cross_entropy::CrossEntropyRows { targets: std::sync::Arc::new(targets.to_vec()) };
        return Ok(logits.contiguous()?.apply_op1(op)?);
    }
    portable::cross_entropy_rows(logits, targets)
}

/// LayerNorm over the last dimension with `weight` (and `bias`): fused on the CPU.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, eps: f64) -> Result<Tensor> {
    if cpu::kernels::fusable(x) && weight.dtype() == x.dtype() {
        let y = cpu::kernels::layer_norm(x, weight, eps)?;
        return Ok(match bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        });
    }
    portable::layer_norm(x, weight, bias, eps)
}

/// `x [rows, in] · weightᵀ` (`weight [out, in]`): the CPU product splits output rows between threads.
pub fn linear(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    if cpu::kernels::fusable(x) && x.dtype() == weight.dtype() && weight.is_contiguous() {
        return Ok(x.contiguous()?.apply_op2(weight, cpu::product::Product::LINEAR)?);
    }
    Ok(x.matmul(&weight.t()?)?)
}

/// `act(x[.., :m]) · x[.., m:]` (GeGLU for the GELU activations): fused on the CPU.
pub fn glu(x: &Tensor, act: Activation) -> Result<Tensor> {
    if let Some(y) = cpu::kernels::glu(x, act)? {
        return Ok(y);
    }
    portable::glu(x, act)
}

/// `t` rounded to bf16 (to nearest even) and back to f32, as autocast's casts round; in the
/// backward pass the gradient through it is rounded alike (the casts' own backward). A product of
/// such operands summed in f32 is a bf16 product with f32 accumulation, on any device.
pub fn bf16_round(t: &Tensor) -> Result<Tensor> {
    Ok(t.to_dtype(DType::BF16)?.to_dtype(DType::F32)?)
}

/// Whether this CPU runs the bf16 products (AVX-512 BF16).
pub fn bf16_supported() -> bool {
    cpu::bf16::supported()
}

/// A linear layer's weight (and bias) packed for bf16 products; applied as a CustomOp to f32 inputs.
pub fn bf16_linear(weight: &Tensor, bias: Option<&Tensor>) -> Result<Bf16Linear> {
    let (n, k) = weight.dims2()?;
    let w: Vec<f32> = weight.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let bias = bias.map(|b| b.to_dtype(DType::F32)?.to_vec1::<f32>()).transpose()?;
    let weight = std::sync::Arc::new(cpu::bf16::PackedWeight::pack(&w, n, k));
    Ok(Bf16Linear { weight, bias: bias.map(std::sync::Arc::new) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The interface gives the portable result wherever the fast path applies too.
    #[test]
    fn fast_paths_equal_the_portable_oracle() {
        let dev = candle_core::Device::Cpu;
        let x = Tensor::from_vec((0..6 * 8).map(|i| ((i as f64) * 0.71).sin() * 2.0).collect::<Vec<_>>(), (6, 8), &dev).unwrap();
        let w = Tensor::from_vec((0..8).map(|i| 1.0 + i as f64 * 0.1).collect::<Vec<_>>(), 8, &dev).unwrap();
        let close = |a: &Tensor, b: &Tensor| {
            let d = (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap();
            assert!(d < 1e-12, "{d}");
        };
        close(&softmax_last_dim(&x).unwrap(), &portable::softmax_last_dim(&x).unwrap());
        close(&layer_norm(&x, &w, Some(&w), 1e-5).unwrap(), &portable::layer_norm(&x, &w, Some(&w), 1e-5).unwrap());
        close(&glu(&x, Activation::Gelu).unwrap(), &portable::glu(&x, Activation::Gelu).unwrap());
        let m = Tensor::from_vec((0..5 * 8).map(|i| ((i as f64) * 0.3).cos()).collect::<Vec<_>>(), (5, 8), &dev).unwrap();
        close(&linear(&x, &m).unwrap(), &x.matmul(&m.t().unwrap()).unwrap());
    }
}
