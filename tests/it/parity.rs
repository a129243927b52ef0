//! ModernBERT equals transformers: forward, loss, every gradient, and AdamW steps.
//!
//! References come from `scripts/make_reference.py` (transformers 5.24, torch 2.15, CPU) and are
//! committed in tests/fixtures/*/reference.safetensors; this test needs no Python.
//! - tiny-v4: config in the transformers 4.x schema, cls pooling, no biases.
//! - tiny-v5: config in the 5.x schema (layer_types, rope_parameters), mean pooling, every bias on,
//!   silu classifier activation, 3 labels.
//! Both run a padded batch of rows with 51, 17 and 6 tokens through local layers whose window (±4)
//! is much shorter than the rows, so local and global layers differ.
//! They run on the device `MODERNFT_TEST_DEVICE` names (`cuda`: f32 products without TF32, candle's
//! default; the same tolerances), else on the CPU.

use crate::common;

use std::collections::HashMap;

use candle_core::{DType, Device, IndexOp, Tensor};
use common::{fixtures, max_abs, max_abs_diff};
use modernft::tasks::loss::cross_entropy;
use modernft::model::{build, HeadKind, LoadOptions, Mode, ModernBertConfig, Weights};
use modernft::train::{AdamW, AdamWConfig};

struct Case {
    reference: HashMap<String, Tensor>,
    ids: Tensor,
    mask: Tensor,
    labels: Tensor,
}

fn case(name: &str) -> (ModernBertConfig, Weights, Case) {
    let dir = fixtures().join(name);
    let config = ModernBertConfig::from_file(&dir.join("config.json")).unwrap();
    let weights = Weights::open(&[dir.join("model.safetensors")]).unwrap();
    let reference = candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu).unwrap();
    let u32_of = |k: &str| reference[k].to_dtype(DType::U32).unwrap();
    // Inputs on the device under test (`MODERNFT_TEST_DEVICE`); references stay on the CPU.
    let dev = common::device();
    let on = |t: Tensor| t.to_device(&dev).unwrap();
    let (ids, mask, labels) = (on(u32_of("input_ids")), on(u32_of("attention_mask")), on(u32_of("labels")));
    (config, weights, Case { reference, ids, mask, labels })
}

fn check_forward_backward_and_adamw(name: &str) {
    let (config, weights, c) = case(name);
    let opts = LoadOptions { trainable: true, device: common::device(), ..Default::default() };
    let loaded = build(&config, Some(&weights), HeadKind::Sequence, &opts).unwrap();
    assert!(loaded.initialised.is_empty(), "{name}: a complete checkpoint initialises nothing: {:?}", loaded.initialised);

    // Forward: logits and last hidden state at every real token.
    let out = loaded.model.forward(&c.ids, Some(&c.mask), &Mode::eval()).unwrap();
    let logits = out.logits.unwrap();
    let d = max_abs_diff(&logits, &c.reference["logits"]);
    assert!(d <= 1e-5, "{name}: logits differ by {d}");
    let lengths: Vec<u32> = c.mask.sum(1).unwrap().to_vec1().unwrap();
    for (row, &len) in lengths.iter().enumerate() {
        let ours = out.last_hidden_state.i((row, 0..len as usize)).unwrap();
        let theirs = c.reference["last_hidden_state"].i((row, 0..len as usize)).unwrap();
        let d = max_abs_diff(&ours, &theirs);
        assert!(d <= 1e-5, "{name}: hidden state of row {row} differs by {d}");
    }

    // Loss and the gradient of every parameter.
    let loss = cross_entropy(&logits, &c.labels).unwrap();
    let d = max_abs_diff(&loss.reshape(1).unwrap(), &c.reference["loss"]);
    assert!(d <= 1e-5, "{name}: loss differs by {d}");
    let grads = loss.backward().unwrap();
    let expected: Vec<&String> = c.reference.keys().filter(|k| k.starts_with("grad.")).collect();
    assert_eq!(expected.len(), loaded.params.len(), "{name}: same parameter set as transformers");
    for (pname, var) in &loaded.params {
        let want = c.reference.get(&format!("grad.{pname}")).unwrap_or_else(|| panic!("{name}: transformers has no parameter {pname}"));
        let got = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{name}: no gradient reached {pname}"));
        let rel = max_abs_diff(got, want) / max_abs(want).max(1e-12);
        assert!(rel <= 1e-4, "{name}: gradient of {pname} off by {rel:e} (relative)");
    }

    // Three AdamW steps (lr 1e-2, weight decay 0.01 except biases and norms), then logits again.
    let mut opt = AdamW::new(&loaded.params, AdamWConfig { weight_decay: 0.01, ..Default::default() }).unwrap();
    for _ in 0..3 {
        // The trainer's path: the token-embedding gradient kept to the rows read.
        let mode = Mode::train_sparse(modernft::rng::Rng::new(0));
        let logits = loaded.model.forward(&c.ids, Some(&c.mask), &mode).unwrap().logits.unwrap();
        let grads = modernft::train::grads::Grads::backward(&cross_entropy(&logits, &c.labels).unwrap(), &mode).unwrap();
        assert!(grads.sparse.len() == 1, "{name}: the embedding gradient is not sparse");
        opt.step(&grads, 1e-2).unwrap();
    }
    let after = loaded.model.forward(&c.ids, Some(&c.mask), &Mode::eval()).unwrap().logits.unwrap();
    let d = max_abs_diff(&after, &c.reference["logits_after_adamw"]);
    assert!(d <= 1e-5, "{name}: logits after 3 AdamW steps differ by {d}");
}

