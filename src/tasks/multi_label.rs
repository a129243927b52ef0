//! Multi-label classification: a sigmoid per label, on at a threshold; loss BCE with logits;
//! metrics subset accuracy and micro/macro F1, as scikit-learn computes them.

use serde::Serialize;

use crate::tasks::classification::{f1, ratio, ClassScores};

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

pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// One term of `BCEWithLogitsLoss`: max(x, 0) − x·y + log(1 + exp(−|x|)).
pub fn bce_term(x: f64, y: f64) -> f64 {
    x.max(0.0) - x * y + (-x.abs()).exp().ln_1p()
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_label_subset_accuracy_and_f1() {
        let m = multi_label(&[vec![0, 1], vec![1], vec![]], &[vec![0, 1], vec![0], vec![]], 2);
        assert!((m.subset_accuracy - 2.0 / 3.0).abs() < 1e-12);
        // tp: c0 1, c1 1; fp: c0 1; fn: c1 1 → micro p = 2/3, r = 2/3
        assert!((m.f1_micro - 2.0 / 3.0).abs() < 1e-12);
    }
}
