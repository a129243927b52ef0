//! `task = "mlm"` through the binary: plain text in, masked-token loss down, new masks every epoch,
//! exact resume across the epoch boundary, an export that loads as a masked-LM and starts a
//! classifier, and the errors.

use crate::common;

use std::path::{Path, PathBuf};

use common::{modernft, repo_root as root, rewind, succeeded as ok, write_file as write, Timed};
use serde_json::Value;

/// The quickstart sentences as plain text: 240 training documents, 40 validation documents.
fn corpus(dir: &Path) -> (PathBuf, PathBuf) {
    let text: Vec<String> = std::fs::read_to_string(root().join("examples/quickstart/train.jsonl"))
        .unwrap()
        .lines()
        .take(280)
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["text"].as_str().unwrap().to_string())
        .collect();
    (write(dir, "train.txt", &(text[..240].join("\n") + "\n")), write(dir, "dev.txt", &(text[240..].join("\n\n") + "\n")))
}

fn config(dir: &Path, out: &Path, extra: &str) -> PathBuf {
    let (train, dev) = corpus(dir);
    write(
        dir,
        "mlm.toml",
        &format!(
            "task = \"mlm\"\n[model]\nconfig = \"examples/quickstart/config.json\"\ntokenizer = \"examples/quickstart/tokenizer.json\"\n\
             [data]\ntrain = \"{}\"\nvalidation = \"{}\"\nmax_length = 32\n{extra}\
             [training]\nlearning_rate = 2e-3\nbatch_size = 8\nepochs = 3\nsave_steps = 4\nsave_total_limit = 100\nwarmup_steps = 2\nlogging_steps = 1\n\
             [output]\ndir = \"{}\"\n",
            train.display(),
            dev.display(),
            out.display()
        ),
    )
}

fn batch_log(path: &Path) -> Vec<(u64, u64, Vec<u64>, Vec<u64>)> {
    common::batch_log_with(path, "masked")
}

