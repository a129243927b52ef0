//! Fused CPU kernels with their own backward, for the row-wise steps of every layer.
//!
//! Composed of candle primitives, a LayerNorm is six passes over memory (mean, subtract, square,
//! mean, divide, scale), each output kept alive for the backward; the GeGLU is a split into two
//! strided halves, an activation and a product. Here each is one pass forward and one backward, and
//! the backward keeps only the input. Used for f32/f64 tensors on the CPU; other dtypes and devices
//! use the primitive versions in `nn.rs`, which compute the same function (unit tests below).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::error::Result;
use crate::kernels::Activation;

/// The floats the kernels run in (the model's dtype: f32, or f64 for gradient checks).
pub trait Real:
    Copy + Send + Sync + 'static + PartialOrd + Default
    + std::ops::Mul<Output = Self> + std::ops::Add<Output = Self> + std::ops::Sub<Output = Self>
    + std::ops::Div<Output = Self> + std::ops::AddAssign
{
    const ZERO: Self;
    const ONE: Self;
    const NEG_INF: Self;
    fn from_f32(v: f32) -> Self;
    fn from_f64(v: f64) -> Self;
    fn exp(self) -> Self;
    fn sqrt(self) -> Self;
    fn tanh(self) -> Self;
    fn erf(self) -> Self;
    /// Replaces every `v` of `row` by exp(v − max) and returns their sum (a softmax's numerator).
    fn exp_shifted(row: &mut [Self], max: Self) -> Self;
    /// The largest element (−∞ for an empty row).
    fn max_of(row: &[Self]) -> Self;
}

macro_rules! real {
    ($t:ty, $erf:path, $exp_shifted:path, $max_of:path) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NEG_INF: Self = <$t>::NEG_INFINITY;
            fn from_f32(v: f32) -> Self {
                v as $t
            }
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            fn erf(self) -> Self {
                $erf(self)
            }
            fn exp_shifted(row: &mut [Self], max: Self) -> Self {
                $exp_shifted(row, max)
            }
            fn max_of(row: &[Self]) -> Self {
                $max_of(row)
            }
        }
    };
}
real!(f32, candle_core::cpu::erf::erf_f32, exp_shifted_f32, max_f32);
// f64 is the gradient-checking dtype: exact libm exp.
real!(f64, candle_core::cpu::erf::erf_f64, exp_shifted_exact::<f64>, max_scalar::<f64>);

fn max_scalar<T: Real>(row: &[T]) -> T {
    row.iter().copied().fold(T::NEG_INF, |a, b| if b > a { b } else { a })
}

/// Row maximum, 16 lanes at a time on AVX-512 CPUs (LLVM keeps a float max reduction scalar).
fn max_f32(row: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            return unsafe { max_avx512(row) };
        }
    }
    max_scalar(row)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn max_avx512(row: &[f32]) -> f32 {
    // SAFETY: the caller guarantees AVX-512F; each masked load reads only the chunk's own lanes.
    unsafe {
        use std::arch::x86_64::*;
        let mut m = _mm512_set1_ps(f32::NEG_INFINITY);
        for chunk in row.chunks(16) {
            let mask = simd::lanes(chunk.len());
            m = _mm512_mask_max_ps(m, mask, m, _mm512_maskz_loadu_ps(mask, chunk.as_ptr()));
        }
        _mm512_reduce_max_ps(m)
    }
}

fn exp_shifted_exact<T: Real>(row: &mut [T], max: T) -> T {
    let mut sum = T::ZERO;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    sum
}

/// f32 softmax numerators, 16 lanes at a time on AVX-512 CPUs. The scalar libm `expf` was most of
/// the attention kernel's time (one exp per score: 3 M per layer at 16 × 128). Cephes' expf
/// polynomial after range reduction to [−ln2/2, ln2/2]: relative error below 2e-7, exact 0 below −87.
fn exp_shifted_f32(row: &mut [f32], max: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            return unsafe { exp_shifted_avx512(row, max) };
        }
    }
    exp_shifted_poly(row, max)
}

