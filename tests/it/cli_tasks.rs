//! Every task's shipped config (configs/*.toml) runs end to end through the binary on tiny generated
//! data (the real data paths and model sizes are swapped for small ones with --set), and eval,
//! predict and save understand each task.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{ner_rows, run_with_stdin};
use serde_json::Value;

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn tiny_model() -> Vec<String> {
    vec![
        "--set".into(), "model.config=tests/fixtures/tiny-v4/config.json".into(),
        "--set".into(), "model.tokenizer=tests/fixtures/tiny-v4/tokenizer.json".into(),
    ]
}

fn train(config: &str, out: &Path, extra: &[String]) -> String {
    let mut args: Vec<String> = vec!["train".into(), "--quiet".into(), "--config".into(), config.into()];
    args.extend(tiny_model());
    args.extend(["--set".into(), format!("output.dir={}", out.display())]);
    args.extend(extra.iter().cloned());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(run_with_stdin(&refs, ""))
}

fn set(kv: &str) -> [String; 2] {
    ["--set".into(), kv.into()]
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn token_classification_trains_evaluates_predicts_spans_and_saves() {
    let tmp = tempfile::tempdir().unwrap();
    let train_file = write(tmp.path(), "train.jsonl", &ner_rows(90));
    // Validation as a CoNLL file.
    let conll: String = (0..9).map(|i| {
        let (f, l, p) = [("john", "smith", "rome"), ("mary", "jones", "paris"), ("ann", "lee", "london")][i % 3];
        format!("-DOCSTART-\tO\n\nyesterday\tO\n{f}\tB-per\n{l}\tI-per\nflew\tO\nto\tO\n{p}\tB-loc\n\n")
    }).collect();
    let dev = write(tmp.path(), "dev.conll", &conll);
    let run = tmp.path().join("ner");
    train("configs/wnut17-ner.toml", &run, &[
        set(&format!("data.train={}", train_file.display())), set(&format!("data.validation={}", dev.display())),
        set("training.learning_rate=3e-3"), set("training.epochs=20"), set("training.batch_size=8"), set("training.warmup_ratio=0"),
    ].concat());
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(run.join("model/config.json")).unwrap()).unwrap();
    assert_eq!(cfg["architectures"], serde_json::json!(["ModernBertForTokenClassification"]));
    assert!(cfg.get("problem_type").is_none(), "transformers accepts no problem_type for token classification");
    assert_eq!(cfg["id2label"].as_object().unwrap().len(), 4);

    let v: Value = serde_json::from_str(&ok(run_with_stdin(&["eval", "--model", run.to_str().unwrap(), "--data", dev.to_str().unwrap(), "--json"], ""))).unwrap();
    assert!(v["f1"].as_f64().unwrap() > 0.9, "a trivially learnable NER set: {v}");
    assert!(v["per_type"]["per"]["f1"].is_number() && v["per_type"]["loc"]["support"] == 9);
    let table = ok(run_with_stdin(&["eval", "--model", run.to_str().unwrap(), "--data", dev.to_str().unwrap(), "--entity-scheme", "strict-iob2"], ""));
    assert!(table.contains("entity") && table.contains("loc") && table.contains("per"), "{table}");

    let text = "yesterday  mary jones flew to rome";
    let line: Value = serde_json::from_str(ok(run_with_stdin(&["predict", "--model", run.to_str().unwrap(), "--all-scores"], &format!("{text}\n"))).trim()).unwrap();
    let ents = line["entities"].as_array().unwrap();
    let chars: Vec<char> = text.chars().collect();
    let found: Vec<(String, String)> = ents
        .iter()
        .map(|e| {
            let (s, t) = (e["start"].as_u64().unwrap() as usize, e["end"].as_u64().unwrap() as usize);
            let span: String = chars[s..t].iter().collect();
            assert_eq!(span, e["text"].as_str().unwrap(), "character offsets point at the entity");
            (e["entity"].as_str().unwrap().to_string(), span)
        })
        .collect();
    assert_eq!(found, vec![("per".to_string(), "mary jones".to_string()), ("loc".to_string(), "rome".to_string())], "{line}");
    assert_eq!(line["words"].as_array().unwrap().len(), 6);

    let out = tmp.path().join("export");
    ok(run_with_stdin(&["save", run.to_str().unwrap(), "--out", out.to_str().unwrap()], ""));
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(saved["architectures"], cfg["architectures"]);
    // `data` understands tags too.
    let stats = ok(run_with_stdin(&["data", "--config", "configs/wnut17-ner.toml", "--train", train_file.to_str().unwrap(), "--validation", dev.to_str().unwrap(), "--tokenizer", "tests/fixtures/tiny-v4/tokenizer.json", "--json"], ""));
    let first: Value = serde_json::from_str(stats.lines().next().unwrap()).unwrap();
    assert_eq!(first["rows"], 90);
    assert_eq!(first["labels"][0], serde_json::json!(["B-loc", 90]));
}

