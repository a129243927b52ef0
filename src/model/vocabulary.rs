//! New whole tokens in a model's vocabulary: added to the tokenizer as transformers'
//! `tokenizer.add_tokens(tokens)` adds them, and the token embeddings grown to hold them as
//! `model.resize_token_embeddings(len(tokenizer))` grows them by default (`mean_resizing=True`).

use candle_core::{DType, Device, Tensor};
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{Context, Result};
use crate::rng::Rng;

/// transformers' scale of the old embeddings' covariance for the new rows' distribution.
const COVARIANCE_SCALE: f64 = 1e-9;

/// Adds `tokens` to `tokenizer` as `tokenizer.add_tokens(tokens)` does: not special, matched on the
/// normalised text, wherever they appear. A token not in the vocabulary gets the next free id; one
/// already there keeps its id (and from now on always splits off whole). Returns each token's id,
/// in the order given. Adding tokens the tokenizer already holds as added tokens changes nothing.
pub fn add_tokens(tokenizer: &mut Tokenizer, tokens: &[String]) -> Result<Vec<(String, u32)>> {
    let added: Vec<AddedToken> = tokens.iter().map(|t| AddedToken::from(t.clone(), false)).collect();
    tokenizer.add_tokens(added).context("cannot add tokens to the tokenizer")?;
    tokens
        .iter()
        .map(|t| Ok((t.clone(), tokenizer.token_to_id(t).with_context(|| format!("internal: token {t:?} has no id after adding it"))?)))
        .collect()
}

/// The rows a token-embedding matrix needs for every id `tokenizer` can produce (its largest id + 1).
pub fn rows_needed(tokenizer: &Tokenizer) -> usize {
    tokenizer.get_vocab(true).values().max().map_or(0, |&m| m as usize + 1)
}

/// `old` ([n, hidden] token embeddings) grown to `rows` rows, as `resize_token_embeddings` grows
/// them by default: the old rows unchanged; each new row drawn from a normal distribution with the
/// old rows' mean and 1e-9 times their covariance (so, to within about 3e-5 of their spread, the
/// mean), or exactly the mean when that covariance is not positive definite (fewer rows than
/// dimensions). The draw is seeded; transformers' own draw uses torch's generator, so the rows agree
/// with its to that spread, not bit for bit.
pub fn grow_embeddings(old: &Tensor, rows: usize, seed: u64) -> Result<Tensor> {
    let (n, h) = old.dims2()?;
    if rows <= n {
        crate::bail!("internal: grow_embeddings from {n} to {rows} rows");
    }
    let (device, dtype) = (old.device().clone(), old.dtype());
    let weight = old.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
    // As transformers: mean and covariance in f32 (a matrix product over all n rows).
    let mean = weight.mean_keepdim(0)?;
    let centered = weight.broadcast_sub(&mean)?;
    let covariance = (centered.t()?.matmul(&centered)? / n as f64)?;
    let mean: Vec<f64> = mean.flatten_all()?.to_dtype(DType::F64)?.to_vec1()?;
    let covariance: Vec<f64> = covariance.flatten_all()?.to_dtype(DType::F64)?.to_vec1()?;
    let factor = cholesky(&covariance, h);
    let mut rng = Rng::new(seed ^ 0x7e57_0c0b);
    let scale = COVARIANCE_SCALE.sqrt();
    let mut new = Vec::with_capacity((rows - n) * h);
    for _ in n..rows {
        match &factor {
            Some(l) => {
                let z: Vec<f64> = (0..h).map(|_| rng.normal()).collect();
                for i in 0..h {
                    let lz: f64 = (0..=i).map(|j| l[i * h + j] * z[j]).sum();
                    new.push((mean[i] + scale * lz) as f32);
                }
            }
            None => new.extend(mean.iter().map(|&m| m as f32)),
        }
    }
    let new = Tensor::from_vec(new, (rows - n, h), &Device::Cpu)?;
    Ok(Tensor::cat(&[&weight, &new], 0)?.to_dtype(dtype)?.to_device(&device)?)
}