/// The polynomial of `exp_shifted_poly`, 16 lanes per instruction. Written with intrinsics: LLVM
/// does not vectorise the scalar loop because its sum is a float reduction.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn exp_shifted_avx512(row: &mut [f32], max: f32) -> f32 {
    // SAFETY: the caller guarantees AVX-512F; each masked load and store touches only the chunk's own lanes.
    unsafe {
        use std::arch::x86_64::*;
        let (maxv, lo) = (_mm512_set1_ps(max), _mm512_set1_ps(-87.0));
        let mut sum = _mm512_setzero_ps();
        for chunk in row.chunks_mut(16) {
            let mask = simd::lanes(chunk.len());
            let x = _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, chunk.as_ptr()), maxv);
            // exactly 0 below −87 and in the masked-off tail lanes.
            let keep = _mm512_mask_cmp_ps_mask::<_CMP_NLT_UQ>(mask, x, lo);
            let y = _mm512_maskz_mov_ps(keep, simd::exp(x));
            _mm512_mask_storeu_ps(chunk.as_mut_ptr(), mask, y);
            sum = _mm512_add_ps(sum, y);
        }
        _mm512_reduce_add_ps(sum)
    }
}

/// AVX-512 versions of the scalar functions the fused kernels need, 16 f32 lanes at a time.
#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    /// The mask of the first `n` of 16 lanes (all of them for n ≥ 16): loads and stores of a row's tail.
    #[inline]
    pub fn lanes(n: usize) -> __mmask16 {
        if n >= 16 { 0xffff } else { ((1u32 << n) - 1) as __mmask16 }
    }

    /// eˣ for x ≥ −87 (`exp_shifted_poly`'s polynomial): relative error below 2e-7.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn exp(x: __m512) -> __m512 {
        let xc = _mm512_max_ps(x, _mm512_set1_ps(-87.0));
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(_mm512_fmadd_ps(
            xc,
            _mm512_set1_ps(std::f32::consts::LOG2_E),
            _mm512_set1_ps(0.5),
        ));
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), xc));
        let mut p = _mm512_set1_ps(1.987_569_1e-4);
        for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 5.000_000_1e-1] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        let e = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0));
        _mm512_scalef_ps(e, n) // e · 2ⁿ
    }

    /// erf(x): Eigen's rational approximation, ±1 where f32 rounds erf to ±1; error below 5e-7.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn erf(x: __m512) -> __m512 {
        // SAFETY: register-only arithmetic; the caller guarantees AVX-512F.
        unsafe {
            let x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(4.0)), _mm512_set1_ps(-4.0));
            let x2 = _mm512_mul_ps(x, x);
            let mut p = _mm512_set1_ps(-2.726_142_3e-10);
            for c in [2.770_681_4e-8, -2.101_024e-6, -5.692_506_4e-5, -7.349_906_3e-4, -2.954_600e-3, -1.609_603_3e-2] {
                p = _mm512_fmadd_ps(x2, p, _mm512_set1_ps(c));
            }
            let mut q = _mm512_set1_ps(-1.456_607_2e-5);
            for c in [-2.133_740_6e-4, -1.682_827e-3, -7.373_329e-3, -1.426_473_9e-2] {
                q = _mm512_fmadd_ps(x2, q, _mm512_set1_ps(c));
            }
            let r = _mm512_div_ps(_mm512_mul_ps(x, p), q);
            // |erf| rounds to 1 in f32 beyond 3.85; the rational form is 7e-7 short of it near 4.
            let sign = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(i32::MIN)));
            let one = _mm512_or_ps(_mm512_set1_ps(1.0), sign);
            let tail = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(_mm512_abs_ps(x), _mm512_set1_ps(3.85));
            _mm512_mask_blend_ps(tail, r, one)
        }
    }

    /// Φ(x) and φ(x) of the exact (erf) GELU, x·Φ(x).
    ///
    /// Below x = −√2, `1 + erf` would cancel (erf's absolute error becomes Φ's), so there
    /// Φ(x) = ½·e^(−z²)·erfcx(z), z = −x/√2, with erfcx fitted as a polynomial in 1/z on [1, 4.1]
    /// (relative error 3e-7 in f32). Φ's error is then relative everywhere, as libm's is.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn gelu_cdf_pdf(x: __m512) -> (__m512, __m512) {
        // SAFETY: register-only arithmetic; the caller guarantees AVX-512F.
        unsafe {
            let half = _mm512_set1_ps(0.5);
            let z = _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
            let central = _mm512_mul_ps(half, _mm512_add_ps(_mm512_set1_ps(1.0), erf(z)));
            let e = exp(_mm512_mul_ps(_mm512_set1_ps(-0.5), _mm512_mul_ps(x, x))); // e^(−z²)
            let tail = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(z, _mm512_set1_ps(-1.0));
            let cdf = if tail == 0 {
                central
            } else {
                let u = _mm512_div_ps(_mm512_set1_ps(-1.0), z);
                let mut p = _mm512_set1_ps(-1.129_978_0e-2);
                for c in [3.725_128_2e-2, 6.376_394_9e-3, -2.226_860_4e-1, 4.840_872_6e-1, -4.662_884_4e-1, 4.064_752_4e-2, 5.592_369_3e-1, 2.583_627e-4] {
                    p = _mm512_fmadd_ps(p, u, _mm512_set1_ps(c));
                }
                _mm512_mask_blend_ps(tail, central, _mm512_mul_ps(_mm512_mul_ps(half, e), p))
            };
            let pdf = _mm512_mul_ps(e, _mm512_set1_ps(0.398_942_3)); // 1/√(2π)
            (cdf, pdf)
        }
    }

    /// GeGLU rows: `y = gelu(a) · g` for one row split into `a` and `g`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn geglu_forward(a: &[f32], g: &[f32], y: &mut [f32]) {
        // SAFETY: the caller guarantees AVX-512F and a, g as long as y; loads and stores are masked to y.len() − i lanes.
        unsafe {
            for i in (0..y.len()).step_by(16) {
                let mask = lanes(y.len() - i);
                let x = _mm512_maskz_loadu_ps(mask, a.as_ptr().add(i));
                let (cdf, _) = gelu_cdf_pdf(x);
                let out = _mm512_mul_ps(_mm512_mul_ps(x, cdf), _mm512_maskz_loadu_ps(mask, g.as_ptr().add(i)));
                _mm512_mask_storeu_ps(y.as_mut_ptr().add(i), mask, out);
            }
        }
    }

    /// GeGLU row backward: `da = dy · g · gelu'(a)`, `dg = dy · gelu(a)`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn geglu_backward(a: &[f32], g: &[f32], dy: &[f32], da: &mut [f32], dg: &mut [f32]) {
        // SAFETY: the caller guarantees AVX-512F and a, g, da, dg as long as dy; loads and stores are masked to dy.len() − i lanes.
        unsafe {
            for i in (0..dy.len()).step_by(16) {
                let mask = lanes(dy.len() - i);
                let x = _mm512_maskz_loadu_ps(mask, a.as_ptr().add(i));
                let (cdf, pdf) = gelu_cdf_pdf(x);
                let d = _mm512_maskz_loadu_ps(mask, dy.as_ptr().add(i));
                let gv = _mm512_maskz_loadu_ps(mask, g.as_ptr().add(i));
                let dgelu = _mm512_fmadd_ps(x, pdf, cdf);
                _mm512_mask_storeu_ps(da.as_mut_ptr().add(i), mask, _mm512_mul_ps(_mm512_mul_ps(d, gv), dgelu));
                _mm512_mask_storeu_ps(dg.as_mut_ptr().add(i), mask, _mm512_mul_ps(d, _mm512_mul_ps(x, cdf)));
            }
        }
    }
}