fn pair_rows(n: usize) -> String {
    let words = ["good", "great", "bad", "awful", "film", "movie", "plot", "story"];
    (0..n)
        .map(|i| {
            let a = format!("{} {}", words[i % 8], words[(i / 8) % 8]);
            let b = format!("{} {}", words[(i + 1) % 8], words[(i / 8) % 8]);
            format!("{}\n", serde_json::json!({"text_a": a, "text_b": b, "score": (i % 6) as f64 * 0.9}))
        })
        .collect()
}

#[test]
fn regression_config_runs_and_reports_correlations() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(tmp.path(), "pairs.jsonl", &pair_rows(48));
    let run = tmp.path().join("reg");
    train("configs/stsb-regression.toml", &run, &[set(&format!("data.train={}", f.display())), set(&format!("data.validation={}", f.display())), set("training.max_steps=6")].concat());
    let v: Value = serde_json::from_str(&ok(run_with_stdin(&["eval", "--model", run.to_str().unwrap(), "--config", run.join("config.toml").to_str().unwrap(), "--json"], ""))).unwrap();
    assert!(v["spearman"].is_number() && v["pearson"].is_number() && v["mse"].is_number(), "{v}");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(run.join("model/config.json")).unwrap()).unwrap();
    assert_eq!(saved["problem_type"], "regression");
}

