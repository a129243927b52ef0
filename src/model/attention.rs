//! Attention without padding: one fused CPU kernel per layer, with its own backward.
//!
//! Input is the `Wqkv` projection of the concatenated real tokens of a batch, `[tokens, 3 · hidden]`
//! (per token: q, k, v, each `heads × head_dim`), and the sequences' cumulative lengths
//! (`cu_seqlens`, as flash-attention's varlen interface takes them). Output is `[tokens, hidden]`, the
//! heads already concatenated as `Wo` expects them. For each (sequence, head) the kernel
//!
//! 1. applies the rotary embedding to q and k (positions restart at 0 in every sequence),
//! 2. computes scores `q·kᵀ/√d` one tile of query rows at a time, only over the keys the tile can
//!    see: the whole sequence for global layers, `|i − j| <= window` for local layers (banded, so a
//!    local layer costs O(n · window), not O(n²)),
//! 3. softmax and `P · v`, written straight into the output rows.
//!
//! No `[batch, heads, seq, seq]` tensor, mask or padding exists. The backward recomputes each tile's
//! probabilities instead of keeping them (flash-attention's trade: one extra `q·kᵀ` per tile for
//! O(n · window) memory) and returns the gradient for the whole `Wqkv` output, rotary included.
//! The small matrix products run on `gemm` single-threaded, one (sequence, head) per rayon task.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Shape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use crate::error::Result;
use crate::model::kernels::{slice, Real, Shared};

/// Query rows per tile: bounds the score buffer to `TILE × (TILE + 2 · window)`.
const TILE: usize = 64;

/// Shapes and tables shared by the forward and backward kernels of one layer.
#[derive(Clone, Debug)]
pub struct VarlenAttention {
    /// `[n_seq + 1]`, starting at 0: sequence `s` is rows `cu_seqlens[s]..cu_seqlens[s + 1]`.
    pub cu_seqlens: Arc<Vec<usize>>,
    pub heads: usize,
    pub head_dim: usize,
    /// `Some(w)`: local attention, query i sees keys with |i − j| <= w.
    pub window: Option<usize>,
    /// Rotary tables `[max_len, head_dim]` as transformers computes them (f32).
    pub cos: Arc<Vec<f32>>,
    pub sin: Arc<Vec<f32>>,
}

/// `dst[m×n] = alpha·dst + beta·(lhs[m×k] · rhs[k×n])` with explicit (row, column) strides.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul<T: Real>(
    m: usize, n: usize, k: usize,
    dst: *mut T, dst_rs: usize, dst_cs: usize, accumulate: bool,
    lhs: *const T, lhs_rs: usize, lhs_cs: usize,
    rhs: *const T, rhs_rs: usize, rhs_cs: usize,
    beta: T,
) {
    if m == 0 || n == 0 {
        return;
    }
    gemm::gemm(
        m, n, k,
        dst, dst_cs as isize, dst_rs as isize, accumulate,
        lhs, lhs_cs as isize, lhs_rs as isize,
        rhs, rhs_cs as isize, rhs_rs as isize,
        if accumulate { T::ONE } else { T::ZERO }, beta,
        false, false, false, Parallelism::None,
    )
}

impl VarlenAttention {
    fn hidden(&self) -> usize {
        self.heads * self.head_dim
    }

    fn total(&self) -> usize {
        *self.cu_seqlens.last().unwrap_or(&0)
    }

    /// Key range a tile of queries `q0..q1` of a sequence of `len` tokens attends to.
    fn keys(&self, q0: usize, q1: usize, len: usize) -> (usize, usize) {
        match self.window {
            Some(w) => (q0.saturating_sub(w), (q1 + w).min(len)),
            None => (0, len),
        }
    }

    /// Gathers head `h` of part `part` (0 q, 1 k, 2 v) of a sequence into `[len, d]`, rotated for q, k.
    fn gather<T: Real>(&self, qkv: &[T], start: usize, len: usize, part: usize, h: usize, out: &mut [T]) {
        let (d, half, row) = (self.head_dim, self.head_dim / 2, 3 * self.hidden());
        for i in 0..len {
            let src = &qkv[(start + i) * row + part * self.hidden() + h * d..][..d];
            let dst = &mut out[i * d..(i + 1) * d];
            if part == 2 {
                dst.copy_from_slice(src);
                continue;
            }
            let (cos, sin) = (&self.cos[i * d..(i + 1) * d], &self.sin[i * d..(i + 1) * d]);
            for e in 0..d {
                // rotate_half(x) = cat(−x₂, x₁)
                let rot = if e < half { T::ZERO - src[e + half] } else { src[e - half] };
                dst[e] = src[e] * T::from_f32(cos[e]) + rot * T::from_f32(sin[e]);
            }
        }
    }

