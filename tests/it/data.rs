//! The dataset pipeline: every reader, hub datasets, labels, splits, and the errors users meet.

use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use common::{fixtures, stand_in_hub, Timed};
use modernft::data::{load_splits, read_table, Columns, DataConfig, RawLabel, TargetKind, Targets, TextEncoder};

fn cols() -> Columns {
    Columns { text: "text".into(), label: Some("label".into()), ..Default::default() }
}

fn write(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn err(path: &Path, columns: &Columns) -> String {
    read_table(path, None, columns).unwrap_err().chain()
}

fn encoder() -> TextEncoder {
    TextEncoder::from_file(&fixtures().join("tiny-v4/tokenizer.json"), 64).unwrap()
}

#[test]
fn every_format_reads_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let jsonl = write(d, "a.jsonl", b"{\"text\": \"good film\", \"label\": \"pos\"}\n\n{\"text\": \"bad, \\\"awful\\\" film\", \"label\": \"neg\"}\n");
    let csv = write(d, "a.csv", b"text,label\ngood film,pos\n\"bad, \"\"awful\"\" film\",neg\n");
    let tsv = write(d, "a.tsv", b"text\tlabel\ngood film\tpos\nbad, \"awful\" film\tneg\n");
    let gz = d.join("a.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::default());
    enc.write_all(&std::fs::read(&jsonl).unwrap()).unwrap();
    enc.finish().unwrap();
    let pq = d.join("a.parquet");
    write_parquet(
        &pq,
        vec![
            ("id", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
            ("text", Arc::new(StringArray::from(vec!["good film", "bad, \"awful\" film"])) as ArrayRef),
            ("label", Arc::new(StringArray::from(vec!["pos", "neg"])) as ArrayRef),
        ],
    );
    for p in [&jsonl, &csv, &tsv, &gz, &pq] {
        let t = read_table(p, None, &cols()).unwrap_or_else(|e| panic!("{}: {}", p.display(), e.chain()));
        assert_eq!(t.texts, vec!["good film", "bad, \"awful\" film"], "{}", p.display());
        assert_eq!(t.labels.unwrap(), vec![RawLabel::Str("pos".into()), RawLabel::Str("neg".into())], "{}", p.display());
    }
    // An explicit format overrides the extension.
    let odd = write(d, "data.txt", &std::fs::read(&jsonl).unwrap());
    assert_eq!(read_table(&odd, Some(modernft::data::Format::Jsonl), &cols()).unwrap().len(), 2);
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = cols();
    let e = err(&d.join("missing.jsonl"), &c);
    assert!(e.contains("missing.jsonl") && e.contains("does not exist"), "{e}");
    let e = err(&write(d, "a.xlsx", b"x"), &c);
    assert!(e.contains("a.xlsx") && e.contains("format"), "{e}");
    let e = err(&write(d, "cols.jsonl", b"{\"sentence\": \"x\", \"label\": 1}\n"), &c);
    assert!(e.contains("line 1") && e.contains("`text`") && e.contains("sentence"), "{e}");
    let e = err(&write(d, "cols.csv", b"sentence,label\nx,1\n"), &c);
    assert!(e.contains("`text`") && e.contains("sentence, label"), "{e}");
    let e = err(&write(d, "bad.jsonl", b"{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\", \"label\": 0\n"), &c);
    assert!(e.contains("bad.jsonl, line 2") && e.contains("malformed JSON"), "{e}");
    let e = err(&write(d, "utf.jsonl", b"{\"text\": \"a\", \"label\": 1}\n{\"text\": \"\xff\xfe\", \"label\": 1}\n"), &c);
    assert!(e.contains("line 2") && e.contains("UTF-8"), "{e}");
    let e = err(&write(d, "utf.csv", b"text,label\n\xff,1\n"), &c);
    assert!(e.contains("line 2") && e.contains("UTF-8"), "{e}");
    let e = err(&write(d, "empty_text.jsonl", b"{\"text\": \"ok\", \"label\": 1}\n{\"text\": \"  \", \"label\": 1}\n"), &c);
    assert!(e.contains("line 2") && e.contains("empty"), "{e}");
    let e = err(&write(d, "empty.jsonl", b"\n\n"), &c);
    assert!(e.contains("empty.jsonl") && e.contains("no rows"), "{e}");
    let e = err(&write(d, "empty.csv", b"text,label\n"), &c);
    assert!(e.contains("no rows"), "{e}");
    let e = err(&write(d, "mixed.jsonl", b"{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\", \"label\": \"pos\"}\n"), &c);
    assert!(e.contains("mixes types") && e.contains("row 2"), "{e}");
    let e = err(&write(d, "fields.csv", b"text,label\na,1\nb,1,extra\n"), &c);
    assert!(e.contains("fields.csv, line 3") && e.contains("expected 2 fields"), "{e}");
    let pq = d.join("ints.parquet");
    write_parquet(&pq, vec![("text", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef), ("label", Arc::new(Int64Array::from(vec![0, 1])) as ArrayRef)]);
    let e = err(&pq, &c);
    assert!(e.contains("`text`") && e.contains("Int64") && e.contains("string"), "{e}");
    let e = err(&pq, &Columns { text: "body".into(), ..Default::default() });
    assert!(e.contains("no column `body`") && e.contains("text, label"), "{e}");
    let e = err(&write(d, "notpq.parquet", b"not parquet"), &c);
    assert!(e.contains("Parquet"), "{e}");

    // Regression targets must be finite.
    let pq = d.join("nan.parquet");
    write_parquet(&pq, vec![("text", Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef), ("label", Arc::new(Float64Array::from(vec![1.0, f64::NAN])) as ArrayRef)]);
    let cfg = DataConfig { train: Some(pq.into()), ..Default::default() };
    let e = load_splits(&cfg, &encoder(), Some(TargetKind::Regression)).err().unwrap().chain();
    assert!(e.contains("row 2") && e.contains("finite"), "{e}");
    let inf = write(d, "inf.csv", b"text,label\na,1.5\nb,inf\n");
    let cfg = DataConfig { train: Some(inf.into()), ..Default::default() };
    let e = load_splits(&cfg, &encoder(), Some(TargetKind::Regression)).err().unwrap().chain();
    assert!(e.contains("row 2") && e.contains("finite"), "{e}");
}

#[test]
fn labels_splits_and_tokenization() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut train = String::new();
    for i in 0..40 {
        let label = if i % 4 == 0 { "pos" } else { "neg" };
        train.push_str(&format!("{{\"text\": \"the movie number {i} was {label} and long and slow and boring and bad\", \"label\": \"{label}\"}}\n"));
    }
    let train = write(d, "train.jsonl", train.as_bytes());
    let dev = write(d, "dev.jsonl", b"{\"text\": \"a good film\", \"label\": \"pos\"}\n{\"text\": \"meh\", \"label\": \"neutral\"}\n");

    // An unseen validation label is an error naming the label and the row...
    let cfg = DataConfig { train: Some(train.clone().into()), validation: Some(dev.clone().into()), ..Default::default() };
    let e = load_splits(&cfg, &encoder(), Some(TargetKind::Classification)).err().unwrap().chain();
    assert!(e.contains("dev.jsonl, row 2") && e.contains("`neutral`"), "{e}");
    // ...unless the labels are listed explicitly, in which case their order is kept.
    let cfg = DataConfig { labels: Some(vec!["pos".into(), "neutral".into(), "neg".into()]), ..cfg };
    let s = load_splits(&cfg, &encoder(), Some(TargetKind::Classification)).unwrap();
    assert_eq!(s.validation.as_ref().unwrap().targets, Some(Targets::Class(vec![0, 1])));
    assert_eq!(s.labels.as_ref().unwrap().names(), &["pos", "neutral", "neg"]);

    // validation_fraction: stratified, deterministic, and truncation is counted.
    let cfg = DataConfig { train: Some(train.into()), validation_fraction: Some(0.25), seed: 3, max_length: 8, ..Default::default() };
    // The encoder carries the token budget (callers build it from `max_length`).
    let enc8 = TextEncoder::from_file(&fixtures().join("tiny-v4/tokenizer.json"), cfg.max_length).unwrap();
    let s = load_splits(&cfg, &enc8, Some(TargetKind::Classification)).unwrap();
    let v = s.validation.as_ref().unwrap();
    assert_eq!((s.train.len(), v.len()), (30, 10));
    let Some(Targets::Class(vt)) = &v.targets else { panic!() };
    let pos = vt.iter().filter(|&&c| c == 1).count();
    assert!((2..=3).contains(&pos), "10 of 40 rows are pos: 2.5 of them belong in validation, got {pos}");
    assert_eq!(s.labels.as_ref().unwrap().names(), &["neg", "pos"]);
    assert_eq!(s.train.truncated, 40, "every row is longer than 8 tokens");
    assert!(s.train.tokens.lengths().iter().all(|&l| l == 8));
    let again = load_splits(&cfg, &enc8, Some(TargetKind::Classification)).unwrap();
    assert_eq!(again.train.tokens, s.train.tokens);

    // Text pairs: [CLS] a [SEP] b [SEP].
    let pairs = write(d, "pairs.jsonl", b"{\"text_a\": \"good\", \"text_b\": \"bad\", \"score\": 1.5}\n");
    let cfg = DataConfig { train: Some(pairs.into()), text_column: "text_a".into(), text_pair_column: Some("text_b".into()), label_column: "score".into(), ..Default::default() };
    let s = load_splits(&cfg, &encoder(), Some(TargetKind::Regression)).unwrap();
    let row = s.train.tokens.row(0);
    assert_eq!(row.iter().filter(|&&t| t == 2).count(), 2, "two [SEP] in a pair: {row:?}");
    assert_eq!(s.train.targets, Some(Targets::Regression(vec![1.5])));

    // Multi-label rows are lists.
    let ml = write(d, "ml.jsonl", b"{\"text\": \"a\", \"label\": [\"x\", \"y\"]}\n{\"text\": \"b\", \"label\": []}\n");
    let cfg = DataConfig { train: Some(ml.into()), ..Default::default() };
    let s = load_splits(&cfg, &encoder(), Some(TargetKind::MultiLabel)).unwrap();
    assert_eq!(s.train.targets, Some(Targets::MultiLabel(vec![vec![0, 1], vec![]])));
}

#[test]
fn hub_datasets_come_from_the_parquet_conversion_and_then_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let make = |name: &str, texts: Vec<&str>, labels: Vec<i64>| {
        let p = dir.path().join(name);
        write_parquet(&p, vec![("text", Arc::new(StringArray::from(texts)) as ArrayRef), ("label", Arc::new(Int64Array::from(labels)) as ArrayRef)]);
        std::fs::read(p).unwrap()
    };
    let files = vec![
        ("plain_text/train/0000.parquet".to_string(), make("t0", vec!["good", "bad"], vec![1, 0])),
        ("plain_text/train/0001.parquet".to_string(), make("t1", vec!["fine"], vec![1])),
        ("plain_text/test/0000.parquet".to_string(), make("s0", vec!["awful"], vec![0])),
    ];
    let hub = stand_in_hub(files);
    let home = tempfile::tempdir().unwrap();
    // hf-hub reads HF_ENDPOINT / HF_HOME from the environment: run the loading in a child process.
    let out = std::process::Command::new(common::binary())
        .args(["data", "--hub", "stanfordnlp/imdb", "--subset", "plain_text", "--tokenizer"])
        .arg(fixtures().join("tiny-v4/tokenizer.json"))
        .arg("--json")
        .env("HF_ENDPOINT", &hub.url)
        .env("HF_HOME", home.path())
        .timed_output();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats: serde_json::Value = serde_json::from_str(String::from_utf8(out.stdout).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(stats["rows"], 3, "both train shards are read");
    assert!(home.path().join("hub/datasets--stanfordnlp--imdb").is_dir());
    // Offline, from the cache only.
    let out = std::process::Command::new(common::binary())
        .args(["data", "--hub", "stanfordnlp/imdb", "--subset", "plain_text", "--json", "--tokenizer"])
        .arg(fixtures().join("tiny-v4/tokenizer.json"))
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env("HF_HOME", home.path())
        .env("HF_HUB_OFFLINE", "1")
        .timed_output();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A split that does not exist: the error names the dataset and the split.
    let out = std::process::Command::new(common::binary())
        .args(["data", "--hub", "stanfordnlp/imdb", "--subset", "nope", "--tokenizer"])
        .arg(fixtures().join("tiny-v4/tokenizer.json"))
        .env("HF_ENDPOINT", &hub.url)
        .env("HF_HOME", home.path())
        .timed_output();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("stanfordnlp/imdb") && e.contains("train"), "{e}");
}

