//! Token classification (NER): per token logits; each word's tag sits on its first subword, every
//! other token is ignored in the loss (transformers' -100); words are chunked into entities and
//! scored as seqeval does.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};
use serde::Serialize;

use crate::data::{Dataset, Targets};
use crate::error::Result;
use crate::tasks::classification::{f1, ratio, ClassScores};
use crate::tasks::loss::cross_entropy;

/// Cross-entropy over the tagged tokens of a batch: `logits` [b, seq, tags]; each row's first
/// subwords carry their word's tag, every other token is ignored (transformers' -100).
/// The tagged words of `rows` (what [`token_loss`] averages over).
pub fn tagged_words(ds: &Dataset, rows: &[usize]) -> usize {
    ds.word_starts.as_ref().map_or(0, |starts| rows.iter().map(|&r| starts[r].len()).sum())
}

pub fn token_loss(logits: &Tensor, ds: &Dataset, rows: &[usize]) -> Result<Tensor> {
    let (b, s, c) = logits.dims3()?;
    let Some(Targets::Tags(tags)) = &ds.targets else { crate::bail!("{}: no tags", ds.source) };
    let starts = ds.word_starts.as_ref().ok_or_else(|| crate::err!("{}: no word alignment", ds.source))?;
    let (mut index, mut labels) = (Vec::new(), Vec::new());
    for (r, &row) in rows.iter().enumerate() {
        for (w, &t) in starts[row].iter().enumerate() {
            index.push((r * s) as u32 + t);
            labels.push(tags[row][w]);
        }
    }
    if index.is_empty() {
        crate::bail!("a batch without a single tagged word");
    }
    let dev = logits.device();
    let picked = logits.reshape((b * s, c))?.index_select(&Tensor::new(index, dev)?, 0)?;
    cross_entropy(&picked.to_dtype(DType::F32)?, &Tensor::new(labels, dev)?)
}


/// An entity: (type, first word, last word) within sentence `sentence`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entity {
    pub sentence: usize,
    pub kind: String,
    pub start: usize,
    pub end: usize,
}

/// How tags are read into entities, as seqeval does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntityScheme {
    /// seqeval's default (conlleval): BIO/IOB1/IOB2 alike; an I- after O or another type starts an entity.
    Default,
    /// seqeval `mode="strict", scheme=IOB2`: an entity is B-X followed by I-X only.
    StrictIob2,
}

fn split_tag(t: &str) -> (char, &str) {
    let mut chars = t.chars();
    let prefix = chars.next().unwrap_or('O');
    let kind = t.get(1..).map(|r| r.split_once('-').map_or(r, |(_, k)| k)).unwrap_or("");
    (prefix, if kind.is_empty() { "_" } else { kind })
}

/// seqeval's `get_entities` (conlleval chunking) over one sentence.
fn chunks_default(tags: &[&str], sentence: usize, out: &mut Vec<Entity>) {
    let (mut prev_tag, mut prev_type) = ('O', String::new());
    let mut begin = 0;
    for (i, chunk) in tags.iter().copied().chain(std::iter::once("O")).enumerate() {
        let (tag, kind) = split_tag(chunk);
        let kind = if chunk == "O" { "" } else { kind };
        let end = matches!(prev_tag, 'E' | 'S')
            || (matches!(prev_tag, 'B' | 'I') && matches!(tag, 'B' | 'S' | 'O'))
            || (prev_tag != 'O' && prev_tag != '.' && prev_type != kind);
        if end {
            out.push(Entity { sentence, kind: prev_type.clone(), start: begin, end: i - 1 });
        }
        let start = matches!(tag, 'B' | 'S')
            || (matches!(prev_tag, 'E' | 'S' | 'O') && matches!(tag, 'E' | 'I'))
            || (tag != 'O' && tag != '.' && prev_type != kind);
        if start {
            begin = i;
        }
        prev_tag = tag;
        prev_type = kind.to_string();
    }
}

/// seqeval strict IOB2: B-X then any number of I-X.
fn chunks_strict(tags: &[&str], sentence: usize, out: &mut Vec<Entity>) {
    let mut i = 0;
    while i < tags.len() {
        let (tag, kind) = split_tag(tags[i]);
        if tag == 'B' {
            let mut j = i + 1;
            while j < tags.len() && split_tag(tags[j]) == ('I', kind) {
                j += 1;
            }
            out.push(Entity { sentence, kind: kind.to_string(), start: i, end: j - 1 });
            i = j;
        } else {
            i += 1;
        }
    }
}

pub fn entities(sentences: &[Vec<&str>], scheme: EntityScheme) -> Vec<Entity> {
    let mut out = Vec::new();
    for (s, tags) in sentences.iter().enumerate() {
        match scheme {
            EntityScheme::Default => chunks_default(tags, s, &mut out),
            EntityScheme::StrictIob2 => chunks_strict(tags, s, &mut out),
        }
    }
    out
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EntityScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Per entity type, in type-name order.
    pub per_type: BTreeMap<String, ClassScores>,
    /// Word-level accuracy of the tags.
    pub accuracy: f64,
}

/// Entity-level precision, recall and F1 (micro over entities, and per type), as seqeval computes.
pub fn entity_scores(truth: &[Vec<&str>], pred: &[Vec<&str>], scheme: EntityScheme) -> EntityScores {
    use std::collections::BTreeSet;
    let t: BTreeSet<Entity> = entities(truth, scheme).into_iter().collect();
    let p: BTreeSet<Entity> = entities(pred, scheme).into_iter().collect();
    let score = |t: &BTreeSet<&Entity>, p: &BTreeSet<&Entity>| {
        let tp = t.intersection(p).count() as f64;
        let precision = ratio(tp, p.len() as f64);
        let recall = ratio(tp, t.len() as f64);
        ClassScores { precision, recall, f1: f1(precision, recall), support: t.len() }
    };
    let kinds: BTreeSet<&String> = t.iter().chain(p.iter()).map(|e| &e.kind).collect();
    let per_type = kinds
        .into_iter()
        .map(|k| {
            let tk: BTreeSet<&Entity> = t.iter().filter(|e| &e.kind == k).collect();
            let pk: BTreeSet<&Entity> = p.iter().filter(|e| &e.kind == k).collect();
            (k.clone(), score(&tk, &pk))
        })
        .collect();
    let all = score(&t.iter().collect(), &p.iter().collect());
    let (words, right) = truth.iter().zip(pred).fold((0, 0), |(n, r), (a, b)| {
        (n + a.len(), r + a.iter().zip(b).filter(|(x, y)| x == y).count())
    });
    EntityScores { precision: all.precision, recall: all.recall, f1: all.f1, per_type, accuracy: ratio(right as f64, words as f64) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqeval_default_and_strict_chunking() {
        let s = vec!["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-ORG", "I-PER"];
        let e = entities(&[s.clone()], EntityScheme::Default);
        let spans: Vec<(&str, usize, usize)> = e.iter().map(|e| (e.kind.as_str(), e.start, e.end)).collect();
        // seqeval.metrics.sequence_labeling.get_entities(s)
        assert_eq!(spans, vec![("PER", 0, 1), ("LOC", 3, 4), ("ORG", 5, 5), ("PER", 6, 6)]);
        let e = entities(&[s], EntityScheme::StrictIob2);
        let spans: Vec<(&str, usize, usize)> = e.iter().map(|e| (e.kind.as_str(), e.start, e.end)).collect();
        assert_eq!(spans, vec![("PER", 0, 1), ("ORG", 5, 5)]);
    }
}
