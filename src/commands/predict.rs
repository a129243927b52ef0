//! `modernft predict`: texts in, one JSON line per text out (labels and probabilities, a score, or
//! entities with character offsets), in input order, each with `row`, the input's 0-based index
//! (`--shard I/N`: one contiguous range of the rows).

use std::io::{BufRead, Write};

use candle_core::Device;
use serde_json::{json, Map, Value};

use crate::commands::embed::{read_inputs, shard_rows, InputFormat};
use crate::data::TargetKind;
use crate::error::Result;
pub use crate::inference::classifier::Classifier;
use crate::inference::fill_mask::FillMask;
use crate::inference::{Budget, Lengths};
use crate::tasks::{sigmoid, softmax};

pub struct PredictOptions {
    pub model: String,
    pub input_format: InputFormat,
    pub all_scores: bool,
    pub top_k: Option<usize>,
    pub logits: bool,
    pub threshold: f32,
    /// Rows (and optionally padded tokens) per forward pass.
    pub budget: Budget,
    pub lengths: Lengths,
    pub device: Device,
    /// Inputs from a data file (CSV, TSV, Parquet, lines, ...) instead of lines or JSONL.
    pub table: Option<TableInput>,
    /// Only this shard's rows (`--shard`).
    pub shard: Option<crate::commands::shard::Shard>,
}

/// A data file as predict's input: read as `[data]` reads files, its text (and pair) columns.
pub struct TableInput {
    pub path: std::path::PathBuf,
    pub read: crate::data::read::ReadOptions,
    pub columns: crate::data::Columns,
}

/// The inputs: the data file's rows, or `reader`'s lines or JSONL. Plain lines holding a TAB get
/// a note: they are one text each, not a pair.
fn inputs(opts: &PredictOptions, reader: impl BufRead, source: &str, notes: &mut dyn Write) -> Result<Vec<crate::commands::embed::Input>> {
    if let Some(t) = &opts.table {
        let table = crate::data::read::read_table_with(&t.path, &t.read, &t.columns)?;
        let pairs = table.pairs.clone();
        return Ok(table
            .texts
            .into_iter()
            .enumerate()
            .map(|(i, text)| crate::commands::embed::Input { text, pair: pairs.as_ref().map(|p| p[i].clone()), id: None, plain: false })
            .collect());
    }
    let inputs = read_inputs(reader, opts.input_format, source)?;
    let tabbed: Vec<usize> = inputs.iter().enumerate().filter(|(_, i)| i.plain && i.text.contains('\t')).map(|(n, _)| n + 1).collect();
    if let Some(first) = tabbed.first() {
        writeln!(
            notes,
            "note: {source}: {} input line(s) hold a TAB (the first: line {first}); a plain line is one text, not a pair: give pairs as JSONL {{\"text\": ..., \"text_pair\": ...}}, or a TSV file with --header false --columns text,text_pair --text-pair-column text_pair",
            tabbed.len()
        )?;
    }
    Ok(inputs)
}

/// An output record's first fields: the input's row, and its `id` when it had one.
fn record(row: usize, input: &crate::commands::embed::Input) -> Map<String, Value> {
    let mut obj = Map::new();
    obj.insert("row".into(), json!(row));
    if let Some(id) = &input.id {
        obj.insert("id".into(), id.clone());
    }
    obj
}