    /// Scores of query tile `q0..q1` against keys `k0..k1`, turned into probabilities in place.
    fn probs<T: Real>(&self, q: &[T], k: &[T], q0: usize, q1: usize, k0: usize, k1: usize, p: &mut [T]) {
        let (d, kn) = (self.head_dim, k1 - k0);
        let scale = T::from_f64((d as f64).powf(-0.5));
        unsafe {
            matmul(q1 - q0, kn, d, p.as_mut_ptr(), kn, 1, false, q[q0 * d..].as_ptr(), d, 1, k[k0 * d..].as_ptr(), 1, d, scale);
        }
        for (r, row) in p.chunks_mut(kn).take(q1 - q0).enumerate() {
            let i = q0 + r;
            if let Some(w) = self.window {
                for (c, v) in row.iter_mut().enumerate() {
                    if i.abs_diff(k0 + c) > w {
                        *v = T::NEG_INF;
                    }
                }
            }
            let max = row.iter().copied().fold(T::NEG_INF, |a, b| if b > a { b } else { a });
            let inv = T::ONE / T::exp_shifted(row, max);
            for v in row.iter_mut() {
                *v = *v * inv;
            }
        }
    }

    fn units(&self) -> Vec<(usize, usize, usize)> {
        let n_seq = self.cu_seqlens.len().saturating_sub(1);
        (0..n_seq)
            .flat_map(|s| {
                let (start, end) = (self.cu_seqlens[s], self.cu_seqlens[s + 1]);
                (0..self.heads).map(move |h| (start, end - start, h))
            })
            .filter(|&(_, len, _)| len > 0)
            .collect()
    }

    fn forward_cpu<T: Real>(&self, qkv: &[T]) -> Vec<T> {
        let (d, hidden) = (self.head_dim, self.hidden());
        let mut out = vec![T::ZERO; self.total() * hidden];
        let dst = Shared(out.as_mut_ptr());
        self.units().into_par_iter().for_each(|(start, len, h)| {
            let dst = dst;
            let (mut q, mut k, mut v) = (vec![T::ZERO; len * d], vec![T::ZERO; len * d], vec![T::ZERO; len * d]);
            self.gather(qkv, start, len, 0, h, &mut q);
            self.gather(qkv, start, len, 1, h, &mut k);
            self.gather(qkv, start, len, 2, h, &mut v);
            let mut p = vec![T::ZERO; TILE.min(len) * len.min(TILE + 2 * self.window.unwrap_or(len))];
            for q0 in (0..len).step_by(TILE) {
                let q1 = (q0 + TILE).min(len);
                let (k0, k1) = self.keys(q0, q1, len);
                self.probs(&q, &k, q0, q1, k0, k1, &mut p);
                // out rows of this tile, this head's columns: P · v
                unsafe {
                    let o = dst.0.add((start + q0) * hidden + h * d);
                    matmul(q1 - q0, d, k1 - k0, o, hidden, 1, false, p.as_ptr(), k1 - k0, 1, v[k0 * d..].as_ptr(), d, 1, T::ONE);
                }
            }
        });
        out
    }