#[test]
fn data_command_reports_rows_labels_lengths_and_padding() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = String::new();
    for i in 0..64 {
        let words = "word ".repeat(1 + i % 13);
        rows.push_str(&format!("{{\"text\": \"{words}\", \"label\": {}}}\n", i % 3));
    }
    let train = write(dir.path(), "train.jsonl", rows.as_bytes());
    let out = std::process::Command::new(common::binary())
        .args(["data", "--train"])
        .arg(&train)
        .args(["--model"])
        .arg(fixtures().join("tiny-v4"))
        .args(["--max-length", "10", "--batch-size", "8"])
        .timed_output();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for needle in ["train", "64", "p50", "p99", "over 10", "labels (train, share of 64 rows)", "grouped by length"] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    // JSON for scripts: label counts in label order (integers sort numerically).
    let out = std::process::Command::new(common::binary())
        .args(["data", "--json", "--train"])
        .arg(&train)
        .args(["--tokenizer"])
        .arg(fixtures().join("tiny-v4/tokenizer.json"))
        .args(["--max-length", "40", "--batch-size", "4"])
        .timed_output();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rows"], 64);
    assert_eq!(v["labels"], serde_json::json!([["0", 22], ["1", 21], ["2", 21]]));
    assert!(v["truncated"].as_u64().unwrap() > 0);
    assert!(v["padding_grouped"].as_f64().unwrap() < v["padding_random"].as_f64().unwrap());
    // Without --max-length, the length train would use: the model's positions (128 here), so no
    // row of at most 15 tokens counts as truncated; with only a tokenizer, 512.
    let long: String = (0..4).map(|_| format!("{{\"text\": \"{}\", \"label\": 0}}\n", "word ".repeat(100))).collect();
    let long = write(dir.path(), "long.jsonl", long.as_bytes());
    let out = std::process::Command::new(common::binary()).args(["data", "--json", "--train"]).arg(&long).args(["--model"]).arg(fixtures().join("tiny-v4")).timed_output();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["truncated"], 4, "100-word rows (303 tokens) are over the model's 128 positions: {v}");
    let out = std::process::Command::new(common::binary()).args(["data", "--json", "--train"]).arg(&long).args(["--tokenizer"]).arg(fixtures().join("tiny-v4/tokenizer.json")).timed_output();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["truncated"], 0, "with only a tokenizer the budget is 512: {v}");
    // Without a tokenizer the command says what to pass.
    let out = std::process::Command::new(common::binary()).args(["data", "--train"]).arg(&train).timed_output();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--model"));
}

