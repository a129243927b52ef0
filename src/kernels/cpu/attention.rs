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
//! The small matrix products run single-threaded (`small_matmul`), one (sequence, head) per rayon task.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::error::Result;
use crate::kernels::cpu::kernels::{slice, sum16, wide_f32, Real, Shared};
use crate::kernels::cpu::small_matmul::{small_matmul, Strided};

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

/// A row-major matrix with rows `stride` apart, as an A operand.
fn rows<T>(m: &[T], stride: usize) -> Strided<T> {
    Strided { ptr: m.as_ptr(), rs: stride, cs: 1 }
}

/// The transpose of a row-major matrix with rows `stride` apart, as an A operand.
fn columns<T>(m: &[T], stride: usize) -> Strided<T> {
    Strided { ptr: m.as_ptr(), rs: 1, cs: stride }
}

/// `[rows, cols]` → `[cols, rows]`, so that the products against keys/values read contiguous rows.
#[inline(always)]
fn transpose<T: Real>(m: &[T], rows: usize, cols: usize) -> Vec<T> {
    let mut t = vec![T::ZERO; rows * cols];
    for (r, row) in m.chunks_exact(cols).take(rows).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            t[c * rows + r] = v;
        }
    }
    t
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
    #[inline(always)]
    fn gather<T: Real>(&self, qkv: &[T], start: usize, len: usize, part: usize, h: usize, out: &mut [T]) {
        let (d, half, row) = (self.head_dim, self.head_dim / 2, 3 * self.hidden());
        for i in 0..len {
            let src = &qkv[(start + i) * row + part * self.hidden() + h * d..][..d];
            let dst = &mut out[i * d..(i + 1) * d];
            if part == 2 {
                dst.copy_from_slice(src);
                continue;
            }
            let ((c1, c2), (n1, n2)) = (self.cos[i * d..(i + 1) * d].split_at(half), self.sin[i * d..(i + 1) * d].split_at(half));
            let ((x1, x2), (o1, o2)) = (src.split_at(half), dst.split_at_mut(half));
            // x·cos + rotate_half(x)·sin, rotate_half(x) = cat(−x₂, x₁)
            for ((((o, &a), &b), &c), &s) in o1.iter_mut().zip(x1).zip(x2).zip(c1).zip(n1) {
                *o = a * T::from_f32(c) - b * T::from_f32(s);
            }
            for ((((o, &b), &a), &c), &s) in o2.iter_mut().zip(x2).zip(x1).zip(c2).zip(n2) {
                *o = b * T::from_f32(c) + a * T::from_f32(s);
            }
        }
    }

    /// Scores of query tile `q0..q1` against keys `k0..k1`, turned into probabilities in place.
    /// `kt` is k transposed, `[d, len]`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn probs<T: Real>(&self, q: &[T], kt: &[T], len: usize, q0: usize, q1: usize, k0: usize, k1: usize, p: &mut [T]) {
        let (d, kn) = (self.head_dim, k1 - k0);
        let scale = T::from_f64((d as f64).powf(-0.5));
        // q holds len rows of d, kt is [d, len] (read from column k0, kn wide), and p holds at least
        // (q1 − q0) rows of kn.
        // SAFETY: by the above the product stays inside each buffer; p does not alias q or kt.
        unsafe {
            small_matmul(q1 - q0, kn, d, scale, rows(&q[q0 * d..], d), kt[k0..].as_ptr(), len, p.as_mut_ptr(), kn, false);
        }
        for (r, row) in p.chunks_mut(kn).take(q1 - q0).enumerate() {
            let i = q0 + r;
            // Columns this query may see: the band |i − j| <= w in local layers, else all.
            let (lo, hi) = match self.window {
                Some(w) => (i.saturating_sub(w).max(k0) - k0, (i + w + 1).min(k1) - k0),
                None => (0, kn),
            };
            row[..lo].fill(T::ZERO);
            row[hi..].fill(T::ZERO);
            let seen = &mut row[lo..hi];
            let inv = T::ONE / T::exp_shifted(seen, T::max_of(seen));
            for v in seen.iter_mut() {
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
        let mut out = vec![T::ZERO; self.total() * self.hidden()];
        let dst = Shared(out.as_mut_ptr());
        let wide = wide_f32::<T>();
        self.units().into_par_iter().for_each(|unit| {
            if wide {
                // SAFETY: the CPU has AVX-512F (`wide_f32`); units write disjoint output rows/columns.
                unsafe { self.forward_unit_avx512(qkv, unit, dst) }
            } else {
                // SAFETY: as above, units write disjoint elements.
                unsafe { self.forward_unit(qkv, unit, dst) }
            }
        });
        out
    }

    /// `forward_unit` compiled for AVX-512, so that its element-wise loops run 16 lanes wide.
    #[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f"))]
    unsafe fn forward_unit_avx512<T: Real>(&self, qkv: &[T], unit: (usize, usize, usize), dst: Shared<T>) {
        // SAFETY: the caller guarantees AVX-512F and `forward_unit`'s contract, passed through unchanged.
        unsafe {
            self.forward_unit(qkv, unit, dst)
        }
    }

    /// One (sequence, head): its output columns of its rows.
    #[inline(always)]
    unsafe fn forward_unit<T: Real>(&self, qkv: &[T], (start, len, h): (usize, usize, usize), dst: Shared<T>) {
        // SAFETY: `dst` points at a `[tokens, hidden]` output that this (sequence, head) unit alone writes: rows start..start+len, columns h·d..(h+1)·d; `small_matmul` reads `p` and `v` slices it is handed in full and writes only that block.
        unsafe {
            let (d, hidden) = (self.head_dim, self.hidden());
            let (mut q, mut k, mut v) = (vec![T::ZERO; len * d], vec![T::ZERO; len * d], vec![T::ZERO; len * d]);
            self.gather(qkv, start, len, 0, h, &mut q);
            self.gather(qkv, start, len, 1, h, &mut k);
            self.gather(qkv, start, len, 2, h, &mut v);
            let kt = transpose(&k, len, d);
            let mut p = vec![T::ZERO; TILE.min(len) * len.min(TILE + 2 * self.window.unwrap_or(len))];
            for q0 in (0..len).step_by(TILE) {
                let q1 = (q0 + TILE).min(len);
                let (k0, k1) = self.keys(q0, q1, len);
                self.probs(&q, &kt, len, q0, q1, k0, k1, &mut p);
                // out rows of this tile, this head's columns: P · v
                let o = dst.0.add((start + q0) * hidden + h * d);
                small_matmul(q1 - q0, d, k1 - k0, T::ONE, rows(&p, k1 - k0), v[k0 * d..].as_ptr(), d, o, hidden, false);
            }
        }
    }

    fn backward_cpu<T: Real>(&self, qkv: &[T], out: &[T], grad: &[T]) -> Vec<T> {
        let mut dqkv = vec![T::ZERO; self.total() * 3 * self.hidden()];
        let dst = Shared(dqkv.as_mut_ptr());
        let wide = wide_f32::<T>();
        self.units().into_par_iter().for_each(|unit| {
            if wide {
                // SAFETY: the CPU has AVX-512F (`wide_f32`); units write disjoint gradient elements.
                unsafe { self.backward_unit_avx512(qkv, out, grad, unit, dst) }
            } else {
                // SAFETY: as above, units write disjoint elements.
                unsafe { self.backward_unit(qkv, out, grad, unit, dst) }
            }
        });
        dqkv
    }

    /// `backward_unit` compiled for AVX-512.
    #[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f"))]
    unsafe fn backward_unit_avx512<T: Real>(&self, qkv: &[T], out: &[T], grad: &[T], unit: (usize, usize, usize), dst: Shared<T>) {
        // SAFETY: the caller guarantees AVX-512F and `backward_unit`'s contract, passed through unchanged.
        unsafe {
            self.backward_unit(qkv, out, grad, unit, dst)
        }
    }

    /// One (sequence, head): the gradient of its q, k, v columns of its rows.
    #[inline(always)]
    unsafe fn backward_unit<T: Real>(&self, qkv: &[T], out: &[T], grad: &[T], (start, len, h): (usize, usize, usize), dst: Shared<T>) {
        // SAFETY: `dst` points at a `[tokens, 3·hidden]` gradient that this unit alone writes (its rows, its head's q/k/v columns, each `d` wide and in bounds); every `small_matmul` operand is a slice of a local buffer sized for the block it addresses.
        unsafe {
            let (d, hidden, half) = (self.head_dim, self.hidden(), self.head_dim / 2);
            let scale = T::from_f64((d as f64).powf(-0.5));
            let buf = || vec![T::ZERO; len * d];
            let (mut q, mut k, mut v) = (buf(), buf(), buf());
            self.gather(qkv, start, len, 0, h, &mut q);
            self.gather(qkv, start, len, 1, h, &mut k);
            self.gather(qkv, start, len, 2, h, &mut v);
            let (kt, vt) = (transpose(&k, len, d), transpose(&v, len, d));
            let (mut dq, mut dk, mut dv) = (buf(), buf(), buf());
            let width = len.min(TILE + 2 * self.window.unwrap_or(len));
            let (mut p, mut dp) = (vec![T::ZERO; TILE.min(len) * width], vec![T::ZERO; TILE.min(len) * width]);
            let go = &grad[start * hidden + h * d..]; // dO rows, stride `hidden`
            for q0 in (0..len).step_by(TILE) {
                let q1 = (q0 + TILE).min(len);
                let (k0, k1) = self.keys(q0, q1, len);
                let (m, kn) = (q1 - q0, k1 - k0);
                self.probs(&q, &kt, len, q0, q1, k0, k1, &mut p);
                // dV[k0..k1] += Pᵀ · dO
                small_matmul(kn, d, m, T::ONE, columns(&p, kn), go[q0 * hidden..].as_ptr(), hidden, dv[k0 * d..].as_mut_ptr(), d, true);
                // dP = dO · Vᵀ
                small_matmul(m, kn, d, T::ONE, rows(&go[q0 * hidden..], hidden), vt[k0..].as_ptr(), len, dp.as_mut_ptr(), kn, false);
                // dS = P ⊙ (dP − rowsum(dP ⊙ P)), and rowsum(dP ⊙ P) = dO_i · O_i.
                for (r, (dsr, pr)) in dp.chunks_mut(kn).zip(p.chunks(kn)).take(m).enumerate() {
                    let row = (start + q0 + r) * hidden + h * d;
                    let (g, o) = (&grad[row..row + d], &out[row..row + d]);
                    let dot = sum16(d, |e| g[e] * o[e]);
                    for (x, &pv) in dsr.iter_mut().zip(pr) {
                        *x = pv * (*x - dot);
                    }
                }
                // dQ[q0..q1] = scale · dS · K ; dK[k0..k1] += scale · dSᵀ · Q
                small_matmul(m, d, kn, scale, rows(&dp, kn), k[k0 * d..].as_ptr(), d, dq[q0 * d..].as_mut_ptr(), d, false);
                small_matmul(kn, d, m, scale, columns(&dp, kn), q[q0 * d..].as_ptr(), d, dk[k0 * d..].as_mut_ptr(), d, true);
            }
            // Back through the rotation: dx = dy ⊙ cos + rotate_halfᵀ(dy ⊙ sin), rotate_halfᵀ(z) = cat(z₂, −z₁).
            for i in 0..len {
                let ((c1, c2), (n1, n2)) = (self.cos[i * d..(i + 1) * d].split_at(half), self.sin[i * d..(i + 1) * d].split_at(half));
                let row = (start + i) * 3 * hidden + h * d;
                for (part, g) in [(0, &dq), (1, &dk)] {
                    let (g1, g2) = g[i * d..(i + 1) * d].split_at(half);
                    let (o1, o2) = std::slice::from_raw_parts_mut(dst.0.add(row + part * hidden), d).split_at_mut(half);
                    for ((((o, &a), &b), &c), &s) in o1.iter_mut().zip(g1).zip(g2).zip(c1).zip(n2) {
                        *o = a * T::from_f32(c) + b * T::from_f32(s);
                    }
                    for ((((o, &b), &a), &c), &s) in o2.iter_mut().zip(g2).zip(g1).zip(c2).zip(n1) {
                        *o = b * T::from_f32(c) - a * T::from_f32(s);
                    }
                }
                std::slice::from_raw_parts_mut(dst.0.add(row + 2 * hidden), d).copy_from_slice(&dv[i * d..(i + 1) * d]);
            }
        }
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