fn metrics(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn masked_lm_learns_masks_anew_every_epoch_resumes_exactly_and_starts_a_classifier() {
    let tmp = tempfile::tempdir().unwrap();
    let full = tmp.path().join("full");
    let cfg = config(&tmp.path().join("cfg"), &full, "");
    let log = tmp.path().join("full.jsonl");
    let (summary, _) = ok(modernft(&["train", "--quiet", "--config", cfg.to_str().unwrap()]).env("MODERNFT_BATCH_LOG", &log).timed_output());
    assert!(summary.contains("perplexity"), "{summary}");
    let steps = batch_log(&log);
    let epochs = steps.iter().map(|s| s.1).max().unwrap() + 1;
    assert_eq!(epochs, 3, "{steps:?}");
    // Grouped: the documents end to end in 32-token blocks, every block seen once per epoch.
    let blocks = steps.iter().filter(|s| s.1 == 0).map(|s| s.2.len()).sum::<usize>();
    assert!(blocks > 50 && blocks < 240, "{blocks} blocks from 240 short documents");
    // Every epoch masks anew: the same block has other masked tokens (counted here) in another epoch.
    let masked = |e: u64| -> std::collections::HashMap<u64, u64> { steps.iter().filter(|s| s.1 == e).flat_map(|s| s.2.iter().copied().zip(s.3.iter().copied())).collect() };
    let (m0, m1) = (masked(0), masked(1));
    let differ = m0.iter().filter(|(r, n)| m1[r] != **n).count();
    assert!(differ > blocks / 4, "only {differ} of {blocks} blocks are masked differently in epoch 1: the masks repeat");
    let total: u64 = m0.values().sum();
    let tokens = blocks as f64 * 32.0;
    assert!((total as f64 / tokens - 0.3).abs() < 0.06, "{total} masked of about {tokens} tokens");
    // It learns: the masked-token loss falls, perplexity is e^loss.
    let m = metrics(&full);
    let evals: Vec<&Value> = m.iter().filter(|v| v["type"] == "eval").collect();
    let first = m.iter().find(|v| v["type"] == "train").unwrap()["loss"].as_f64().unwrap();
    let last = evals.last().unwrap()["eval_loss"].as_f64().unwrap();
    assert!(last < first - 1.0 && last < evals[0]["eval_loss"].as_f64().unwrap(), "masked-token loss {first} (step 1) → {last} (validation, last)");
    let v = evals.last().unwrap();
    assert!((v["eval_perplexity"].as_f64().unwrap() - v["eval_loss"].as_f64().unwrap().exp()).abs() < 1e-6 * v["eval_perplexity"].as_f64().unwrap());
    // Resumed mid-epoch 0, at the boundary into epoch 1 and mid-epoch 2: the same batches, the same
    // masks, byte-identical weights.
    let per_epoch = steps.iter().filter(|s| s.1 == 0).count();
    let want = std::fs::read(full.join("model/model.safetensors")).unwrap();
    let checkpoints: Vec<usize> = std::fs::read_dir(&full)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_string_lossy().strip_prefix("checkpoint-").and_then(|s| s.parse().ok()))
        .collect();
    let pick = |at: usize| *checkpoints.iter().filter(|&&c| c <= at && c > 0).max().unwrap();
    for step in [pick(per_epoch / 2), per_epoch, pick(2 * per_epoch + per_epoch / 2)] {
        assert!(checkpoints.contains(&step), "no checkpoint-{step} in {checkpoints:?}");
        let run = tmp.path().join(format!("from-{step}"));
        rewind(&full, &run, step);
        let log2 = tmp.path().join(format!("from-{step}.jsonl"));
        ok(modernft(&["train", "--quiet", "--resume", run.to_str().unwrap()]).env("MODERNFT_BATCH_LOG", &log2).timed_output());
        assert_eq!(batch_log(&log2)[..], steps[step..], "resumed from checkpoint-{step}: other batches or masks");
        assert!(std::fs::read(run.join("model/model.safetensors")).unwrap() == want, "resumed from checkpoint-{step}: other weights");
    }
    // The export is a masked-LM (the decoder tied, nothing missing) ...
    let files = modernft::model::ModelFiles::from_dir(&full.join("model")).unwrap();
    let (config, loaded) = modernft::model::load_pretrained(&files, modernft::model::HeadKind::MaskedLm, &Default::default()).unwrap();
    assert_eq!(config.architectures, ["ModernBertForMaskedLM"]);
    assert!(loaded.initialised.is_empty(), "{:?}", loaded.initialised);
    assert!(loaded.tensor("decoder.bias").is_some() && loaded.tensor("decoder.weight").is_none());
    // `save --format hf` keeps it a masked-LM; `predict` on it fills masks (top 5 by default, as
    // pipeline("fill-mask")), and a text without a mask is an error naming the input.
    let saved = tmp.path().join("saved");
    ok(modernft(&["save", full.to_str().unwrap(), "--out", saved.to_str().unwrap(), "--format", "hf"]).timed_output());
    let files = modernft::model::ModelFiles::from_dir(&saved).unwrap();
    let (config, again) = modernft::model::load_pretrained(&files, modernft::model::HeadKind::MaskedLm, &Default::default()).unwrap();
    assert_eq!(config.architectures, ["ModernBertForMaskedLM"]);
    assert!(again.initialised.is_empty() && again.tensor("decoder.bias").unwrap().to_vec1::<f32>().unwrap() == loaded.tensor("decoder.bias").unwrap().to_vec1::<f32>().unwrap());
    let input = write(tmp.path(), "masked.txt", "the movie was [MASK] good\n[MASK] acting , [MASK] plot\n");
    let (out, _) = ok(modernft(&["predict", "--model", full.to_str().unwrap(), "--input", input.to_str().unwrap()]).timed_output());
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["masks"].as_array().unwrap().len(), 1);
    assert_eq!(lines[1]["masks"].as_array().unwrap().len(), 2, "one list per mask");
    for mask in lines.iter().flat_map(|l| l["masks"].as_array().unwrap()) {
        let fills = mask.as_array().unwrap();
        assert_eq!(fills.len(), 5);
        let scores: Vec<f64> = fills.iter().map(|f| f["score"].as_f64().unwrap()).collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]) && scores.iter().sum::<f64>() <= 1.0 + 1e-6, "{scores:?}");
        assert!(fills.iter().all(|f| f["sequence"].as_str().unwrap().contains(f["token_str"].as_str().unwrap()) && !f["sequence"].as_str().unwrap().contains("[MASK]")), "{fills:?}");
    }
    let no_mask = write(tmp.path(), "plain.txt", "the movie was [MASK] good\nno mask here\n");
    let e = modernft(&["predict", "--model", full.to_str().unwrap(), "--input", no_mask.to_str().unwrap()]).timed_output();
    let stderr = String::from_utf8_lossy(&e.stderr);
    assert!(!e.status.success() && stderr.contains("input 2") && stderr.contains("[MASK]"), "{stderr}");
    // `eval` says what a masked-LM is for instead of refusing a missing classifier.
    let e = modernft(&["eval", "--model", full.to_str().unwrap(), "--data", labelled_probe(tmp.path()).to_str().unwrap()]).timed_output();
    let stderr = String::from_utf8_lossy(&e.stderr);
    assert!(!e.status.success() && stderr.contains("masked-LM") && stderr.contains("predict"), "{stderr}");
    // ... and the encoder a classifier starts from (only the classifier is new).
    let labelled: String = std::fs::read_to_string(root().join("examples/quickstart/train.jsonl")).unwrap().lines().take(64).map(|l| format!("{l}\n")).collect();
    let labelled = write(tmp.path(), "labelled.jsonl", &labelled);
    let clf = tmp.path().join("clf");
    let clf_cfg = write(
        tmp.path(),
        "clf.toml",
        &format!(
            "[model]\nname = \"{}\"\n[data]\ntrain = \"{}\"\nmax_length = 32\n[training]\nbatch_size = 16\nepochs = 1\neval_strategy = \"no\"\n[output]\ndir = \"{}\"\n",
            full.join("model").display(),
            labelled.display(),
            clf.display()
        ),
    );
    let (_, stderr) = ok(modernft(&["train", "--quiet", "--config", clf_cfg.to_str().unwrap()]).timed_output());
    assert!(stderr.contains("classifier.weight") && !stderr.contains("head.dense"), "{stderr}");
}