/// Whether a kernel over `T` runs its AVX-512 build: f32 on CPUs that have AVX-512F. (f64 is the
/// gradient-checking dtype and keeps the portable code.)
pub(crate) fn wide_f32<T: Real>() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() && std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Reinterprets a slice of `T` that is known to be f32 (`wide_f32` checked the type).
#[cfg(target_arch = "x86_64")]
fn as_f32<T: Real>(v: &[T]) -> &[f32] {
    // Checked here, in every build: a wrong `T` must never reach the cast below.
    assert_eq!(std::any::TypeId::of::<T>(), std::any::TypeId::of::<f32>(), "as_f32 on a slice that is not f32");
    // SAFETY: T is f32 (asserted above), so element layout and length agree.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const f32, v.len()) }
}

#[cfg(target_arch = "x86_64")]
fn as_f32_mut<T: Real>(v: &mut [T]) -> &mut [f32] {
    assert_eq!(std::any::TypeId::of::<T>(), std::any::TypeId::of::<f32>(), "as_f32_mut on a slice that is not f32");
    // SAFETY: T is f32 (asserted above); the borrow is unique for the returned lifetime.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut f32, v.len()) }
}

#[inline(always)]
fn exp_shifted_poly(row: &mut [f32], max: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    let mut sum = 0.0f32;
    for v in row.iter_mut() {
        let x = *v - max;
        let xc = x.max(-87.0);
        let n = (xc * LOG2E + 0.5).floor();
        let r = xc - n * C1 - n * C2;
        let mut p = 1.987_569_1e-4f32;
        p = p * r + 1.398_199_9e-3;
        p = p * r + 8.333_452e-3;
        p = p * r + 4.166_579_6e-2;
        p = p * r + 1.666_666_5e-1;
        p = p * r + 5.000_000_1e-1;
        let e = p * r * r + r + 1.0;
        let scale = f32::from_bits((((n as i32) + 127) as u32) << 23);
        let y = if x < -87.0 { 0.0 } else { e * scale };
        *v = y;
        sum += y;
    }
    sum
}

