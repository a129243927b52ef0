//! Loss functions as PyTorch defines them, built from differentiable primitives.

use candle_core::{DType, Tensor, D};

use crate::error::Result;

/// log_softmax over the last dimension (the max shift is a constant, hence detached).
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}

/// `nn.CrossEntropyLoss()` (mean over rows): `logits` [n, classes], `labels` u32 [n]. One fused
/// pass per row on the CPU (`kernels::cross_entropy_rows`).
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let labels: Vec<u32> = labels.to_dtype(DType::U32)?.to_vec1()?;
    Ok(crate::kernels::cross_entropy_rows(logits, &labels)?.mean_all()?)
}

/// `nn.MSELoss()` (mean).
pub fn mse(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    Ok(pred.sub(target)?.sqr()?.mean_all()?)
}

/// `BCEWithLogitsLoss()` (mean): max(x, 0) - x·y + log(1 + exp(-|x|)).
pub fn bce_with_logits(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let softplus = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    Ok(((logits.relu()? - (logits * targets)?)? + softplus)?.mean_all()?)
}


#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn bce_matches_the_definition() {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[2f32, -1.0], [0.5, 30.0]], &dev).unwrap();
        let y = Tensor::new(&[[1f32, 0.0], [0.0, 1.0]], &dev).unwrap();
        let got = bce_with_logits(&x, &y).unwrap().to_scalar::<f32>().unwrap() as f64;
        let s = |v: f64| 1.0 / (1.0 + (-v).exp());
        let want = -((s(2.0)).ln() + (1.0 - s(-1.0)).ln() + (1.0 - s(0.5)).ln() + s(30.0).ln()) / 4.0;
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }

    #[test]
    fn cross_entropy_matches_hand_computation() {
        let logits = Tensor::new(&[[1f32, 2., 3.], [0., 0., 0.]], &Device::Cpu).unwrap();
        let labels = Tensor::new(&[2u32, 0], &Device::Cpu).unwrap();
        let got = cross_entropy(&logits, &labels).unwrap().to_scalar::<f32>().unwrap();
        let row1 = -(3f32 - (1f32.exp() + 2f32.exp() + 3f32.exp()).ln());
        let row2 = 3f32.ln();
        assert!((got - (row1 + row2) / 2.0).abs() < 1e-6);
    }
}
