//! Custom embeddings: contrastive losses as sentence-transformers defines them, and the evaluators.
//!
//! - MultipleNegativesRankingLoss: cosine similarities of each anchor to every positive (and hard
//!   negative) in the batch, times `scale` (20), cross-entropy towards its own positive.
//! - CoSENTLoss: for scored pairs, log(1 + Σ exp(s_i − s_j)) over pairs of pairs whose gold scores
//!   say j should be more similar than i; s = cosine × `scale` (20).
//! - Matryoshka: the loss summed over truncations of the vectors to each of `dims`.
//! Evaluators: STS (Spearman of cosine against gold scores) and retrieval (MRR@10, NDCG@10, Recall@1/10).

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};

use crate::error::Result;
use crate::tasks::regression::{pearson, ranks};

use crate::model::l2_normalize as unit_rows;

/// Cosine similarity of every row of `a` [n, d] with every row of `b` [m, d]: [n, m].
pub fn cos_sim(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(unit_rows(a)?.matmul(&unit_rows(b)?.t()?)?)
}

/// MultipleNegativesRankingLoss: `anchors` [n, d]; `candidates` [k·n, d] = positives then negatives.
pub fn mnrl(anchors: &Tensor, candidates: &Tensor, scale: f64) -> Result<Tensor> {
    let n = anchors.dim(0)?;
    let scores = (cos_sim(anchors, candidates)? * scale)?;
    let labels = Tensor::arange(0u32, n as u32, anchors.device())?;
    crate::tasks::loss::cross_entropy(&scores, &labels)
}

/// MNRL's options, as sentence-transformers' `directions` and `partition_mode`.
#[derive(Clone, Debug, PartialEq)]
pub struct MnrlOptions {
    /// Among `query_to_doc` (always present), `doc_to_query`, `query_to_query`, `doc_to_doc`.
    pub directions: Vec<String>,
    /// One softmax over all directions, or one per direction with the log-normalisers averaged.
    pub per_direction: bool,
}

impl Default for MnrlOptions {
    fn default() -> Self {
        MnrlOptions { directions: vec!["query_to_doc".into()], per_direction: false }
    }
}

/// Row-wise log Σ exp (max-shifted) of `x` [n, m]: [n].
fn logsumexp_rows(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(1)?.detach();
    Ok((x.broadcast_sub(&max)?.exp()?.sum_keepdim(1)?.log()? + max)?.squeeze(1)?)
}

/// An additive mask [n, m]: 0 where `keep(i, j)`, a large negative number (exp → 0) elsewhere.
fn mask(n: usize, m: usize, like: &Tensor, keep: impl Fn(usize, usize) -> bool) -> Result<Tensor> {
    let v: Vec<f32> = (0..n).flat_map(|i| (0..m).map(move |j| (i, j))).map(|(i, j)| if keep(i, j) { 0.0 } else { -1e30 }).collect();
    Ok(Tensor::from_vec(v, (n, m), like.device())?.to_dtype(like.dtype())?)
}

/// MultipleNegativesRankingLoss with sentence-transformers' directions: `docs` are the positives
/// [n, d] followed by any hard-negative columns [n, d] each. Every term's row i is scored against
/// query i's positive; `doc_to_doc` leaves out the documents of the same query, `query_to_query`
/// the query itself.
pub fn mnrl_directions(anchors: &Tensor, docs: &[Tensor], scale: f64, opts: &MnrlOptions) -> Result<Tensor> {
    if opts.directions.iter().all(|d| d == "query_to_doc") {
        return mnrl(anchors, &Tensor::cat(docs, 0)?, scale);
    }
    let n = anchors.dim(0)?;
    let q = unit_rows(anchors)?;
    let all = unit_rows(&Tensor::cat(docs, 0)?)?;
    let pos = unit_rows(&docs[0])?;
    let m = all.dim(0)?;
    let mut terms = vec![(q.matmul(&all.t()?)? * scale)?];
    for d in opts.directions.iter().filter(|d| *d != "query_to_doc") {
        terms.push(match d.as_str() {
            "doc_to_query" => (pos.matmul(&q.t()?)? * scale)?,
            "query_to_query" => (q.matmul(&q.t()?)? * scale)?.add(&mask(n, n, &q, |i, j| i != j)?)?,
            "doc_to_doc" => (pos.matmul(&all.t()?)? * scale)?.add(&mask(n, m, &q, |i, j| j % n != i)?)?,
            other => crate::bail!("unknown MNRL direction `{other}`"),
        });
    }
    // Each query's positive score: query i against document i.
    let positive = ((&q * &pos)?.sum(1)? * scale)?;
    let log_z = if opts.per_direction {
        let mut sum = logsumexp_rows(&terms[0])?;
        for t in &terms[1..] {
            sum = (sum + logsumexp_rows(t)?)?;
        }
        (sum / terms.len() as f64)?
    } else {
        logsumexp_rows(&Tensor::cat(&terms, 1)?)?
    };
    Ok((log_z - positive)?.mean_all()?)
}