/// A few labelled rows.
fn labelled_probe(dir: &Path) -> PathBuf {
    write(dir, "probe.jsonl", "{\"text\": \"a fine film\", \"label\": \"positive\"}\n")
}

#[test]
fn documents_kept_whole_and_the_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("docs");
    let cfg = config(&tmp.path().join("cfg"), &run, "group_texts = false\n");
    let log = tmp.path().join("docs.jsonl");
    ok(modernft(&["train", "--quiet", "--config", cfg.to_str().unwrap(), "--set", "training.epochs=1"]).env("MODERNFT_BATCH_LOG", &log).timed_output());
    // One row per document (blank lines skipped).
    assert_eq!(batch_log(&log).iter().map(|s| s.2.len()).sum::<usize>(), 240);
    let state: Value = serde_json::from_str(&std::fs::read_to_string(run.join("trainer_state.json")).unwrap()).unwrap();
    assert_eq!(state["validation_rows"], 40);
    // A published masked-LM checkpoint keeps its head and decoder: nothing is initialised.
    let (train, _) = corpus(&tmp.path().join("corpus"));
    let from_hub_style = write(
        tmp.path(),
        "from-mlm.toml",
        &format!(
            "task = \"mlm\"\n[model]\nname = \"tests/fixtures/tiny-mlm\"\n[data]\ntrain = \"{}\"\nmax_length = 32\n[training]\nmax_steps = 2\neval_strategy = \"no\"\n[output]\ndir = \"{}\"\n",
            train.display(),
            tmp.path().join("from-mlm").display()
        ),
    );
    let (_, stderr) = ok(modernft(&["train", "--quiet", "--config", from_hub_style.to_str().unwrap()]).timed_output());
    assert!(!stderr.contains("initialised"), "{stderr}");
    let refused = |args: &[&str], want: &[&str]| {
        let out = modernft(args).timed_output();
        let e = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success() && want.iter().all(|w| e.contains(w)), "{args:?}: {e}");
    };
    let c = cfg.to_str().unwrap();
    refused(&["train", "--config", c, "--set", "data.text_pair_column=other", "--set", "output.dir=/nonexistent/x"], &["mlm", "text_pair_column"]);
    refused(&["train", "--config", c, "--set", "training.mlm_probability=0"], &["mlm_probability", "above 0 and below 1"]);
    refused(&["train", "--config", c, "--set", "task=\"classification\"", "--set", "data.group_texts=true"], &["group_texts", "mlm"]);
    let plain = config(&tmp.path().join("cfg2"), &tmp.path().join("x"), "");
    refused(&["train", "--config", plain.to_str().unwrap(), "--set", "task=\"classification\""], &["plain text file", "mlm"]);
}

