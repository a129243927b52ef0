//! `modernft bench`: throughput of training steps and encoder forward passes, one JSON line per run,
//! measuring the same cases as `../shared/bench/hf_bench.py` does for transformers (same model sizes,
//! same real-text batching), so the two can be run back to back and compared as ratios.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use serde_json::{json, Value};

use crate::data::{pad_batch, TextEncoder};
use crate::error::Result;
use crate::tasks::loss::cross_entropy;
use crate::model::{build, HeadKind, LoadOptions, Mode, ModernBert, ModernBertConfig};
use crate::rng::Rng;
use crate::train::{AdamW, AdamWConfig};

pub struct BenchOptions {
    pub size: String,
    pub model_dir: Option<PathBuf>,
    pub train: bool,
    pub batch: usize,
    pub seq: usize,
    pub steps: usize,
    pub warmup: usize,
    pub data: Option<PathBuf>,
    pub tokenizer: Option<PathBuf>,
    pub rows: usize,
    pub group_by_length: bool,
    pub group_mult: usize,
    pub bf16: bool,
    pub padded: bool,
    pub device: Device,
}

/// hf_bench.py's random-init configurations.
fn size_config(size: &str) -> Result<Value> {
    let special = json!({"pad_token_id": 3, "bos_token_id": 1, "eos_token_id": 2, "cls_token_id": 1, "sep_token_id": 2});
    let mut c = match size {
        "tiny" => json!({"hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 96,
            "vocab_size": 512, "max_position_embeddings": 512, "global_attn_every_n_layers": 3, "local_attention": 16}),
        "small" => json!({"hidden_size": 256, "num_hidden_layers": 6, "num_attention_heads": 4, "intermediate_size": 384, "vocab_size": 50368}),
        "base" => json!({"hidden_size": 768, "num_hidden_layers": 22, "num_attention_heads": 12, "intermediate_size": 1152,
            "vocab_size": 50368, "global_attn_every_n_layers": 3, "local_attention": 128, "global_rope_theta": 160000.0,
            "local_rope_theta": 10000.0, "norm_eps": 1e-5}),
        other => crate::bail!("--size {other}: use tiny, small or base"),
    };
    if size == "tiny" {
        c.as_object_mut().unwrap().extend(special.as_object().unwrap().clone());
    }
    c["classifier_pooling"] = json!("mean");
    Ok(c)
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Rows in file order, or longest-first inside chunks of `mult * batch` rows (hf_bench's grouping).
fn row_order(lengths: &[usize], batch: usize, group: bool, mult: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    if group {
        for chunk in order.chunks_mut(mult.max(1) * batch) {
            chunk.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
        }
    }
    order
}

struct Step<'a> {
    model: &'a ModernBert,
    opt: Option<AdamW>,
    padded: bool,
    /// Seconds spent in forward, backward and optimizer over the timed steps (hf_bench's `phase_s`).
    phases: [f64; 3],
    timing: bool,
    /// Waited on before each clock reading: a GPU runs the queued work asynchronously.
    device: Device,
}

impl Step<'_> {
    /// One training step (forward, cross-entropy, backward, AdamW) or one forward pass.
    fn run(&mut self, ids: &Tensor, mask: &Tensor, labels: &Tensor) -> Result<()> {
        match &mut self.opt {
            Some(opt) => {
                let t0 = Instant::now();
                let mode = Mode::train_sparse(Rng::new(0));
                let out = if self.padded { self.model.forward_padded(ids, Some(mask), &mode)? } else { self.model.forward(ids, Some(mask), &mode)? };
                let loss = cross_entropy(&out.logits.expect("head"), labels)?;
                self.device.synchronize()?;
                let t1 = Instant::now();
                let grads = crate::train::grads::Grads::backward(&loss, &mode)?;
                self.device.synchronize()?;
                let t2 = Instant::now();
                opt.step(&grads, 1e-5)?;
                self.device.synchronize()?;
                if self.timing {
                    let t3 = Instant::now();
                    for (phase, d) in self.phases.iter_mut().zip([t1 - t0, t2 - t1, t3 - t2]) {
                        *phase += d.as_secs_f64();
                    }
                }
            }
            None => {
                let out = if self.padded { self.model.forward_padded(ids, Some(mask), &Mode::eval())? } else { self.model.forward(ids, Some(mask), &Mode::eval())? };
                let h = out.last_hidden_state;
                // Pooling, as an embedding call does; to_vec forces the computation.
                let _ = crate::model::modernbert::pool(&h, Some(mask), crate::model::Pooling::Mean)?.to_vec2::<f32>()?;
            }
        }
        Ok(())
    }
}