#[test]
fn embedding_configs_train_sentence_transformers_models() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(tmp.path(), "pairs.jsonl", &pair_rows(64));
    // CoSENT on scored pairs, evaluated as STS, Matryoshka dims within the tiny model's hidden size.
    let run = tmp.path().join("cosent");
    train("configs/stsb-embedding.toml", &run, &[set(&format!("data.train={}", f.display())), set(&format!("data.validation={}", f.display())), set("training.max_steps=6"), set("training.eval_strategy=steps"), set("training.eval_steps=3"), set("training.matryoshka_dims=[32, 16, 8]")].concat());
    let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(log.contains("eval_spearman"), "{log}");
    assert!(run.join("model/modules.json").is_file() && run.join("model/1_Pooling/config.json").is_file(), "the model is a sentence-transformers folder");
    let v = ok(run_with_stdin(&["embed", "--model", run.to_str().unwrap()], "good film\n"));
    assert_eq!(serde_json::from_str::<Value>(v.trim()).unwrap()["embedding"].as_array().unwrap().len(), 32);
    let sts: Value = serde_json::from_str(&ok(run_with_stdin(&["eval", "--model", run.to_str().unwrap(), "--data", f.to_str().unwrap(), "--text-column", "text_a", "--text-pair-column", "text_b", "--label-column", "score", "--json"], ""))).unwrap();
    assert_eq!(sts["evaluation"], "sts");
    assert!(sts["spearman"].is_number());
    // Retrieval over a corpus and queries.
    let corpus = write(tmp.path(), "corpus.jsonl", "{\"id\": \"d1\", \"text\": \"good film\"}\n{\"id\": \"d2\", \"text\": \"awful plot\"}\n{\"id\": 3, \"text\": \"great story\"}\n");
    let queries = write(tmp.path(), "queries.jsonl", "{\"text\": \"good movie\", \"relevant\": [\"d1\"]}\n{\"text\": \"bad plot\", \"relevant\": [\"d2\", 3]}\n");
    let r: Value = serde_json::from_str(&ok(run_with_stdin(&["eval", "--model", run.to_str().unwrap(), "--corpus", corpus.to_str().unwrap(), "--queries", queries.to_str().unwrap(), "--json"], ""))).unwrap();
    for k in ["mrr@10", "ndcg@10", "recall@1", "recall@10"] {
        assert!(r[k].as_f64().is_some_and(|x| (0.0..=1.0).contains(&x)), "{k}: {r}");
    }
    assert!((r["recall@10"].as_f64().unwrap() - 1.0).abs() < 1e-12, "three documents: all within the top 10");
    // A classifier-style predict on an embedding model says what to use instead.
    let out = run_with_stdin(&["predict", "--model", run.to_str().unwrap()], "x\n");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("modernft embed"));

    // MNRL with hard negatives, evaluated by retrieval over the validation pairs.
    let triples: String = (0..32).map(|i| format!("{}\n", serde_json::json!({"anchor": format!("review {i} good"), "positive": format!("good review {i}"), "negative": format!("bad review {}", i + 1)}))).collect();
    let t = write(tmp.path(), "triples.jsonl", &triples);
    let run = tmp.path().join("mnrl");
    train("configs/stsb-embedding.toml", &run, &[
        set(&format!("data.train={}", t.display())), set(&format!("data.validation={}", t.display())),
        set("data.text_column=anchor"), set("data.text_pair_column=positive"), set("data.negative_column=negative"),
        set("training.embedding_loss=mnrl"), set("training.embedding_eval=retrieval"), set("training.metric_for_best_model=mrr@10"),
        set("training.max_steps=4"), set("training.batch_size=8"), set("training.matryoshka_dims=[32, 16]"),
    ].concat());
    let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(log.contains("eval_mrr@10") && log.contains("eval_ndcg@10"), "{log}");
}

#[test]
fn multilabel_config_runs_predicts_label_sets() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("ml");
    let args = ["train", "--quiet", "--config", "configs/multilabel.toml", "--set", "training.max_steps=30", "--set", &format!("output.dir={}", run.display())];
    ok(run_with_stdin(&args, ""));
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(run.join("model/config.json")).unwrap()).unwrap();
    assert_eq!(saved["problem_type"], "multi_label_classification");
    let v: Value = serde_json::from_str(&ok(run_with_stdin(&["eval", "--model", run.to_str().unwrap(), "--data", "examples/multilabel/dev.jsonl", "--json"], ""))).unwrap();
    assert!(v["subset_accuracy"].is_number() && v["f1_micro"].is_number(), "{v}");
    let p: Value = serde_json::from_str(ok(run_with_stdin(&["predict", "--model", run.to_str().unwrap(), "--all-scores"], "the music was great\n")).trim()).unwrap();
    assert!(p["labels"].is_array() && p["scores"].as_object().unwrap().len() == 4, "{p}");
}

