//! `modernft eval`: scores a fine-tuned model on a labelled file, streaming it in chunks (memory is
//! bounded by the chunk, whatever the file's size). Labels are matched through the checkpoint's own
//! `label2id`; a label it does not know is an error that names it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::data::dataset::tokenize;
use crate::data::read::{read_table_chunks, Columns, ReadOptions};
use crate::data::{LabelMap, TargetKind};
use crate::error::Result;
use crate::inference::classifier::Classifier;
use crate::inference::Budget;
use crate::tasks::{Evaluation, Scorer};

pub struct EvalOptions {
    pub files: Vec<PathBuf>,
    pub read: ReadOptions,
    pub columns: Columns,
    /// Names for the labels as the files store them (`label_names`).
    pub label_names: Option<crate::data::LabelNames>,
    /// Gold labels the model does not know are scored as errors instead of refused.
    pub allow_unknown_labels: bool,
    /// Rows (and optionally padded tokens) per forward pass.
    pub budget: Budget,
    pub threshold: f32,
    pub scheme: crate::tasks::EntityScheme,
}

/// Rows per chunk read from the file.
const CHUNK_ROWS: usize = 4096;

/// Scores `opts.files` with `c`: the evaluation and its label names (the model's, then any gold
/// labels it does not know, with `allow_unknown_labels`).
pub fn evaluate_files(c: &Classifier, opts: &EvalOptions) -> Result<(Evaluation, Vec<String>)> {
    let known = LabelMap::new(c.config.id2label.clone(), true)?;
    let mut labels = known.clone();
    let mut unknown: Vec<String> = Vec::new();
    let mut unknown_rows = 0usize;
    let mut scorer = Scorer::new(c.kind, c.config.num_labels(), opts.threshold).with_tags(&c.config.id2label, opts.scheme);
    let (mut rows, mut truncated) = (0, 0);
    let mut renaming = None;
    for file in &opts.files {
        read_table_chunks(file, &opts.read, &opts.columns, CHUNK_ROWS, &mut |mut chunk| {
            if let Some(names) = &opts.label_names {
                if renaming.is_none() {
                    renaming = Some(names.resolve(chunk.labels.as_deref().unwrap_or(&[]))?);
                }
                renaming.as_ref().expect("resolved").apply(&mut chunk)?;
            }
            if c.kind != crate::data::TargetKind::Regression {
                let new = labels.unknown_in(&chunk);
                if let (Some((row, name)), false) = (new.first(), opts.allow_unknown_labels) {
                    crate::bail!(
                        "{}, row {}: label `{name}` is not one the model knows ({}); pass --allow-unknown-labels to score such rows as errors (as scikit-learn does), or fix the row",
                        chunk.source,
                        chunk.first_row + row + 1,
                        known.names().join(", ")
                    );
                }
                if !new.is_empty() {
                    let names: Vec<String> = new.into_iter().map(|(_, n)| n).collect();
                    labels = labels.extended(&names)?;
                    scorer.add_classes(&names);
                    unknown.extend(names);
                }
                if !unknown.is_empty() {
                    unknown_rows += known.unknown_rows(&chunk);
                }
            }
            let targets = labels.encode(&chunk, c.kind)?;
            let ds = tokenize(&chunk, &c.encoder, "eval", Some(targets))?;
            (rows, truncated) = (rows + ds.len(), truncated + ds.truncated);
            crate::inference::score(&mut scorer, &c.model, &ds, opts.budget)
        })?;
    }
    if let Some(note) = c.encoder.truncation_note(truncated, rows, "rows", "see --max-length; --no-truncate refuses them") {
        eprintln!("{note}");
    }
    if !unknown.is_empty() {
        eprintln!(
            "note: {unknown_rows} row(s) have gold labels the model does not know ({}): scored as errors (--allow-unknown-labels), each its own class in the averages; the loss is over the other rows",
            unknown.join(", ")
        );
    }
    Ok((scorer.finish()?, labels.names().to_vec()))
}

