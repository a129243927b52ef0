//! Cross-entropy per row over [rows, classes] logits as one CPU pass per row, with its own backward
//! (one more pass: softmax − one-hot, scaled by the row's incoming gradient). The chain of
//! primitives (max, subtract, exp, sum, log, gather, and their backwards) keeps several
//! intermediates of the logits' size alive; for a masked-LM decoder over a 50k vocabulary that is
//! hundreds of MB per step.

use std::sync::Arc;

use candle_core::{CpuStorage, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Per row: log Σ exp(x) − x[target] (the max subtracted first, exp in f32, the sum in f64).
pub struct CrossEntropyRows {
    pub targets: Arc<Vec<u32>>,
}

/// The backward pass: (softmax(x) − one-hot(target)) · grad[row].
struct CrossEntropyGrad {
    targets: Arc<Vec<u32>>,
    grad: Vec<f32>,
}

fn rows<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> candle_core::Result<(&'a [f32], usize)> {
    let (a, b) = layout.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg(format!("{what}: logits must be contiguous")))?;
    let CpuStorage::F32(v) = storage else { candle_core::bail!("{what}: f32 logits only") };
    let n = *layout.dims().last().unwrap_or(&1);
    Ok((&v[a..b], n))
}

fn max_and_lse(row: &[f32]) -> (f32, f64) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = row.iter().map(|&x| (x - max).exp() as f64).sum();
    (max, max as f64 + sum.ln())
}

impl candle_core::CustomOp1 for CrossEntropyRows {
    fn name(&self) -> &'static str {
        "cross-entropy-rows"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, n) = rows(storage, layout, "cross-entropy")?;
        let count = x.len() / n.max(1);
        if count != self.targets.len() {
            candle_core::bail!("cross-entropy: {count} rows but {} targets", self.targets.len());
        }
        if let Some(&t) = self.targets.iter().find(|&&t| t as usize >= n) {
            candle_core::bail!("cross-entropy: target {t} is not below the {n} classes");
        }
        let out: Vec<f32> = x.par_chunks(n).zip(self.targets.par_iter()).map(|(row, &t)| (max_and_lse(row).1 - row[t as usize] as f64) as f32).collect();
        Ok((CpuStorage::F32(out), Shape::from(count)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let grad: Vec<f32> = grad_res.to_dtype(candle_core::DType::F32)?.to_vec1()?;
        let op = CrossEntropyGrad { targets: self.targets.clone(), grad };
        Ok(Some(arg.contiguous()?.apply_op1_no_bwd(&op)?))
    }
}

impl candle_core::CustomOp1 for CrossEntropyGrad {
    fn name(&self) -> &'static str {
        "cross-entropy-grad"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, n) = rows(storage, layout, "cross-entropy backward")?;
        let mut out = x.to_vec();
        out.par_chunks_mut(n).zip(self.targets.par_iter().zip(self.grad.par_iter())).for_each(|(row, (&t, &g))| {
            let (max, lse) = max_and_lse(row);
            // softmax = exp(x − lse), with lse − max folded into one f32 shift.
            let shift = (lse - max as f64) as f32;
            for v in row.iter_mut() {
                *v = (*v - max - shift).exp() * g;
            }
            row[t as usize] -= g;
        });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    /// The fused pass equals log-softmax and gather, value and gradient, including rows whose logits
    /// are far apart (the max shift) and a large class count.
    #[test]
    fn fused_cross_entropy_equals_the_portable_one_with_gradients() {
        let dev = Device::Cpu;
        let mut rng = crate::rng::Rng::new(3);
        for (rows, classes) in [(5usize, 3usize), (7, 50_000)] {
            let values: Vec<f32> = (0..rows * classes).map(|i| (rng.normal() * if i % 3 == 0 { 30.0 } else { 2.0 }) as f32).collect();
            let targets: Vec<u32> = (0..rows).map(|r| ((r * 7919) % classes) as u32).collect();
            let x = Var::from_vec(values, (rows, classes), &dev).unwrap();
            let weights = candle_core::Tensor::new((1..=rows).map(|r| r as f32).collect::<Vec<_>>(), &dev).unwrap();
            let fused = crate::kernels::cross_entropy_rows(x.as_tensor(), &targets).unwrap();
            let portable = crate::kernels::portable::cross_entropy_rows(x.as_tensor(), &targets).unwrap();
            let d = (&fused - &portable).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(d < 1e-4, "{rows}x{classes}: values differ by {d}");
            let g1 = (fused * &weights).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (portable * &weights).unwrap().sum_all().unwrap().backward().unwrap();
            let (g1, g2) = (g1.get(x.as_tensor()).unwrap(), g2.get(x.as_tensor()).unwrap());
            let d = (g1 - g2).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(d < 1e-5, "{rows}x{classes}: gradients differ by {d}");
        }
        let x = candle_core::Tensor::zeros((2, 3), candle_core::DType::F32, &dev).unwrap();
        assert!(crate::kernels::cross_entropy_rows(&x, &[0, 3]).is_err(), "a target outside the classes is an error");
    }
}
