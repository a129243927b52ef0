//! AdamW, numerically as `torch.optim.AdamW` (single-tensor path) computes it, updating in place.
//!
//! candle's stock `AdamW` builds several new tensors per parameter per step; on ModernBERT-base that
//! cost seconds per step. Here each parameter's first and second moments live in one f32 tensor
//! `[2, numel]`, and on the CPU a step is one pass over memory per parameter
//! (`kernels::cpu::adamw`: weight, moments and gradient read once, split among the threads in fixed
//! chunks, so the result does not depend on the split). Other devices use the same math in tensor
//! ops.

use candle_core::{DType, Tensor, Var};

use crate::kernels::cpu::adamw::{self, Coefficients, Gradient};

use crate::error::{Context, Result};
use crate::train::grads::{Grads, SparseGrad};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    /// transformers' `TrainingArguments` defaults.
    fn default() -> Self {
        AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

/// transformers' Trainer exempts biases and LayerNorm weights from weight decay.
pub fn decays(name: &str) -> bool {
    !(name.ends_with(".bias") || name.contains("norm"))
}

pub struct ParamState {
    pub name: String,
    pub var: Var,
    pub decay: bool,
    /// `[2, numel]` f32: row 0 the first moment, row 1 the second. A `Var` so that it is updated in
    /// place on any device (`Var::set` copies on the device: no round trip through the host).
    pub moments: Var,
}

pub struct AdamW {
    pub config: AdamWConfig,
    pub params: Vec<ParamState>,
    /// Optimizer steps taken so far (torch's `state["step"]`).
    pub step: u64,
}

impl AdamW {
    pub fn new(params: &[(String, Var)], config: AdamWConfig) -> Result<Self> {
        let params = params
            .iter()
            .map(|(name, var)| {
                let moments = Var::zeros((2, var.elem_count()), DType::F32, var.device())?;
                Ok(ParamState { name: name.clone(), var: var.clone(), decay: decays(name), moments })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(AdamW { config, params, step: 0 })
    }

    /// One update with learning rate `lr`. Parameters without a gradient are left untouched (as torch
    /// skips parameters whose `.grad` is None); a sparse gradient is zero on the rows it lacks, and
    /// every row moves as with the dense gradient.
    pub fn step(&mut self, grads: &Grads, lr: f64) -> Result<()> {
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let bias_correction1 = 1.0 - c.beta1.powi(t);
        let bias_correction2 = 1.0 - c.beta2.powi(t);
        for p in &self.params {
            let grad = match (grads.dense.get(p.var.as_tensor()), grads.sparse_of(p.var.as_tensor())) {
                (Some(g), _) => Grad::Dense(g),
                (None, Some(g)) => Grad::Sparse(g),
                (None, None) => continue,
            };
            let wd = if p.decay { c.weight_decay } else { 0.0 };
            let update = Update {
                beta1: c.beta1,
                beta2: c.beta2,
                eps: c.eps,
                decay_factor: 1.0 - lr * wd,
                step_size: lr / bias_correction1,
                bias_correction2_sqrt: bias_correction2.sqrt(),
            };
            update.apply(&p.var, &p.moments, grad).with_context(|| format!("AdamW step for `{}`", p.name))?;
        }
        Ok(())
    }
}

enum Grad<'a> {
    Dense(&'a Tensor),
    Sparse(&'a SparseGrad),
}

#[derive(Clone, Copy)]
struct Update {
    beta1: f64,
    beta2: f64,
    eps: f64,
    decay_factor: f64,
    step_size: f64,
    bias_correction2_sqrt: f64,
}

impl Update {
    fn coefficients(&self) -> Coefficients {
        Coefficients {
            one_minus_beta1: (1.0 - self.beta1) as f32,
            beta2: self.beta2 as f32,
            one_minus_beta2: (1.0 - self.beta2) as f32,
            decay_factor: self.decay_factor as f32,
            step_size: self.step_size as f32,
            bias_correction2_sqrt: self.bias_correction2_sqrt as f32,
            eps: self.eps as f32,
        }
    }

    fn apply(&self, var: &Var, moments: &Var, grad: Grad) -> Result<()> {
        let fused = var.device().is_cpu() && var.dtype() == DType::F32 && var.as_tensor().is_contiguous();
        if fused {
            let (values, gradient) = match grad {
                Grad::Dense(g) => (g.contiguous()?.flatten_all()?, Gradient::Dense),
                Grad::Sparse(g) if var.rank() == 2 => (g.values.to_dtype(DType::F32)?.contiguous()?, Gradient::Rows { rows: &g.rows, hidden: var.dim(1)? }),
                Grad::Sparse(g) => (g.dense(var.as_tensor())?.flatten_all()?, Gradient::Dense),
            };
            adamw::step(var.as_tensor(), moments.as_tensor(), &values, gradient, self.coefficients())?;
            return Ok(());
        }
        // Same math with tensor ops (GPU, or f64 weights).
        let g = match grad {
            Grad::Dense(g) => g.flatten_all()?,
            Grad::Sparse(g) => g.dense(var.as_tensor())?.flatten_all()?,
        }
        .to_dtype(DType::F32)?;
        let state = moments.as_tensor().detach();
        let m = state.get(0)?;
        let v = state.get(1)?;
        let m = ((m * self.beta1)? + (&g * (1.0 - self.beta1))?)?;
        let v = ((v * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
        let denom = ((v.sqrt()? / self.bias_correction2_sqrt)? + self.eps)?;
        let delta = ((m.clone() / denom)? * self.step_size)?.reshape(var.shape())?.to_dtype(var.dtype())?;
        let w = ((var.as_tensor().detach() * self.decay_factor)? - delta)?;
        var.set(&w)?;
        moments.set(&Tensor::stack(&[&m, &v], 0)?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// torch.optim.AdamW by hand, in f64, for two steps on a 3-element parameter: the fused CPU pass
    /// (f32 weights) and the tensor-op path that GPUs take (here f64 weights), weights and moments.
    #[test]
    fn matches_torch_formula() {
        let dev = Device::Cpu;
        let w0 = [0.5f64, -1.0, 2.0];
        let g = [[0.1f64, -0.2, 0.3], [0.05, 0.4, -0.1]];
        let (lr, wd, b1, b2, eps) = (0.01, 0.1, 0.9, 0.999, 1e-8);
        for dtype in [DType::F32, DType::F64] {
            let var = Var::from_tensor(&Tensor::new(&w0, &dev).unwrap().to_dtype(dtype).unwrap()).unwrap();
            let mut opt = AdamW::new(
                &[("w".to_string(), var.clone())],
                AdamWConfig { beta1: b1, beta2: b2, eps, weight_decay: wd },
            )
            .unwrap();
            let (mut w, mut m, mut v) = (w0, [0.0; 3], [0.0; 3]);
            for (t, gt) in g.iter().enumerate() {
                let loss = (var.as_tensor() * Tensor::new(gt, &dev).unwrap().to_dtype(dtype).unwrap()).unwrap().sum_all().unwrap();
                opt.step(&loss.backward().unwrap().into(), lr).unwrap();
                let t = (t + 1) as i32;
                for i in 0..3 {
                    w[i] *= 1.0 - lr * wd;
                    m[i] = b1 * m[i] + (1.0 - b1) * gt[i];
                    v[i] = b2 * v[i] + (1.0 - b2) * gt[i] * gt[i];
                    let denom = v[i].sqrt() / (1.0 - b2.powi(t)).sqrt() + eps;
                    w[i] -= lr / (1.0 - b1.powi(t)) * m[i] / denom;
                }
            }
            let got = var.as_tensor().to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap();
            let moments = opt.params[0].moments.as_tensor().to_dtype(DType::F64).unwrap().to_vec2::<f64>().unwrap();
            for i in 0..3 {
                assert!((got[i] - w[i]).abs() < 1e-6, "{dtype:?} weight {i}: {} vs {}", got[i], w[i]);
                assert!((moments[0][i] - m[i]).abs() < 1e-7, "{dtype:?} first moment {i}: {} vs {}", moments[0][i], m[i]);
                assert!((moments[1][i] - v[i]).abs() < 1e-8, "{dtype:?} second moment {i}: {} vs {}", moments[1][i], v[i]);
            }
        }
    }

    /// The passes split among threads in chunks; the weights and moments after three steps are the
    /// same bits on one thread as on four (a parameter of several chunks, decay on).
    #[test]
    fn a_step_gives_the_same_bits_on_one_thread_and_on_four() {
        let dev = Device::Cpu;
        let n = 3 * (1 << 16) + 123;
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let w: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.37).sin()).collect();
                let var = Var::from_vec(w, n, &dev).unwrap();
                let mut opt = AdamW::new(&[("w".to_string(), var.clone())], AdamWConfig { weight_decay: 0.01, ..Default::default() }).unwrap();
                for step in 0..3 {
                    let g: Vec<f32> = (0..n).map(|i| ((i * (step + 2)) as f32 * 0.11).cos()).collect();
                    let loss = (var.as_tensor() * Tensor::from_vec(g, n, &dev).unwrap()).unwrap().sum_all().unwrap();
                    opt.step(&loss.backward().unwrap().into(), 1e-3).unwrap();
                }
                let bits = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
                (bits(var.as_tensor()), bits(&opt.params[0].moments))
            })
        };
        let (one, four) = (run(1), run(4));
        assert!(one.0 == four.0, "weights differ between 1 and 4 threads");
        assert!(one.1 == four.1, "moments differ between 1 and 4 threads");
    }

    #[test]
    fn no_decay_for_biases_and_norms() {
        assert!(decays("model.layers.1.attn.Wqkv.weight"));
        assert!(!decays("model.layers.1.attn_norm.weight"));
        assert!(!decays("classifier.bias"));
        assert!(!decays("model.final_norm.weight"));
    }
}
