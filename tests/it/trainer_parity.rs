//! `modernft train` follows transformers' Trainer step for step: the same recipe on the tiny reference
//! model gives the same loss at every optimizer step and the same final logits
//! (reference: scripts/make_trainer_reference.py → tests/fixtures/trainer/reference.json).

use crate::common;

use common::fixtures;
use modernft::config::RunConfig;
use modernft::data::{pad_batch, TextEncoder};
use modernft::model::{load_pretrained, HeadKind, LoadOptions, ModelFiles, Mode};
use modernft::train::{train, TrainOptions};
use serde_json::Value;

#[test]
fn thirty_steps_match_hf_trainer_loss_for_loss() {
    let fx = fixtures();
    let out = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"
[model]
name = "{model}"
[data]
train = "{train}"
max_length = 128
[training]
learning_rate = 1e-3
batch_size = 4
gradient_accumulation_steps = 2
epochs = 6
weight_decay = 0.01
lr_scheduler = "linear"
warmup_steps = 3
max_grad_norm = 1.0
logging_steps = 1
eval_strategy = "no"
shuffle = false
load_best_model_at_end = false
seed = 0
[output]
dir = "{out}"
"#,
        model = fx.join("tiny-v4").display(),
        train = fx.join("trainer/train.jsonl").display(),
        out = out.path().join("run").display()
    );
    let cfg = RunConfig::from_toml(&toml, "parity.toml", &[]).unwrap();
    let summary = train(&cfg, &TrainOptions::new(common::device(), false)).unwrap();
    assert_eq!(summary.steps, 30);

    let reference: Value = serde_json::from_str(&std::fs::read_to_string(fx.join("trainer/reference.json")).unwrap()).unwrap();
    let want: Vec<f64> = reference["losses"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let log = std::fs::read_to_string(out.path().join("run/metrics.jsonl")).unwrap();
    let got: Vec<f64> = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "train")
        .map(|v| v["loss"].as_f64().unwrap())
        .collect();
    assert_eq!(got.len(), want.len());
    for (step, (g, w)) in got.iter().zip(&want).enumerate() {
        let rel = (g - w).abs() / w.abs().max(1e-8);
        assert!(rel <= 1e-4, "step {}: loss {g} vs transformers {w} (relative {rel:e})", step + 1);
    }
    // Learning rates as the Trainer logged them (warm-up from 0, then linear decay).
    let lrs: Vec<f64> = log.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).filter(|v| v["type"] == "train").map(|v| v["learning_rate"].as_f64().unwrap()).collect();
    for (g, w) in lrs.iter().zip(reference["learning_rates"].as_array().unwrap()) {
        assert!((g - w.as_f64().unwrap()).abs() < 1e-12);
    }

    // Final logits of the saved model on held-out rows.
    let files = ModelFiles::from_dir(&summary.model_dir).unwrap();
    let (_, loaded) = load_pretrained(&files, HeadKind::Sequence, &LoadOptions { device: common::device(), ..Default::default() }).unwrap();
    let texts: Vec<String> = std::fs::read_to_string(fx.join("trainer/eval.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["text"].as_str().unwrap().to_string())
        .collect();
    let enc = TextEncoder::from_file(files.tokenizer.as_ref().unwrap(), 128).unwrap();
    let rows = enc.encode_batch(&texts.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
    let refs: Vec<&[u32]> = rows.iter().map(|r| r.ids.as_slice()).collect();
    let (ids, mask) = pad_batch(&refs, 3, &common::device()).unwrap();
    let logits: Vec<Vec<f32>> = loaded.model.forward(&ids, Some(&mask), &Mode::eval()).unwrap().logits.unwrap().to_vec2().unwrap();
    let want = reference["final_logits"].as_array().unwrap();
    for (i, (g, w)) in logits.iter().zip(want).enumerate() {
        for (a, b) in g.iter().zip(w.as_array().unwrap()) {
            let b = b.as_f64().unwrap();
            assert!((*a as f64 - b).abs() <= 1e-4, "row {i}: logit {a} vs transformers {b}");
        }
    }
}
