//! `eval`, `predict` and `save` through the binary: every output format, every model location
//! (run folder, checkpoint, export), and the errors users meet.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::fixtures;
use serde_json::Value;

fn run(args: &[&str], stdin: &str) -> Output {
    common::run_with_stdin(args, stdin)
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn err(out: Output) -> String {
    assert!(!out.status.success(), "expected failure, got: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// A short run with a validation split, so the run folder has checkpoints and a best model.
fn trained_run(dir: &Path, task: &str) -> PathBuf {
    let out = dir.join(format!("run-{task}"));
    let cfg = dir.join(format!("{task}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "task = \"{task}\"\n[model]\nname = \"tests/fixtures/tiny-v4\"\n[data]\ntrain = \"tests/fixtures/trainer/train.jsonl\"\nvalidation = \"tests/fixtures/trainer/eval.jsonl\"\n[training]\nlearning_rate = 1e-3\nbatch_size = 8\nepochs = 2\n[output]\ndir = \"{}\"\n",
            out.display()
        ),
    )
    .unwrap();
    ok(run(&["train", "--quiet", "--config", cfg.to_str().unwrap()], ""));
    out
}

#[test]
fn eval_table_json_plot_config_and_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = trained_run(tmp.path(), "classification");
    let r = run_dir.to_str().unwrap();
    let table = ok(run(&["eval", "--model", r, "--data", "tests/fixtures/trainer/eval.jsonl", "--plot", tmp.path().join("plots").to_str().unwrap()], ""));
    for needle in ["accuracy", "mcc", "precision", "macro avg", "micro avg", "confusion matrix", "(6 rows)"] {
        assert!(table.contains(needle), "{needle} missing:\n{table}");
    }
    assert!(tmp.path().join("plots/confusion_matrix.svg").is_file());
    // `evaluate` is the same command; --config reuses the run's [data] (validation split).
    let a: Value = serde_json::from_str(&ok(run(&["evaluate", "--model", r, "--data", "tests/fixtures/trainer/eval.jsonl", "--json"], ""))).unwrap();
    let b: Value = serde_json::from_str(&ok(run(&["eval", "--model", r, "--config", run_dir.join("config.toml").to_str().unwrap(), "--json"], ""))).unwrap();
    assert_eq!(a["accuracy"], b["accuracy"]);
    assert_eq!(a["confusion"].as_array().unwrap().len(), 2);
    assert!(a["per_class"]["0"]["f1"].is_number() && a["mcc"].is_number() && a["f1_macro"].is_number());
    // The same scores streaming in chunks as the trainer's final evaluation computed in one go.
    let log = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
    let fin: Value = log.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).find(|v| v["type"] == "final").unwrap();
    assert!((fin["accuracy"].as_f64().unwrap() - a["accuracy"].as_f64().unwrap()).abs() < 1e-12);
    assert!((fin["loss"].as_f64().unwrap() - a["loss"].as_f64().unwrap()).abs() < 1e-5);

    // A label the checkpoint does not know.
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"text\": \"fine\", \"label\": 1}\n{\"text\": \"odd\", \"label\": 7}\n").unwrap();
    let e = err(run(&["eval", "--model", r, "--data", bad.to_str().unwrap()], ""));
    assert!(e.contains("row 2") && e.contains("`7`") && e.contains("0, 1"), "{e}");
    let e = err(run(&["eval", "--model", "runs/does-not-exist", "--data", bad.to_str().unwrap()], ""));
    assert!(e.contains("runs/does-not-exist"), "{e}");
    let e = err(run(&["eval", "--model", r, "--data", "missing.jsonl"], ""));
    assert!(e.contains("missing.jsonl") && e.contains("does not exist"), "{e}");
}

#[test]
fn regression_models_evaluate_and_predict_scores() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = trained_run(tmp.path(), "regression");
    let config: Value = serde_json::from_str(&std::fs::read_to_string(run_dir.join("model/config.json")).unwrap()).unwrap();
    assert_eq!(config["problem_type"], "regression");
    assert_eq!(config["id2label"].as_object().unwrap().len(), 1);
    let v: Value = serde_json::from_str(&ok(run(&["eval", "--model", run_dir.to_str().unwrap(), "--data", "tests/fixtures/trainer/eval.jsonl", "--json"], ""))).unwrap();
    for k in ["mse", "mae", "pearson", "spearman"] {
        assert!(v[k].is_number(), "{k}: {v}");
    }
    let out = ok(run(&["predict", "--model", run_dir.to_str().unwrap()], "a wonderful film\n"));
    let line: Value = serde_json::from_str(out.trim()).unwrap();
    assert!(line["score"].is_number() && line.get("label").is_none(), "{line}");
}

