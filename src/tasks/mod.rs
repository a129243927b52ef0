//! The tasks: per task its targets, loss, predictions and metrics (one file each), and here what
//! dispatches on the task: the loss of a batch, and the [`Scorer`] that evaluates a model's logits.
//!
//! | task | head output | loss (as transformers) | metrics |
//! |---|---|---|---|
//! | classification | logits [b, labels] | cross-entropy | accuracy, precision/recall/F1, MCC |
//! | multi-label | logits [b, labels] | BCE with logits | subset accuracy, micro/macro F1 |
//! | regression | [b, 1] | MSE | MSE, MAE, Pearson, Spearman |
//! | token classification | logits [b, seq, tags] | cross-entropy over first subwords | entity P/R/F1 (seqeval) |

pub mod classification;
pub mod embedding;
pub mod loss;
pub mod mlm;
pub mod multi_label;
pub mod regression;
pub mod tokens;

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};

pub use classification::{argmax, softmax, Classification};
pub use multi_label::{sigmoid, MultiLabel};
pub use regression::Regression;
pub use tokens::{token_loss, EntityScheme, EntityScores};

use crate::data::{Dataset, TargetKind, Targets};
use crate::error::Result;
use loss::{bce_with_logits, cross_entropy, mse};

/// Flat metric name → value, as logged (`accuracy`, `f1`, `mse`, ...).
pub fn flat(named: &[(&str, f64)]) -> BTreeMap<String, f64> {
    named.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// `problem_type` as transformers names it (unset for token classification: transformers accepts
/// only these three).
pub fn problem_type(kind: TargetKind) -> Option<&'static str> {
    match kind {
        TargetKind::Classification => Some("single_label_classification"),
        TargetKind::MultiLabel => Some("multi_label_classification"),
        TargetKind::Regression => Some("regression"),
        TargetKind::Tags => None,
    }
}

/// A short task name for reports.
pub fn task_name(kind: TargetKind) -> &'static str {
    match kind {
        TargetKind::Classification => "classification",
        TargetKind::MultiLabel => "multi-label classification",
        TargetKind::Regression => "regression",
        TargetKind::Tags => "token classification",
    }
}

/// The loss of one batch for any task.
pub fn batch_loss(kind: TargetKind, logits: &Tensor, ds: &Dataset, rows: &[usize], num_labels: usize) -> Result<Tensor> {
    match kind {
        TargetKind::Tags => token_loss(logits, ds, rows),
        _ => {
            let targets = ds.targets.as_ref().ok_or_else(|| crate::err!("{}: no labels", ds.source))?;
            loss(kind, logits, &target_tensor(targets, rows, num_labels, logits.device())?)
        }
    }
}

/// The targets of `rows` as a tensor the loss takes.
pub fn target_tensor(targets: &Targets, rows: &[usize], num_labels: usize, dev: &Device) -> Result<Tensor> {
    Ok(match targets {
        Targets::Class(v) => Tensor::from_vec(rows.iter().map(|&i| v[i]).collect::<Vec<u32>>(), rows.len(), dev)?,
        Targets::Regression(v) => Tensor::from_vec(rows.iter().map(|&i| v[i]).collect::<Vec<f32>>(), rows.len(), dev)?,
        Targets::MultiLabel(v) => {
            let mut hot = vec![0f32; rows.len() * num_labels];
            for (r, &i) in rows.iter().enumerate() {
                v[i].iter().for_each(|&c| hot[r * num_labels + c as usize] = 1.0);
            }
            Tensor::from_vec(hot, (rows.len(), num_labels), dev)?
        }
        Targets::Tags(_) => crate::bail!("tags are per token: use token_loss"),
    })
}

/// The task's loss of a batch; `logits` in the model dtype.
pub fn loss(kind: TargetKind, logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let logits = logits.to_dtype(DType::F32)?;
    match kind {
        TargetKind::Classification => cross_entropy(&logits, targets),
        TargetKind::MultiLabel => bce_with_logits(&logits, targets),
        TargetKind::Regression => mse(&logits.flatten_all()?, targets),
        TargetKind::Tags => crate::bail!("tags are per token: use token_loss"),
    }
}

