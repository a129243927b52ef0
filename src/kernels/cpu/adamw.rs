//! AdamW's update on the CPU in one pass over memory: each element's weight, first and second
//! moment and gradient are read once and the weight and moments written once (torch's fused AdamW
//! does the same), split among the threads in fixed chunks of whole rows.
//!
//! The op needs two mutable buffers, the weights (a `Var`'s storage) and the moments (`[2, numel]`,
//! the optimizer's): the outer in-place op takes the moments' storage, and inside it an in-place op
//! on the weights borrows that storage mutably. Both are candle's safe in-place ops; the moments'
//! lock is taken first, then the weights' and the gradient's (no one else holds them in another
//! order).
//!
//! Element by element, the arithmetic is torch's single-tensor AdamW in f32; a gradient row absent
//! from a sparse gradient is a gradient of 0.0 through the same arithmetic, the bits a dense
//! gradient with zero rows gives; and the threads' split cannot change a bit of the result.

use std::cell::RefCell;

use candle_core::{CpuStorage, InplaceOp1, InplaceOp2, Layout, Tensor};
use rayon::prelude::*;

/// Elements per thread's share (whole rows): parameters below it run on one thread.
const CHUNK: usize = 1 << 16;

/// One step's coefficients, each computed in f64 and rounded once to f32 (as torch passes Python
/// floats to its f32 kernels).
#[derive(Clone, Copy, Debug)]
pub struct Coefficients {
    /// 1 - β₁.
    pub one_minus_beta1: f32,
    pub beta2: f32,
    /// 1 - β₂.
    pub one_minus_beta2: f32,
    /// 1 - lr · weight_decay.
    pub decay_factor: f32,
    /// lr / (1 - β₁ᵗ).
    pub step_size: f32,
    /// √(1 - β₂ᵗ).
    pub bias_correction2_sqrt: f32,
    pub eps: f32,
}

impl Coefficients {
    /// torch: exp_avg.lerp_(grad, 1 - β₁); exp_avg_sq.mul_(β₂).addcmul_(grad, grad, 1 - β₂);
    /// param.mul_(1 - lr·wd); param.addcdiv_(exp_avg, exp_avg_sq.sqrt() / √bc₂ + ε, -lr / bc₁).
    #[inline(always)]
    fn apply(&self, w: &mut f32, m: &mut f32, v: &mut f32, g: f32) {
        *m += self.one_minus_beta1 * (g - *m);
        *v = *v * self.beta2 + self.one_minus_beta2 * g * g;
        let denom = v.sqrt() / self.bias_correction2_sqrt + self.eps;
        *w = *w * self.decay_factor - self.step_size * (*m / denom);
    }
}

/// The gradient of a step: dense (`numel` values), or some rows of a `[rows, hidden]` matrix.
#[derive(Clone, Copy, Debug)]
pub enum Gradient<'a> {
    Dense,
    /// Ascending, distinct row indices; the gradient tensor is `[rows.len(), hidden]`.
    Rows { rows: &'a [u32], hidden: usize },
}

/// Updates `weights` (a contiguous f32 tensor) and `moments` (`[2, numel]` f32: first moment, then
/// second) in place from `grad` (contiguous f32: `numel` values, or the rows of `Gradient::Rows`).
pub fn step(weights: &Tensor, moments: &Tensor, grad: &Tensor, gradient: Gradient, k: Coefficients) -> candle_core::Result<()> {
    moments.inplace_op1(&OnMoments { weights, grad, gradient, k })
}

struct OnMoments<'a> {
    weights: &'a Tensor,
    grad: &'a Tensor,
    gradient: Gradient<'a>,
    k: Coefficients,
}

impl InplaceOp1 for OnMoments<'_> {
    fn name(&self) -> &'static str {
        "adamw"
    }
    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> candle_core::Result<()> {
        let (a, b) = l.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg("AdamW moments not contiguous".into()))?;
        let CpuStorage::F32(mv) = s else { candle_core::bail!("AdamW moments must be f32") };
        let (m, v) = mv[a..b].split_at_mut((b - a) / 2);
        self.weights.inplace_op2(self.grad, &OnWeights { m: RefCell::new(m), v: RefCell::new(v), gradient: self.gradient, k: self.k })
    }
}

struct OnWeights<'a> {
    m: RefCell<&'a mut [f32]>,
    v: RefCell<&'a mut [f32]>,
    gradient: Gradient<'a>,
    k: Coefficients,
}

impl InplaceOp2 for OnWeights<'_> {
    fn name(&self) -> &'static str {
        "adamw"
    }
    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<()> {
        let (a, b) = l1.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg("AdamW weights not contiguous".into()))?;
        let CpuStorage::F32(w) = s1 else { candle_core::bail!("in-place AdamW needs f32 weights") };
        let w = &mut w[a..b];
        let g = match (s2, l2.contiguous_offsets()) {
            (CpuStorage::F32(g), Some((a, b))) => &g[a..b],
            _ => candle_core::bail!("the AdamW gradient must be a contiguous f32 tensor"),
        };
        let (mut m, mut v) = (self.m.borrow_mut(), self.v.borrow_mut());
        let (m, v) = (&mut **m, &mut **v);
        if m.len() != w.len() || v.len() != w.len() {
            candle_core::bail!("AdamW moments of {} elements for {} weights", m.len(), w.len());
        }
        let k = self.k;
        match self.gradient {
            Gradient::Dense => {
                if g.len() != w.len() {
                    candle_core::bail!("a gradient of {} elements for {} weights", g.len(), w.len());
                }
                w.par_chunks_mut(CHUNK).zip(m.par_chunks_mut(CHUNK)).zip(v.par_chunks_mut(CHUNK)).zip(g.par_chunks(CHUNK)).for_each(
                    |(((w, m), v), g)| {
                        for (((w, m), v), &g) in w.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
                            k.apply(w, m, v, g);
                        }
                    },
                );
            }
            Gradient::Rows { rows, hidden: h } => {
                let fits = h > 0 && w.len() % h == 0 && g.len() == rows.len() * h && rows.iter().all(|&r| (r as usize + 1) * h <= w.len());
                if !fits {
                    candle_core::bail!("a gradient of {} rows of {h} does not fit {} weights", rows.len(), w.len());
                }
                let span = (CHUNK / h).max(1) * h;
                w.par_chunks_mut(span).zip(m.par_chunks_mut(span)).zip(v.par_chunks_mut(span)).enumerate().for_each(|(c, ((w, m), v))| {
                    let first = (c * span / h) as u32;
                    let mut next = rows.partition_point(|&r| r < first);
                    for (i, ((w, m), v)) in w.chunks_mut(h).zip(m.chunks_mut(h)).zip(v.chunks_mut(h)).enumerate() {
                        if rows.get(next) == Some(&(first + i as u32)) {
                            for (((w, m), v), &g) in w.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(&g[next * h..(next + 1) * h]) {
                                k.apply(w, m, v, g);
                            }
                            next += 1;
                        } else {
                            for ((w, m), v) in w.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()) {
                                k.apply(w, m, v, 0.0);
                            }
                        }
                    }
                });
            }
        }
        Ok(())
    }
}
