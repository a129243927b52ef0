//! `[data.augment]` through the binary: new copies every epoch next to the rows as read, exact
//! resume across the epoch boundary, token classification limited to synonym replacement, pairs
//! and embedding columns augmented each on its own, `data --augment-preview`.

use crate::common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::{modernft, ner_rows, repo_root as root, rewind, succeeded as ok, write_file as write, Timed};
use serde_json::Value;

const SYNONYMS: &str = "# word<TAB>synonyms\nmovie\tfilm\tpicture\nreally\ttruly\nvery\thighly\nseemed\tappeared\nfelt\tseemed\nsadly\tunfortunately\nstory\ttale\tnarrative\n";

/// 160 quickstart rows, 64 validation rows, 2 epochs of 20 batches (the rows and one copy each),
/// checkpoints every 4 steps.
fn sentiment_config(dir: &Path, out: &Path) -> PathBuf {
    let head = |src: &str, n: usize| std::fs::read_to_string(root().join(src)).unwrap().lines().take(n).map(|l| format!("{l}\n")).collect::<String>();
    let train = write(dir, "train.jsonl", &head("examples/quickstart/train.jsonl", 160));
    let dev = write(dir, "dev.jsonl", &head("examples/quickstart/dev.jsonl", 64));
    let synonyms = write(dir, "synonyms.tsv", SYNONYMS);
    write(
        dir,
        "run.toml",
        &format!(
            r#"
[model]
config = "examples/quickstart/config.json"
tokenizer = "examples/quickstart/tokenizer.json"
classifier_dropout = 0.1
[data]
train = "{train}"
validation = "{dev}"
max_length = 48
[data.augment]
synonym_replacement = 0.3
random_insertion = 0.05
random_swap = 0.1
random_deletion = 0.1
synonyms = "{synonyms}"
copies = 1
[training]
learning_rate = 5e-4
batch_size = 16
epochs = 2
save_steps = 4
save_total_limit = 100
metric_for_best_model = "accuracy"
warmup_steps = 3
[output]
dir = "{out}"
"#,
            train = train.display(),
            dev = dev.display(),
            synonyms = synonyms.display(),
            out = out.display()
        ),
    )
}

fn batch_log(path: &Path) -> Vec<(u64, u64, Vec<u64>, Vec<u64>)> {
    common::batch_log_with(path, "lengths")
}