/// Predictions of a whole dataset, in row order.
#[derive(Clone, Debug, PartialEq)]
pub enum Predictions {
    Class(Vec<u32>),
    MultiLabel(Vec<Vec<u32>>),
    Regression(Vec<f32>),
    /// Tag ids per (kept) word.
    Tags(Vec<Vec<u32>>),
}

#[derive(Clone, Debug)]
pub struct Evaluation {
    pub loss: f64,
    pub rows: usize,
    /// Flat metrics by name (`accuracy`, `f1`, `mse`, ...), as logged with an `eval_` prefix.
    pub metrics: BTreeMap<String, f64>,
    pub classification: Option<Classification>,
    pub multi_label: Option<MultiLabel>,
    pub regression: Option<Regression>,
    pub entities: Option<EntityScores>,
    pub predictions: Predictions,
}

impl Evaluation {
    /// An evaluation that is only its metrics (embeddings, masked-LM): no per-task report.
    pub fn of_metrics(rows: usize, loss: f64, metrics: BTreeMap<String, f64>) -> Self {
        Evaluation { loss, rows, metrics, classification: None, multi_label: None, regression: None, entities: None, predictions: Predictions::Regression(Vec::new()) }
    }
}

/// A model's logits for the rows of a dataset, in row order.
pub enum RowLogits {
    /// Sequence heads: one vector per row.
    Sequence(Vec<Vec<f32>>),
    /// Token heads: per row, one vector per token.
    Tokens(Vec<Vec<Vec<f32>>>),
}

/// Accumulates a model's results over batches (or chunks of a file) and scores them at the end.
/// Holds one prediction and one target per row, never the texts or logits.
pub struct Scorer {
    kind: TargetKind,
    num_labels: usize,
    threshold: f32,
    /// Tag names (token classification), for entity chunking.
    tag_names: Vec<String>,
    scheme: EntityScheme,
    loss_sum: f64,
    /// Rows (words, for tags) the loss is over: those whose gold label the model has.
    loss_rows: usize,
    rows: usize,
    truth: Targets,
    predictions: Predictions,
}

impl Scorer {
    pub fn new(kind: TargetKind, num_labels: usize, threshold: f32) -> Self {
        let (truth, predictions) = match kind {
            TargetKind::Classification => (Targets::Class(Vec::new()), Predictions::Class(Vec::new())),
            TargetKind::MultiLabel => (Targets::MultiLabel(Vec::new()), Predictions::MultiLabel(Vec::new())),
            TargetKind::Regression => (Targets::Regression(Vec::new()), Predictions::Regression(Vec::new())),
            TargetKind::Tags => (Targets::Tags(Vec::new()), Predictions::Tags(Vec::new())),
        };
        Scorer { kind, num_labels, threshold, tag_names: Vec::new(), scheme: EntityScheme::Default, loss_sum: 0.0, loss_rows: 0, rows: 0, truth, predictions }
    }

    /// Token classification needs the tag names and how to chunk them into entities.
    pub fn with_tags(mut self, names: &[String], scheme: EntityScheme) -> Self {
        self.tag_names = names.to_vec();
        self.scheme = scheme;
        self
    }

    /// Gold labels the model does not know (evaluation with unknown labels allowed): classes
    /// K, K + 1, ... that no prediction can be, so every row of them is an error (as scikit-learn
    /// scores them); the loss leaves them out.
    pub fn add_classes(&mut self, names: &[String]) {
        self.num_labels += names.len();
        if !self.tag_names.is_empty() {
            self.tag_names.extend(names.iter().cloned());
        }
    }

    pub fn kind(&self) -> TargetKind {
        self.kind
    }

