//! The small matrix products inside the attention kernel: `C = (C +) α · A · B` where B's and C's
//! rows are contiguous and A may be read with any strides (so `Pᵀ` or `dSᵀ` need no copy).
//!
//! Per (sequence, head) the attention kernel multiplies matrices of a few dozen to a few hundred
//! rows by `head_dim` (64) columns. `gemm` packs both operands and dispatches for every call, which
//! at these sizes cost more than the arithmetic (≈ 30 GFLOP/s measured). The AVX-512 kernel here
//! needs no packing: per step of the inner dimension it loads up to 64 columns of one B row
//! (4 registers), broadcasts one A element per output row and accumulates a 6 × 64 block of C in
//! 24 registers. Other CPUs and f64 (the gradient-checking dtype) use `gemm`.

use gemm::Parallelism;

use crate::kernels::cpu::kernels::Real;

/// A matrix read through raw strides: element (r, c) is `ptr[r · rs + c · cs]`.
#[derive(Clone, Copy)]
pub struct Strided<T> {
    pub ptr: *const T,
    pub rs: usize,
    pub cs: usize,
}

/// `c[m × n] = (c if accumulate) + alpha · a[m × k] · b[k × n]`, with `b`'s row t at `b + t · b_rs`
/// and `c`'s row r at `c + r · c_rs` (both rows contiguous).
///
/// # Safety
/// Every element addressed through `a`, `b` (`k` rows of `n`) and `c` (`m` rows of `n`) must be valid,
/// and `c` must not overlap `a` or `b`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn small_matmul<T: Real>(
    m: usize, n: usize, k: usize, alpha: T,
    a: Strided<T>, b: *const T, b_rs: usize, c: *mut T, c_rs: usize, accumulate: bool,
) {
    // SAFETY: the caller upholds the `# Safety` contract above; the AVX-512 path is taken only when `wide_f32` confirmed the CPU feature and T = f32, so the f32 casts are identities.
    unsafe {
        if m == 0 || n == 0 {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        {
            if crate::kernels::cpu::kernels::wide_f32::<T>() {
                let a32 = Strided { ptr: a.ptr as *const f32, rs: a.rs, cs: a.cs };
                let alpha = *(&alpha as *const T as *const f32);
                return avx512::matmul(m, n, k, alpha, a32, b as *const f32, b_rs, c as *mut f32, c_rs, accumulate);
            }
        }
        gemm::gemm(
            m, n, k,
            c, 1, c_rs as isize, accumulate,
            a.ptr, a.cs as isize, a.rs as isize,
            b, 1, b_rs as isize,
            if accumulate { T::ONE } else { T::ZERO }, alpha,
            false, false, false, Parallelism::None,
        )
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::Strided;

    /// Output rows per register block.
    const ROWS: usize = 6;

    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn matmul(
        m: usize, n: usize, k: usize, alpha: f32,
        a: Strided<f32>, b: *const f32, b_rs: usize, c: *mut f32, c_rs: usize, accumulate: bool,
    ) {
        // SAFETY: AVX-512F is enabled by the caller; every block addresses rows r0..r0+rows < m of a and c and columns j0..j0+width ≤ n of b and c, inside the caller's `small_matmul` contract.
        unsafe {
            for j0 in (0..n).step_by(64) {
                let width = (n - j0).min(64);
                // One 16-lane mask per register column; columns past `width` are masked off.
                let masks: [__mmask16; 4] =
                    std::array::from_fn(|q| if width <= q * 16 { 0 } else { ((1u32 << (width - q * 16).min(16)) - 1) as __mmask16 });
                let regs = width.div_ceil(16);
                for r0 in (0..m).step_by(ROWS) {
                    let rows = (m - r0).min(ROWS);
                    let blk = Block { k, alpha, a: Strided { ptr: a.ptr.add(r0 * a.rs), ..a }, b: b.add(j0), b_rs, c: c.add(r0 * c_rs + j0), c_rs, masks, accumulate };
                    macro_rules! dispatch {
                        ($($r:literal),*) => {
                            match (rows, regs) {
                                $( ($r, 1) => blk.run::<$r, 1>(), ($r, 2) => blk.run::<$r, 2>(), ($r, 3) => blk.run::<$r, 3>(), ($r, _) => blk.run::<$r, 4>(), )*
                                _ => unreachable!("rows are 1..=ROWS"),
                            }
                        };
                    }
                    dispatch!(1, 2, 3, 4, 5, 6);
                }
            }
        }
    }

    /// One `R × (16 · Q)` block of C, accumulated over the whole inner dimension in registers.
    struct Block {
        k: usize,
        alpha: f32,
        a: Strided<f32>,
        b: *const f32,
        b_rs: usize,
        c: *mut f32,
        c_rs: usize,
        masks: [__mmask16; 4],
        accumulate: bool,
    }

    impl Block {
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn run<const R: usize, const Q: usize>(&self) {
            // SAFETY: the block was built by `matmul` inside the caller's bounds: rows < R of a and c, k rows of b, and lanes past the block width are masked off on every load and store.
            unsafe {
                let mut acc = [[_mm512_setzero_ps(); Q]; R];
                for t in 0..self.k {
                    let brow = self.b.add(t * self.b_rs);
                    let bv: [__m512; Q] = std::array::from_fn(|q| _mm512_maskz_loadu_ps(self.masks[q], brow.add(16 * q)));
                    let arow = self.a.ptr.add(t * self.a.cs);
                    for (r, acc_r) in acc.iter_mut().enumerate() {
                        let av = _mm512_set1_ps(*arow.add(r * self.a.rs));
                        for q in 0..Q {
                            acc_r[q] = _mm512_fmadd_ps(av, bv[q], acc_r[q]);
                        }
                    }
                }
                let alpha = _mm512_set1_ps(self.alpha);
                for (r, acc_r) in acc.iter().enumerate() {
                    let crow = self.c.add(r * self.c_rs);
                    for q in 0..Q {
                        let mut v = _mm512_mul_ps(acc_r[q], alpha);
                        if self.accumulate {
                            v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(self.masks[q], crow.add(16 * q)));
                        }
                        _mm512_mask_storeu_ps(crow.add(16 * q), self.masks[q], v);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shape the attention kernel uses, off every register edge, with transposed A and
    /// accumulation, against an f64 triple loop.
    #[test]
    fn small_matmul_equals_the_textbook_product() {
        for &(m, n, k) in &[(1, 1, 1), (6, 64, 64), (7, 17, 5), (64, 128, 64), (13, 65, 33), (64, 192, 64), (128, 64, 128), (5, 100, 3)] {
            for transposed_a in [false, true] {
                for accumulate in [false, true] {
                    let a: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
                    let b_rs = n + 3; // rows of B further apart than n
                    let b: Vec<f32> = (0..k * b_rs).map(|i| ((i * 53 % 97) as f32 - 48.0) / 24.0).collect();
                    let c_rs = n + 5;
                    let c0: Vec<f32> = (0..m * c_rs).map(|i| (i % 7) as f32 - 3.0).collect();
                    let mut c = c0.clone();
                    // A (m × k) stored row-major, or stored as its transpose (k × m) and read through strides.
                    let (stored, strided) = if transposed_a {
                        let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
                        (at, (1, m))
                    } else {
                        (a.clone(), (k, 1))
                    };
                    let alpha = 0.125f32;
                    // `stored` holds m·k elements read through `strided`, b holds k rows of b_rs ≥ n, c holds
                    // m rows of c_rs ≥ n.
                    // SAFETY: by the above every access is in bounds, and c is its own buffer.
                    unsafe {
                        small_matmul(m, n, k, alpha, Strided { ptr: stored.as_ptr(), rs: strided.0, cs: strided.1 }, b.as_ptr(), b_rs, c.as_mut_ptr(), c_rs, accumulate);
                    }
                    for r in 0..m {
                        for j in 0..c_rs {
                            let got = c[r * c_rs + j] as f64;
                            let want = if j < n {
                                let dot: f64 = (0..k).map(|t| a[r * k + t] as f64 * b[t * b_rs + j] as f64).sum();
                                alpha as f64 * dot + if accumulate { c0[r * c_rs + j] as f64 } else { 0.0 }
                            } else {
                                c0[r * c_rs + j] as f64 // past n: untouched
                            };
                            assert!((got - want).abs() <= 1e-5 * (1.0 + want.abs()), "{m}×{n}×{k} t={transposed_a} acc={accumulate} ({r},{j}): {got} vs {want}");
                        }
                    }
                }
            }
        }
    }
}