/// Whether the fused kernels can run on this tensor.
pub fn fusable(t: &Tensor) -> bool {
    t.device().is_cpu() && matches!(t.dtype(), candle_core::DType::F32 | candle_core::DType::F64)
}

/// The elements of a contiguous CPU tensor's storage, as its layout places them.
pub(crate) fn slice<'a, T>(v: &'a [T], layout: &Layout) -> candle_core::Result<&'a [T]> {
    let (a, b) = layout.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg("fused kernel: non-contiguous input".into()))?;
    Ok(&v[a..b])
}

/// A raw pointer that rayon tasks may share, for kernels in which every task writes a disjoint set
/// of elements of one output buffer.
#[derive(Clone, Copy)]
pub(crate) struct Shared<T>(pub *mut T);
// SAFETY: a Shared is only a pointer; the kernels that hand it to tasks give each task a disjoint
// set of elements to write and keep the buffer alive until every task has joined.
unsafe impl<T> Send for Shared<T> {}
// SAFETY: as for Send: no two tasks touch the same element through it.
unsafe impl<T> Sync for Shared<T> {}

/// Rows handed to one rayon task: enough work to amortise the task, enough tasks for every core.
const ROWS_PER_TASK: usize = 16;

// ---------------------------------------------------------------------------------------------
// LayerNorm without bias: y = (x − mean) / sqrt(var + eps) · w  (the bias, if any, is added outside)

struct LayerNormOp {
    eps: f64,
}

/// Σ f(i) for i < n in 16 interleaved partial sums: vectorisable, where one running float sum is
/// a dependency chain the compiler may not reorder.
#[inline(always)]
pub(crate) fn sum16<T: Real>(n: usize, f: impl Fn(usize) -> T) -> T {
    let mut acc = [T::ZERO; 16];
    let full = n / 16 * 16;
    for base in (0..full).step_by(16) {
        for (j, a) in acc.iter_mut().enumerate() {
            *a += f(base + j);
        }
    }
    let mut s = T::ZERO;
    for i in full..n {
        s += f(i);
    }
    for a in acc {
        s += a;
    }
    s
}

#[inline(always)]
fn row_stats<T: Real>(row: &[T], eps: f64) -> (T, T) {
    let n = T::from_f64(row.len() as f64);
    let mean = sum16(row.len(), |i| row[i]) / n;
    let var = sum16(row.len(), |i| (row[i] - mean) * (row[i] - mean));
    (mean, T::ONE / (var / n + T::from_f64(eps)).sqrt())
}

#[inline(always)]
fn ln_forward_rows<T: Real>(ys: &mut [T], xs: &[T], w: &[T], eps: f64) {
    let n = w.len();
    for (yr, xr) in ys.chunks_mut(n).zip(xs.chunks(n)) {
        let (mean, rstd) = row_stats(xr, eps);
        for ((o, &v), &g) in yr.iter_mut().zip(xr).zip(w) {
            *o = (v - mean) * rstd * g;
        }
    }
}

/// `ln_forward_rows` compiled for AVX-512.
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f"))]
unsafe fn ln_forward_rows_wide<T: Real>(ys: &mut [T], xs: &[T], w: &[T], eps: f64) {
    ln_forward_rows(ys, xs, w, eps)
}

fn ln_forward<T: Real>(x: &[T], w: &[T], eps: f64) -> Vec<T> {
    let n = w.len();
    let mut y = vec![T::ZERO; x.len()];
    let wide = wide_f32::<T>();
    y.par_chunks_mut(n * ROWS_PER_TASK).zip(x.par_chunks(n * ROWS_PER_TASK)).for_each(|(ys, xs)| {
        if wide {
            // SAFETY: the CPU has AVX-512F (`wide_f32`).
            unsafe { ln_forward_rows_wide(ys, xs, w, eps) }
        } else {
            ln_forward_rows(ys, xs, w, eps)
        }
    });
    y
}

