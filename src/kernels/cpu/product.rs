//! The linear layers' matrix products on the CPU: `gemm` called directly, with the output rows (or,
//! for short inputs, columns) split between the threads.
//!
//! candle multiplies through `gemm` with its own threading, which synchronises the threads at every
//! cache block; splitting the rows of the output instead lets every thread run one independent
//! single-threaded product (each packs the shared operand itself, a few MB against tens of ms of
//! arithmetic). Measured on the base model's shapes with 2 threads: ≈ 195 GFLOP/s against ≈ 178.
//! The backward is two more products of the same kind, and the weight gradient comes out in the
//! weight's own `[out, in]` layout (no transposed copy to add back).

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use crate::kernels::cpu::kernels::{slice, Real, Shared};

/// Rows of output below which one thread does the whole product.
const MIN_ROWS_PER_THREAD: usize = 64;
/// Columns of output below which one thread does the whole product (when columns are split).
const MIN_COLUMNS_PER_THREAD: usize = 64;

/// `C = op(A) · op(B)` for contiguous 2-D `A`, `B`, where `op` transposes when the flag is set.
#[derive(Clone, Copy, Debug)]
pub struct Product {
    pub transpose_a: bool,
    pub transpose_b: bool,
}

impl Product {
    /// `y = x · wᵀ`: a linear layer, `x` `[rows, in]`, `w` `[out, in]`; differentiable in both.
    pub const LINEAR: Product = Product { transpose_a: false, transpose_b: true };

    fn dims(&self, a: &Layout, b: &Layout) -> candle_core::Result<(usize, usize, usize)> {
        let (ar, ac) = a.shape().dims2()?;
        let (br, bc) = b.shape().dims2()?;
        let (m, k) = if self.transpose_a { (ac, ar) } else { (ar, ac) };
        let (kb, n) = if self.transpose_b { (bc, br) } else { (br, bc) };
        if k != kb {
            candle_core::bail!("product: inner dimensions {k} and {kb} differ ({:?} · {:?})", a.dims(), b.dims());
        }
        Ok((m, n, k))
    }

    fn run<T: Real>(&self, a: &[T], b: &[T], (m, n, k): (usize, usize, usize)) -> Vec<T> {
        if k == 0 || m == 0 || n == 0 {
            return vec![T::ZERO; m * n];
        }
        // Element (r, t) of op(A) and (t, j) of op(B), as (row stride, column stride).
        let (a_rs, a_cs) = if self.transpose_a { (1, m) } else { (k, 1) };
        let (b_rs, b_cs) = if self.transpose_b { (1, k) } else { (n, 1) };
        // Every thread packs the part of the operand it was given and the whole other one: split
        // the larger operand. A linear layer on a few hundred rows (short sentences) has a weight
        // much larger than its input, so its output columns are split and each thread packs half of
        // the weight instead of all of it.
        let split_rows = m >= n;
        let (along, min_per_thread) = if split_rows { (m, MIN_ROWS_PER_THREAD) } else { (n, MIN_COLUMNS_PER_THREAD) };
        let threads = rayon::current_num_threads().min(along / min_per_thread).max(1);
        let chunk = along.div_ceil(threads);
        let mut c: Vec<T> = Vec::with_capacity(m * n);
        let (a_ptr, b_ptr, c_ptr) = (Shared(a.as_ptr() as *mut T), Shared(b.as_ptr() as *mut T), Shared(c.as_mut_ptr()));
        (0..threads).into_par_iter().for_each(|i| {
            let (a_ptr, b_ptr, c_ptr) = (a_ptr, b_ptr, c_ptr);
            let start = i * chunk;
            let len = chunk.min(along - start);
            let (rows, cols) = if split_rows { (len, n) } else { (m, len) };
            let (a_at, b_at, c_at) = if split_rows { (start * a_rs, 0, start * n) } else { (0, start * b_cs, start) };
            // The chunks are disjoint blocks (rows, or columns) of the m × n buffer allocated above.
            // SAFETY: blocks disjoint; reads inside `a` and `b`; gemm writes its block without reading it.
            unsafe {
                gemm::gemm(
                    rows, cols, k,
                    c_ptr.0.add(c_at), 1, n as isize, false,
                    a_ptr.0.add(a_at) as *const T, a_cs as isize, a_rs as isize,
                    b_ptr.0.add(b_at) as *const T, b_cs as isize, b_rs as isize,
                    T::ZERO, T::ONE,
                    false, false, false, Parallelism::None,
                )
            }
        });
        // SAFETY: the blocks written above cover all m × n elements (k > 0, so gemm wrote each one).
        unsafe { c.set_len(m * n) };
        c
    }
}

