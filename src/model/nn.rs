//! Building blocks with a full backward pass.
//!
//! candle 0.11's fused `ops::softmax_last_dim`, `ops::layer_norm`, `ops::rms_norm` and
//! `rotary_emb::rope*` are built with `apply_op*_no_bwd`: gradients silently stop at them. Everything
//! here is composed of candle primitives that all carry a backward, so training sees the whole graph.
//! (Tests check that every parameter receives a gradient and that gradients match transformers.)

use std::cell::RefCell;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{Init, VarBuilder};

use crate::error::Result;
use crate::rng::Rng;

pub use crate::kernels::Activation;


/// Whether a forward pass is for training (dropout on) or inference, with the dropout RNG.
pub struct Mode {
    train: bool,
    rng: RefCell<Rng>,
    /// Token-embedding lookups made since the last `take_sparse_lookups`, when the gradient is kept
    /// to the rows read (`sparse_embeddings`).
    sparse: Option<RefCell<Vec<SparseLookup>>>,
}

/// A token-embedding lookup whose gradient reaches only the rows it read: the rows are copied into
/// a leaf of their own, and backward fills `[rows, hidden]` instead of the whole `[vocab, hidden]`
/// matrix (most of a small model's parameters with ModernBERT's 50,368 tokens). The optimizer puts
/// the rows back in place (`train::grads`).
pub struct SparseLookup {
    /// The embedding matrix read (the parameter).
    pub weight: Tensor,
    /// The distinct ids read, ascending: row `i` of `leaf` is row `rows[i]` of `weight`.
    pub rows: Vec<u32>,
    pub leaf: candle_core::Var,
}

impl Mode {
    pub fn eval() -> Self {
        Mode { train: false, rng: RefCell::new(Rng::new(0)), sparse: None }
    }

    pub fn train(rng: Rng) -> Self {
        Mode { train: true, rng: RefCell::new(rng), sparse: None }
    }

    /// Training whose token-embedding gradients are kept to the rows read ([`SparseLookup`]); the
    /// caller takes the lookups after each backward (`take_sparse_lookups`).
    pub fn train_sparse(rng: Rng) -> Self {
        Mode { train: true, rng: RefCell::new(rng), sparse: Some(RefCell::new(Vec::new())) }
    }

    /// The sparse lookups made since the last call (none unless `train_sparse`).
    pub fn take_sparse_lookups(&self) -> Vec<SparseLookup> {
        self.sparse.as_ref().map(|s| std::mem::take(&mut *s.borrow_mut())).unwrap_or_default()
    }

    pub fn is_train(&self) -> bool {
        self.train
    }

    pub fn rng_state(&self) -> [u64; 4] {
        self.rng.borrow().state()
    }

    /// Inverted dropout: zeroes each element with probability `p` and scales the rest by 1/(1-p).
    /// A no-op at inference or when `p == 0`.
    pub fn dropout(&self, x: &Tensor, p: f64) -> Result<Tensor> {
        if !self.train || p <= 0.0 {
            return Ok(x.clone());
        }
        let scale = 1.0 / (1.0 - p);
        let mut rng = self.rng.borrow_mut();
        let keep: Vec<f32> =
            (0..x.elem_count()).map(|_| if rng.uniform() >= p { scale as f32 } else { 0.0 }).collect();
        let mask = Tensor::from_vec(keep, x.shape(), x.device())?.to_dtype(x.dtype())?;
        Ok((x * mask)?)
    }
}

/// `nn.Linear`: y = x Wᵀ + b, with W stored `[out, in]` as PyTorch stores it.
#[derive(Clone, Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    /// The bf16 version of this layer (`use_bf16`), for inputs that need no gradient.
    bf16: Option<crate::kernels::Bf16Linear>,
    /// Training in bf16 (`train_in_bf16`): the product as autocast runs it.
    bf16_train: bool,
}

impl Linear {
    /// Loads `{prefix}.weight` (and `{prefix}.bias`); `std` is the init used when the checkpoint lacks it.
    pub fn new(vb: VarBuilder, in_dim: usize, out_dim: usize, bias: bool, std: f64) -> Result<Self> {
        let weight = vb.get_with_hints((out_dim, in_dim), "weight", Init::Randn { mean: 0.0, stdev: std })?;
        let bias = if bias { Some(vb.get_with_hints(out_dim, "bias", Init::Const(0.0))?) } else { None };
        Ok(Linear { weight, bias, bf16: None, bf16_train: false })
    }

