//! `[model] add_tokens`: the ids and embeddings transformers' `tokenizer.add_tokens` +
//! `resize_token_embeddings` give (tests/fixtures/added-tokens.json, from
//! scripts/make_added_tokens_reference.py), then through the binary: a masked-LM run that adds
//! tokens, its export, exact resume, a classifier started from it, and the errors.

use crate::common;

use std::path::Path;

use common::{fixtures, modernft, rewind, succeeded as ok, write_file as write, Timed};
use modernft::model::{build, vocabulary, HeadKind, LoadOptions, ModernBertConfig, Weights};
use serde_json::Value;

fn reference() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("added-tokens.json")).unwrap()).unwrap()
}

#[test]
fn tokens_get_transformers_ids_and_the_embeddings_grow_as_resize_token_embeddings() {
    let r = reference();
    let dir = fixtures().join("tiny-mlm");
    let mut tokenizer = modernft::model::load_tokenizer(&dir.join("tokenizer.json")).unwrap();
    let tokens: Vec<String> = r["tokens"].as_array().unwrap().iter().map(|p| p[0].as_str().unwrap().to_string()).collect();
    let ids = vocabulary::add_tokens(&mut tokenizer, &tokens).unwrap();
    let want: Vec<(String, u32)> = r["tokens"].as_array().unwrap().iter().map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_u64().unwrap() as u32)).collect();
    assert_eq!(ids, want);
    assert_eq!(vocabulary::rows_needed(&tokenizer), r["len"].as_u64().unwrap() as usize);
    for pair in r["encodings"].as_array().unwrap() {
        let text = pair[0].as_str().unwrap();
        let want: Vec<u32> = pair[1].as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect();
        assert_eq!(tokenizer.encode(text, true).unwrap().get_ids(), &want[..], "{text:?}");
    }
    // Adding them again changes nothing (a resumed run's tokenizer already holds them).
    assert_eq!(vocabulary::add_tokens(&mut tokenizer, &tokens).unwrap(), want);
    assert_eq!(vocabulary::rows_needed(&tokenizer), r["len"].as_u64().unwrap() as usize);

    // The masked-LM grown to the new vocabulary: old rows as they were, new rows within the spread
    // of transformers' draw (1e-9 times the covariance: ≈ 6e-7 here) of its rows, the bias zeros.
    let mut config = ModernBertConfig::from_file(&dir.join("config.json")).unwrap();
    let old_rows = config.vocab_size;
    assert_eq!(old_rows, r["old_rows"].as_u64().unwrap() as usize);
    config.vocab_size = r["vocab_size"].as_u64().unwrap() as usize;
    let weights = Weights::open(&[dir.join("model.safetensors")]).unwrap();
    let before = build(&ModernBertConfig::from_file(&dir.join("config.json")).unwrap(), Some(&weights), HeadKind::MaskedLm, &LoadOptions::default()).unwrap();
    let refused = build(&config, Some(&weights), HeadKind::MaskedLm, &LoadOptions::default());
    assert!(refused.is_err_and(|e| e.chain().contains("do not belong together")), "without grow_vocab a larger vocab_size is a mismatch");
    let opts = LoadOptions { grow_vocab: true, trainable: true, ..Default::default() };
    let grown = build(&config, Some(&weights), HeadKind::MaskedLm, &opts).unwrap();
    assert!(grown.initialised.is_empty(), "{:?}", grown.initialised);
    let emb = grown.tensor("model.embeddings.tok_embeddings.weight").unwrap().to_vec2::<f32>().unwrap();
    let old = before.tensor("model.embeddings.tok_embeddings.weight").unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(emb.len(), config.vocab_size);
    assert_eq!(emb[..old_rows], old[..]);
    let theirs: Vec<Vec<f64>> = r["new_rows"].as_array().unwrap().iter().map(|row| row.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()).collect();
    let far = emb[old_rows..].iter().flatten().zip(theirs.iter().flatten()).map(|(a, b)| (*a as f64 - b).abs()).fold(0f64, f64::max);
    let size = theirs.iter().flatten().map(|x| x.abs()).fold(0f64, f64::max);
    // Both draws spread sqrt(1e-9) times the old rows' standard deviation around the same mean;
    // two draws differ by a few times that (the old rows' spread is 0.16 here: 8 × 5e-6 = 4e-5).
    let spread = (0..config.hidden_size)
        .map(|d| {
            let col: Vec<f64> = old.iter().map(|r| r[d] as f64).collect();
            let m = col.iter().sum::<f64>() / col.len() as f64;
            (col.iter().map(|x| (x - m).powi(2)).sum::<f64>() / col.len() as f64).sqrt()
        })
        .fold(0f64, f64::max)
        * 1e-9f64.sqrt();
    assert!(far < 8.0 * spread && size > 1e-3, "new rows {far} from transformers' (spread {spread}; they reach {size})");
    let bias = grown.tensor("decoder.bias").unwrap().to_vec1::<f32>().unwrap();
    let their_bias: Vec<f32> = r["new_bias"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    assert_eq!(bias[old_rows..], their_bias[..]);
    assert_eq!(bias[..old_rows], before.tensor("decoder.bias").unwrap().to_vec1::<f32>().unwrap()[..]);
    // The grown rows are trainable parameters like the others.
    assert_eq!(grown.params.iter().find(|(n, _)| n == "model.embeddings.tok_embeddings.weight").unwrap().1.as_tensor().dims(), &[config.vocab_size, config.hidden_size]);
}