#[test]
fn predict_from_run_checkpoint_and_export_with_every_option() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = trained_run(tmp.path(), "classification");
    let input = "a wonderful film\nthe plot was awful\n";
    let from_run = ok(run(&["predict", "--model", run_dir.to_str().unwrap(), "--all-scores"], input));
    let lines: Vec<Value> = from_run.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    for l in &lines {
        let s = l["scores"].as_object().unwrap();
        assert_eq!(s.len(), 2);
        assert!((s[l["label"].as_str().unwrap()].as_f64().unwrap() - l["score"].as_f64().unwrap()).abs() < 1e-7);
    }
    // The best checkpoint is what the run folder's model/ holds.
    let state: Value = serde_json::from_str(&std::fs::read_to_string(run_dir.join("trainer_state.json")).unwrap()).unwrap();
    let best = run_dir.join(state["best_model_checkpoint"].as_str().unwrap());
    assert_eq!(ok(run(&["predict", "--model", best.to_str().unwrap(), "--all-scores"], input)), from_run);
    // JSONL input keeps ids; --top-k limits the list.
    let jl = ok(run(&["predict", "--model", run_dir.to_str().unwrap(), "--top-k", "1"], "{\"id\": 9, \"text\": \"loved it\"}\n"));
    let v: Value = serde_json::from_str(jl.trim()).unwrap();
    assert_eq!(v["id"], 9);
    assert_eq!(v["top_k"].as_array().unwrap().len(), 1);
    // Errors: a model without a trained head, a missing model, --top-k 0.
    let e = err(run(&["predict", "--model", "tests/fixtures/roundtrip/st"], input));
    assert!(e.contains("no trained classification head"), "{e}");
    let e = err(run(&["predict", "--model", "/nope/model"], input));
    assert!(e.contains("/nope/model"), "{e}");
    let e = err(run(&["predict", "--model", run_dir.to_str().unwrap(), "--top-k", "0"], input));
    assert!(e.contains("--top-k"), "{e}");
}

#[test]
fn save_formats_dtypes_and_refusals() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = trained_run(tmp.path(), "classification");
    let r = run_dir.to_str().unwrap();
    for (dtype, st_dtype) in [("f16", "F16"), ("bf16", "BF16")] {
        let out = tmp.path().join(format!("export-{dtype}"));
        ok(run(&["save", r, "--out", out.to_str().unwrap(), "--dtype", dtype], ""));
        let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        assert_eq!(header["classifier.weight"]["dtype"], st_dtype);
        assert!(!out.join("training_state.json").exists() && !out.join("optimizer.safetensors").exists());
        // The half-precision export still predicts like the original.
        let a: Value = serde_json::from_str(ok(run(&["predict", "--model", r, "--logits"], "loved it\n")).trim()).unwrap();
        let b: Value = serde_json::from_str(ok(run(&["predict", "--model", out.to_str().unwrap(), "--logits"], "loved it\n")).trim()).unwrap();
        for (x, y) in a["logits"].as_array().unwrap().iter().zip(b["logits"].as_array().unwrap()) {
            assert!((x.as_f64().unwrap() - y.as_f64().unwrap()).abs() < 0.05);
        }
    }
    // sentence-transformers layout, pooling from the model config by default.
    let st = tmp.path().join("st");
    ok(run(&["save", r, "--out", st.to_str().unwrap(), "--format", "sentence-transformers"], ""));
    let pooling: Value = serde_json::from_str(&std::fs::read_to_string(st.join("1_Pooling/config.json")).unwrap()).unwrap();
    assert_eq!(pooling["pooling_mode_cls_token"], true, "tiny-v4 pools with cls");
    assert!(!st.join("2_Normalize").exists());
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(st.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["architectures"], serde_json::json!(["ModernBertModel"]));
    // Refusals and errors.
    let e = err(run(&["save", r, "--out", st.to_str().unwrap(), "--format", "sentence-transformers"], ""));
    assert!(e.contains("already exists") && e.contains("--overwrite"), "{e}");
    ok(run(&["save", r, "--out", st.to_str().unwrap(), "--format", "sentence-transformers", "--overwrite"], ""));
    let e = err(run(&["save", "/no/such/run", "--out", tmp.path().join("x").to_str().unwrap()], ""));
    assert!(e.contains("/no/such/run"), "{e}");
    let e = err(run(&["save", r, "--out", tmp.path().join("y").to_str().unwrap(), "--dtype", "f8"], ""));
    assert!(e.contains("--dtype"), "{e}");
    // embed accepts the run folder too.
    let v = ok(run(&["embed", "--model", r], "loved it\n"));
    assert_eq!(serde_json::from_str::<Value>(v.trim()).unwrap()["embedding"].as_array().unwrap().len(), 32);
    let _ = fixtures();
}