    /// A layer over existing tensors (a weight shared with another module stays shared: its
    /// gradients add up, as for PyTorch's tied weights).
    pub fn from_parts(weight: Tensor, bias: Option<Tensor>) -> Self {
        Linear { weight, bias, bf16: None, bf16_train: false }
    }

    /// Multiplies in bf16 from now on (f32 weights on the CPU; inputs that need no gradient).
    pub fn use_bf16(&mut self) -> Result<()> {
        self.bf16 = Some(crate::kernels::bf16_linear(&self.weight, self.bias.as_ref())?);
        Ok(())
    }

    /// Mixed-precision training from now on: the input, weight and bias rounded to bf16, the
    /// product summed in f32 and its result rounded to bf16, as PyTorch's `autocast(bfloat16)` runs
    /// `nn.Linear`; the gradients (dX = dY·W, dW = dYᵀ·X) are bf16-rounded alike, and the f32
    /// master weight takes dW in f32.
    pub fn train_in_bf16(&mut self) {
        self.bf16_train = true;
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let (Some(op), DType::F32, false) = (&self.bf16, x.dtype(), x.track_op()) {
            return Ok(x.contiguous()?.apply_op1(op.clone())?);
        }
        let bf16 = self.bf16_train && x.dtype() == DType::F32 && self.weight.dtype() == DType::F32;
        let round = |t: &Tensor| if bf16 { crate::kernels::bf16_round(t) } else { Ok(t.clone()) };
        let dims = x.dims();
        let in_dim = dims[dims.len() - 1];
        let rows = x.elem_count() / in_dim;
        // The unpadded path's activations are already [tokens, in]: no reshape nodes to backprop through.
        let x2 = if dims.len() == 2 { x.clone() } else { x.reshape((rows, in_dim))? };
        let y = if bf16 && !x.device().is_cpu() {
            // GPUs multiply bf16 operands natively (cuBLAS, f32 accumulation), as autocast does.
            bf16_product(&x2, &self.weight, self.bias.as_ref())?
        } else {
            let y = crate::kernels::linear(&round(&x2)?, &round(&self.weight)?)?;
            let y = match &self.bias {
                Some(b) => y.broadcast_add(&round(b)?)?,
                None => y,
            };
            round(&y)?
        };
        if dims.len() == 2 {
            return Ok(y);
        }
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().unwrap() = self.weight.dim(0)?;
        Ok(y.reshape(out_dims)?)
    }
}

/// `x · wᵀ + b` with bf16 operands and a bf16 result, back in f32: autocast's `nn.Linear` as one
/// bf16 product on the device (its backward multiplies in bf16 too; the f32 master weight takes
/// its gradient through the cast). The CPU runs the same numbers through [`crate::kernels::bf16_round`].
pub fn bf16_product(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let y = x.to_dtype(DType::BF16)?.matmul(&weight.to_dtype(DType::BF16)?.t()?)?;
    let y = match bias {
        Some(b) => y.broadcast_add(&b.to_dtype(DType::BF16)?)?,
        None => y,
    };
    Ok(y.to_dtype(DType::F32)?)
}

/// `nn.LayerNorm` over the last dimension, optionally without bias (ModernBERT's `norm_bias`).
#[derive(Clone, Debug)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub eps: f64,
}

impl LayerNorm {
    pub fn new(vb: VarBuilder, dim: usize, bias: bool, eps: f64) -> Result<Self> {
        let weight = vb.get_with_hints(dim, "weight", Init::Const(1.0))?;
        let bias = if bias { Some(vb.get_with_hints(dim, "bias", Init::Const(0.0))?) } else { None };
        Ok(LayerNorm { weight, bias, eps })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        crate::kernels::layer_norm(x, &self.weight, self.bias.as_ref(), self.eps)
    }

    /// The same function from candle primitives (any dtype, any device).
    pub fn forward_primitive(&self, x: &Tensor) -> Result<Tensor> {
        crate::kernels::portable::layer_norm(x, &self.weight, self.bias.as_ref(), self.eps)
    }
}

/// Rows scaled to unit length (norms clamped at 1e-12, as torch's `F.normalize`).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
    Ok(x.broadcast_div(&norm)?)
}