fn corpus(dir: &Path) -> std::path::PathBuf {
    let words = ["a zebra ate quokka stew", "the zebra slept", "quokka stew again and again", "nothing new in this line", "zebra zebra"];
    let text: String = (0..80).map(|i| format!("{} {}\n", words[i % words.len()], words[(i * 3 + 1) % words.len()])).collect();
    write(dir, "train.txt", &text)
}

fn mlm_config(dir: &Path, out: &Path, model: &str) -> std::path::PathBuf {
    let train = corpus(dir);
    write(dir, "tokens.txt", "zebra\n\n  quokka stew  \nzebra\n");
    write(
        dir,
        "mlm.toml",
        &format!(
            "task = \"mlm\"\n[model]\nname = \"{model}\"\nadd_tokens = [\"COVID-19\"]\nadd_tokens_file = \"{}\"\n\
             [data]\ntrain = \"{}\"\nmax_length = 24\n[training]\nbatch_size = 8\nepochs = 2\nlearning_rate = 1e-3\nsave_steps = 3\nsave_total_limit = 100\n\
             [output]\ndir = \"{}\"\n",
            dir.join("tokens.txt").display(),
            train.display(),
            out.display()
        ),
    )
}

fn safetensors_shapes(path: &Path) -> std::collections::HashMap<String, Vec<usize>> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors().into_iter().map(|(n, v)| (n, v.shape().to_vec())).collect()
}