/// One max_length rule for train, eval, embed and predict: unset means the model's positions; longer
/// inputs are truncated and counted on stderr, or refused by name with --no-truncate; more than the
/// positions is refused before any work.
#[test]
fn one_max_length_rule_for_train_eval_embed_and_predict() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = trained_run(tmp.path(), "classification");
    let r = run_dir.to_str().unwrap();
    // Unset in the config: the run records the model's 128 positions.
    let recorded = std::fs::read_to_string(run_dir.join("config.toml")).unwrap();
    assert!(recorded.contains("max_length = 128") && recorded.contains("truncate = true"), "{recorded}");
    let long = vec!["wonderful"; 300].join(" ");
    let input = format!("a fine film\n{long}\n");
    let out = run(&["predict", "--model", r], &input);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(ok(out).lines().count(), 2);
    assert!(stderr.contains("1 of 2 inputs were longer than 128 tokens"), "{stderr}");
    let out = run(&["embed", "--model", "tests/fixtures/tiny-v4"], &input);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(ok(out).lines().count(), 2);
    assert!(stderr.contains("1 of 2 inputs were longer than 128 tokens"), "{stderr}");
    // --no-truncate names the input and writes nothing.
    for cmd in ["predict", "embed"] {
        let model = if cmd == "predict" { r } else { "tests/fixtures/tiny-v4" };
        let out = run(&[cmd, "--model", model, "--no-truncate"], &input);
        assert!(out.stdout.is_empty(), "{cmd}");
        let e = err(out);
        assert!(e.contains("stdin, input 2") && e.contains("longer than max_length (128 tokens)"), "{cmd}: {e}");
    }
    let data = tmp.path().join("long.jsonl");
    std::fs::write(&data, format!("{{\"text\": \"fine\", \"label\": 1}}\n{{\"text\": \"{long}\", \"label\": 0}}\n")).unwrap();
    let d = data.to_str().unwrap();
    let out = run(&["eval", "--model", r, "--data", d, "--json"], "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 of 2 rows were longer than 128 tokens"));
    ok(out);
    let e = err(run(&["eval", "--model", r, "--data", d, "--no-truncate"], ""));
    assert!(e.contains(&format!("{d}, row 2")) && e.contains("longer than max_length"), "{e}");
    // train: the same note per split, the same refusal, before any folder is made.
    let cfg = tmp.path().join("long.toml");
    let new_run = tmp.path().join("run-long");
    std::fs::write(
        &cfg,
        format!(
            "task = \"classification\"\n[model]\nname = \"tests/fixtures/tiny-v4\"\n[data]\ntrain = \"{d}\"\n[training]\nbatch_size = 2\nmax_steps = 1\n[output]\ndir = \"{}\"\n",
            new_run.display()
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let e = err(run(&["train", "--quiet", "--config", c, "--no-truncate"], ""));
    assert!(e.contains(&format!("{d}, row 2")) && e.contains("truncate = true"), "{e}");
    assert!(!new_run.exists());
    let e = err(run(&["train", "--quiet", "--config", c, "--set", "data.max_length=1000"], ""));
    assert!(e.contains("[data] max_length = 1000 exceeds the model's max_position_embeddings (128)"), "{e}");
    let out = run(&["train", "--quiet", "--config", c], "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 of 2 train rows were longer than 128 tokens"), "{}", String::from_utf8_lossy(&out.stderr));
    ok(out);
    for cmd in [&["predict", "--model", r][..], &["eval", "--model", r, "--data", d], &["embed", "--model", "tests/fixtures/tiny-v4"]] {
        let e = err(run(&[cmd, &["--max-length", "1000"]].concat(), "x\n"));
        assert!(e.contains("--max-length = 1000 exceeds the model's max_position_embeddings (128)"), "{cmd:?}: {e}");
    }
}

/// A token budget per forward pass changes how inputs are batched, not what comes out.
#[test]
fn a_token_budget_per_batch_leaves_outputs_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = trained_run(tmp.path(), "classification");
    let input: String = (1..=12).map(|n| format!("{}\n", vec!["a wonderful film"; n].join(" and "))).collect();
    let vectors = |extra: &[&str]| -> Vec<Vec<f64>> {
        let out = ok(run(&[&["embed", "--model", "tests/fixtures/tiny-v4", "--batch-size", "4"][..], extra].concat(), &input));
        out.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()).collect()
    };
    let (a, b) = (vectors(&[]), vectors(&["--max-batch-tokens", "40"]));
    assert_eq!(a.len(), 12);
    for (x, y) in a.iter().zip(&b) {
        assert!(x.iter().zip(y).all(|(p, q)| (p - q).abs() < 1e-5), "{x:?} vs {y:?}");
    }
    let scores = |extra: &[&str]| ok(run(&[&["predict", "--model", run_dir.to_str().unwrap(), "--all-scores"][..], extra].concat(), &input));
    let (p, q) = (scores(&[]), scores(&["--max-batch-tokens", "40"]));
    for (x, y) in p.lines().zip(q.lines()) {
        let (x, y): (Value, Value) = (serde_json::from_str(x).unwrap(), serde_json::from_str(y).unwrap());
        assert_eq!(x["label"], y["label"]);
        assert!((x["score"].as_f64().unwrap() - y["score"].as_f64().unwrap()).abs() < 1e-5);
    }
    let e = err(run(&["embed", "--model", "tests/fixtures/tiny-v4", "--max-batch-tokens", "0"], "x\n"));
    assert!(e.contains("--max-batch-tokens"), "{e}");
}