/// dx of some rows, and their contribution to dw (added to `dw`).
#[inline(always)]
fn ln_backward_rows<T: Real>(dxs: &mut [T], xs: &[T], dys: &[T], w: &[T], eps: f64, dw: &mut [T]) {
    let n = w.len();
    let nf = T::from_f64(n as f64);
    for ((dxr, xr), dyr) in dxs.chunks_mut(n).zip(xs.chunks(n)).zip(dys.chunks(n)) {
        let (mean, rstd) = row_stats(xr, eps);
        // g = dy ⊙ w; dx = rstd · (g − mean(g) − x̂ · mean(g ⊙ x̂))
        let mg = sum16(n, |i| dyr[i] * w[i]) / nf;
        let mgx = sum16(n, |i| dyr[i] * w[i] * ((xr[i] - mean) * rstd)) / nf;
        for i in 0..n {
            let xh = (xr[i] - mean) * rstd;
            dw[i] += dyr[i] * xh;
            dxr[i] = rstd * (dyr[i] * w[i] - mg - xh * mgx);
        }
    }
}

/// `ln_backward_rows` compiled for AVX-512.
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f"))]
unsafe fn ln_backward_rows_wide<T: Real>(dxs: &mut [T], xs: &[T], dys: &[T], w: &[T], eps: f64, dw: &mut [T]) {
    ln_backward_rows(dxs, xs, dys, w, eps, dw)
}

/// Returns [rows + 1, n]: dx for every row, then dw.
fn ln_backward<T: Real>(x: &[T], w: &[T], dy: &[T], eps: f64) -> Vec<T> {
    let n = w.len();
    let rows = x.len() / n;
    let mut out = vec![T::ZERO; (rows + 1) * n];
    let (dx, _) = out.split_at_mut(rows * n);
    let wide = wide_f32::<T>();
    // Each task's partial dw over its fixed block of ROWS_PER_TASK rows, collected in block order
    // and summed in that order: the result does not depend on the thread count or on which thread
    // stole which block (a tree `reduce` would, and bit-exact resume would break).
    let partials: Vec<Vec<T>> = dx
        .par_chunks_mut(n * ROWS_PER_TASK)
        .zip(x.par_chunks(n * ROWS_PER_TASK).zip(dy.par_chunks(n * ROWS_PER_TASK)))
        .map(|(dxs, (xs, dys))| {
            let mut dw = vec![T::ZERO; n];
            if wide {
                // SAFETY: the CPU has AVX-512F (`wide_f32`).
                unsafe { ln_backward_rows_wide(dxs, xs, dys, w, eps, &mut dw) }
            } else {
                ln_backward_rows(dxs, xs, dys, w, eps, &mut dw)
            }
            dw
        })
        .collect();
    let mut dw = vec![T::ZERO; n];
    for part in &partials {
        for (a, &b) in dw.iter_mut().zip(part) {
            *a += b;
        }
    }
    out[rows * n..].copy_from_slice(&dw);
    out
}

impl CustomOp2 for LayerNormOp {
    fn name(&self) -> &'static str {
        "layer-norm"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let y = match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(w)) => CpuStorage::F32(ln_forward(slice(x, l1)?, slice(w, l2)?, self.eps)),
            (CpuStorage::F64(x), CpuStorage::F64(w)) => CpuStorage::F64(ln_forward(slice(x, l1)?, slice(w, l2)?, self.eps)),
            _ => candle_core::bail!("fused layer norm: f32 or f64, one dtype"),
        };
        Ok((y, l1.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let n = w.elem_count();
        let rows = x.elem_count() / n;
        let both = x.apply_op3(w, &grad.contiguous()?, LayerNormBackward { eps: self.eps })?;
        let dx = both.narrow(0, 0, rows)?.reshape(x.shape())?;
        let dw = both.narrow(0, rows, 1)?.reshape(n)?;
        Ok((Some(dx), Some(dw)))
    }
}

struct LayerNormBackward {
    eps: f64,
}