/// A sentence-transformers folder whose modules disagree with its config.json (mean pooling there,
/// `cls` in config.json), with a Normalize module, max_seq_length 24 of 128 positions, and a default
/// prompt: every command reads the folder the same way, and a key that overrides it says so.
#[test]
fn a_sentence_transformers_folder_s_settings_are_what_trains_embeds_and_exports() {
    let tmp = tempfile::tempdir().unwrap();
    let st = tmp.path().join("st");
    let st_s = st.to_str().unwrap();
    ok(run_with_stdin(&["save", "tests/fixtures/tiny-v4", "--out", st_s, "--format", "sentence-transformers", "--pooling", "mean", "--normalize"], ""));
    write(&st, "sentence_bert_config.json", r#"{"max_seq_length": 24, "do_lower_case": false}"#);
    write(&st, "config_sentence_transformers.json", r#"{"prompts": {"query": "query: ", "document": ""}, "default_prompt_name": "query", "similarity_fn_name": "cosine"}"#);
    let read = |p: PathBuf| -> Value { serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap() };

    // embed: the default prompt is prepended (as sentence-transformers' encode does), vectors are
    // normalised; --prefix "" turns the prompt off and says that it overrides the folder.
    let vec_of = |args: &[&str]| -> (Vec<f64>, String) {
        let out = run_with_stdin(&[&["embed", "--model", st_s], args].concat(), "a good film\n");
        let e = String::from_utf8_lossy(&out.stderr).to_string();
        let v: Value = serde_json::from_str(ok(out).trim()).unwrap();
        (v["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect(), e)
    };
    let (default, _) = vec_of(&[]);
    let (explicit, _) = vec_of(&["--prefix", "query: "]);
    let (bare, note) = vec_of(&["--prefix", ""]);
    assert_eq!(default, explicit, "the folder's default prompt is what embed prepends");
    assert_ne!(default, bare);
    assert!(note.contains("--prefix") && note.contains("overrides") && note.contains("query: "), "{note}");
    let norm: f64 = default.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "the Normalize module is applied: norm {norm}");

    // train: pooling, normalisation and length come from the folder and are exported as trained.
    let pairs = write(tmp.path(), "pairs.jsonl", &pair_rows(32));
    let config = |out: &Path| {
        write(
            tmp.path(),
            "st-run.toml",
            &format!(
                "task = \"embedding\"\n[model]\nname = \"{st}\"\n[data]\ntrain = \"{pairs}\"\ntext_column = \"text_a\"\ntext_pair_column = \"text_b\"\nlabel_column = \"score\"\n\
                 [training]\nembedding_loss = \"cosent\"\nmax_steps = 3\nbatch_size = 8\n[output]\ndir = \"{out}\"\n",
                st = st.display(),
                pairs = pairs.display(),
                out = out.display()
            ),
        )
    };
    let run = tmp.path().join("run");
    let cfg = config(&run);
    let out = run_with_stdin(&["train", "--quiet", "--config", cfg.to_str().unwrap()], "");
    let e = String::from_utf8_lossy(&out.stderr).to_string();
    ok(out);
    assert!(e.contains("default prompt") && e.contains("not prepended"), "{e}");
    let recorded = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(recorded.contains("pooling = \"mean\"") && recorded.contains("normalize = true") && recorded.contains("max_length = 24"), "{recorded}");
    let model = run.join("model");
    assert_eq!(read(model.join("1_Pooling/config.json"))["pooling_mode_mean_tokens"], true);
    assert_eq!(read(model.join("1_Pooling/config.json"))["pooling_mode_cls_token"], false);
    assert!(read(model.join("modules.json")).as_array().unwrap().iter().any(|m| m["type"].as_str().unwrap().ends_with("Normalize")));
    assert_eq!(read(model.join("sentence_bert_config.json"))["max_seq_length"], 24, "the export says the length that trained");
    let prompts = read(model.join("config_sentence_transformers.json"));
    assert_eq!(prompts["default_prompt_name"], "query");
    assert_eq!(prompts["prompts"]["query"], "query: ");
    // save re-exports the trained folder with the same settings.
    let again = tmp.path().join("again");
    ok(run_with_stdin(&["save", run.to_str().unwrap(), "--out", again.to_str().unwrap(), "--format", "sentence-transformers"], ""));
    assert_eq!(read(again.join("sentence_bert_config.json"))["max_seq_length"], 24);
    assert_eq!(read(again.join("config_sentence_transformers.json"))["prompts"]["query"], "query: ");

    // A key in the config overrides the folder, with a notice.
    let run2 = tmp.path().join("run2");
    let cfg = config(&run2);
    let out = run_with_stdin(&["train", "--quiet", "--config", cfg.to_str().unwrap(), "--set", "model.pooling=\"cls\"", "--set", "data.max_length=16"], "");
    let e = String::from_utf8_lossy(&out.stderr).to_string();
    ok(out);
    assert!(e.contains("[model] pooling = cls overrides") && e.contains("[data] max_length = 16 overrides"), "{e}");
    assert_eq!(read(run2.join("model/1_Pooling/config.json"))["pooling_mode_cls_token"], true);
    assert_eq!(read(run2.join("model/sentence_bert_config.json"))["max_seq_length"], 16);
}

/// `eval` on pair data says which evaluation it ran and why: STS when the pairs have scores (STS-B
/// names its column `score`), retrieval when asked or when there are none; a score column that was
/// named but is missing is an error naming --label-column. Column errors name the flag to pass.
#[test]
fn eval_on_pairs_says_which_evaluation_and_why_and_errors_name_the_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let st = tmp.path().join("st");
    let st_s = st.to_str().unwrap();
    ok(run_with_stdin(&["save", "tests/fixtures/tiny-v4", "--out", st_s, "--format", "sentence-transformers", "--pooling", "mean"], ""));
    let scored = write(tmp.path(), "scored.jsonl", &pair_rows(24));
    let unscored: String = pair_rows(24).lines().map(|l| {
        let mut v: Value = serde_json::from_str(l).unwrap();
        v.as_object_mut().unwrap().remove("score");
        format!("{v}\n")
    }).collect();
    let unscored = write(tmp.path(), "unscored.jsonl", &unscored);
    let eval = |data: &Path, extra: &[&str]| {
        let args = [&["eval", "--model", st_s, "--data", data.to_str().unwrap(), "--text-column", "text_a", "--text-pair-column", "text_b", "--json"], extra].concat();
        run_with_stdin(&args, "")
    };
    let json = |out: Output| -> Value { serde_json::from_str(ok(out).trim()).unwrap() };

    let v = json(eval(&scored, &[]));
    assert_eq!(v["evaluation"], "sts", "{v}");
    assert!(v["why"].as_str().unwrap().contains("`score`"), "{v}");
    assert!(v["spearman"].is_number());
    let v = json(eval(&scored, &["--evaluation", "retrieval"]));
    assert_eq!(v["evaluation"], "retrieval");
    assert!(v["why"].as_str().unwrap().contains("asked"), "{v}");
    let v = json(eval(&unscored, &[]));
    assert_eq!(v["evaluation"], "retrieval");
    assert!(v["why"].as_str().unwrap().contains("no score column") && v["why"].as_str().unwrap().contains("--label-column"), "{v}");
    // STS asked of pairs without scores, and a named score column that is not there: errors.
    for (data, extra) in [(&unscored, &["--evaluation", "sts"][..]), (&scored, &["--label-column", "similarity"][..])] {
        let out = eval(data, extra);
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && e.contains("--label-column"), "{extra:?}: {e}");
    }
    // Without --text-column the fix is that flag, not a config section.
    for args in [
        vec!["eval", "--model", st_s, "--data", scored.to_str().unwrap()],
        vec!["data", "--train", scored.to_str().unwrap(), "--tokenizer", "tests/fixtures/tiny-v4/tokenizer.json", "--label-column", "score"],
    ] {
        let out = run_with_stdin(&args, "");
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && e.contains("no column `text`") && e.contains("pass --text-column"), "{args:?}: {e}");
        assert!(!e.contains("[data] section"), "{args:?}: {e}");
    }
    // With a config, the fix is its key.
    let cfg = write(tmp.path(), "run.toml", &format!("[model]\nname = \"{st_s}\"\n[data]\ntrain = \"{}\"\nlabel_column = \"score\"\n", scored.display()));
    let out = run_with_stdin(&["data", "--config", cfg.to_str().unwrap()], "");
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("set `text_column` in the [data] section"), "{e}");
}