/// Softmax over the last dimension, differentiable.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    crate::kernels::softmax_last_dim(x)
}

/// The same softmax from candle primitives (any device).
pub fn softmax_last_dim_primitive(x: &Tensor) -> Result<Tensor> {
    crate::kernels::portable::softmax_last_dim(x)
}

/// Rotary-embedding tables for one base (theta), computed as transformers computes them: inverse
/// frequencies and angles in f32, then cos/sin cast to the model dtype.
pub fn rope_tables(theta: f64, head_dim: usize, seq_len: usize, dtype: DType, dev: &Device) -> Result<(Tensor, Tensor)> {
    let (cos, sin) = rope_values(theta, head_dim, seq_len);
    let cos = Tensor::from_vec(cos, (seq_len, head_dim), dev)?.to_dtype(dtype)?;
    let sin = Tensor::from_vec(sin, (seq_len, head_dim), dev)?.to_dtype(dtype)?;
    Ok((cos, sin))
}

/// The values of `rope_tables` in f32, row-major [seq_len, head_dim].
pub fn rope_values(theta: f64, head_dim: usize, seq_len: usize) -> (Vec<f32>, Vec<f32>) {
    let half = head_dim / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| {
            let exponent = (2 * i) as f32 / head_dim as f32;
            1.0f32 / (theta as f32).powf(exponent)
        })
        .collect();
    let mut cos = Vec::with_capacity(seq_len * head_dim);
    let mut sin = Vec::with_capacity(seq_len * head_dim);
    for p in 0..seq_len {
        // emb = cat(freqs, freqs): the same angles for both halves of the head.
        for _ in 0..2 {
            for f in &inv_freq {
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
    }
    (cos, sin)
}

/// Applies rotary embeddings to `x` of shape `[batch, heads, seq, head_dim]`:
/// x·cos + rotate_half(x)·sin, where rotate_half(x) = cat(-x₂, x₁).
pub fn apply_rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, d / 2)?;
    let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    Ok((x.broadcast_mul(cos)? + rotated.broadcast_mul(sin)?)?)
}

/// `nn.Embedding` lookup.
#[derive(Clone, Debug)]
pub struct Embedding {
    pub weight: Tensor,
}

impl Embedding {
    pub fn new(vb: VarBuilder, vocab: usize, dim: usize, std: f64) -> Result<Self> {
        Ok(Embedding { weight: vb.get_with_hints((vocab, dim), "weight", Init::Randn { mean: 0.0, stdev: std })? })
    }

    /// The rows of `ids` (any shape) → `[..ids, hidden]`. Under `Mode::train_sparse`, a trainable
    /// matrix is read through a [`SparseLookup`] (same values; the gradient goes to the leaf).
    pub fn forward(&self, ids: &Tensor, mode: &Mode) -> Result<Tensor> {
        let mut dims = ids.dims().to_vec();
        dims.push(self.weight.dim(1)?);
        let flat = ids.flatten_all()?;
        let lookups = match &mode.sparse {
            Some(l) if self.weight.track_op() => l,
            _ => return Ok(self.weight.index_select(&flat, 0)?.reshape(dims)?),
        };
        let host: Vec<u32> = flat.to_dtype(DType::U32)?.to_vec1()?;
        let mut rows = host.clone();
        rows.sort_unstable();
        rows.dedup();
        // Every id is in `rows`: the search always finds it.
        let at: Vec<u32> = host.iter().map(|id| rows.binary_search(id).unwrap_or_else(|i| i) as u32).collect();
        let dev = self.weight.device();
        let leaf = candle_core::Var::from_tensor(&self.weight.detach().index_select(&Tensor::new(rows.as_slice(), dev)?, 0)?)?;
        let e = leaf.as_tensor().index_select(&Tensor::new(at, dev)?, 0)?.reshape(dims)?;
        lookups.borrow_mut().push(SparseLookup { weight: self.weight.clone(), rows, leaf });
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_matches_candle_and_rows_sum_to_one() {
        let x = Tensor::new(&[[1f32, 2., 3.], [-1e30, 0., 1.]], &Device::Cpu).unwrap();
        let ours = softmax_last_dim(&x).unwrap();
        let theirs = candle_nn::ops::softmax_last_dim(&x).unwrap();
        let d = (ours - theirs).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-6);
    }

