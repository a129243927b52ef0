//! Evaluation metrics, computed as scikit-learn / scipy compute them (`zero_division=0`: a class that
//! is never predicted has precision 0, not NaN).

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ClassScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Classification {
    pub accuracy: f64,
    pub precision_macro: f64,
    pub recall_macro: f64,
    pub f1_macro: f64,
    pub precision_micro: f64,
    pub recall_micro: f64,
    pub f1_micro: f64,
    pub mcc: f64,
    pub per_class: Vec<ClassScores>,
    /// confusion[true][predicted]
    pub confusion: Vec<Vec<usize>>,
}

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}

fn f1(p: f64, r: f64) -> f64 {
    ratio(2.0 * p * r, p + r)
}

/// Single-label classification metrics over `num_classes` classes.
pub fn classification(truth: &[u32], pred: &[u32], num_classes: usize) -> Classification {
    let k = num_classes.max(1);
    let mut confusion = vec![vec![0usize; k]; k];
    for (&t, &p) in truth.iter().zip(pred) {
        confusion[t as usize][p as usize] += 1;
    }
    let n = truth.len();
    let correct: usize = (0..k).map(|i| confusion[i][i]).sum();
    let per_class: Vec<ClassScores> = (0..k)
        .map(|c| {
            let tp = confusion[c][c] as f64;
            let predicted: usize = (0..k).map(|t| confusion[t][c]).sum();
            let support: usize = confusion[c].iter().sum();
            let precision = ratio(tp, predicted as f64);
            let recall = ratio(tp, support as f64);
            ClassScores { precision, recall, f1: f1(precision, recall), support }
        })
        .collect();
    let mean = |f: fn(&ClassScores) -> f64| per_class.iter().map(f).sum::<f64>() / k as f64;
    // Micro averages over single-label data all equal accuracy.
    let accuracy = ratio(correct as f64, n as f64);
    Classification {
        accuracy,
        precision_macro: mean(|c| c.precision),
        recall_macro: mean(|c| c.recall),
        f1_macro: mean(|c| c.f1),
        precision_micro: accuracy,
        recall_micro: accuracy,
        f1_micro: accuracy,
        mcc: mcc(&confusion),
        per_class,
        confusion,
    }
}

/// Matthews correlation coefficient, multi-class (as sklearn.metrics.matthews_corrcoef).
fn mcc(confusion: &[Vec<usize>]) -> f64 {
    let k = confusion.len();
    let t: Vec<f64> = (0..k).map(|i| confusion[i].iter().sum::<usize>() as f64).collect();
    let p: Vec<f64> = (0..k).map(|j| (0..k).map(|i| confusion[i][j]).sum::<usize>() as f64).collect();
    let c: f64 = (0..k).map(|i| confusion[i][i] as f64).sum();
    let s: f64 = t.iter().sum();
    let num = c * s - t.iter().zip(&p).map(|(a, b)| a * b).sum::<f64>();
    let den = ((s * s - p.iter().map(|x| x * x).sum::<f64>()) * (s * s - t.iter().map(|x| x * x).sum::<f64>())).sqrt();
    ratio(num, den)
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct MultiLabel {
    /// Rows whose predicted label set equals the true set.
    pub subset_accuracy: f64,
    pub f1_micro: f64,
    pub f1_macro: f64,
    pub precision_micro: f64,
    pub recall_micro: f64,
    pub per_class: Vec<ClassScores>,
}

/// Multi-label metrics from label sets per row.
pub fn multi_label(truth: &[Vec<u32>], pred: &[Vec<u32>], num_classes: usize) -> MultiLabel {
    let mut tp = vec![0f64; num_classes];
    let mut fp = vec![0f64; num_classes];
    let mut fnn = vec![0f64; num_classes];
    let mut exact = 0usize;
    for (t, p) in truth.iter().zip(pred) {
        exact += (t == p) as usize;
        for c in 0..num_classes as u32 {
            match (t.contains(&c), p.contains(&c)) {
                (true, true) => tp[c as usize] += 1.0,
                (false, true) => fp[c as usize] += 1.0,
                (true, false) => fnn[c as usize] += 1.0,
                _ => {}
            }
        }
    }
    let per_class: Vec<ClassScores> = (0..num_classes)
        .map(|c| {
            let precision = ratio(tp[c], tp[c] + fp[c]);
            let recall = ratio(tp[c], tp[c] + fnn[c]);
            ClassScores { precision, recall, f1: f1(precision, recall), support: (tp[c] + fnn[c]) as usize }
        })
        .collect();
    let (stp, sfp, sfn) = (tp.iter().sum::<f64>(), fp.iter().sum::<f64>(), fnn.iter().sum::<f64>());
    let precision_micro = ratio(stp, stp + sfp);
    let recall_micro = ratio(stp, stp + sfn);
    MultiLabel {
        subset_accuracy: ratio(exact as f64, truth.len() as f64),
        f1_micro: f1(precision_micro, recall_micro),
        f1_macro: per_class.iter().map(|c| c.f1).sum::<f64>() / num_classes.max(1) as f64,
        precision_micro,
        recall_micro,
        per_class,
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Regression {
    pub mse: f64,
    pub mae: f64,
    pub pearson: f64,
    pub spearman: f64,
}

pub fn regression(truth: &[f32], pred: &[f32]) -> Regression {
    let n = truth.len().max(1) as f64;
    let t: Vec<f64> = truth.iter().map(|&x| x as f64).collect();
    let p: Vec<f64> = pred.iter().map(|&x| x as f64).collect();
    Regression {
        mse: t.iter().zip(&p).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / n,
        mae: t.iter().zip(&p).map(|(a, b)| (a - b).abs()).sum::<f64>() / n,
        pearson: pearson(&t, &p),
        spearman: pearson(&ranks(&t), &ranks(&p)),
    }
}

pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    ratio(cov, (va * vb).sqrt())
}

/// Average ranks (ties share the mean rank), as scipy.stats.rankdata.
pub fn ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            r[idx[k]] = avg;
        }
        i = j + 1;
    }
    r
}