/// MNRL as sentence-transformers users set it up: hard negatives as a third column, the symmetric
/// directions, and batches without duplicate texts (here a row's negative is the next row's
/// positive and anchors repeat, so plain batches would hold false in-batch negatives). Training
/// runs, no batch holds a text twice, and a resume from a checkpoint in the second epoch ends with
/// the uninterrupted run's bytes.
#[test]
fn mnrl_with_negatives_symmetric_directions_and_no_duplicate_batches_resumes_exactly() {
    use common::Timed;
    let tmp = tempfile::tempdir().unwrap();
    let rows: Vec<(String, String, String)> =
        (0..20).map(|i| (format!("review {} good", i % 5), format!("good review number {i}"), format!("good review number {}", (i + 1) % 20))).collect();
    let text: String = rows.iter().map(|(a, p, n)| format!("{}\n", serde_json::json!({"anchor": a, "positive": p, "negative": n}))).collect();
    let data = write(tmp.path(), "triples.jsonl", &text);
    let config = |out: &Path| {
        write(
            tmp.path(),
            &format!("{}.toml", out.file_name().unwrap().to_string_lossy()),
            &format!(
                "task = \"embedding\"\n[model]\nconfig = \"tests/fixtures/tiny-v4/config.json\"\ntokenizer = \"tests/fixtures/tiny-v4/tokenizer.json\"\npooling = \"mean\"\n\
                 [data]\ntrain = \"{data}\"\ntext_column = \"anchor\"\ntext_pair_column = \"positive\"\nnegative_column = \"negative\"\nmax_length = 16\n\
                 [training]\nembedding_loss = \"mnrl\"\nmnrl_directions = [\"query_to_doc\", \"doc_to_query\"]\nmnrl_partition = \"per_direction\"\n\
                 batch_sampler = \"no_duplicates\"\nbatch_size = 4\nepochs = 2\neval_strategy = \"no\"\nsave_steps = 2\nsave_total_limit = 100\nlearning_rate = 1e-3\nlogging_steps = 1\n\
                 [output]\ndir = \"{out}\"\n",
                data = data.display(),
                out = out.display()
            ),
        )
    };
    let train = |args: &[&str], log: &Path| {
        let out = std::process::Command::new(common::binary())
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .env("MODERNFT_BATCH_LOG", log)
            .timed_output();
        ok(out);
    };
    let full = tmp.path().join("full");
    let log = tmp.path().join("full.jsonl");
    train(&["train", "--quiet", "--config", config(&full).to_str().unwrap()], &log);
    let steps: Vec<Value> = std::fs::read_to_string(&log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(steps.len() >= 10, "{} steps", steps.len());
    for s in &steps {
        let batch: Vec<usize> = s["rows"][0].as_array().unwrap().iter().map(|r| r.as_u64().unwrap() as usize).collect();
        let mut texts: Vec<&str> = batch.iter().flat_map(|&r| [rows[r].0.as_str(), rows[r].1.as_str(), rows[r].2.as_str()]).collect();
        let n = texts.len();
        texts.sort_unstable();
        texts.dedup();
        assert_eq!(texts.len(), n, "step {}: a text twice in batch {batch:?}", s["step"]);
    }
    let losses: Vec<f64> = std::fs::read_to_string(full.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).filter(|v| v["type"] == "train").map(|v| v["loss"].as_f64().unwrap()).collect();
    assert!(losses.iter().all(|l| l.is_finite() && *l > 0.0), "{losses:?}");
    // Resume from checkpoint-8 (epoch 2 at 5 batches per epoch, or later with passed-over rows).
    let resumed = tmp.path().join("resumed");
    std::fs::create_dir_all(&resumed).unwrap();
    for e in std::fs::read_dir(&full).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().to_string();
        let later = name.strip_prefix("checkpoint-").and_then(|s| s.parse::<usize>().ok()).is_some_and(|s| s > 8);
        if later || name == "model" || name == "trainer_state.json" {
            continue;
        }
        let status = std::process::Command::new("cp").arg("-r").arg(e.path()).arg(&resumed).timed_output();
        assert!(status.status.success());
    }
    let log2 = tmp.path().join("resumed.jsonl");
    train(&["train", "--quiet", "--resume", resumed.to_str().unwrap()], &log2);
    let again: Vec<Value> = std::fs::read_to_string(&log2).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(again[..], steps[8..], "the resumed run saw other batches");
    assert!(std::fs::read(full.join("model/model.safetensors")).unwrap() == std::fs::read(resumed.join("model/model.safetensors")).unwrap(), "resumed weights differ");
}