impl CustomOp3 for LayerNormBackward {
    fn name(&self) -> &'static str {
        "layer-norm-backward"
    }

    fn cpu_fwd(
        &self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let n = l2.shape().elem_count();
        let rows = l1.shape().elem_count() / n;
        let out = match (s1, s2, s3) {
            (CpuStorage::F32(x), CpuStorage::F32(w), CpuStorage::F32(g)) => {
                CpuStorage::F32(ln_backward(slice(x, l1)?, slice(w, l2)?, slice(g, l3)?, self.eps))
            }
            (CpuStorage::F64(x), CpuStorage::F64(w), CpuStorage::F64(g)) => {
                CpuStorage::F64(ln_backward(slice(x, l1)?, slice(w, l2)?, slice(g, l3)?, self.eps))
            }
            _ => candle_core::bail!("fused layer norm backward: f32 or f64, one dtype"),
        };
        Ok((out, Shape::from((rows + 1, n))))
    }
}

/// `(x − mean) / sqrt(var + eps) · w` over the last dimension, fused; `x` and `w` f32/f64 on the CPU.
pub fn layer_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    Ok(x.contiguous()?.apply_op2(&w.contiguous()?, LayerNormOp { eps })?)
}

// ---------------------------------------------------------------------------------------------
// Gated linear unit: [.., 2m] → [.., m], act(input) · gate (ModernBERT's GeGLU MLP)

#[derive(Clone, Copy)]
struct GluOp {
    act: Activation,
}

/// act(x) and act'(x) for the activations the fused GLU supports.
fn act_and_grad<T: Real>(act: Activation, x: T) -> (T, T) {
    let half = T::from_f64(0.5);
    match act {
        Activation::Gelu => {
            // x·Φ(x); derivative Φ(x) + x·φ(x)
            let cdf = half * (T::ONE + (x * T::from_f64(std::f64::consts::FRAC_1_SQRT_2)).erf());
            let pdf = (T::ZERO - half * x * x).exp() * T::from_f64(1.0 / (2.0 * std::f64::consts::PI).sqrt());
            (x * cdf, cdf + x * pdf)
        }
        _ => {
            // tanh approximation: 0.5·x·(1 + tanh(u)), u = √(2/π)·(x + 0.044715·x³)
            let k = T::from_f64((2.0 / std::f64::consts::PI).sqrt());
            let c = T::from_f64(0.044715);
            let t = (k * (x + c * x * x * x)).tanh();
            let du = k * (T::ONE + T::from_f64(3.0) * c * x * x);
            (half * x * (T::ONE + t), half * (T::ONE + t) + half * x * (T::ONE - t * t) * du)
        }
    }
}

fn glu_forward<T: Real>(x: &[T], m: usize, act: Activation) -> Vec<T> {
    let mut y = vec![T::ZERO; x.len() / 2];
    let simd = act == Activation::Gelu && wide_f32::<T>();
    y.par_chunks_mut(m * ROWS_PER_TASK).zip(x.par_chunks(2 * m * ROWS_PER_TASK)).for_each(|(ys, xs)| {
        for (yr, xr) in ys.chunks_mut(m).zip(xs.chunks(2 * m)) {
            let (a, g) = xr.split_at(m);
            #[cfg(target_arch = "x86_64")]
            if simd {
                // SAFETY: AVX-512F is present and T is f32 (`wide_f32`).
                unsafe { simd::geglu_forward(as_f32(a), as_f32(g), as_f32_mut(yr)) };
                continue;
            }
            for i in 0..m {
                yr[i] = act_and_grad(act, a[i]).0 * g[i];
            }
        }
    });
    y
}

fn glu_backward<T: Real>(x: &[T], dy: &[T], m: usize, act: Activation) -> Vec<T> {
    let mut dx = vec![T::ZERO; x.len()];
    let simd = act == Activation::Gelu && wide_f32::<T>();
    dx.par_chunks_mut(2 * m * ROWS_PER_TASK)
        .zip(x.par_chunks(2 * m * ROWS_PER_TASK).zip(dy.par_chunks(m * ROWS_PER_TASK)))
        .for_each(|(dxs, (xs, dys))| {
            for ((dxr, xr), dyr) in dxs.chunks_mut(2 * m).zip(xs.chunks(2 * m)).zip(dys.chunks(m)) {
                let (a, g) = xr.split_at(m);
                let (da, dg) = dxr.split_at_mut(m);
                #[cfg(target_arch = "x86_64")]
                if simd {
                    // SAFETY: AVX-512F is present and T is f32 (`wide_f32`).
                    unsafe { simd::geglu_backward(as_f32(a), as_f32(g), as_f32(dyr), as_f32_mut(da), as_f32_mut(dg)) };
                    continue;
                }
                for i in 0..m {
                    let (f, df) = act_and_grad(act, a[i]);
                    da[i] = dyr[i] * g[i] * df;
                    dg[i] = dyr[i] * f;
                }
            }
        });
    dx
}