#[test]
fn sst2_statistics_with_the_real_tokenizer() {
    let Some(shared) = common::shared() else { return };
    let out = std::process::Command::new(common::binary())
        .args(["data", "--json", "--train"])
        .arg(shared.join("data/sst2/train.jsonl"))
        .arg("--validation")
        .arg(shared.join("data/sst2/dev.parquet"))
        .arg("--tokenizer")
        .arg(shared.join("data/modernbert/tokenizer.json"))
        .timed_output();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["rows"], 67349);
    assert_eq!(lines[1]["rows"], 872);
    assert_eq!(lines[0]["labels"], serde_json::json!([["negative", 29780], ["positive", 37569]]));
}

/// `modernft data --config` on every config the repository ships (read from `configs/`, so a new
/// config is covered the day it lands): each must load its splits the way `train` would, with the
/// task it declares (multi-label lists, token tags, pair scores). Hub ids (model and dataset) come
/// from a stand-in hub serving ../shared's files; `template.toml` runs in a folder holding the
/// `data/train.jsonl` it names.
#[test]
fn data_reads_every_shipped_config() {
    let Some(shared) = common::shared() else { return };
    let read = |p: PathBuf| std::fs::read(p).unwrap();
    let hub = stand_in_hub(vec![
        ("tokenizer.json".into(), read(shared.join("data/modernbert/tokenizer.json"))),
        ("plain_text/train/0000.parquet".into(), read(shared.join("data/imdb/hub/plain_text/train/0000.parquet"))),
        ("plain_text/test/0000.parquet".into(), read(shared.join("data/imdb/hub/plain_text/test/0000.parquet"))),
    ]);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut configs: Vec<PathBuf> =
        std::fs::read_dir(root.join("configs")).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "toml")).collect();
    configs.sort();
    assert!(configs.len() >= 8, "{configs:?}");
    let scratch = tempfile::tempdir().unwrap();
    let mut rows = String::new();
    for i in 0..40 {
        rows.push_str(&format!("{{\"text\": \"example number {i}\", \"label\": \"{}\"}}\n", ["yes", "no"][i % 2]));
    }
    std::fs::create_dir_all(scratch.path().join("data")).unwrap();
    write(&scratch.path().join("data"), "train.jsonl", rows.as_bytes());
    for config in &configs {
        let name = config.file_name().unwrap().to_string_lossy().to_string();
        let home = tempfile::tempdir().unwrap();
        let cwd = if name == "template.toml" { scratch.path() } else { root };
        let out = std::process::Command::new(common::binary())
            .current_dir(cwd)
            .args(["data", "--json", "--config"])
            .arg(config)
            .env("HF_ENDPOINT", &hub.url)
            .env("HF_HOME", home.path())
            .timed_output();
        assert!(out.status.success(), "data --config {name}: {}", String::from_utf8_lossy(&out.stderr));
        let splits: Vec<serde_json::Value> =
            String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let cfg: toml::Value = toml::from_str(&std::fs::read_to_string(config).unwrap()).unwrap();
        let has_validation = cfg["data"].get("validation").is_some() || cfg["data"].get("validation_split").is_some();
        assert_eq!(splits.len(), 1 + has_validation as usize, "{name}: {splits:?}");
        for s in &splits {
            assert!(s["rows"].as_u64().unwrap() > 0 && s["tokens"].as_u64().unwrap() > 0, "{name}: {s}");
        }
        let train = &splits[0];
        let labels = train["labels"].as_array().unwrap();
        let task = cfg.get("task").and_then(|t| t.as_str()).unwrap_or("classification");
        let multi = cfg.get("multi_label").and_then(|t| t.as_bool()).unwrap_or(false);
        match (task, multi) {
            ("embedding", _) | ("regression", _) | ("mlm", _) => assert!(labels.is_empty(), "{name}: {train}"),
            ("token-classification", _) => {
                assert_eq!(train["label_unit"], "tags", "{name}: {train}");
                let sum: u64 = labels.iter().map(|l| l[1].as_u64().unwrap()).sum();
                assert_eq!(sum, train["label_total"].as_u64().unwrap(), "{name}: shares are of all tags");
            }
            (_, true) => {
                // A row carries several labels: the counts add up to more than the rows.
                let sum: u64 = labels.iter().map(|l| l[1].as_u64().unwrap()).sum();
                assert!(labels.len() >= 2 && sum > train["rows"].as_u64().unwrap(), "{name}: {train}");
            }
            _ => {
                let sum: u64 = labels.iter().map(|l| l[1].as_u64().unwrap()).sum();
                assert!(labels.len() >= 2 && sum == train["rows"].as_u64().unwrap(), "{name}: {train}");
            }
        }
    }
}