#[test]
fn every_epoch_trains_the_rows_and_new_copies_and_resume_is_byte_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let full = tmp.path().join("full");
    let cfg = sentiment_config(&tmp.path().join("cfg"), &full);
    let log = tmp.path().join("full.jsonl");
    let (summary, stderr) = ok(modernft(&["train", "--quiet", "--config", cfg.to_str().unwrap()]).env("MODERNFT_BATCH_LOG", &log).timed_output());
    assert!(stderr.contains("augmenting: 160 training rows + 1 augmented copy each per epoch"), "{stderr}");
    assert!(summary.contains("steps              40 (2.00 epochs)"), "{summary}");
    let steps = batch_log(&log);
    assert_eq!(steps.len(), 40);
    // Each epoch sees the 160 rows and their 160 copies once each.
    let lengths = |e: u64| -> HashMap<u64, u64> { steps.iter().filter(|s| s.1 == e).flat_map(|s| s.2.iter().copied().zip(s.3.iter().copied())).collect() };
    for e in 0..2 {
        let mut rows: Vec<u64> = steps.iter().filter(|s| s.1 == e).flat_map(|s| s.2.clone()).collect();
        rows.sort_unstable();
        assert_eq!(rows, (0..320).collect::<Vec<u64>>(), "epoch {e}");
    }
    let (e0, e1) = (lengths(0), lengths(1));
    // The rows as read are the same every epoch; the copies are new every epoch, and differ from
    // their rows.
    assert!((0..160).all(|r| e0[&r] == e1[&r]), "the rows as read changed between epochs");
    let changed = (160..320).filter(|r| e0[r] != e1[r]).count();
    assert!(changed >= 20, "only {changed} of 160 copies changed length between epochs: epoch 1 replays epoch 0's copies");
    let differ = (160..320).filter(|r| e0[r] != e0[&(r - 160)]).count();
    assert!(differ >= 20, "only {differ} of 160 copies differ in length from their rows");
    // Resumed mid-epoch 0, at the epoch boundary and mid-epoch 1: the same batches of the same
    // copies, and byte-identical final weights.
    // The run keeps its own copy of the synonyms file: editing the original does not change a
    // resumed run's copies.
    assert_eq!(std::fs::read_to_string(full.join("synonyms.tsv")).unwrap(), SYNONYMS);
    let synonyms = tmp.path().join("cfg/synonyms.tsv");
    std::fs::write(&synonyms, "movie\tcinema\n").unwrap();
    let want = std::fs::read(full.join("model/model.safetensors")).unwrap();
    for step in [8usize, 20, 28] {
        let run = tmp.path().join(format!("from-{step}"));
        rewind(&full, &run, step);
        let log2 = tmp.path().join(format!("from-{step}.jsonl"));
        ok(modernft(&["train", "--quiet", "--resume", run.to_str().unwrap()]).env("MODERNFT_BATCH_LOG", &log2).timed_output());
        assert_eq!(batch_log(&log2)[..], steps[step..], "resumed from checkpoint-{step}: other batches or other copies");
        assert!(std::fs::read(run.join("model/model.safetensors")).unwrap() == want, "resumed from checkpoint-{step}: other weights");
    }
    std::fs::write(&synonyms, SYNONYMS).unwrap();
    // Validation rows are never augmented: the same accuracy as a model evaluated on the file.
    let dev = tmp.path().join("cfg/dev.jsonl");
    let (eval, _) = ok(modernft(&["eval", "--model", full.join("model").to_str().unwrap(), "--data", dev.to_str().unwrap(), "--json"]).timed_output());
    let eval: Value = serde_json::from_str(&eval).unwrap();
    let last = std::fs::read_to_string(full.join("metrics.jsonl")).unwrap();
    let final_val = last.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).find(|v| v["type"] == "final" && v["split"] == "validation").expect("final validation line");
    assert_eq!(eval["rows"], 64);
    assert_eq!(final_val["accuracy"].as_f64().map(|a| (a * 1e6).round()), eval["accuracy"].as_f64().map(|a| (a * 1e6).round()), "{final_val} vs {eval}");
    // The preview shows the rows and their epoch-0 copies; a config without the section is told.
    let (preview, _) = ok(modernft(&["data", "--config", cfg.to_str().unwrap(), "--augment-preview", "3"]).timed_output());
    assert_eq!(preview.matches("original").count(), 3, "{preview}");
    assert_eq!(preview.matches("copy 1").count(), 3, "{preview}");
    let first = std::fs::read_to_string(tmp.path().join("cfg/train.jsonl")).unwrap();
    let first: Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
    assert!(preview.contains(first["text"].as_str().unwrap()), "{preview}");
    let plain = write(&tmp.path().join("plain"), "run.toml", &std::fs::read_to_string(&cfg).unwrap().replace("[data.augment]", "[ignored]").split("[ignored]").next().unwrap().to_string());
    let out = modernft(&["data", "--config", plain.to_str().unwrap(), "--augment-preview", "3"]).timed_output();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("[data.augment]"), "{e}");
}

fn tiny(task: &str, data: &str, augment: &str, training: &str, out: &Path) -> String {
    format!(
        "task = \"{task}\"\n[model]\nconfig = \"tests/fixtures/tiny-v4/config.json\"\ntokenizer = \"tests/fixtures/tiny-v4/tokenizer.json\"\n\
         [data]\n{data}max_length = 24\n[data.augment]\n{augment}\n[training]\nbatch_size = 4\nepochs = 2\neval_strategy = \"no\"\nlearning_rate = 1e-3\n{training}\
         [output]\ndir = \"{}\"\n",
        out.display()
    )
}