impl CustomOp1 for GluOp {
    fn name(&self) -> &'static str {
        "glu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let mut dims = l.dims().to_vec();
        let m = dims.last().copied().unwrap_or(0) / 2;
        *dims.last_mut().unwrap() = m;
        let y = match s {
            CpuStorage::F32(x) => CpuStorage::F32(glu_forward(slice(x, l)?, m, self.act)),
            CpuStorage::F64(x) => CpuStorage::F64(glu_forward(slice(x, l)?, m, self.act)),
            _ => candle_core::bail!("fused glu: f32 or f64"),
        };
        Ok((y, Shape::from(dims)))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(x.apply_op2(&grad.contiguous()?, GluBackward(*self))?))
    }
}

struct GluBackward(GluOp);

impl CustomOp2 for GluBackward {
    fn name(&self) -> &'static str {
        "glu-backward"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let m = l1.dims().last().copied().unwrap_or(0) / 2;
        let dx = match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(g)) => CpuStorage::F32(glu_backward(slice(x, l1)?, slice(g, l2)?, m, self.0.act)),
            (CpuStorage::F64(x), CpuStorage::F64(g)) => CpuStorage::F64(glu_backward(slice(x, l1)?, slice(g, l2)?, m, self.0.act)),
            _ => candle_core::bail!("fused glu backward: f32 or f64, one dtype"),
        };
        Ok((dx, l1.shape().clone()))
    }
}