/// One output line for one input.
fn prediction(c: &Classifier, logits: &[f32], opts: &PredictOptions) -> Map<String, Value> {
    let names = &c.config.id2label;
    let mut obj = Map::new();
    let probs: Vec<f32> = match c.kind {
        TargetKind::Regression => {
            obj.insert("score".into(), json!(logits[0]));
            Vec::new()
        }
        TargetKind::MultiLabel => {
            let p: Vec<f32> = logits.iter().map(|&x| sigmoid(x)).collect();
            let on: Vec<&String> = names.iter().zip(&p).filter(|(_, &s)| s >= opts.threshold).map(|(n, _)| n).collect();
            obj.insert("labels".into(), json!(on));
            p
        }
        TargetKind::Tags => unreachable!("token classification predicts spans (see entities)"),
        TargetKind::Classification => {
            let p = softmax(logits);
            let best = crate::tasks::argmax(&p) as usize;
            obj.insert("label".into(), json!(names[best]));
            obj.insert("score".into(), json!(p[best]));
            p
        }
    };
    if !probs.is_empty() {
        if opts.all_scores {
            let all: Map<String, Value> = names.iter().zip(&probs).map(|(n, p)| (n.clone(), json!(p))).collect();
            obj.insert("scores".into(), Value::Object(all));
        }
        if let Some(k) = opts.top_k {
            let mut idx: Vec<usize> = (0..probs.len()).collect();
            idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
            let top: Vec<Value> = idx.iter().take(k).map(|&i| json!({"label": names[i], "score": probs[i]})).collect();
            obj.insert("top_k".into(), json!(top));
        }
    }
    if opts.logits {
        obj.insert("logits".into(), json!(logits));
    }
    obj
}

/// Named entities in raw text: each word (a run of tokens not separated by whitespace) takes the tag
/// of its first subword; words are chunked into entities as seqeval does. Offsets are in characters.
pub fn entities(names: &[String], text: &str, per_token_logits: &[Vec<f32>], offsets: &[(usize, usize)], special: &[bool], all_scores: bool) -> Value {
    // (byte start, byte end, tag, probability) per word.
    let mut words: Vec<(usize, usize, usize, f32)> = Vec::new();
    for ((l, &(start, end)), &sp) in per_token_logits.iter().zip(offsets).zip(special) {
        // Offsets come from the tokenizer: slice only where they are valid char boundaries of this
        // text (a token that maps to none, or to a byte inside a character, is skipped).
        let Some(piece) = text.get(start..end).filter(|_| !sp && end > start) else {
            continue;
        };
        // Byte-level BPE folds the space before a word into its first token: skip it.
        let lead = piece.len() - piece.trim_start().len();
        let start = start + lead;
        if start >= end {
            continue;
        }
        // A token starts a word when whitespace separates it from the previous token's text.
        let new_word = words.last().is_none_or(|w| lead > 0 || text.get(w.1..start).is_none_or(|gap| gap.chars().any(char::is_whitespace)));
        if new_word {
            let p = softmax(l);
            let tag = crate::tasks::argmax(&p) as usize;
            words.push((start, end, tag, p[tag]));
        } else if let Some(w) = words.last_mut() {
            w.1 = end;
        }
    }
    let name = |tag: usize| names.get(tag).map_or("O", String::as_str);
    let tags: Vec<&str> = words.iter().map(|w| name(w.2)).collect();
    let chars = |byte: usize| text[..byte].chars().count();
    let spans: Vec<Value> = crate::tasks::tokens::entities(&[tags.clone()], crate::tasks::EntityScheme::Default)
        .into_iter()
        .map(|e| {
            let (b0, b1) = (words[e.start].0, words[e.end].1);
            let score = words[e.start..=e.end].iter().map(|w| w.3).sum::<f32>() / (e.end - e.start + 1) as f32;
            json!({"entity": e.kind, "start": chars(b0), "end": chars(b1), "text": &text[b0..b1], "score": score})
        })
        .collect();
    let mut obj = json!({"entities": spans});
    if all_scores {
        obj["words"] = json!(words.iter().map(|w| json!({"word": &text[w.0..w.1], "tag": name(w.2), "score": w.3})).collect::<Vec<_>>());
    }
    obj
}

