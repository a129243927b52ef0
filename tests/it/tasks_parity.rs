//! The other tasks equal their Python references (scripts/make_task_reference.py):
//! token classification vs `ModernBertForTokenClassification` (alignment, logits, loss), entity scores
//! vs seqeval, and MNRL / CoSENT / Matryoshka losses vs sentence-transformers.

use crate::common;

use candle_core::{DType, Device, IndexOp};
use common::{fixtures, max_abs_diff};
use modernft::data::dataset::tokenize;
use modernft::data::{read_table, Columns, LabelMap, TargetKind, TextEncoder};
use modernft::tasks::embedding::{embedding_loss, embedding_loss_with, EmbeddingLoss, MnrlOptions};
use modernft::train::step::pooled_rows as encode_rows;
use modernft::tasks::tokens::{entity_scores, EntityScheme};
use modernft::model::{load_pretrained, HeadKind, LoadOptions, ModelFiles, Mode, Pooling};
use serde_json::Value;

#[test]
fn token_classification_matches_transformers() {
    let dir = fixtures().join("tiny-token");
    let files = ModelFiles::from_dir(&dir).unwrap();
    let (config, loaded) = load_pretrained(&files, HeadKind::Token, &LoadOptions::default()).unwrap();
    assert!(loaded.initialised.is_empty());
    assert_eq!(modernft::tasks::kind_of(&config), TargetKind::Tags);
    let reference = candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu).unwrap();

    // Our alignment of the same sentences gives transformers' input ids and -100 pattern.
    let tmp = tempfile::tempdir().unwrap();
    let sentences: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(dir.join("sentences.json")).unwrap()).unwrap();
    let jsonl: String = sentences.iter().map(|s| format!("{s}\n")).collect();
    std::fs::write(tmp.path().join("s.jsonl"), jsonl).unwrap();
    let cols = Columns { text: "tokens".into(), words: Some("tokens".into()), label: Some("tags".into()), ..Default::default() };
    let table = read_table(&tmp.path().join("s.jsonl"), None, &cols).unwrap();
    let labels = LabelMap::new(config.id2label.clone(), true).unwrap();
    let targets = labels.encode(&table, TargetKind::Tags).unwrap();
    let enc = TextEncoder::from_file(files.tokenizer.as_ref().unwrap(), 128).unwrap();
    let ds = tokenize(&table, &enc, "ref", Some(targets)).unwrap();
    let ids: Vec<Vec<i64>> = reference["input_ids"].to_vec2().unwrap();
    let want_labels: Vec<Vec<i64>> = reference["labels"].to_vec2().unwrap();
    let starts = ds.word_starts.as_ref().unwrap();
    let modernft::data::Targets::Tags(tags) = ds.targets.as_ref().unwrap() else { panic!() };
    for r in 0..ds.len() {
        let ours: Vec<i64> = ds.tokens.row(r).iter().map(|&t| t as i64).collect();
        assert_eq!(ours, ids[r][..ours.len()].to_vec(), "row {r} ids");
        let mut lab = vec![-100i64; ours.len()];
        for (w, &t) in starts[r].iter().enumerate() {
            lab[t as usize] = tags[r][w] as i64;
        }
        assert_eq!(lab, want_labels[r][..ours.len()].to_vec(), "row {r} first-subword labels");
    }

    // Logits and loss on the reference batch.
    let ids = reference["input_ids"].to_dtype(DType::U32).unwrap();
    let mask = reference["attention_mask"].to_dtype(DType::U32).unwrap();
    let logits = loaded.model.forward(&ids, Some(&mask), &Mode::eval()).unwrap().logits.unwrap();
    for r in 0..3 {
        let n = ds.tokens.row_len(r);
        let d = max_abs_diff(&logits.i((r, 0..n)).unwrap(), &reference["logits"].i((r, 0..n)).unwrap());
        assert!(d <= 1e-5, "row {r}: logits differ by {d}");
    }
    let loss = modernft::tasks::token_loss(&logits, &ds, &[0, 1, 2]).unwrap();
    let d = max_abs_diff(&loss.reshape(1).unwrap(), &reference["loss"]);
    assert!(d <= 1e-5, "loss differs by {d}");
}

fn as_refs(v: &[Vec<String>]) -> Vec<Vec<&str>> {
    v.iter().map(|s| s.iter().map(String::as_str).collect()).collect()
}

#[test]
fn entity_scores_equal_seqeval() {
    let r: Value = serde_json::from_str(&std::fs::read_to_string(fixtures().join("tasks/seqeval.json")).unwrap()).unwrap();
    let seqs = |k: &str| -> Vec<Vec<String>> {
        r[k].as_array().unwrap().iter().map(|s| s.as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect()).collect()
    };
    let (truth, pred) = (seqs("truth"), seqs("pred"));
    for (mode, scheme) in [("default", EntityScheme::Default), ("strict", EntityScheme::StrictIob2)] {
        let m = entity_scores(&as_refs(&truth), &as_refs(&pred), scheme);
        let rep = &r[mode];
        let micro = &rep["micro avg"];
        for (ours, key) in [(m.precision, "precision"), (m.recall, "recall"), (m.f1, "f1-score")] {
            assert!((ours - micro[key].as_f64().unwrap()).abs() < 1e-12, "{mode} micro {key}: {ours} vs {}", micro[key]);
        }
        for (kind, scores) in &m.per_type {
            let theirs = &rep[kind.as_str()];
            assert!((scores.f1 - theirs["f1-score"].as_f64().unwrap()).abs() < 1e-12, "{mode} {kind} f1");
            assert_eq!(scores.support as f64, theirs["support"].as_f64().unwrap(), "{mode} {kind} support");
        }
    }
}

