//! Checkpoints cross to Python and back, without Python at test time:
//! - modernft's `save` output is exactly the committed export (tests/fixtures/roundtrip/{hf,st}),
//!   which scripts/check_roundtrip.py loaded with transformers and sentence-transformers;
//! - `modernft predict` gives the logits transformers computed on the hf export (|Δ| ≤ 1e-4);
//! - `modernft embed` gives the vectors SentenceTransformer computed on the st export (cos ≥ 0.99999);
//! - `modernft eval` scores a checkpoint saved by transformers (its own id2label) with the accuracy
//!   transformers computed.

use crate::common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use common::{fixtures, max_abs_diff};
use serde_json::Value;

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("roundtrip/expected.json")).unwrap()).unwrap()
}

fn run(args: &[&str], stdin: &str) -> String {
    let out = common::run_with_stdin(args, stdin);
    assert!(out.status.success(), "{:?} failed: {}", args, String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn texts(e: &Value) -> String {
    e["texts"].as_array().unwrap().iter().map(|t| format!("{}\n", t.as_str().unwrap())).collect()
}

fn tensors(p: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(p, &Device::Cpu).unwrap()
}

fn json_file(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn save_writes_exactly_the_exports_python_checked() {
    // The committed hf export (written by `modernft save` from a run, then loaded by transformers
    // and sentence-transformers in scripts/check_roundtrip.py) is saved again in both formats: the
    // writer must reproduce the checked files exactly, independent of training numerics.
    let tmp = tempfile::tempdir().unwrap();
    let src = fixtures().join("roundtrip/hf");
    let src = src.to_str().unwrap();
    let hf = tmp.path().join("hf");
    let st = tmp.path().join("st");
    run(&["save", src, "--out", hf.to_str().unwrap()], "");
    run(&["save", src, "--out", st.to_str().unwrap(), "--format", "sentence-transformers", "--pooling", "mean", "--normalize"], "");
    for (ours, committed) in [(&hf, fixtures().join("roundtrip/hf")), (&st, fixtures().join("roundtrip/st"))] {
        for f in ["config.json", "tokenizer_config.json", "special_tokens_map.json"] {
            assert_eq!(json_file(&ours.join(f)), json_file(&committed.join(f)), "{f}");
        }
        assert_eq!(std::fs::read(ours.join("tokenizer.json")).unwrap(), std::fs::read(committed.join("tokenizer.json")).unwrap());
        let (a, b) = (tensors(&ours.join("model.safetensors")), tensors(&committed.join("model.safetensors")));
        assert_eq!(a.keys().collect::<std::collections::BTreeSet<_>>(), b.keys().collect());
        for (name, t) in &a {
            assert_eq!(max_abs_diff(t, &b[name]), 0.0, "{name}");
        }
        assert!(ours.join("README.md").is_file());
    }
    for f in ["modules.json", "1_Pooling/config.json", "sentence_bert_config.json"] {
        assert_eq!(json_file(&st.join(f)), json_file(&fixtures().join("roundtrip/st").join(f)), "{f}");
    }
    // transformers' `format: pt` metadata is present.
    let bytes = std::fs::read(hf.join("model.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    assert_eq!(header["__metadata__"]["format"], "pt");
}

#[test]
fn predict_logits_equal_transformers_on_the_export() {
    let e = expected();
    let out = run(&["predict", "--model", "tests/fixtures/roundtrip/hf", "--logits", "--all-scores", "--top-k", "1"], &texts(&e));
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let want = e["hf_logits"].as_array().unwrap();
    assert_eq!(lines.len(), want.len(), "one line per input, in order");
    for (i, (line, w)) in lines.iter().zip(want).enumerate() {
        let got: Vec<f64> = line["logits"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        let w: Vec<f64> = w.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        for (a, b) in got.iter().zip(&w) {
            assert!((a - b).abs() <= 1e-4, "row {i}: {a} vs transformers {b}");
        }
        // The label is the argmax, its score the softmax probability; scores sum to 1.
        let best = if w[0] > w[1] { 0 } else { 1 };
        assert_eq!(line["label"], e["labels"][best]);
        let p: f64 = line["scores"].as_object().unwrap().values().map(|v| v.as_f64().unwrap()).sum();
        assert!((p - 1.0).abs() < 1e-5);
        assert_eq!(line["top_k"][0]["label"], line["label"]);
    }
}

#[test]
fn embed_vectors_equal_sentence_transformers_on_the_export() {
    let e = expected();
    // No flags: pooling and normalisation come from the folder's 1_Pooling and 2_Normalize.
    let out = run(&["embed", "--model", "tests/fixtures/roundtrip/st"], &texts(&e));
    let got: Vec<Vec<f64>> = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
        .collect();
    let want = e["st_embeddings"].as_array().unwrap();
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let w: Vec<f64> = w.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        let dot: f64 = g.iter().zip(&w).map(|(a, b)| a * b).sum();
        let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
        let cos = dot / (norm(g) * norm(&w));
        assert!(cos >= 0.99999, "row {i}: cosine {cos}");
    }
}

#[test]
fn eval_scores_a_transformers_checkpoint_like_transformers() {
    let e = expected();
    let out = run(&["eval", "--model", "tests/fixtures/tiny-v4", "--data", "tests/fixtures/roundtrip/eval.jsonl", "--json"], "");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["rows"], e["eval_rows"]);
    assert!((v["accuracy"].as_f64().unwrap() - e["eval_accuracy"].as_f64().unwrap()).abs() < 1e-12, "{v}");
    assert_eq!(v["labels"], serde_json::json!(["negative", "positive"]));
}