/// `modernft predict`: inputs from `reader`, one JSON line per input on `out`, in input order.
pub fn run(opts: &PredictOptions, reader: impl BufRead, source: &str, out: &mut dyn Write, notes: &mut dyn Write) -> Result<()> {
    if opts.top_k == Some(0) {
        crate::bail!("--top-k must be at least 1");
    }
    let files = crate::model::ModelFiles::resolve(&opts.model)?;
    if FillMask::is_masked_lm(&crate::model::ModernBertConfig::from_file(&files.config)?) {
        return fill_mask(opts, reader, source, out, notes);
    }
    let classifier = Classifier::load(&opts.model, &opts.lengths, &opts.device)?;
    let all = inputs(opts, reader, source, notes)?;
    let chunk_rows = opts.budget.rows.max(1) * 32;
    let (first, inputs) = shard_rows(&all, opts.shard.as_ref(), chunk_rows);
    let mut truncated = 0;
    for (c, chunk) in inputs.chunks(chunk_rows).enumerate() {
        let texts: Vec<&str> = chunk.iter().map(|i| i.text.as_str()).collect();
        let row0 = first + c * chunk_rows;
        let at = |i: usize| format!("{source}, input {}", row0 + i + 1);
        if classifier.kind == TargetKind::Tags {
            let (results, cut) = classifier.token_logits(&texts, opts.budget, &at)?;
            truncated += cut;
            for (i, (input, (logits, offsets, special))) in chunk.iter().zip(results).enumerate() {
                let mut obj = record(row0 + i, input);
                if let Value::Object(m) = entities(&classifier.config.id2label, &input.text, &logits, &offsets, &special, opts.all_scores) {
                    obj.extend(m);
                }
                writeln!(out, "{}", Value::Object(obj))?;
            }
            continue;
        }
        let with_pairs = chunk.iter().all(|i| i.pair.is_some()) && !chunk.is_empty();
        let pairs: Vec<&str> = chunk.iter().filter_map(|i| i.pair.as_deref()).collect();
        let (logits, cut) = classifier.logits(&texts, with_pairs.then_some(pairs.as_slice()), opts.budget, &at)?;
        truncated += cut;
        for (i, (input, l)) in chunk.iter().zip(logits).enumerate() {
            let mut obj = record(row0 + i, input);
            obj.extend(prediction(&classifier, &l, opts));
            writeln!(out, "{}", Value::Object(obj))?;
        }
    }
    out.flush()?;
    if let Some(note) = classifier.encoder.truncation_note(truncated, inputs.len(), "inputs", "see --max-length; --no-truncate refuses them") {
        writeln!(notes, "{note}")?;
    }
    Ok(())
}

/// A masked-LM model: per input `{"masks": [[{"token", "token_str", "score", "sequence"}, ...], ...]}`,
/// one list per mask token in the text (in text order), the `--top-k` most likely tokens each
/// (default 5, as `pipeline("fill-mask")`).
fn fill_mask(opts: &PredictOptions, reader: impl BufRead, source: &str, out: &mut dyn Write, notes: &mut dyn Write) -> Result<()> {
    let model = FillMask::load(&opts.model, &opts.lengths, &opts.device)?;
    let all = inputs(opts, reader, source, notes)?;
    let k = opts.top_k.unwrap_or(5);
    let chunk_rows = opts.budget.rows.max(1) * 32;
    let (first, inputs) = shard_rows(&all, opts.shard.as_ref(), chunk_rows);
    let mut truncated = 0;
    for (c, chunk) in inputs.chunks(chunk_rows).enumerate() {
        let texts: Vec<&str> = chunk.iter().map(|i| i.text.as_str()).collect();
        let row0 = first + c * chunk_rows;
        let at = |i: usize| format!("{source}, input {}", row0 + i + 1);
        let (fills, cut) = model.fill(&texts, k, opts.budget, &at)?;
        truncated += cut;
        for (i, (input, masks)) in chunk.iter().zip(fills).enumerate() {
            let mut obj = record(row0 + i, input);
            let masks: Vec<Value> = masks
                .iter()
                .map(|m| json!(m.iter().map(|f| json!({"token": f.token, "token_str": f.token_str, "score": f.score, "sequence": f.sequence})).collect::<Vec<_>>()))
                .collect();
            obj.insert("masks".into(), json!(masks));
            writeln!(out, "{}", Value::Object(obj))?;
        }
    }
    out.flush()?;
    if let Some(note) = model.encoder.truncation_note(truncated, inputs.len(), "inputs", "see --max-length; --no-truncate refuses them") {
        writeln!(notes, "{note}")?;
    }
    Ok(())
}