    #[test]
    fn fused_softmax_matches_the_primitive_chain_forward_and_backward() {
        let dev = Device::Cpu;
        let x = candle_core::Var::new(&[[0.3f64, -1.2, 2.0, 0.0], [5.0, 5.0, -3.0, 1.0]], &dev).unwrap();
        let w = Tensor::new(&[[1.0f64, -2.0, 0.5, 3.0], [0.1, 0.2, 0.3, 0.4]], &dev).unwrap();
        let fused = softmax_last_dim(x.as_tensor()).unwrap();
        let plain = softmax_last_dim_primitive(x.as_tensor()).unwrap();
        let d = (&fused - &plain).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
        assert!(d < 1e-15, "{d}");
        let g1 = (fused * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (plain * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let (a, b) = (g1.get(x.as_tensor()).unwrap(), g2.get(x.as_tensor()).unwrap());
        let d = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
        assert!(d < 1e-15, "{d}");
    }

    /// The GPU's bf16 product (bf16 operands and result) gives the CPU's rounded-f32 numbers, forward
    /// and backward, within bf16 rounding (here both run on the CPU).
    #[test]
    fn bf16_product_equals_the_rounded_f32_product() {
        let dev = Device::Cpu;
        let val = |n: usize, k: f64| (0..n).map(|i| ((i as f64 * k).sin() * 2.0) as f32).collect::<Vec<f32>>();
        let x = candle_core::Var::from_vec(val(5 * 48, 0.37), (5, 48), &dev).unwrap();
        let w = candle_core::Var::from_vec(val(8 * 48, 0.11), (8, 48), &dev).unwrap();
        let b = candle_core::Var::from_vec(val(8, 0.7), 8, &dev).unwrap();
        let up = Tensor::from_vec(val(5 * 8, 0.23), (5, 8), &dev).unwrap();
        let mut layer = Linear::from_parts(w.as_tensor().clone(), Some(b.as_tensor().clone()));
        layer.train_in_bf16();
        let rounded = layer.forward(x.as_tensor()).unwrap();
        let native = bf16_product(x.as_tensor(), w.as_tensor(), Some(b.as_tensor())).unwrap();
        let close = |a: &Tensor, c: &Tensor, what: &str| {
            let scale = c.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            let d = (a - c).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(d <= 8e-3 * scale, "{what}: {d} apart (scale {scale})");
        };
        close(&native, &rounded, "forward");
        let g1 = (&rounded * &up).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (&native * &up).unwrap().sum_all().unwrap().backward().unwrap();
        for (v, what) in [(&x, "dx"), (&w, "dw"), (&b, "db")] {
            close(g2.get(v).unwrap(), g1.get(v).unwrap(), what);
        }
    }

    #[test]
    fn layer_norm_matches_candle() {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[1f32, 2., 4., 8.], [0.5, -1., 3., 0.]], &dev).unwrap();
        let w = Tensor::new(&[1f32, 0.5, 2., 1.], &dev).unwrap();
        let b = Tensor::new(&[0f32, 0.1, 0., -0.2], &dev).unwrap();
        let ours = LayerNorm { weight: w.clone(), bias: Some(b.clone()), eps: 1e-5 }.forward(&x).unwrap();
        let theirs = candle_nn::ops::layer_norm(&x, &w, &b, 1e-5).unwrap();
        let d = (ours - theirs).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-5, "{d}");
    }

    #[test]
    fn rope_matches_candle_rope() {
        let dev = Device::Cpu;
        let (b, h, s, d) = (1, 2, 5, 8);
        let x = Tensor::arange(0f32, (b * h * s * d) as f32, &dev).unwrap().reshape((b, h, s, d)).unwrap();
        let x = (x * 0.01).unwrap().sin().unwrap();
        let (cos, sin) = rope_tables(10000.0, d, s, DType::F32, &dev).unwrap();
        let ours = apply_rope(&x, &cos, &sin).unwrap();
        let theirs = candle_nn::rotary_emb::rope(
            &x,
            &cos.narrow(1, 0, d / 2).unwrap().contiguous().unwrap(),
            &sin.narrow(1, 0, d / 2).unwrap().contiguous().unwrap(),
        )
        .unwrap();
        let diff = (ours - theirs).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-6, "{diff}");
    }
}