#[test]
fn contrastive_losses_equal_sentence_transformers() {
    let r: Value = serde_json::from_str(&std::fs::read_to_string(fixtures().join("tasks/losses.json")).unwrap()).unwrap();
    let files = ModelFiles::from_dir(&fixtures().join("tiny-v4")).unwrap();
    let (_, loaded) = load_pretrained(&files, HeadKind::None, &LoadOptions::default()).unwrap();
    let enc = TextEncoder::from_file(files.tokenizer.as_ref().unwrap(), 128).unwrap();
    // The columns packed into one forward, as the trainer encodes a batch, then split.
    let vectors = |keys: &[&str]| {
        let stores: Vec<modernft::data::TokenStore> = keys
            .iter()
            .map(|key| {
                let texts: Vec<&str> = r[key].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
                let mut store = modernft::data::TokenStore::new();
                enc.encode_batch(&texts).unwrap().iter().for_each(|e| store.push(&e.ids));
                store
            })
            .collect();
        let n = stores[0].len();
        assert!(stores.iter().all(|s| s.len() == n));
        let refs: Vec<&modernft::data::TokenStore> = stores.iter().collect();
        let pooled = encode_rows(&loaded.model, &refs, &(0..n).collect::<Vec<_>>(), Pooling::Mean, &Mode::eval()).unwrap();
        (0..keys.len()).map(|c| pooled.narrow(0, c * n, n).unwrap()).collect::<Vec<_>>()
    };
    let [a, p, n]: [candle_core::Tensor; 3] = vectors(&["anchors", "positives", "negatives"]).try_into().unwrap();
    let check = |ours: f32, key: &str| {
        let theirs = r[key].as_f64().unwrap();
        assert!((ours as f64 - theirs).abs() <= 1e-5 * theirs.abs().max(1.0), "{key}: {ours} vs sentence-transformers {theirs}");
    };
    check(embedding_loss(EmbeddingLoss::Mnrl, &[a.clone(), p.clone(), n.clone()], None, 20.0, None).unwrap().to_scalar().unwrap(), "mnrl_with_negatives");
    check(embedding_loss(EmbeddingLoss::Mnrl, &[a.clone(), p.clone()], None, 20.0, None).unwrap().to_scalar().unwrap(), "mnrl");
    check(embedding_loss(EmbeddingLoss::Mnrl, &[a.clone(), p.clone()], None, 20.0, Some(&[32, 16, 8])).unwrap().to_scalar().unwrap(), "matryoshka_mnrl_32_16_8");
    // MNRL's directions and partitions, with and without the hard negatives, each key written by
    // the script as "mnrl_<directions>_<partition>[_negatives]"; and the symmetric loss class.
    let directions = r["mnrl_directions"].as_object().unwrap();
    assert!(directions.len() >= 10, "the reference lists every combination");
    for (key, theirs) in directions {
        let theirs = theirs.as_f64().unwrap();
        let (opts, with_negatives) = if key == "mnrl_symmetric_loss_class" {
            (MnrlOptions { directions: vec!["query_to_doc".into(), "doc_to_query".into()], per_direction: true }, false)
        } else {
            let rest = key.strip_prefix("mnrl_").unwrap();
            let (rest, with_negatives) = rest.strip_suffix("_negatives").map_or((rest, false), |r| (r, true));
            let (dirs, partition) = rest.rsplit_once(if rest.ends_with("per_direction") { "_per_direction" } else { "_joint" }).map(|(d, _)| (d, rest.ends_with("per_direction"))).unwrap();
            (MnrlOptions { directions: dirs.split('+').map(str::to_string).collect(), per_direction: partition }, with_negatives)
        };
        let columns = if with_negatives { vec![a.clone(), p.clone(), n.clone()] } else { vec![a.clone(), p.clone()] };
        let ours: f32 = embedding_loss_with(EmbeddingLoss::Mnrl, &columns, None, 20.0, None, &opts).unwrap().to_scalar().unwrap();
        assert!((ours as f64 - theirs).abs() <= 1e-5 * theirs.abs().max(1.0), "{key}: {ours} vs sentence-transformers {theirs}");
    }
    let scores: Vec<f32> = r["scores"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    let [x, y]: [candle_core::Tensor; 2] = vectors(&["pairs_a", "pairs_b"]).try_into().unwrap();
    check(embedding_loss(EmbeddingLoss::Cosent, &[x, y], Some(&scores), 20.0, None).unwrap().to_scalar().unwrap(), "cosent");
}
