//! Regression: the head's single output is the score; loss MSE; metrics MSE, MAE, Pearson and
//! Spearman, as scipy computes them.

use serde::Serialize;

use crate::tasks::classification::ratio;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