/// Token classification: each tag's share is of all tags, and the text report says so.
#[test]
fn token_classification_tag_shares_are_of_all_tags() {
    let dir = tempfile::tempdir().unwrap();
    let conll = "EU B-ORG\nrejects O\nGerman B-MISC\ncall O\n\nPeter B-PER\nBlackburn I-PER\n\n";
    let train = write(dir.path(), "train.conll", conll.as_bytes());
    let run = |json: bool| {
        let mut c = std::process::Command::new(common::binary());
        c.args(["data", "--task", "token-classification", "--train"]).arg(&train).arg("--tokenizer").arg(fixtures().join("tiny-v4/tokenizer.json"));
        if json {
            c.arg("--json");
        }
        let out = c.timed_output();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let v: serde_json::Value = serde_json::from_str(run(true).lines().next().unwrap()).unwrap();
    assert_eq!(v["rows"], 2);
    assert_eq!(v["label_total"], 6, "{v}");
    let o = v["labels"].as_array().unwrap().iter().find(|l| l[0] == "O").unwrap().clone();
    assert_eq!(o[1], 2);
    let text = run(false);
    // 2 of 6 tags are O: 33.3%, not 100% of the 2 sentences.
    assert!(text.contains("33.3%") && !text.contains("100.0%"), "{text}");
}

/// Files a user did not write by hand: CRLF line ends read the same as LF, a Latin-1 file is named
/// with its line and the command that converts it, and a damaged parquet file is an error that
/// names it, never a panic.
#[test]
fn crlf_latin1_and_damaged_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let lf = "{\"text\": \"a good film\", \"label\": \"pos\"}\n{\"text\": \"bad\", \"label\": \"neg\"}\n";
    let a = read_table(&write(dir.path(), "lf.jsonl", lf.as_bytes()), None, &cols()).unwrap();
    let b = read_table(&write(dir.path(), "crlf.jsonl", lf.replace('\n', "\r\n").as_bytes()), None, &cols()).unwrap();
    assert_eq!(format!("{:?}", a.texts), format!("{:?}", b.texts));
    assert_eq!(format!("{:?}", a.labels), format!("{:?}", b.labels));
    let csv_lf = "text,label\na good film,pos\nbad,neg\n";
    let c = read_table(&write(dir.path(), "crlf.csv", csv_lf.replace('\n', "\r\n").as_bytes()), None, &cols()).unwrap();
    assert_eq!(format!("{:?}", a.texts), format!("{:?}", c.texts));

    // "Günther" in Latin-1 on line 3.
    let latin1 = b"text,label\nfine,pos\nG\xfcnther,neg\n";
    let p = write(dir.path(), "latin1.csv", latin1);
    let e = err(&p, &cols());
    assert!(e.contains("latin1.csv") && e.contains("line 3") && e.contains("UTF-8") && e.contains("iconv"), "{e}");
    let p = write(dir.path(), "latin1.jsonl", b"{\"text\": \"ok\", \"label\": 1}\n{\"text\": \"\xf0 caf\xe9\", \"label\": 0}\n");
    let e = err(&p, &cols());
    assert!(e.contains("latin1.jsonl") && e.contains("line 2") && e.contains("byte 11") && e.contains("file offset 37") && e.contains("iconv"), "{e}");

    let good = dir.path().join("good.parquet");
    write_parquet(&good, vec![("text", Arc::new(StringArray::from(vec!["a", "b", "c"])) as ArrayRef), ("label", Arc::new(Int64Array::from(vec![1, 0, 1])) as ArrayRef)]);
    let bytes = std::fs::read(&good).unwrap();
    for cut in [bytes.len() / 2, bytes.len() - 9, 12] {
        let p = write(dir.path(), "cut.parquet", &bytes[..cut]);
        let e = err(&p, &cols());
        assert!(e.contains("cut.parquet"), "cut at {cut}: {e}");
    }
    let mut flipped = bytes.clone();
    for i in (4..bytes.len() - 8).step_by(7) {
        flipped[i] ^= 0x5a;
    }
    let p = write(dir.path(), "flipped.parquet", &flipped);
    if let Err(e) = read_table(&p, None, &cols()) {
        assert!(e.chain().contains("flipped.parquet"), "{}", e.chain());
    }
}