/// A masked-LM decoder's bias grown to `rows` entries: the new ones 0, as transformers (5.x) leaves
/// them when it resizes ModernBERT's tied decoder (measured: `resize_token_embeddings` pads the tied
/// decoder's bias with zeros).
pub fn grow_bias(old: &Tensor, rows: usize) -> Result<Tensor> {
    let n = old.dims1()?;
    if rows <= n {
        crate::bail!("internal: grow_bias from {n} to {rows} entries");
    }
    Ok(old.pad_with_zeros(0, 0, rows - n)?)
}

/// The lower-triangular Cholesky factor of the symmetric `a` ([h, h], row-major), or `None` when
/// `a` is not positive definite (the check transformers makes before sampling).
fn cholesky(a: &[f64], h: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; h * h];
    for i in 0..h {
        for j in 0..=i {
            let dot: f64 = (0..j).map(|k| l[i * h + k] * l[j * h + k]).sum();
            if i == j {
                let d = a[i * h + i] - dot;
                if d.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
                    return None;
                }
                l[i * h + i] = d.sqrt();
            } else {
                l[i * h + j] = (a[i * h + j] - dot) / l[j * h + j];
            }
        }
    }
    Some(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(n: usize, h: usize, seed: u64) -> Tensor {
        let mut rng = Rng::new(seed);
        let v: Vec<f32> = (0..n * h).map(|i| (rng.normal() * 0.02 + (i % h) as f64 * 0.001) as f32).collect();
        Tensor::from_vec(v, (n, h), &Device::Cpu).unwrap()
    }

    #[test]
    fn new_rows_sit_at_the_old_rows_mean_and_old_rows_stay() {
        let old = random(300, 16, 1);
        let grown = grow_embeddings(&old, 305, 7).unwrap();
        assert_eq!(grown.dims(), &[305, 16]);
        let kept = grown.narrow(0, 0, 300).unwrap();
        assert_eq!(kept.flatten_all().unwrap().to_vec1::<f32>().unwrap(), old.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        let mean: Vec<f32> = old.mean(0).unwrap().to_vec1().unwrap();
        let new: Vec<Vec<f32>> = grown.narrow(0, 300, 5).unwrap().to_vec2().unwrap();
        // The spread is sqrt(1e-9) ≈ 3.2e-5 of the old rows' (0.02): a few 1e-6 at most.
        let far = new.iter().flatten().zip(mean.iter().cycle()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(far < 1e-5, "new rows are {far} from the mean");
        // Drawn, not copied: the rows differ from one another (by that tiny spread).
        assert_ne!(new[0], new[1]);
        // Seeded: the same seed, the same rows.
        let again: Vec<Vec<f32>> = grow_embeddings(&old, 305, 7).unwrap().narrow(0, 300, 5).unwrap().to_vec2().unwrap();
        assert_eq!(new, again);
    }

    #[test]
    fn without_a_positive_definite_covariance_new_rows_are_exactly_the_mean() {
        // 4 rows in 8 dimensions: the covariance has rank 3.
        let old = random(4, 8, 2);
        let grown = grow_embeddings(&old, 6, 7).unwrap();
        let mean: Vec<f32> = old.mean(0).unwrap().to_vec1().unwrap();
        for row in grown.narrow(0, 4, 2).unwrap().to_vec2::<f32>().unwrap() {
            for (a, b) in row.iter().zip(&mean) {
                assert!((a - b).abs() < 1e-7, "{row:?} vs {mean:?}");
            }
        }
    }

    #[test]
    fn cholesky_factors_and_refuses_what_is_not_positive_definite() {
        let a = [4.0, 2.0, 2.0, 3.0];
        let l = cholesky(&a, 2).unwrap();
        assert_eq!(l, vec![2.0, 0.0, 1.0, 2f64.sqrt()]);
        assert!(cholesky(&[1.0, 2.0, 2.0, 1.0], 2).is_none());
        assert!(cholesky(&[0.0, 0.0, 0.0, 1.0], 2).is_none());
    }

    #[test]
    fn decoder_bias_grows_with_zeros() {
        let b = Tensor::new(&[0.5f32, -1.0, 2.0], &Device::Cpu).unwrap();
        assert_eq!(grow_bias(&b, 5).unwrap().to_vec1::<f32>().unwrap(), vec![0.5, -1.0, 2.0, 0.0, 0.0]);
    }
}