#[test]
fn token_rows_take_synonyms_only_and_pairs_and_embedding_columns_are_augmented_each_on_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let synonyms = write(d, "synonyms.json", r#"{"paris": ["lyon", "the french capital"], "flew": "travelled", "good": ["fine"], "film": ["movie"]}"#);
    let ner = write(d, "ner.jsonl", &ner_rows(24));
    let with_syn = format!("synonym_replacement = 0.5\nsynonyms = \"{}\"\n", synonyms.display());
    // Token classification: synonym replacement trains (one-word synonyms, the tags kept).
    let run = d.join("ner");
    let cfg = write(d, "ner.toml", &tiny("token-classification", &format!("train = \"{}\"\n", ner.display()), &with_syn, "", &run));
    let log = d.join("ner.jsonl.log");
    ok(modernft(&["train", "--quiet", "--config", cfg.to_str().unwrap()]).env("MODERNFT_BATCH_LOG", &log).timed_output());
    assert_eq!(batch_log(&log).iter().filter(|s| s.1 == 0).map(|s| s.2.len()).sum::<usize>(), 48);
    // …and the others are refused before any work, naming the key and what is allowed.
    let swap = d.join("ner-swap");
    let cfg = write(d, "ner-swap.toml", &tiny("token-classification", &format!("train = \"{}\"\n", ner.display()), "random_swap = 0.2\n", "", &swap));
    let out = modernft(&["train", "--quiet", "--config", cfg.to_str().unwrap()]).timed_output();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("random_swap") && e.contains("synonym_replacement"), "{e}");
    assert!(!swap.exists(), "a refused run left a folder");
    // Pair classification: the preview shows each side augmented on its own.
    let pairs: String = (0..24)
        .map(|i| format!("{}\n", serde_json::json!({"text": format!("a good film number {i}"), "text_pair": format!("the film {i} was good"), "label": if i % 2 == 0 { "yes" } else { "no" }})))
        .collect();
    let pairs = write(d, "pairs.jsonl", &pairs);
    let data = format!("train = \"{}\"\ntext_pair_column = \"text_pair\"\n", pairs.display());
    let cfg = write(d, "pairs.toml", &tiny("classification", &data, &format!("synonym_replacement = 1.0\nrandom_swap = 0.2\nsynonyms = \"{}\"\n", synonyms.display()), "", &d.join("pairs")));
    let (preview, _) = ok(modernft(&["data", "--config", cfg.to_str().unwrap(), "--augment-preview", "2", "--json"]).timed_output());
    let rows: Vec<Value> = preview.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2, "{preview}");
    let copy = &rows[0]["copies"][0];
    assert!(copy["text"].as_str().unwrap().contains("fine") && copy["text_pair"].as_str().unwrap().contains("movie"), "{preview}");
    assert!(!copy["text_pair"].as_str().unwrap().contains("number"), "a side took words of the other: {preview}");
    ok(modernft(&["train", "--quiet", "--config", cfg.to_str().unwrap()]).timed_output());
    // Embedding (MNRL, no duplicates): a row and its copy never share a batch.
    let triples: String = (0..16).map(|i| format!("{}\n", serde_json::json!({"anchor": format!("good film {i}"), "positive": format!("a fine movie {i}")}))).collect();
    let triples = write(d, "emb.jsonl", &triples);
    let data = format!("train = \"{}\"\ntext_column = \"anchor\"\ntext_pair_column = \"positive\"\n", triples.display());
    let cfg = write(d, "emb.toml", &tiny("embedding", &data, "random_deletion = 0.3\nrandom_swap = 0.3\n", "embedding_loss = \"mnrl\"\nbatch_sampler = \"no_duplicates\"\n", &d.join("emb")));
    let log = d.join("emb.log");
    ok(modernft(&["train", "--quiet", "--config", cfg.to_str().unwrap()]).env("MODERNFT_BATCH_LOG", &log).timed_output());
    let text = std::fs::read_to_string(&log).unwrap();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        for batch in v["rows"].as_array().unwrap() {
            let sources: Vec<u64> = batch.as_array().unwrap().iter().map(|r| r.as_u64().unwrap() % 16).collect();
            let mut unique = sources.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(unique.len(), sources.len(), "a row and its copy in one batch: {batch}");
        }
    }
}