#[test]
fn v4_schema_cls_pooling_matches_transformers() {
    check_forward_backward_and_adamw("tiny-v4");
}

#[test]
fn v5_schema_mean_pooling_all_biases_matches_transformers() {
    check_forward_backward_and_adamw("tiny-v5");
}

#[test]
fn local_layers_really_differ_from_global_ones() {
    // The same checkpoint with every layer global must give different logits: the window matters.
    let (mut config, weights, c) = case("tiny-v4");
    config.layer_types = vec![modernft::model::LayerType::Full; config.num_hidden_layers];
    let loaded = build(&config, Some(&weights), HeadKind::Sequence, &LoadOptions { device: common::device(), ..Default::default() }).unwrap();
    let logits = loaded.model.forward(&c.ids, Some(&c.mask), &Mode::eval()).unwrap().logits.unwrap();
    assert!(max_abs_diff(&logits, &c.reference["logits"]) > 1e-3);
}

/// `ModernBertForMaskedLM` (scripts/make_mlm_reference.py): the decoder tied to the token embeddings
/// (the checkpoint holds no `decoder.weight`), its own bias; logits at every token and at the
/// masked ones only (sparse prediction), the masked-token loss, every gradient (the tied matrix's
/// two uses summed), and 3 AdamW steps after which the decoder still is the embedding matrix.
#[test]
fn masked_lm_matches_transformers() {
    let (config, weights, c) = case("tiny-mlm");
    let opts = LoadOptions { trainable: true, device: common::device(), ..Default::default() };
    let loaded = build(&config, Some(&weights), HeadKind::MaskedLm, &opts).unwrap();
    assert!(loaded.initialised.is_empty(), "initialised: {:?}", loaded.initialised);
    let out = loaded.model.forward(&c.ids, Some(&c.mask), &Mode::eval()).unwrap();
    let logits = out.logits.unwrap();
    let lengths: Vec<u32> = c.mask.sum(1).unwrap().to_vec1().unwrap();
    for (row, &len) in lengths.iter().enumerate() {
        let d = max_abs_diff(&logits.i((row, 0..len as usize)).unwrap(), &c.reference["logits"].i((row, 0..len as usize)).unwrap());
        assert!(d <= 1e-4, "row {row}: logits differ by {d}");
    }
    // The masked tokens: (row, position) and their targets.
    let labels: Vec<Vec<i64>> = c.reference["labels"].to_vec2().unwrap();
    let at: Vec<(usize, usize)> = labels.iter().enumerate().flat_map(|(r, l)| l.iter().enumerate().filter(|(_, &t)| t != -100).map(move |(p, _)| (r, p))).collect();
    let targets = Tensor::new(at.iter().map(|&(r, p)| labels[r][p] as u32).collect::<Vec<u32>>(), &common::device()).unwrap();
    let rows: Vec<Vec<u32>> = c.ids.to_vec2().unwrap();
    let rows: Vec<&[u32]> = rows.iter().zip(&lengths).map(|(r, &n)| &r[..n as usize]).collect();
    let packed = modernft::model::Packed::from_rows(&rows, config.pad_token_id, &common::device()).unwrap();
    let masked_logits = |mode: &Mode| loaded.model.masked_logits(&packed, &at, mode).unwrap();
    let sparse = masked_logits(&Mode::eval());
    for (i, &(r, p)) in at.iter().enumerate() {
        let d = max_abs_diff(&sparse.i(i).unwrap(), &c.reference["logits"].i((r, p)).unwrap());
        assert!(d <= 1e-4, "masked token {i} ({r}, {p}): logits differ by {d}");
    }
    let loss = cross_entropy(&sparse, &targets).unwrap();
    let d = max_abs_diff(&loss.reshape(1).unwrap(), &c.reference["loss"]);
    assert!(d <= 1e-5, "loss differs by {d}");
    let grads = loss.backward().unwrap();
    let expected: Vec<&String> = c.reference.keys().filter(|k| k.starts_with("grad.")).collect();
    assert_eq!(expected.len(), loaded.params.len(), "the same parameters as transformers (the tied matrix once)");
    for (pname, var) in &loaded.params {
        let want = c.reference.get(&format!("grad.{pname}")).unwrap_or_else(|| panic!("transformers has no parameter {pname}"));
        let got = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("no gradient reached {pname}"));
        let rel = max_abs_diff(got, want) / max_abs(want).max(1e-12);
        assert!(rel <= 1e-4, "gradient of {pname} off by {rel:e} (relative)");
    }
    let mut opt = AdamW::new(&loaded.params, AdamWConfig { weight_decay: 0.01, ..Default::default() }).unwrap();
    for _ in 0..3 {
        // The trainer's path: the lookup's rows fold into the tied decoder's dense gradient.
        let mode = Mode::train_sparse(modernft::rng::Rng::new(0));
        let grads = modernft::train::grads::Grads::backward(&cross_entropy(&masked_logits(&mode), &targets).unwrap(), &mode).unwrap();
        assert!(grads.sparse.is_empty(), "a tied matrix has one dense gradient");
        opt.step(&grads, 1e-2).unwrap();
    }
    let after = loaded.model.forward(&c.ids, Some(&c.mask), &Mode::eval()).unwrap().logits.unwrap();
    for (row, &len) in lengths.iter().enumerate() {
        let d = max_abs_diff(&after.i((row, 0..len as usize)).unwrap(), &c.reference["logits_after_adamw"].i((row, 0..len as usize)).unwrap());
        // Adam divides each gradient element by its own size, so an element that nearly cancels
        // (here one of embedding row 280's: -7.25e-8 in f64, torch f32 -7.08e-8, ours -6.08e-8, the
        // others ~1e-2) carries its f32 rounding into the step at full learning rate. torch's own
        // f32 and f64 runs end 7e-5 apart here; the logits are about ±3.5, ours end 5.6e-4 away.
        assert!(d <= 1e-3, "row {row}: logits after 3 AdamW steps differ by {d}");
    }
    // Still tied: the embedding matrix is the decoder's weight (one tensor, updated once per step).
    let names: Vec<&str> = loaded.params.iter().map(|(n, _)| n.as_str()).collect();
    assert!(!names.contains(&"decoder.weight") && names.contains(&"decoder.bias"), "{names:?}");
}
