//! `modernft bench --mode kernels`: the base model's per-layer pieces timed one by one, so that a
//! change to one kernel can be measured without the whole step's run-to-run drift.
//!
//! Every piece runs on the shapes of one ModernBERT-base layer at `batch × seq` tokens (unpadded):
//! the four linear layers' products, the attention kernel (a global and a local layer), LayerNorm and
//! GeGLU. Each is timed forward, then backward (candle's `backward()` from the sum of its output, so
//! the time includes the gradient bookkeeping a real step pays for that node), and the best of
//! `reps` runs is reported: the minimum is the least disturbed by other load on the machine.

use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use serde_json::{json, Value};

use crate::error::Result;
use crate::kernels::cpu::attention::VarlenAttention;
use crate::model::nn::{rope_values, Activation};
use crate::kernels::cpu::product::Product;

const HIDDEN: usize = 768;
const HEADS: usize = 12;
const INTERMEDIATE: usize = 1152;

/// Best forward and backward seconds of `f` over `reps` runs, `f` mapping an input variable to an output.
fn time(reps: usize, input: &Var, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<(f64, f64)> {
    let (mut fwd, mut bwd) = (f64::MAX, f64::MAX);
    for _ in 0..reps.max(1) + 1 {
        let t0 = Instant::now();
        let y = f(input.as_tensor())?;
        let t1 = Instant::now();
        let grads = y.sum_all()?.backward()?;
        grads.get(input).ok_or_else(|| crate::err!("kernel bench: no gradient reached the input"))?;
        let t2 = Instant::now();
        fwd = fwd.min((t1 - t0).as_secs_f64());
        bwd = bwd.min((t2 - t1).as_secs_f64());
    }
    Ok((fwd, bwd))
}

fn random(shape: (usize, usize), std: f32) -> Result<Var> {
    Ok(Var::from_tensor(&Tensor::randn(0f32, std, shape, &Device::Cpu)?)?)
}

fn line(kernel: &str, tokens: usize, (fwd, bwd): (f64, f64), gflop: Option<f64>) -> Value {
    let mut v = json!({"tool": "modernft", "mode": "kernels", "kernel": kernel, "tokens": tokens,
        "threads": rayon::current_num_threads(), "forward_ms": fwd * 1e3, "backward_ms": bwd * 1e3});
    if let Some(g) = gflop {
        v["gflops"] = json!(g / (fwd + bwd));
    }
    v
}

/// One JSON line per kernel, for `batch` sequences of `seq` tokens.
pub fn run(batch: usize, seq: usize, reps: usize) -> Result<Vec<Value>> {
    let tokens = batch * seq;
    let mut out = Vec::new();
    for (name, inp, outp) in [("linear-wqkv", HIDDEN, 3 * HIDDEN), ("linear-attn-wo", HIDDEN, HIDDEN), ("linear-wi", HIDDEN, 2 * INTERMEDIATE), ("linear-mlp-wo", INTERMEDIATE, HIDDEN)] {
        let (x, w) = (random((tokens, inp), 1.0)?, random((outp, inp), 0.02)?);
        let t = time(reps, &x, |x| Ok(x.apply_op2(w.as_tensor(), Product::LINEAR)?))?;
        out.push(line(name, tokens, t, Some(3.0 * 2.0 * (tokens * inp * outp) as f64 / 1e9)));
    }
    let head_dim = HIDDEN / HEADS;
    let (cos, sin) = rope_values(160_000.0, head_dim, seq);
    let qkv = random((tokens, 3 * HIDDEN), 1.0)?;
    for (name, window) in [("attention-global", None), ("attention-local", Some(64))] {
        let kernel = VarlenAttention {
            cu_seqlens: Arc::new((0..=batch).map(|b| b * seq).collect()),
            heads: HEADS,
            head_dim,
            window,
            cos: Arc::new(cos.clone()),
            sin: Arc::new(sin.clone()),
        };
        out.push(line(name, tokens, time(reps, &qkv, |x| kernel.apply(x))?, None));
    }
    let (x, w) = (random((tokens, HIDDEN), 1.0)?, Var::from_tensor(&Tensor::ones(HIDDEN, DType::F32, &Device::Cpu)?)?);
    out.push(line("layer-norm", tokens, time(reps, &x, |x| crate::kernels::cpu::kernels::layer_norm(x, w.as_tensor(), 1e-5))?, None));
    let x = random((tokens, 2 * INTERMEDIATE), 1.0)?;
    let geglu = |x: &Tensor| crate::kernels::cpu::kernels::glu(x, Activation::Gelu)?.ok_or_else(|| crate::err!("kernel bench: no fused GeGLU for this input"));
    out.push(line("geglu", tokens, time(reps, &x, geglu)?, None));
    Ok(out)
}
