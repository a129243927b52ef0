//! Single-label classification: the head's logits → softmax → the arg-max class; loss
//! cross-entropy (`tasks::loss::cross_entropy` in training, [`cross_entropy_row`] in evaluation);
//! metrics as scikit-learn computes them (`zero_division=0`: a class never predicted has precision 0,
//! not NaN).

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

pub(crate) fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}

pub(crate) fn f1(p: f64, r: f64) -> f64 {
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

/// The index of the largest value (the first of equal ones).
pub fn argmax(v: &[f32]) -> u32 {
    v.iter().enumerate().fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &x)| if x > bv { (i, x) } else { (bi, bv) }).0 as u32
}

/// softmax in f32, max-shifted.
pub fn softmax(v: &[f32]) -> Vec<f32> {
    let m = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = v.iter().map(|x| (x - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.iter().map(|x| x / s).collect()
}


/// −log softmax(l)[y], in f64.
pub fn cross_entropy_row(l: &[f32], y: u32) -> f64 {
    let m = l.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let lse = m + l.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
    lse - l.get(y as usize).map_or(f64::NAN, |&x| x as f64)
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
}