/// Flat metric name → value, as logged (`accuracy`, `f1`, `mse`, ...).
pub fn flat(named: &[(&str, f64)]) -> BTreeMap<String, f64> {
    named.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_classification_with_a_never_predicted_class() {
        // truth: 0 0 1 1 2 ; pred: 0 1 1 1 1  (class 2 is never predicted)
        let m = classification(&[0, 0, 1, 1, 2], &[0, 1, 1, 1, 1], 3);
        assert_eq!(m.confusion, vec![vec![1, 1, 0], vec![0, 2, 0], vec![0, 1, 0]]);
        assert!((m.accuracy - 0.6).abs() < 1e-12);
        // class 0: p 1, r 0.5, f1 2/3; class 1: p 0.5, r 1, f1 2/3; class 2: p 0 (zero_division), r 0, f1 0
        assert_eq!(m.per_class[2], ClassScores { precision: 0.0, recall: 0.0, f1: 0.0, support: 1 });
        assert!((m.precision_macro - 0.5).abs() < 1e-12);
        assert!((m.recall_macro - 0.5).abs() < 1e-12);
        assert!((m.f1_macro - 4.0 / 9.0).abs() < 1e-12);
        // sklearn.metrics.matthews_corrcoef([0,0,1,1,2], [0,1,1,1,1]) = 0.44194173824159216
        assert!((m.mcc - 0.44194173824159216).abs() < 1e-12, "{}", m.mcc);
    }

    #[test]
    fn regression_and_rank_correlation() {
        let r = regression(&[1.0, 2.0, 3.0, 4.0], &[1.5, 2.0, 2.5, 5.0]);
        assert!((r.mse - (0.25 + 0.0 + 0.25 + 1.0) / 4.0).abs() < 1e-12);
        assert!((r.mae - 0.5).abs() < 1e-12);
        assert!((r.spearman - 1.0).abs() < 1e-12);
        // scipy.stats.pearsonr([1,2,3,4],[1.5,2,2.5,5])[0] = 0.9135002783911398
        assert!((r.pearson - 0.9135002783911398).abs() < 1e-12);
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
    }

    #[test]
    fn multi_label_subset_accuracy_and_f1() {
        let m = multi_label(&[vec![0, 1], vec![1], vec![]], &[vec![0, 1], vec![0], vec![]], 2);
        assert!((m.subset_accuracy - 2.0 / 3.0).abs() < 1e-12);
        // tp: c0 1, c1 1; fp: c0 1; fn: c1 1 → micro p = 2/3, r = 2/3
        assert!((m.f1_micro - 2.0 / 3.0).abs() < 1e-12);
    }
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
mod entity_tests {
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