    /// Records a model's logits for every row of `ds` (in row order): a vector per row for sequence
    /// heads, a vector per token for token heads. The loss is computed here, in f64.
    pub fn add(&mut self, ds: &Dataset, logits: RowLogits) -> Result<()> {
        let targets = ds.targets.as_ref().ok_or_else(|| crate::err!("{}: no labels to evaluate against", ds.source))?;
        let threshold = self.threshold;
        match (logits, targets, &mut self.truth, &mut self.predictions) {
            (RowLogits::Tokens(logits), Targets::Tags(tags), Targets::Tags(t), Predictions::Tags(p)) => {
                let starts = ds.word_starts.as_ref().ok_or_else(|| crate::err!("{}: no word alignment", ds.source))?;
                for ((row, starts), tags) in logits.iter().zip(starts).zip(tags) {
                    // Words cut off by truncation have no first subword: score the words the model saw.
                    let mut pred = Vec::with_capacity(starts.len());
                    for (&start, &tag) in starts.iter().zip(tags) {
                        let l = row.get(start as usize).ok_or_else(|| crate::err!("internal: a word start past its row"))?;
                        if (tag as usize) < l.len() {
                            self.loss_sum += classification::cross_entropy_row(l, tag);
                            self.loss_rows += 1;
                        }
                        pred.push(argmax(l));
                    }
                    self.rows += pred.len();
                    t.push(tags[..pred.len()].to_vec());
                    p.push(pred);
                }
            }
            (RowLogits::Sequence(logits), Targets::Class(new), Targets::Class(t), Predictions::Class(p)) => {
                for (l, &y) in logits.iter().zip(new).filter(|(l, &y)| (y as usize) < l.len()) {
                    self.loss_sum += classification::cross_entropy_row(l, y);
                    self.loss_rows += 1;
                }
                t.extend_from_slice(new);
                p.extend(logits.iter().map(|l| argmax(l)));
                self.rows += logits.len();
            }
            (RowLogits::Sequence(logits), Targets::MultiLabel(new), Targets::MultiLabel(t), Predictions::MultiLabel(p)) => {
                for (l, on) in logits.iter().zip(new) {
                    let bce: f64 = l.iter().enumerate().map(|(c, &x)| multi_label::bce_term(x as f64, if on.contains(&(c as u32)) { 1.0 } else { 0.0 })).sum();
                    self.loss_sum += bce / l.len().max(1) as f64;
                    self.loss_rows += 1;
                }
                t.extend(new.iter().cloned());
                p.extend(logits.iter().map(|l| l.iter().enumerate().filter(|(_, &x)| sigmoid(x) >= threshold).map(|(i, _)| i as u32).collect()));
                self.rows += logits.len();
            }
            (RowLogits::Sequence(logits), Targets::Regression(new), Targets::Regression(t), Predictions::Regression(p)) => {
                self.loss_sum += logits.iter().zip(new).map(|(l, &y)| (l[0] as f64 - y as f64).powi(2)).sum::<f64>();
                self.loss_rows += logits.len();
                t.extend_from_slice(new);
                p.extend(logits.iter().map(|l| l[0]));
                self.rows += logits.len();
            }
            _ => crate::bail!("{}: the targets do not match the task", ds.source),
        }
        Ok(())
    }