/// Under gradient accumulation every masked token of a step weighs alike, as transformers' Trainer
/// weighs them (it passes `num_items_in_batch` to ForMaskedLMLoss): 2 micro-batches of 4 documents
/// train as 1 batch of 8 (same rows, same masks): the same logged loss and gradient norm at every
/// step, the same weights. Documents of different lengths give the micro-batches different numbers
/// of masked tokens, where a mean of micro-batch means would differ.
#[test]
fn accumulated_micro_batches_weigh_every_masked_token_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, _) = corpus(&tmp.path().join("data"));
    let run = |batch: usize, ga: usize| {
        let out = tmp.path().join(format!("b{batch}-ga{ga}"));
        let cfg = write(
            tmp.path(),
            &format!("b{batch}-ga{ga}.toml"),
            &format!(
                "task = \"mlm\"\n[model]\nconfig = \"examples/quickstart/config.json\"\ntokenizer = \"examples/quickstart/tokenizer.json\"\n\
                 [data]\ntrain = \"{}\"\nmax_length = 32\ngroup_texts = false\n\
                 [training]\nlearning_rate = 1e-2\nbatch_size = {batch}\ngradient_accumulation_steps = {ga}\nmax_steps = 4\nwarmup_steps = 0\nlogging_steps = 1\n\
                 [output]\ndir = \"{}\"\n",
                train.display(),
                out.display()
            ),
        );
        ok(modernft(&["train", "--quiet", "--config", cfg.to_str().unwrap()]).timed_output());
        let logged: Vec<(f64, f64)> = metrics(&out).iter().filter(|v| v["type"] == "train").map(|v| (v["loss"].as_f64().unwrap(), v["grad_norm"].as_f64().unwrap())).collect();
        let weights = std::fs::read(out.join("model/model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&weights).unwrap();
        let mut tensors = st.tensors();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        let values: Vec<f32> = tensors.into_iter().flat_map(|(_, v)| v.data().chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect::<Vec<_>>()).collect();
        (logged, values)
    };
    let (whole, w1) = run(8, 1);
    let (accumulated, w2) = run(4, 2);
    assert_eq!(whole.len(), 4);
    for (step, (a, b)) in whole.iter().zip(&accumulated).enumerate() {
        assert!((a.0 - b.0).abs() < 1e-5 * a.0 && (a.1 - b.1).abs() < 1e-4 * a.1, "step {}: loss, grad norm {a:?} (batch 8) vs {b:?} (2 × 4)", step + 1);
    }
    let far = w1.iter().zip(&w2).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(far < 1e-4, "weights differ by {far} after 4 steps");
}
