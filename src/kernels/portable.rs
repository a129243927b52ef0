//! The portable implementations of the fused ops, from candle primitives (any dtype, any device):
//! the fallback where no fast path applies, and the oracle the fast paths are tested against.

use candle_core::{DType, Tensor, D};

use crate::error::Result;
use crate::kernels::Activation;

/// LayerNorm over the last dimension, statistics in at least f32 (as PyTorch for half inputs).
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    let xf = if matches!(dtype, DType::F16 | DType::BF16) { x.to_dtype(DType::F32)? } else { x.clone() };
    let mean = xf.mean_keepdim(D::Minus1)?;
    let centered = xf.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centered.broadcast_div(&(var + eps)?.sqrt()?)?.to_dtype(dtype)?;
    let y = normed.broadcast_mul(weight)?;
    Ok(match bias {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    })
}

/// Softmax over the last dimension; the max is a constant shift, so it is detached.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    let sum = e.sum_keepdim(D::Minus1)?;
    Ok(e.broadcast_div(&sum)?)
}

/// `act(x[.., :m]) · x[.., m:]`.
pub fn glu(x: &Tensor, act: Activation) -> Result<Tensor> {
    let half = x.dim(D::Minus1)? / 2;
    let input = x.narrow(D::Minus1, 0, half)?;
    let gate = x.narrow(D::Minus1, half, half)?;
    Ok((act.forward(&input)? * gate)?)
}

/// Cross-entropy per row: log-softmax, then the target's entry, negated.
pub fn cross_entropy_rows(logits: &Tensor, targets: &[u32]) -> Result<Tensor> {
    let max = logits.max_keepdim(candle_core::D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(candle_core::D::Minus1)?.log()?;
    let log_p = shifted.broadcast_sub(&lse)?;
    let index = Tensor::from_vec(targets.to_vec(), (targets.len(), 1), logits.device())?;
    Ok(log_p.gather(&index, 1)?.squeeze(1)?.neg()?)
}