    pub fn finish(self) -> Result<Evaluation> {
        if self.rows == 0 {
            crate::bail!("nothing to evaluate: the data has no rows");
        }
        let mean_loss = if self.loss_rows == 0 { f64::NAN } else { self.loss_sum / self.loss_rows as f64 };
        let mut metrics = BTreeMap::from([("loss".to_string(), mean_loss)]);
        let mut ev = Evaluation {
            loss: mean_loss,
            rows: self.rows,
            metrics: BTreeMap::new(),
            classification: None,
            multi_label: None,
            regression: None,
            entities: None,
            predictions: self.predictions.clone(),
        };
        match (&self.truth, &self.predictions) {
            (Targets::Class(truth), Predictions::Class(pred)) => {
                let m = classification::classification(truth, pred, self.num_labels);
                metrics.extend(flat(&[
                    ("accuracy", m.accuracy),
                    ("f1", m.f1_macro),
                    ("f1_macro", m.f1_macro),
                    ("f1_micro", m.f1_micro),
                    ("precision", m.precision_macro),
                    ("recall", m.recall_macro),
                    ("mcc", m.mcc),
                ]));
                ev.classification = Some(m);
            }
            (Targets::MultiLabel(truth), Predictions::MultiLabel(pred)) => {
                let m = multi_label::multi_label(truth, pred, self.num_labels);
                metrics.extend(flat(&[
                    ("subset_accuracy", m.subset_accuracy),
                    ("accuracy", m.subset_accuracy),
                    ("f1", m.f1_micro),
                    ("f1_micro", m.f1_micro),
                    ("f1_macro", m.f1_macro),
                ]));
                ev.multi_label = Some(m);
            }
            (Targets::Regression(truth), Predictions::Regression(pred)) => {
                let m = regression::regression(truth, pred);
                metrics.extend(flat(&[("mse", m.mse), ("mae", m.mae), ("pearson", m.pearson), ("spearman", m.spearman)]));
                ev.regression = Some(m);
            }
            (Targets::Tags(truth), Predictions::Tags(pred)) => {
                let name = |ids: &Vec<u32>| -> Vec<&str> { ids.iter().map(|&i| self.tag_names[i as usize].as_str()).collect() };
                let t: Vec<Vec<&str>> = truth.iter().map(name).collect();
                let p: Vec<Vec<&str>> = pred.iter().map(name).collect();
                let m = tokens::entity_scores(&t, &p, self.scheme);
                metrics.extend(flat(&[("precision", m.precision), ("recall", m.recall), ("f1", m.f1), ("accuracy", m.accuracy)]));
                ev.rows = truth.len();
                ev.entities = Some(m);
            }
            _ => unreachable!("truth and predictions are created together"),
        }
        ev.metrics = metrics;
        Ok(ev)
    }
}

/// The task a fine-tuned checkpoint was trained for, from its `problem_type` (or `num_labels == 1`).
pub fn kind_of(config: &crate::model::ModernBertConfig) -> TargetKind {
    match config.problem_type.as_deref() {
        Some("regression") => TargetKind::Regression,
        Some("multi_label_classification") => TargetKind::MultiLabel,
        _ if config.architectures.iter().any(|a| a.contains("TokenClassification")) => TargetKind::Tags,
        _ if config.num_labels() == 1 => TargetKind::Regression,
        _ => TargetKind::Classification,
    }
}

/// The metrics an evaluation of `kind` reports (without the `eval_` prefix), for checking
/// `metric_for_best_model` before a run starts.
pub fn metric_names(kind: TargetKind) -> &'static [&'static str] {
    match kind {
        TargetKind::Classification => &["loss", "accuracy", "f1", "f1_macro", "f1_micro", "precision", "recall", "mcc"],
        TargetKind::MultiLabel => &["loss", "subset_accuracy", "accuracy", "f1", "f1_micro", "f1_macro"],
        TargetKind::Regression => &["loss", "mse", "mae", "pearson", "spearman"],
        TargetKind::Tags => &["loss", "precision", "recall", "f1", "accuracy"],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `metric_names` (checked before a run starts) lists exactly what an evaluation reports.
    #[test]
    fn metric_names_are_the_reported_metrics() {
        for kind in [TargetKind::Classification, TargetKind::MultiLabel, TargetKind::Regression, TargetKind::Tags] {
            let mut s = Scorer::new(kind, 2, 0.5).with_tags(&["O".into(), "B-X".into()], EntityScheme::Default);
            s.rows = 2;
            match (&mut s.truth, &mut s.predictions) {
                (Targets::Class(t), Predictions::Class(p)) => (t.extend([0, 1]), p.extend([0, 0])),
                (Targets::MultiLabel(t), Predictions::MultiLabel(p)) => (t.extend([vec![0], vec![1]]), p.extend([vec![0], vec![]])),
                (Targets::Regression(t), Predictions::Regression(p)) => (t.extend([0.0, 1.0]), p.extend([0.5, 0.7])),
                (Targets::Tags(t), Predictions::Tags(p)) => (t.push(vec![0, 1]), p.push(vec![0, 1])),
                _ => unreachable!(),
            };
            let mut reported: Vec<String> = s.finish().unwrap().metrics.into_keys().collect();
            let mut listed: Vec<String> = metric_names(kind).iter().map(|m| m.to_string()).collect();
            reported.sort();
            listed.sort();
            assert_eq!(reported, listed, "{kind:?}");
        }
    }
}