impl CustomOp2 for Product {
    fn name(&self) -> &'static str {
        "product"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = self.dims(l1, l2)?;
        let c = match (s1, s2) {
            (CpuStorage::F32(a), CpuStorage::F32(b)) => CpuStorage::F32(self.run(slice(a, l1)?, slice(b, l2)?, dims)),
            (CpuStorage::F64(a), CpuStorage::F64(b)) => CpuStorage::F64(self.run(slice(a, l1)?, slice(b, l2)?, dims)),
            _ => candle_core::bail!("product: f32 or f64 operands of one dtype only"),
        };
        Ok((c, Shape::from((dims.0, dims.1))))
    }

    /// For `y = x · wᵀ`: `dx = g · w`, `dw = gᵀ · x`. Other products are not trained through.
    fn bwd(&self, a: &Tensor, b: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        if (self.transpose_a, self.transpose_b) != (false, true) {
            candle_core::bail!("product: backward is defined for the linear layer's x · wᵀ only");
        }
        let grad = grad.contiguous()?;
        let dx = grad.apply_op2_no_bwd(b, &Product { transpose_a: false, transpose_b: false })?;
        let dw = grad.apply_op2_no_bwd(a, &Product { transpose_a: true, transpose_b: false })?;
        Ok((Some(dx), Some(dw)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap()
    }

    /// Forward and both gradients equal candle's `matmul` chain, for row counts that split unevenly,
    /// and for shapes that split the output by rows and by columns (a weight larger than the input).
    #[test]
    fn linear_product_and_its_gradients_equal_candles_matmul() {
        for (out, inp) in [(24, 40), (200, 40), (24, 200), (333, 130)] {
            for rows in [1, 7, 130, 333] {
                let x = Var::from_tensor(&Tensor::from_vec((0..rows * inp).map(|i| ((i * 13 % 29) as f64 - 14.0) / 7.0).collect::<Vec<_>>(), (rows, inp), &Device::Cpu).unwrap()).unwrap();
                let w = Var::from_tensor(&Tensor::from_vec((0..out * inp).map(|i| ((i * 7 % 31) as f64 - 15.0) / 9.0).collect::<Vec<_>>(), (out, inp), &Device::Cpu).unwrap()).unwrap();
                let up = Tensor::from_vec((0..rows * out).map(|i| (i as f64 * 0.1).sin()).collect::<Vec<_>>(), (rows, out), &Device::Cpu).unwrap();
                let ours = x.apply_op2(w.as_tensor(), Product::LINEAR).unwrap();
                let reference = x.matmul(&w.t().unwrap()).unwrap();
                assert!(max_diff(&ours, &reference) < 1e-10, "forward, {rows} rows, {out} x {inp}");
                let g1 = (&ours * &up).unwrap().sum_all().unwrap().backward().unwrap();
                let g2 = (&reference * &up).unwrap().sum_all().unwrap().backward().unwrap();
                for v in [&x, &w] {
                    assert!(max_diff(g1.get(v).unwrap(), g2.get(v).unwrap()) < 1e-10, "gradient, {rows} rows, {out} x {inp}");
                }
            }
        }
    }

    /// The same product on one thread and on several, split either way: the same bits.
    #[test]
    fn splitting_between_threads_does_not_change_the_result() {
        let (m, n, k) = (70, 300, 600);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 13 % 29) as f32 - 14.0) / 7.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 7 % 31) as f32 - 15.0) / 9.0).collect();
        let p = Product { transpose_a: false, transpose_b: false };
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(|| p.run(&a, &b, (m, n, k)));
        let four = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap().install(|| p.run(&a, &b, (m, n, k)));
        assert_eq!(one.len(), m * n);
        for (r, (x, y)) in one.iter().zip(&four).enumerate() {
            let terms = (0..k).map(|t| a[r / n * k + t] as f64 * b[t * n + r % n] as f64);
            let (exact, size): (f64, f64) = terms.fold((0.0, 0.0), |(s, z), v| (s + v, z + v.abs()));
            assert!((*x as f64 - exact).abs() <= 1e-5 * size, "element {r}: {x} against {exact}");
            assert_eq!(x.to_bits(), y.to_bits(), "element {r}");
        }
    }
}