/// The human-readable report.
pub fn render(ev: &Evaluation, labels: &[String], model: &str, data: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "model  {model}\ndata   {data} ({} rows)\n", ev.rows);
    let _ = writeln!(s, "{:<12} {:.4}", "loss", ev.loss);
    let w = labels.iter().map(|l| l.chars().count()).max().unwrap_or(5).clamp(9, 30);
    if let Some(c) = &ev.classification {
        let _ = writeln!(s, "{:<12} {:.4}\n{:<12} {:.4}\n", "accuracy", c.accuracy, "mcc", c.mcc);
        let _ = writeln!(s, "{:<w$}  {:>9}  {:>9}  {:>9}  {:>8}", "", "precision", "recall", "f1", "support");
        for (name, pc) in labels.iter().zip(&c.per_class) {
            let _ = writeln!(s, "{:<w$}  {:>9.4}  {:>9.4}  {:>9.4}  {:>8}", name, pc.precision, pc.recall, pc.f1, pc.support);
        }
        let _ = writeln!(s, "{:<w$}  {:>9.4}  {:>9.4}  {:>9.4}  {:>8}", "macro avg", c.precision_macro, c.recall_macro, c.f1_macro, ev.rows);
        let _ = writeln!(s, "{:<w$}  {:>9.4}  {:>9.4}  {:>9.4}  {:>8}", "micro avg", c.precision_micro, c.recall_micro, c.f1_micro, ev.rows);
        let _ = writeln!(s, "\nconfusion matrix (rows: true, columns: predicted)");
        let cw = labels.iter().map(|l| l.chars().count()).max().unwrap_or(3).max(6);
        let _ = write!(s, "{:<w$}", "");
        for l in labels {
            let _ = write!(s, "  {l:>cw$}");
        }
        let _ = writeln!(s);
        for (l, row) in labels.iter().zip(&c.confusion) {
            let _ = write!(s, "{l:<w$}");
            for v in row {
                let _ = write!(s, "  {v:>cw$}");
            }
            let _ = writeln!(s);
        }
    }
    if let Some(m) = &ev.multi_label {
        let _ = writeln!(s, "{:<12} {:.4}\n{:<12} {:.4}\n{:<12} {:.4}", "subset acc", m.subset_accuracy, "f1 micro", m.f1_micro, "f1 macro", m.f1_macro);
        for (name, pc) in labels.iter().zip(&m.per_class) {
            let _ = writeln!(s, "  {:<w$}  p {:.4}  r {:.4}  f1 {:.4}  n {}", name, pc.precision, pc.recall, pc.f1, pc.support);
        }
    }
    if let Some(m) = &ev.entities {
        let _ = writeln!(s, "{:<12} {:.4}\n{:<12} {:.4}\n{:<12} {:.4}\n{:<12} {:.4}  (per word)\n", "precision", m.precision, "recall", m.recall, "f1", m.f1, "accuracy", m.accuracy);
        let tw = m.per_type.keys().map(|k| k.chars().count()).max().unwrap_or(6).max(10);
        let _ = writeln!(s, "{:<tw$}  {:>9}  {:>9}  {:>9}  {:>8}", "entity", "precision", "recall", "f1", "support");
        for (k, pc) in &m.per_type {
            let _ = writeln!(s, "{:<tw$}  {:>9.4}  {:>9.4}  {:>9.4}  {:>8}", k, pc.precision, pc.recall, pc.f1, pc.support);
        }
    }
    if let Some(r) = &ev.regression {
        let _ = writeln!(s, "{:<12} {:.4}\n{:<12} {:.4}\n{:<12} {:.4}\n{:<12} {:.4}", "mse", r.mse, "mae", r.mae, "pearson", r.pearson, "spearman", r.spearman);
    }
    s
}

/// The report for scripts.
pub fn to_json(ev: &Evaluation, labels: &[String], model: &str, data: &str, kind: TargetKind) -> Value {
    let mut v = json!({"model": model, "data": data, "rows": ev.rows, "task": crate::tasks::task_name(kind)});
    for (k, m) in &ev.metrics {
        v[k] = json!(m);
    }
    if let Some(c) = &ev.classification {
        v["labels"] = json!(labels);
        v["per_class"] = json!(labels.iter().zip(&c.per_class).map(|(l, p)| (l.clone(), json!(p))).collect::<serde_json::Map<_, _>>());
        v["precision_micro"] = json!(c.precision_micro);
        v["recall_micro"] = json!(c.recall_micro);
        v["confusion"] = json!(c.confusion);
    }
    if let Some(m) = &ev.entities {
        v["per_type"] = json!(m.per_type);
    }
    if let Some(m) = &ev.multi_label {
        v["labels"] = json!(labels);
        v["per_class"] = json!(labels.iter().zip(&m.per_class).map(|(l, p)| (l.clone(), json!(p))).collect::<serde_json::Map<_, _>>());
    }
    v
}