    fn backward_cpu<T: Real>(&self, qkv: &[T], out: &[T], grad: &[T]) -> Vec<T> {
        let (d, hidden, half) = (self.head_dim, self.hidden(), self.head_dim / 2);
        let scale = T::from_f64((d as f64).powf(-0.5));
        let mut dqkv = vec![T::ZERO; self.total() * 3 * hidden];
        let dst = Shared(dqkv.as_mut_ptr());
        self.units().into_par_iter().for_each(|(start, len, h)| {
            let dst = dst;
            let buf = || vec![T::ZERO; len * d];
            let (mut q, mut k, mut v) = (buf(), buf(), buf());
            self.gather(qkv, start, len, 0, h, &mut q);
            self.gather(qkv, start, len, 1, h, &mut k);
            self.gather(qkv, start, len, 2, h, &mut v);
            let (mut dq, mut dk, mut dv) = (buf(), buf(), buf());
            let width = len.min(TILE + 2 * self.window.unwrap_or(len));
            let (mut p, mut dp) = (vec![T::ZERO; TILE.min(len) * width], vec![T::ZERO; TILE.min(len) * width]);
            let go = &grad[start * hidden + h * d..]; // dO rows, stride `hidden`
            for q0 in (0..len).step_by(TILE) {
                let q1 = (q0 + TILE).min(len);
                let (k0, k1) = self.keys(q0, q1, len);
                let (m, kn) = (q1 - q0, k1 - k0);
                self.probs(&q, &k, q0, q1, k0, k1, &mut p);
                unsafe {
                    // dV[k0..k1] += Pᵀ · dO
                    matmul(kn, d, m, dv[k0 * d..].as_mut_ptr(), d, 1, true, p.as_ptr(), 1, kn, go[q0 * hidden..].as_ptr(), hidden, 1, T::ONE);
                    // dP = dO · Vᵀ
                    matmul(m, kn, d, dp.as_mut_ptr(), kn, 1, false, go[q0 * hidden..].as_ptr(), hidden, 1, v[k0 * d..].as_ptr(), 1, d, T::ONE);
                }
                // dS = P ⊙ (dP − rowsum(dP ⊙ P)), and rowsum(dP ⊙ P) = dO_i · O_i.
                for r in 0..m {
                    let row = (start + q0 + r) * hidden + h * d;
                    let dot = (0..d).fold(T::ZERO, |acc, e| acc + grad[row + e] * out[row + e]);
                    for c in 0..kn {
                        let i = r * kn + c;
                        dp[i] = p[i] * (dp[i] - dot);
                    }
                }
                unsafe {
                    // dQ[q0..q1] = scale · dS · K ; dK[k0..k1] += scale · dSᵀ · Q
                    matmul(m, d, kn, dq[q0 * d..].as_mut_ptr(), d, 1, false, dp.as_ptr(), kn, 1, k[k0 * d..].as_ptr(), d, 1, scale);
                    matmul(kn, d, m, dk[k0 * d..].as_mut_ptr(), d, 1, true, dp.as_ptr(), 1, kn, q[q0 * d..].as_ptr(), d, 1, scale);
                }
            }
            // Back through the rotation: dx = dy ⊙ cos + rotate_halfᵀ(dy ⊙ sin), rotate_halfᵀ(z) = cat(z₂, −z₁).
            for i in 0..len {
                let (cos, sin) = (&self.cos[i * d..(i + 1) * d], &self.sin[i * d..(i + 1) * d]);
                let row = (start + i) * 3 * hidden + h * d;
                for (part, g) in [(0, &dq), (1, &dk)] {
                    let g = &g[i * d..(i + 1) * d];
                    for e in 0..d {
                        let rot = if e < half { g[e + half] * T::from_f32(sin[e + half]) } else { T::ZERO - g[e - half] * T::from_f32(sin[e - half]) };
                        unsafe { *dst.0.add(row + part * hidden + e) = g[e] * T::from_f32(cos[e]) + rot };
                    }
                }
                for e in 0..d {
                    unsafe { *dst.0.add(row + 2 * hidden + e) = dv[i * d + e] };
                }
            }
        });
        dqkv
    }

    /// Runs the kernel on `qkv` `[tokens, 3 · hidden]`; differentiable with respect to `qkv`.
    pub fn apply(&self, qkv: &Tensor) -> Result<Tensor> {
        Ok(qkv.contiguous()?.apply_op1(self.clone())?)
    }
}


impl CustomOp1 for VarlenAttention {
    fn name(&self) -> &'static str {
        "varlen-attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (tokens, width) = layout.shape().dims2()?;
        if tokens != self.total() || width != 3 * self.hidden() {
            candle_core::bail!("attention: input {:?}, expected [{}, {}]", layout.dims(), self.total(), 3 * self.hidden());
        }
        let out = match storage {
            CpuStorage::F32(v) => CpuStorage::F32(self.forward_cpu(slice(v, layout)?)),
            CpuStorage::F64(v) => CpuStorage::F64(self.forward_cpu(slice(v, layout)?)),
            _ => candle_core::bail!("attention kernel: f32 or f64 only"),
        };
        Ok((out, Shape::from((tokens, self.hidden()))))
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let grad = arg.contiguous()?.apply_op3(res, &grad_res.contiguous()?, Backward(self.clone()))?;
        Ok(Some(grad))
    }
}

/// The backward kernel as an op of (qkv, output, output gradient) → qkv gradient.
struct Backward(VarlenAttention);

impl CustomOp3 for Backward {
    fn name(&self) -> &'static str {
        "varlen-attention-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = match (s1, s2, s3) {
            (CpuStorage::F32(a), CpuStorage::F32(b), CpuStorage::F32(c)) => {
                CpuStorage::F32(self.0.backward_cpu(slice(a, l1)?, slice(b, l2)?, slice(c, l3)?))
            }
            (CpuStorage::F64(a), CpuStorage::F64(b), CpuStorage::F64(c)) => {
                CpuStorage::F64(self.0.backward_cpu(slice(a, l1)?, slice(b, l2)?, slice(c, l3)?))
            }
            _ => candle_core::bail!("attention backward: f32 or f64 only"),
        };
        Ok((out, l1.shape().clone()))
    }
}