#[test]
fn a_run_that_adds_tokens_exports_them_resumes_exactly_and_fine_tunes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let full = tmp.path().join("full");
    let cfg = mlm_config(&tmp.path().join("cfg"), &full, &fixtures().join("tiny-mlm").display().to_string());
    let (_, stderr) = ok(modernft(&["train", "--quiet", "--config", cfg.to_str().unwrap()]).timed_output());
    assert!(stderr.contains("\"COVID-19\" 320, \"zebra\" 321, \"quokka stew\" 322") && stderr.contains("from 320 to 323 rows"), "{stderr}");
    // The run folder records the tokens themselves (the file may change or move).
    let recorded = modernft::config::RunConfig::from_file(&full.join("config.toml")).unwrap();
    assert_eq!(recorded.model.add_tokens, ["COVID-19", "zebra", "quokka stew"]);
    assert!(recorded.model.add_tokens_file.is_none());
    // The export: the extended tokenizer, vocab_size, the grown embeddings and decoder bias.
    let model = full.join("model");
    let config: Value = serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["vocab_size"], 323);
    let shapes = safetensors_shapes(&model.join("model.safetensors"));
    assert_eq!(shapes["model.embeddings.tok_embeddings.weight"], [323, 32]);
    assert_eq!(shapes["decoder.bias"], [323]);
    let tokenizer = modernft::model::load_tokenizer(&model.join("tokenizer.json")).unwrap();
    assert_eq!(tokenizer.encode("zebra quokka stew COVID-19", false).unwrap().get_ids(), [321, 225, 322, 225, 320]);
    // Every checkpoint carries the tokenizer too, and resuming (mid-epoch 0, at the boundary into
    // epoch 1) neither adds nor grows anything: the same weights, byte for byte.
    let want = std::fs::read(model.join("model.safetensors")).unwrap();
    for step in [3, 6] {
        let ck = full.join(format!("checkpoint-{step}"));
        assert_eq!(modernft::model::load_tokenizer(&ck.join("tokenizer.json")).unwrap().token_to_id("quokka stew"), Some(322));
        let run = tmp.path().join(format!("from-{step}"));
        rewind(&full, &run, step);
        ok(modernft(&["train", "--quiet", "--resume", run.to_str().unwrap()]).timed_output());
        assert!(std::fs::read(run.join("model/model.safetensors")).unwrap() == want, "resumed from checkpoint-{step}: other weights");
    }
    // A resumed run whose config lists a token its tokenizer lacks is refused, naming it.
    let changed = tmp.path().join("changed");
    rewind(&full, &changed, 3);
    let toml = std::fs::read_to_string(changed.join("config.toml")).unwrap().replace("\"quokka stew\",", "\"quokka stew\",\n    \"wombat\",");
    std::fs::write(changed.join("config.toml"), toml).unwrap();
    let e = modernft(&["train", "--quiet", "--resume", changed.to_str().unwrap()]).timed_output();
    let stderr = String::from_utf8_lossy(&e.stderr);
    assert!(!e.status.success() && stderr.contains("wombat") && stderr.contains("resumes with the tokens it started with"), "{stderr}");
    // A classifier from the adapted model keeps the ids (its tokenizer holds the tokens) and
    // grows nothing; adding one more token grows 323 → 324.
    let labelled: String = (0..32).map(|i| format!("{}\n", serde_json::json!({"text": if i % 2 == 0 { "a zebra ate" } else { "quokka stew" }, "label": i % 2}))).collect();
    let labelled = write(tmp.path(), "labelled.jsonl", &labelled);
    let clf_cfg = |extra: &str, out: &str| {
        write(
            tmp.path(),
            &format!("{out}.toml"),
            &format!(
                "[model]\nname = \"{}\"\n{extra}\n[data]\ntrain = \"{}\"\nmax_length = 16\n[training]\nbatch_size = 16\nepochs = 1\neval_strategy = \"no\"\n[output]\ndir = \"{}\"\n",
                model.display(),
                labelled.display(),
                tmp.path().join(out).display()
            ),
        )
    };
    let (_, stderr) = ok(modernft(&["train", "--quiet", "--config", clf_cfg("", "clf").to_str().unwrap()]).timed_output());
    assert!(!stderr.contains("grow"), "{stderr}");
    let clf_model = tmp.path().join("clf/model");
    assert_eq!(modernft::model::load_tokenizer(&clf_model.join("tokenizer.json")).unwrap().token_to_id("zebra"), Some(321));
    assert_eq!(safetensors_shapes(&clf_model.join("model.safetensors"))["model.embeddings.tok_embeddings.weight"], [323, 32]);
    let (_, stderr) = ok(modernft(&["train", "--quiet", "--config", clf_cfg("add_tokens = [\"zebra\", \"wombat\"]", "clf2").to_str().unwrap()]).timed_output());
    assert!(stderr.contains("\"wombat\" 323") && stderr.contains("\"zebra\" 321") && stderr.contains("from 323 to 324 rows"), "{stderr}");
    let clf2 = tmp.path().join("clf2/model");
    assert_eq!(safetensors_shapes(&clf2.join("model.safetensors"))["model.embeddings.tok_embeddings.weight"], [324, 32]);
    // predict on the grown classifier reads the new token as one id.
    let (out, _) = ok(modernft(&["predict", "--model", clf2.to_str().unwrap(), "--logits"]).arg("--input").arg(write(tmp.path(), "in.txt", "a wombat ate\n")).timed_output());
    assert!(out.contains("logits"), "{out}");
}