pub fn run(o: &BenchOptions) -> Result<Value> {
    let rss_start = peak_rss_mib();
    let mut config_json = match &o.model_dir {
        Some(d) => serde_json::from_str(&std::fs::read_to_string(d.join("config.json"))?)?,
        None => size_config(&o.size)?,
    };
    config_json["num_labels"] = json!(2);
    let config = ModernBertConfig::from_value(&config_json)?;
    let head = if o.train { HeadKind::Sequence } else { HeadKind::None };
    let opts = LoadOptions { trainable: o.train, device: o.device.clone(), ..Default::default() };
    let mut loaded = build(&config, None, head, &opts)?;
    match (o.bf16, o.train) {
        // Training as `precision = "bf16"` trains (autocast's products, the portable path).
        (true, true) => loaded.model.train_in_bf16(),
        (true, false) => loaded.model.use_bf16_matmuls()?,
        _ => {}
    }
    let params: usize = loaded.tensors.iter().map(|(_, t)| t.elem_count()).sum();
    let opt = if o.train { Some(AdamW::new(&loaded.params, AdamWConfig { weight_decay: 0.01, ..Default::default() })?) } else { None };
    let mut step = Step { model: &loaded.model, opt, padded: o.padded, phases: [0.0; 3], timing: false, device: o.device.clone() };
    let dev = o.device.clone();
    let mut res = json!({
        "tool": "modernft", "model": o.model_dir.as_ref().map(|d| d.display().to_string()).unwrap_or(format!("modernbert-{}", o.size)),
        "mode": if o.train { "train" } else { "embed" }, "batch": o.batch, "seq": o.seq, "dtype": if o.bf16 { "bf16" } else { "fp32" },
        "layout": if o.padded || !o.device.is_cpu() { "padded" } else { "unpadded" },
        "threads": rayon::current_num_threads(), "params": params, "warmup": o.warmup,
        "device": crate::device::describe(&o.device),
    });
    let pad = config.pad_token_id.unwrap_or(0);
    match &o.data {
        None => {
            // Fixed shapes: random token ids, every token real.
            let mut rng = Rng::new(0);
            let ids: Vec<u32> = (0..o.batch * o.seq).map(|_| 5 + rng.below(config.vocab_size - 5) as u32).collect();
            let ids = Tensor::from_vec(ids, (o.batch, o.seq), &dev)?;
            let mask = Tensor::ones((o.batch, o.seq), DType::U32, &dev)?;
            let labels = Tensor::from_vec((0..o.batch as u32).map(|i| i % 2).collect::<Vec<u32>>(), o.batch, &dev)?;
            for _ in 0..o.warmup {
                step.run(&ids, &mask, &labels)?;
            }
            step.timing = true;
            let t = Instant::now();
            for _ in 0..o.steps {
                step.run(&ids, &mask, &labels)?;
            }
            let secs = t.elapsed().as_secs_f64();
            let tokens = (o.batch * o.seq * o.steps) as f64;
            res["steps"] = json!(o.steps);
            res["seconds_per_step"] = json!(secs / o.steps.max(1) as f64);
            res["tokens_per_s"] = json!(tokens / secs);
            res["samples_per_s"] = json!((o.batch * o.steps) as f64 / secs);
        }
        Some(path) => {
            // Real text: the first `rows` lines, truncated to `seq`, batches padded to their longest row.
            let tok = o.tokenizer.clone().unwrap_or_else(|| PathBuf::from("../shared/data/modernbert/tokenizer.json"));
            let enc = TextEncoder::from_file(&tok, o.seq)?;
            let text = std::fs::read_to_string(path).map_err(|e| crate::err!("cannot read {}: {e}", path.display()))?;
            let rows: Vec<Value> = text.lines().take(o.rows).map(serde_json::from_str).collect::<std::result::Result<_, _>>()?;
            let texts: Vec<&str> = rows.iter().map(|r| r["text"].as_str().unwrap_or("")).collect();
            let mut label_names: Vec<String> = rows.iter().map(|r| r["label"].to_string()).collect();
            label_names.sort();
            label_names.dedup();
            let labels: Vec<u32> = rows.iter().map(|r| label_names.iter().position(|l| *l == r["label"].to_string()).unwrap_or(0) as u32 % 2).collect();
            let encoded = enc.encode_batch(&texts)?;
            let lengths: Vec<usize> = encoded.iter().map(|e| e.ids.len()).collect();
            let order = row_order(&lengths, o.batch, o.group_by_length, o.group_mult);
            let batches: Vec<&[usize]> = order.chunks(o.batch).collect();
            let make = |b: &[usize]| -> Result<(Tensor, Tensor, Tensor, usize, usize)> {
                let seqs: Vec<&[u32]> = b.iter().map(|&i| encoded[i].ids.as_slice()).collect();
                let (ids, mask) = pad_batch(&seqs, pad, &dev)?;
                let real: usize = seqs.iter().map(|s| s.len()).sum();
                let padded = b.len() * seqs.iter().map(|s| s.len()).max().unwrap_or(0);
                Ok((ids, mask, Tensor::new(b.iter().map(|&i| labels[i]).collect::<Vec<u32>>(), &dev)?, real, padded))
            };
            for b in batches.iter().take(o.warmup) {
                let (ids, mask, y, _, _) = make(b)?;
                step.run(&ids, &mask, &y)?;
            }
            let (mut real, mut padded) = (0usize, 0usize);
            step.timing = true;
            let t = Instant::now();
            for b in &batches {
                let (ids, mask, y, r, p) = make(b)?;
                step.run(&ids, &mask, &y)?;
                real += r;
                padded += p;
            }
            let secs = t.elapsed().as_secs_f64();
            res["data"] = json!(path.display().to_string());
            res["rows"] = json!(rows.len());
            res["batches"] = json!(batches.len());
            res["group_by_length"] = json!(o.group_by_length);
            res["real_tokens"] = json!(real);
            res["padded_tokens"] = json!(padded);
            res["pad_frac"] = json!(1.0 - real as f64 / padded.max(1) as f64);
            res["seconds"] = json!(secs);
            res["samples_per_s"] = json!(rows.len() as f64 / secs);
            res["real_tokens_per_s"] = json!(real as f64 / secs);
        }
    }
    if o.train {
        let [fwd, bwd, opt] = step.phases;
        res["phase_s"] = json!({"fwd": fwd, "bwd": bwd, "opt": opt});
    }
    res["peak_rss_mib"] = json!(peak_rss_mib());
    res["rss_start_mib"] = json!(rss_start);
    Ok(res)
}