/// CoSENTLoss over pairs (`a`[i], `b`[i]) with gold `scores`[i].
pub fn cosent(a: &Tensor, b: &Tensor, scores: &[f32], scale: f64) -> Result<Tensor> {
    let n = a.dim(0)?;
    // Cosine of each pair (row i of a with row i of b), not the full n × n matrix.
    let s = (unit_rows(a)? * unit_rows(b)?)?.sum(1)?.to_dtype(DType::F32)?;
    let s = (s * scale)?;
    // diff[i][j] = s_i − s_j, kept where gold_i < gold_j, pushed to −1e12 elsewhere (exp → 0).
    let diff = s.unsqueeze(1)?.broadcast_sub(&s.unsqueeze(0)?)?;
    let keep: Vec<f32> = (0..n).flat_map(|i| (0..n).map(move |j| (i, j))).map(|(i, j)| if scores[i] < scores[j] { 0.0 } else { -1e12 }).collect();
    let diff = (diff + Tensor::from_vec(keep, (n, n), a.device())?)?.flatten_all()?;
    let all = Tensor::cat(&[&Tensor::zeros(1, DType::F32, a.device())?, &diff], 0)?;
    let max = all.max_keepdim(0)?.detach();
    Ok((all.broadcast_sub(&max)?.exp()?.sum_all()?.log()? + max.squeeze(0)?)?)
}

/// Which contrastive loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddingLoss {
    Mnrl,
    Cosent,
}

/// A loss over pooled vectors, optionally Matryoshka over `dims` (each truncation weighted 1).
pub fn embedding_loss(kind: EmbeddingLoss, columns: &[Tensor], scores: Option<&[f32]>, scale: f64, dims: Option<&[usize]>) -> Result<Tensor> {
    embedding_loss_with(kind, columns, scores, scale, dims, &MnrlOptions::default())
}

/// [`embedding_loss`] with MNRL's directions.
pub fn embedding_loss_with(kind: EmbeddingLoss, columns: &[Tensor], scores: Option<&[f32]>, scale: f64, dims: Option<&[usize]>, mnrl_opts: &MnrlOptions) -> Result<Tensor> {
    let full = columns[0].dim(1)?;
    let dims: Vec<usize> = dims.map(<[usize]>::to_vec).unwrap_or_else(|| vec![full]);
    let mut total: Option<Tensor> = None;
    for d in dims {
        let cut: Vec<Tensor> = columns.iter().map(|c| c.narrow(1, 0, d.min(full))).collect::<candle_core::Result<_>>()?;
        let l = match kind {
            EmbeddingLoss::Mnrl => mnrl_directions(&cut[0], &cut[1..], scale, mnrl_opts)?,
            EmbeddingLoss::Cosent => {
                let s = scores.ok_or_else(|| crate::err!("CoSENT needs a score per pair (label_column)"))?;
                cosent(&cut[0], &cut[1], s, scale)?
            }
        };
        total = Some(match total {
            None => l,
            Some(t) => (t + l)?,
        });
    }
    total.ok_or_else(|| crate::err!("no Matryoshka dimensions"))
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let n = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt().max(1e-12);
    dot / (n(a) * n(b))
}

/// STS: correlation of the cosine similarity of each pair with the gold scores.
pub fn sts(a: &[Vec<f32>], b: &[Vec<f32>], gold: &[f32]) -> BTreeMap<String, f64> {
    let sims: Vec<f64> = a.iter().zip(b).map(|(x, y)| cosine(x, y)).collect();
    let gold: Vec<f64> = gold.iter().map(|&g| g as f64).collect();
    BTreeMap::from([
        ("spearman".to_string(), pearson(&ranks(&sims), &ranks(&gold))),
        ("pearson".to_string(), pearson(&sims, &gold)),
    ])
}

/// Retrieval: each query against every document by cosine; `relevant[q]` lists its documents.
pub fn retrieval(queries: &[Vec<f32>], docs: &[Vec<f32>], relevant: &[Vec<usize>]) -> BTreeMap<String, f64> {
    let (mut mrr, mut ndcg, mut r1, mut r10) = (0.0, 0.0, 0.0, 0.0);
    for (q, rel) in queries.iter().zip(relevant) {
        let mut scored: Vec<(f64, usize)> = docs.iter().enumerate().map(|(i, d)| (cosine(q, d), i)).collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let top: Vec<usize> = scored.iter().take(10).map(|(_, i)| *i).collect();
        if let Some(rank) = top.iter().position(|i| rel.contains(i)) {
            mrr += 1.0 / (rank + 1) as f64;
        }
        let dcg: f64 = top.iter().enumerate().filter(|(_, i)| rel.contains(i)).map(|(r, _)| 1.0 / ((r + 2) as f64).log2()).sum();
        let idcg: f64 = (0..rel.len().min(10)).map(|r| 1.0 / ((r + 2) as f64).log2()).sum();
        ndcg += if idcg > 0.0 { dcg / idcg } else { 0.0 };
        let hits = |k: usize| top.iter().take(k).filter(|i| rel.contains(i)).count() as f64 / rel.len().max(1) as f64;
        r1 += hits(1);
        r10 += hits(10);
    }
    let n = queries.len().max(1) as f64;
    BTreeMap::from([
        ("mrr@10".to_string(), mrr / n),
        ("ndcg@10".to_string(), ndcg / n),
        ("recall@1".to_string(), r1 / n),
        ("recall@10".to_string(), r10 / n),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retrieval_metrics_by_hand() {
        let docs = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![0.7, 0.7]];
        // q0 ranks docs 0, 2, 1 (relevant: 2 → rank 2); q1 ranks 1, 2, 0 (relevant: 1 → rank 1).
        let m = retrieval(&[vec![1.0, 0.1], vec![0.0, 1.0]], &docs, &[vec![2], vec![1]]);
        assert!((m["mrr@10"] - 0.75).abs() < 1e-12);
        assert!((m["recall@1"] - 0.5).abs() < 1e-12);
        assert!((m["recall@10"] - 1.0).abs() < 1e-12);
        assert!((m["ndcg@10"] - (1.0 / 3f64.log2() + 1.0) / 2.0).abs() < 1e-12);
    }
}
