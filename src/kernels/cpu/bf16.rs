//! bf16 matrix products for inference, on CPUs with AVX-512 BF16 (`vdpbf16ps`).
//!
//! candle converts bf16 to f32 before multiplying on the CPU, so a bf16 model is no faster than an
//! f32 one. This is PyTorch's `autocast(cpu, bfloat16)` for the linear layers: weights rounded to bf16
//! once (packed for the kernel when the model is switched), activations rounded to bf16 per product,
//! products summed in f32, output f32. Everything else (LayerNorm, attention, activations) stays f32.
//!
//! The kernel: weights are packed in panels of `NR` = 32 output columns, k-pairs interleaved, the
//! layout `vdpbf16ps` consumes (each 32-bit lane holds two consecutive k of one column). A tile of
//! `MR` = 8 rows × 32 columns lives in 16 zmm accumulators; per k-pair it costs two panel loads, eight
//! broadcasts and sixteen `vdpbf16ps` (64 flops each). Panels are shared out among rayon threads.

use rayon::prelude::*;

const NR: usize = 32;
const MR: usize = 8;

/// Whether this CPU can run the bf16 kernel.
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Round to nearest even, as PyTorch rounds f32 to bf16.
fn bf16_bits(v: f32) -> u16 {
    half::bf16::from_f32(v).to_bits()
}

/// A weight matrix `[n, k]` (PyTorch's `[out, in]`) rounded to bf16 and packed for the kernel.
#[derive(Debug)]
pub struct PackedWeight {
    n: usize,
    k: usize,
    /// k rounded up to even (the kernel consumes k in pairs; the pad is zero).
    kp: usize,
    /// `[panels][kp / 2][NR][2]`
    panels: Vec<u16>,
}

impl PackedWeight {
    pub fn pack(w: &[f32], n: usize, k: usize) -> Self {
        let kp = k.div_ceil(2) * 2;
        let n_panels = n.div_ceil(NR);
        let mut panels = vec![0u16; n_panels * kp * NR];
        panels.par_chunks_mut(kp * NR).enumerate().for_each(|(p, panel)| {
            for j in 0..NR {
                let col = p * NR + j;
                if col >= n {
                    break;
                }
                let row = &w[col * k..(col + 1) * k];
                for (kk, &v) in row.iter().enumerate() {
                    panel[((kk / 2) * NR + j) * 2 + kk % 2] = bf16_bits(v);
                }
            }
        });
        PackedWeight { n, k, kp, panels }
    }

    pub fn out_dim(&self) -> usize {
        self.n
    }

    /// `x [m, k]` (f32, row-major) times the weight transposed: `[m, n]` in f32, plus `bias`.
    ///
    /// Safe to call on any CPU and with any input: the CPU's AVX-512 BF16 support and the operands'
    /// sizes are checked here, so the kernel's preconditions cannot be broken from safe code.
    pub fn matmul(&self, x: &[f32], m: usize, bias: Option<&[f32]>) -> candle_core::Result<Vec<f32>> {
        if !supported() {
            candle_core::bail!("bf16 products need a CPU with AVX-512 BF16; use f32 on this machine");
        }
        if x.len() != m * self.k {
            candle_core::bail!("bf16 matmul: input has {} values, expected [{m}, {}]", x.len(), self.k);
        }
        if bias.is_some_and(|b| b.len() != self.n) {
            candle_core::bail!("bf16 matmul: bias has {} values, expected {}", bias.map_or(0, <[f32]>::len), self.n);
        }
        let (k, kp, n) = (self.k, self.kp, self.n);
        // Activations to bf16, rows padded to a multiple of MR and k to kp with zeros.
        let mp = m.div_ceil(MR) * MR;
        let mut a = vec![0u16; mp * kp];
        a.par_chunks_mut(kp * 64).zip(x.par_chunks(k * 64)).for_each(|(dst, src)| {
            for (d, s) in dst.chunks_mut(kp).zip(src.chunks(k)) {
                to_bf16_row(s, d);
            }
        });
        let mut c = vec![0f32; m * n];
        let out = crate::kernels::cpu::kernels::Shared(c.as_mut_ptr());
        self.panels.par_chunks(kp * NR).enumerate().for_each(|(p, panel)| {
            let out = out;
            let col0 = p * NR;
            let cols = NR.min(n - col0);
            for r0 in (0..m).step_by(MR) {
                let rows = MR.min(m - r0);
                // `supported()` was checked above; `a` holds `mp` ≥ r0 + MR rows of kp values, `panel`
                // kp × NR values, `c` m × n with rows r0..r0 + rows and columns col0..col0 + cols in
                // range (cols ≤ n − col0), `bias` has n values (checked); tasks write disjoint columns.
                // SAFETY: by the above, every read and write of the kernel stays inside its buffer.
                unsafe {
                    kernel(a.as_ptr().add(r0 * kp), kp, panel.as_ptr(), out.0.add(r0 * n + col0), n, rows, cols, bias.map(|b| &b[col0..col0 + cols]));
                }
            }
        });
        Ok(c)
    }
}