/// `act(x[.., :m]) · x[.., m:]` fused, for the GELU activations (`None` for others: use primitives).
pub fn glu(x: &Tensor, act: Activation) -> Result<Option<Tensor>> {
    if !matches!(act, Activation::Gelu | Activation::GeluTanh) || !fusable(x) {
        return Ok(None);
    }
    Ok(Some(x.contiguous()?.apply_op1(GluOp { act })?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectorised_exp_is_within_2e7_of_libm_and_exactly_zero_far_below_the_max() {
        let xs: Vec<f32> = (0..20000).map(|i| -100.0 + i as f32 * 0.005).chain([f32::NEG_INFINITY, 0.0, -1e-8]).collect();
        let mut row = xs.clone();
        let sum = f32::exp_shifted(&mut row, 0.0);
        let mut want_sum = 0.0f64;
        for (&x, &y) in xs.iter().zip(&row) {
            let want = (x as f64).exp();
            want_sum += if x < -87.0 { 0.0 } else { want };
            if x < -87.0 {
                assert_eq!(y, 0.0, "exp({x})");
            } else {
                assert!(((y as f64) - want).abs() <= 2e-7 * want, "exp({x}) = {y}, libm {want}");
            }
        }
        assert!(((sum as f64) - want_sum).abs() <= 1e-5 * want_sum);
    }
    use candle_core::{DType, Device, Var, D};

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap()
    }

    fn input(rows: usize, n: usize, seed: f64) -> Var {
        let v: Vec<f64> = (0..rows * n).map(|i| (i as f64 * 0.37 + seed).sin() * 3.0).collect();
        Var::from_tensor(&Tensor::from_vec(v, (rows, n), &Device::Cpu).unwrap()).unwrap()
    }

    #[test]
    fn fused_layer_norm_equals_the_primitive_chain_forward_and_backward() {
        let (x, w) = (input(37, 24, 0.1), input(1, 24, 2.0));
        let w1 = w.as_tensor().reshape(24).unwrap();
        let dy = input(37, 24, 5.0);
        let fused = layer_norm(x.as_tensor(), &w1, 1e-5).unwrap();
        let plain = crate::kernels::portable::layer_norm(x.as_tensor(), &w1, None, 1e-5).unwrap();
        assert!(max_diff(&fused, &plain) < 1e-12);
        let g1 = (fused * dy.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (plain * dy.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&x, &w] {
            let (a, b) = (g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
            assert!(max_diff(a, b) < 1e-10, "{}", max_diff(a, b));
        }
    }

    /// The LayerNorm weight gradient is a sum over rows computed by parallel tasks: it must be the
    /// same bits with 1, 2 or 3 threads and on every repetition (a work-stealing `reduce` tree is
    /// not, and bit-exact resume depends on it).
    #[test]
    fn layer_norm_weight_gradient_is_bit_identical_for_any_thread_count() {
        let (rows, n) = (16 * 37 + 5, 48);
        let x: Vec<f32> = (0..rows * n).map(|i| ((i as f32) * 0.731).sin() * 2.0 + 0.1).collect();
        let dy: Vec<f32> = (0..rows * n).map(|i| ((i as f32) * 0.193).cos() * 1e3).collect();
        let w: Vec<f32> = (0..n).map(|i| 0.5 + i as f32 / n as f32).collect();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| ln_backward(&x, &w, &dy, 1e-5))
        };
        let one = run(1);
        for threads in [2, 3, 2, 2] {
            let other = run(threads);
            assert!(one.iter().zip(&other).all(|(a, b)| a.to_bits() == b.to_bits()), "{threads} threads differ from 1");
        }
    }

    /// The f32 exact-GELU kernel (vectorised erf and exp on AVX-512 CPUs) against the f64 one
    /// (libm), over inputs from −6 to 6 and a row length that is not a multiple of 16. (The tanh
    /// form cancels in `1 + tanh` in f32 as PyTorch's does; it keeps the scalar formula.)
    #[test]
    fn f32_glu_matches_f64_glu_forward_and_backward() {
        let (rows, m) = (40, 37);
        let x64 = Var::from_tensor(&Tensor::from_vec((0..rows * 2 * m).map(|i| -6.0 + 12.0 * ((i * 7919) % 2960) as f64 / 2960.0).collect::<Vec<_>>(), (rows, 2 * m), &Device::Cpu).unwrap()).unwrap();
        let dy64 = Tensor::from_vec((0..rows * m).map(|i| (i as f64 * 0.37).cos()).collect::<Vec<_>>(), (rows, m), &Device::Cpu).unwrap();
        let x32 = Var::from_tensor(&x64.as_tensor().to_dtype(DType::F32).unwrap()).unwrap();
        let dy32 = dy64.to_dtype(DType::F32).unwrap();
        for act in [Activation::Gelu] {
            let y64 = glu(x64.as_tensor(), act).unwrap().unwrap();
            let y32 = glu(x32.as_tensor(), act).unwrap().unwrap();
            let g64 = (&y64 * &dy64).unwrap().sum_all().unwrap().backward().unwrap();
            let g32 = (&y32 * &dy32).unwrap().sum_all().unwrap().backward().unwrap();
            let pairs = [(y64, y32), (g64.get(&x64).unwrap().clone(), g32.get(&x32).unwrap().clone())];
            for (name, (want, got)) in ["forward", "backward"].iter().zip(pairs) {
                let want: Vec<f64> = want.flatten_all().unwrap().to_vec1().unwrap();
                let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
                for (i, (&w, &g)) in want.iter().zip(&got).enumerate() {
                    assert!((g as f64 - w).abs() <= 2e-6 * (1.0 + w.abs()), "{act:?} {name}[{i}]: {g} vs {w}");
                }
            }
        }
    }

    #[test]
    fn fused_glu_forward_equals_primitives_and_backward_equals_finite_differences() {
        for act in [Activation::Gelu, Activation::GeluTanh] {
            let x = input(21, 2 * 10, 0.3);
            let dy = input(21, 10, 1.0);
            let fused = glu(x.as_tensor(), act).unwrap().unwrap();
            let a = x.as_tensor().narrow(D::Minus1, 0, 10).unwrap();
            let g = x.as_tensor().narrow(D::Minus1, 10, 10).unwrap();
            let plain = (act.forward(&a).unwrap() * g).unwrap();
            assert!(max_diff(&fused, &plain) < 1e-12, "{act:?}");
            // Backward against central differences of the forward (candle's own gelu_erf backward
            // rounds 1/sqrt(2π) to 0.398942, so it is not an exact reference).
            let grad = (fused * dy.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
            let grad: Vec<f64> = grad.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let base: Vec<f64> = x.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            let loss = |v: &[f64]| {
                let t = Tensor::from_vec(v.to_vec(), (21, 20), &Device::Cpu).unwrap();
                (glu(&t, act).unwrap().unwrap() * dy.as_tensor()).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap()
            };
            for i in [0, 7, 15, 211, 419] {
                let (mut up, mut down) = (base.clone(), base.clone());
                up[i] += 1e-6;
                down[i] -= 1e-6;
                let numeric = (loss(&up) - loss(&down)) / 2e-6;
                assert!((numeric - grad[i]).abs() < 1e-7 + 1e-6 * grad[i].abs(), "{act:?}[{i}]: {} vs {numeric}", grad[i]);
            }
        }
    }
}