#[test]
fn bad_token_lists_are_refused_naming_the_key_or_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let base = |model: &str| {
        format!(
            "[model]\nname = \"{}\"\n{model}\n[data]\ntrain = \"examples/quickstart/train.jsonl\"\n[output]\ndir = \"{}\"\n",
            fixtures().join("tiny-v5").display(),
            dir.join("out").display()
        )
    };
    write(dir, "empty.txt", "\n  \n");
    let cases = [
        ("add_tokens = [\"ok\", \" \"]", vec!["add_tokens[1]", "empty"]),
        (&*format!("add_tokens_file = \"{}\"", dir.join("missing.txt").display()), vec!["add_tokens_file", "missing.txt"]),
        (&*format!("add_tokens_file = \"{}\"", dir.join("empty.txt").display()), vec!["empty.txt", "no tokens"]),
        ("add_tokens = \"zebra\"", vec!["add_tokens"]),
    ];
    for (model, want) in cases {
        let cfg = write(dir, "bad.toml", &base(model));
        let e = modernft(&["train", "--quiet", "--config", cfg.to_str().unwrap()]).timed_output();
        let stderr = String::from_utf8_lossy(&e.stderr);
        assert!(!e.status.success() && want.iter().all(|w| stderr.contains(w)), "{model}: {stderr}");
        assert!(!dir.join("out").exists(), "{model}: the run folder was created");
    }
}

#[test]
fn data_reports_rows_per_added_token_and_the_change_in_length() {
    let json = |extra: &[&str]| -> Vec<Value> {
        let mut args = vec!["data", "--config", "configs/quickstart.toml", "--json"];
        args.extend(extra);
        ok(modernft(&args).timed_output()).0.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let plain = json(&[]);
    assert!(plain.iter().all(|s| s.get("added_tokens").is_none()));
    let with = json(&["--add-token", "the acting", "--add-token", "zzzq"]);
    let rows_with = |file: &str, needle: &str| {
        std::fs::read_to_string(common::repo_root().join(file)).unwrap().lines().filter(|l| serde_json::from_str::<Value>(l).unwrap()["text"].as_str().unwrap().contains(needle)).count()
    };
    for (split, file) in [("train", "examples/quickstart/train.jsonl"), ("validation", "examples/quickstart/dev.jsonl")] {
        let s = with.iter().find(|s| s["split"] == split).unwrap();
        let a = &s["added_tokens"];
        let want = rows_with(file, "the acting");
        assert!(want > 10, "{want}");
        assert_eq!(a["rows_with"][0], serde_json::json!(["the acting", 512, want]), "{split}: {a}");
        assert_eq!(a["rows_with"][1], serde_json::json!(["zzzq", 513, 0]), "{split}: {a}");
        // Without them: the plain report's tokens (no row is cut at 64 here); with them, the
        // report's own figures.
        let p = plain.iter().find(|p| p["split"] == split).unwrap();
        assert_eq!(p["truncated"], 0);
        assert_eq!(a["tokens_without"], p["tokens"], "{split}");
        assert_eq!(a["tokens_with"], s["tokens"], "{split}");
        assert_ne!(a["tokens_with"], a["tokens_without"], "{split}");
    }
    let (table, _) = ok(modernft(&["data", "--config", "configs/quickstart.toml", "--add-token", "the acting"]).timed_output());
    assert!(table.contains("added tokens: rows that contain each") && table.contains("\"the acting\"") && table.contains("without → with"), "{table}");
}