/// f32 → bf16 (round to nearest even) for one row; vectorised with `vcvtne2ps2bf16`.
fn to_bf16_row(src: &[f32], dst: &mut [u16]) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    {
        if supported() {
            // SAFETY: the CPU has AVX-512 BF16 (checked); every access is within src and dst.
            done = unsafe { to_bf16_simd(src, dst) };
        }
    }
    for (d, &v) in dst[done..].iter_mut().zip(&src[done..]) {
        *d = bf16_bits(v);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn to_bf16_simd(src: &[f32], dst: &mut [u16]) -> usize {
    // SAFETY: the caller guarantees AVX-512F/BF16; each 32-lane load and store covers indices c·32..c·32+32 < min(src.len(), dst.len()).
    unsafe {
        use std::arch::x86_64::*;
        let chunks = src.len().min(dst.len()) / 32;
        for c in 0..chunks {
            let lo = _mm512_loadu_ps(src.as_ptr().add(c * 32));
            let hi = _mm512_loadu_ps(src.as_ptr().add(c * 32 + 16));
            let v = _mm512_cvtne2ps_pbh(hi, lo); // lanes 0..16 from lo, 16..32 from hi
            _mm512_storeu_si512(dst.as_mut_ptr().add(c * 32) as *mut _, std::mem::transmute::<__m512bh, __m512i>(v));
        }
        chunks * 32
    }
}

/// `x · Wᵀ (+ bias)` in bf16 as a candle op on f32 CPU tensors (no backward: inference only).
#[derive(Clone, Debug)]
pub struct Bf16Linear {
    pub weight: std::sync::Arc<PackedWeight>,
    pub bias: Option<std::sync::Arc<Vec<f32>>>,
}

impl candle_core::CustomOp1 for Bf16Linear {
    fn name(&self) -> &'static str {
        "bf16-linear"
    }

    fn cpu_fwd(&self, s: &candle_core::CpuStorage, l: &candle_core::Layout) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let (a, b) = l.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg("bf16 linear: non-contiguous input".into()))?;
        let candle_core::CpuStorage::F32(x) = s else { candle_core::bail!("bf16 linear: f32 input only") };
        let mut dims = l.dims().to_vec();
        let k = dims.last().copied().unwrap_or(0);
        if k != self.weight.k {
            candle_core::bail!("bf16 linear: input width {k}, weight expects {}", self.weight.k);
        }
        let y = self.weight.matmul(&x[a..b], (b - a) / k.max(1), self.bias.as_deref().map(Vec::as_slice))?;
        *dims.last_mut().unwrap() = self.weight.n;
        Ok((candle_core::CpuStorage::F32(y), candle_core::Shape::from(dims)))
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel(a: *const u16, kp: usize, b: *const u16, c: *mut f32, ldc: usize, rows: usize, cols: usize, bias: Option<&[f32]>) {
    // SAFETY: the caller guarantees AVX-512 BF16 and passes a packed A panel of MR rows × kp, a packed B panel of kp × NR, and a C block of `rows` rows of `cols` ≤ NR valid elements at stride ldc.
    unsafe {
        use std::arch::x86_64::*;
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        for kk in 0..kp / 2 {
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(kk * NR * 2) as *const _));
            let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(kk * NR * 2 + 32) as *const _));
            for (r, acc) in acc.iter_mut().enumerate() {
                let pair = (a.add(r * kp + 2 * kk) as *const i32).read_unaligned();
                let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                acc[0] = _mm512_dpbf16_ps(acc[0], av, b0);
                acc[1] = _mm512_dpbf16_ps(acc[1], av, b1);
            }
        }
        let mut tile = [0f32; NR];
        for (r, acc) in acc.iter().enumerate().take(rows) {
            _mm512_storeu_ps(tile.as_mut_ptr(), acc[0]);
            _mm512_storeu_ps(tile.as_mut_ptr().add(16), acc[1]);
            let dst = std::slice::from_raw_parts_mut(c.add(r * ldc), cols);
            match bias {
                Some(bias) => dst.iter_mut().zip(&tile).zip(bias).for_each(|((d, &t), &b)| *d = t + b),
                None => dst.copy_from_slice(&tile[..cols]),
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel(_: *const u16, _: usize, _: *const u16, _: *mut f32, _: usize, _: usize, _: usize, _: Option<&[f32]>) {
    unreachable!("bf16 kernel requested on a CPU without AVX-512 BF16; supported() guards every call")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_matmul_equals_a_reference_on_bf16_rounded_inputs() {
        if !supported() {
            eprintln!("skipped: this CPU has no AVX-512 BF16");
            return;
        }
        // Odd sizes: partial row tiles, partial column panels, odd k.
        let (m, k, n) = (13, 37, 45);
        let x: Vec<f32> = (0..m * k).map(|i| ((i as f32) * 0.731).sin()).collect();
        let w: Vec<f32> = (0..n * k).map(|i| ((i as f32) * 0.377).cos()).collect();
        let bias: Vec<f32> = (0..n).map(|i| i as f32 * 0.01).collect();
        let y = PackedWeight::pack(&w, n, k).matmul(&x, m, Some(&bias)).unwrap();
        let r = |v: f32| half::bf16::from_f32(v).to_f32() as f64;
        for i in 0..m {
            for j in 0..n {
                let want: f64 = (0..k).map(|t| r(x[i * k + t]) * r(w[j * k + t])).sum::<f64>() + bias[j] as f64;
                let got = y[i * n + j] as f64;
                assert!((got - want).abs() < 1e-4, "[{i}, {j}]: {got} vs {want}");
            }
        }
    }
}