pub fn write_plot(ev: &Evaluation, labels: &[String], dir: &Path) -> Result<Option<PathBuf>> {
    let Some(c) = &ev.classification else { return Ok(None) };
    std::fs::create_dir_all(dir)?;
    let path = dir.join("confusion_matrix.svg");
    std::fs::write(&path, crate::report::confusion_matrix(&c.confusion, labels, "confusion matrix"))?;
    Ok(Some(path))
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Scores of an embedding model (a folder without a classification head).
pub struct EmbeddingEval {
    pub kind: &'static str,
    /// Why this evaluation was chosen, in words for the output.
    pub why: String,
    pub rows: usize,
    pub metrics: std::collections::BTreeMap<String, f64>,
}

fn read_jsonl(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).map_err(|e| crate::err!("cannot read {}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| crate::err!("{}, line {}: malformed JSON ({e})", path.display(), i + 1)))
        .collect()
}

/// Retrieval over a corpus: MRR@10, NDCG@10, Recall@1/10.
pub fn retrieval_files(e: &crate::inference::embedder::Embedder, corpus: &Path, queries: &Path, batch: Budget) -> Result<EmbeddingEval> {
    let docs = read_jsonl(corpus)?;
    let mut ids = std::collections::HashMap::new();
    let mut doc_texts = Vec::new();
    for (i, d) in docs.iter().enumerate() {
        let text = d["text"].as_str().ok_or_else(|| crate::err!("{}, row {}: needs a string `text`", corpus.display(), i + 1))?;
        let id = match &d["id"] {
            Value::Null => crate::bail!("{}, row {}: needs an `id`", corpus.display(), i + 1),
            v => v.to_string(),
        };
        ids.insert(id, i);
        doc_texts.push(text.to_string());
    }
    let qs = read_jsonl(queries)?;
    let mut q_texts = Vec::new();
    let mut relevant = Vec::new();
    for (i, q) in qs.iter().enumerate() {
        let at = || format!("{}, row {}", queries.display(), i + 1);
        q_texts.push(q["text"].as_str().ok_or_else(|| crate::err!("{}: needs a string `text`", at()))?.to_string());
        let rel = q["relevant"].as_array().ok_or_else(|| crate::err!("{}: needs `relevant`: a list of corpus ids", at()))?;
        relevant.push(
            rel.iter()
                .map(|r| ids.get(&r.to_string()).copied().ok_or_else(|| crate::err!("{}: relevant id {r} is not in {}", at(), corpus.display())))
                .collect::<Result<Vec<_>>>()?,
        );
    }
    let (dv, cut_docs) = e.embed(&refs(&doc_texts), batch, &|i| format!("{}, row {}", corpus.display(), i + 1))?;
    let (qv, cut_queries) = e.embed(&refs(&q_texts), batch, &|i| format!("{}, row {}", queries.display(), i + 1))?;
    for (cut, of, what) in [(cut_docs, doc_texts.len(), "corpus texts"), (cut_queries, q_texts.len(), "queries")] {
        if let Some(note) = e.truncation_note(cut, of, what) {
            eprintln!("{note}");
        }
    }
    let why = format!("queries {} against corpus {}", queries.display(), corpus.display());
    Ok(EmbeddingEval { kind: "retrieval", why, rows: q_texts.len(), metrics: crate::tasks::embedding::retrieval(&qv, &dv, &relevant) })
}

/// How pair data is scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairEvaluation {
    /// STS when the pairs have a score column, retrieval otherwise.
    Auto,
    Sts,
    Retrieval,
}

pub struct PairScoring {
    pub evaluation: PairEvaluation,
    /// The score column was named (a flag or a config key): it must exist. Otherwise the default
    /// `label` may be absent, and `score` (as STS-B names it) is tried next.
    pub score_column_named: bool,
}

/// Pairs: STS (Spearman/Pearson of cosine vs scores), or retrieval with each pair's second text as
/// the one relevant document; [`PairScoring`] says which, and the result says why.
pub fn pair_files(e: &crate::inference::embedder::Embedder, files: &[PathBuf], read: &ReadOptions, cols: &Columns, batch: Budget, how: &PairScoring) -> Result<EmbeddingEval> {
    let named = cols.label.clone().unwrap_or_else(|| "label".to_string());
    // The score column: the named one, else the first of `label`, `score` the first file has.
    let candidates: Vec<String> = match how.evaluation {
        PairEvaluation::Retrieval => Vec::new(),
        _ if how.score_column_named => vec![named.clone()],
        _ => vec![named.clone(), "score".to_string()],
    };
    let mut score_column = None;
    let mut last_missing = None;
    if let Some(first) = files.first() {
        for c in &candidates {
            match crate::data::read::read_table_with(first, read, &Columns { label: Some(c.clone()), ..cols.clone() }) {
                Ok(_) => {
                    score_column = Some(c.clone());
                    break;
                }
                Err(err) if err.kind() == Some(&crate::error::Kind::MissingColumn(c.clone())) => last_missing = Some(err),
                Err(err) => return Err(err),
            }
        }
    }
    let why = match (how.evaluation, &score_column) {
        (PairEvaluation::Retrieval, _) => "asked with --evaluation retrieval; each pair's second text is the relevant document for its first".to_string(),
        (_, Some(c)) => format!("the pairs have scores in column `{c}`"),
        (PairEvaluation::Sts, None) | (PairEvaluation::Auto, None) if how.score_column_named || how.evaluation == PairEvaluation::Sts => {
            let err = last_missing.unwrap_or_else(|| crate::err!("no data files"));
            return Err(err.wrap(format!(
                "STS scores pairs against their scores: name the score column with --label-column{}",
                if how.evaluation == PairEvaluation::Auto { ", or pass --evaluation retrieval" } else { "" }
            )));
        }
        _ => format!(
            "no score column (looked for {}; name one with --label-column); each pair's second text is the relevant document for its first",
            candidates.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(" and ")
        ),
    };
    let cols = Columns { label: score_column.clone(), ..cols.clone() };
    let (mut a, mut b, mut scores) = (Vec::new(), Vec::new(), Vec::new());
    for f in files {
        let table = crate::data::read::read_table_with(f, read, &cols)?;
        let pairs = table.pairs.clone().ok_or_else(|| crate::err!("{}: embedding evaluation needs pairs: pass --text-pair-column", f.display()))?;
        a.extend(table.texts.clone());
        b.extend(pairs);
        if let Some(labels) = &table.labels {
            for (i, l) in labels.iter().enumerate() {
                match l {
                    crate::data::RawLabel::Int(v) => scores.push(*v as f32),
                    crate::data::RawLabel::Float(v) => scores.push(*v as f32),
                    other => crate::bail!("{}, row {}: a pair score must be a number, found `{}`", f.display(), i + 1, other.name()),
                }
            }
        }
    }
    // Rows are numbered across the files, in order.
    let (av, cut_a) = e.embed(&refs(&a), batch, &|i| format!("pair {} (first text)", i + 1))?;
    let (bv, cut_b) = e.embed(&refs(&b), batch, &|i| format!("pair {} (second text)", i + 1))?;
    if let Some(note) = e.truncation_note(cut_a + cut_b, a.len() + b.len(), "texts") {
        eprintln!("{note}");
    }
    Ok(if score_column.is_some() {
        EmbeddingEval { kind: "sts", why, rows: a.len(), metrics: crate::tasks::embedding::sts(&av, &bv, &scores) }
    } else {
        let relevant: Vec<Vec<usize>> = (0..a.len()).map(|i| vec![i]).collect();
        EmbeddingEval { kind: "retrieval", why, rows: a.len(), metrics: crate::tasks::embedding::retrieval(&av, &bv, &relevant) }
    })
}
