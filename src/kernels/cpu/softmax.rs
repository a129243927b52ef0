//! Softmax over the last dimension as one CPU pass per row, with its own backward.

use candle_core::{Tensor, D};

/// Softmax over the last dimension as one fused CPU pass per row, with its own backward
/// (dx = y ⊙ (dy − Σ dy ⊙ y)): candle's fused `ops::softmax_last_dim` has no backward, and the chain
/// of primitives below keeps four intermediates of the attention size alive for the backward.
pub struct SoftmaxLastDim;

macro_rules! softmax_rows {
    ($src:expr, $n:expr) => {{
        use rayon::prelude::*;
        let mut out = $src.to_vec();
        out.par_chunks_mut($n).for_each(|row| {
            let max = row.iter().copied().fold(f64::NEG_INFINITY as _, |a: _, b| if b > a { b } else { a });
            let mut sum = 0.0;
            for v in row.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            for v in row.iter_mut() {
                *v /= sum;
            }
        });
        out
    }};
}

impl candle_core::CustomOp1 for SoftmaxLastDim {
    fn name(&self) -> &'static str {
        "softmax-last-dim"
    }

    fn cpu_fwd(&self, storage: &candle_core::CpuStorage, layout: &candle_core::Layout) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use candle_core::CpuStorage;
        let (a, b) = layout.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg("softmax input must be contiguous".into()))?;
        let n = *layout.dims().last().unwrap_or(&1);
        let out = match storage {
            CpuStorage::F32(v) => CpuStorage::F32(softmax_rows!(&v[a..b], n)),
            CpuStorage::F64(v) => CpuStorage::F64(softmax_rows!(&v[a..b], n)),
            _ => candle_core::bail!("fused softmax: f32 or f64 only"),
        };
        Ok((out, layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let dot = (grad_res * res)?.sum_keepdim(D::Minus1)?;
        Ok(Some(res.mul(&grad_res.broadcast_sub(&dot)?)?))
    }
}
