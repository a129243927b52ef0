//! The form a batch travels in: every row's real tokens one after another, with the row boundaries
//! (`cu_seqlens`, flash-attention's "unpadded" form). Built once from the token ids on the host and
//! handed to the kernels as it is; the padded form (`[batch, longest]` ids and mask) is made from the
//! same host ids only where a path needs it (another device, attention dropout, transformers-style
//! callers).

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

use crate::error::Result;
use crate::model::config::Pooling;

pub struct Packed {
    /// u32 [tokens]: every sequence's real tokens, one after another.
    pub ids: Tensor,
    /// The same ids on the host (the padded form is built from them, never read back).
    host: Vec<u32>,
    /// [batch + 1], from 0: sequence `b` is rows `cu_seqlens[b]..cu_seqlens[b + 1]`.
    pub cu_seqlens: Arc<Vec<usize>>,
    /// Whether any id is the model's pad id (then the embedding's pad-row rule applies).
    pub(crate) has_pad: bool,
    /// The longest row: the padded length.
    seq: usize,
}

impl Packed {
    /// Packs rows of token ids (no padding anywhere). `pad_token_id` is the model's (`config.json`),
    /// for the embedding's pad-row rule.
    pub fn from_rows(rows: &[&[u32]], pad_token_id: Option<u32>, dev: &Device) -> Result<Self> {
        let mut host = Vec::with_capacity(rows.iter().map(|r| r.len()).sum());
        let mut cu = Vec::with_capacity(rows.len() + 1);
        cu.push(0);
        for r in rows {
            host.extend_from_slice(r);
            cu.push(host.len());
        }
        let seq = rows.iter().map(|r| r.len()).max().unwrap_or(0);
        Self::from_host(host, cu, seq, pad_token_id, dev)
    }

    fn from_host(host: Vec<u32>, cu: Vec<usize>, seq: usize, pad_token_id: Option<u32>, dev: &Device) -> Result<Self> {
        let has_pad = pad_token_id.is_some_and(|p| host.contains(&p));
        let ids = Tensor::new(host.as_slice(), dev)?;
        Ok(Packed { ids, host, cu_seqlens: Arc::new(cu), has_pad, seq })
    }

    /// Packs right-padded `input_ids` [batch, seq] (mask rows `1…1 0…0`), as transformers' callers
    /// hold them. `None` when some mask row is not of that form (left padding, holes): positions
    /// would then differ, so the padded path runs.
    pub fn from_padded(input_ids: &Tensor, attention_mask: Option<&Tensor>, pad_token_id: Option<u32>) -> Result<Option<Self>> {
        let (batch, seq) = input_ids.dims2()?;
        let ids: Vec<Vec<u32>> = input_ids.to_dtype(DType::U32)?.to_vec2()?;
        let lengths: Vec<usize> = match attention_mask {
            Some(m) => {
                let rows: Vec<Vec<u32>> = m.to_dtype(DType::U32)?.to_vec2()?;
                let mut lengths = Vec::with_capacity(batch);
                for row in &rows {
                    let len = row.iter().take_while(|&&v| v != 0).count();
                    if row[len..].iter().any(|&v| v != 0) {
                        return Ok(None);
                    }
                    lengths.push(len);
                }
                lengths
            }
            None => vec![seq; batch],
        };
        let mut flat = Vec::with_capacity(lengths.iter().sum());
        let mut cu = vec![0];
        for (row, &len) in ids.iter().zip(&lengths) {
            flat.extend_from_slice(&row[..len]);
            cu.push(flat.len());
        }
        Self::from_host(flat, cu, seq, pad_token_id, input_ids.device()).map(Some)
    }

    pub fn lengths(&self) -> impl Iterator<Item = usize> + '_ {
        self.cu_seqlens.windows(2).map(|w| w[1] - w[0])
    }

    pub fn batch(&self) -> usize {
        self.cu_seqlens.len() - 1
    }

    /// Real tokens in the batch.
    pub fn tokens(&self) -> usize {
        self.host.len()
    }

    /// Tokens the padded form holds (rows × longest).
    pub fn padded_tokens(&self) -> usize {
        self.batch() * self.seq
    }

    /// The row's token ids.
    pub fn row(&self, b: usize) -> &[u32] {
        &self.host[self.cu_seqlens[b]..self.cu_seqlens[b + 1]]
    }

    /// The padded form: ids [batch, longest] (filled with `fill`) and the mask (1 real, 0 padding).
    pub fn padded(&self, fill: u32) -> Result<(Tensor, Tensor)> {
        let rows: Vec<&[u32]> = (0..self.batch()).map(|b| self.row(b)).collect();
        pad_batch(&rows, fill, self.ids.device())
    }

    /// [tokens, d] back to [batch, seq, d], zeros at padding (as transformers' unpadded path returns).
    pub fn repad(&self, flat: &Tensor) -> Result<Tensor> {
        let (tokens, d) = flat.dims2()?;
        let mut index = Vec::with_capacity(self.batch() * self.seq);
        for (b, len) in self.lengths().enumerate() {
            index.extend((0..self.seq).map(|p| if p < len { (self.cu_seqlens[b] + p) as u32 } else { tokens as u32 }));
        }
        let with_zero = Tensor::cat(&[flat, &Tensor::zeros((1, d), flat.dtype(), flat.device())?], 0)?;
        let index = Tensor::from_vec(index, self.batch() * self.seq, flat.device())?;
        Ok(with_zero.index_select(&index, 0)?.reshape((self.batch(), self.seq, d))?)
    }

    /// Pools [tokens, hidden] per sequence to [batch, hidden]: first token, or mean of its tokens.
    pub fn pool(&self, flat: &Tensor, pooling: Pooling) -> Result<Tensor> {
        let dev = flat.device();
        match pooling {
            Pooling::Cls => {
                let first: Vec<u32> = self.cu_seqlens[..self.batch()].iter().map(|&c| c as u32).collect();
                Ok(flat.index_select(&Tensor::new(first, dev)?, 0)?)
            }
            Pooling::Mean => {
                // A [batch, tokens] averaging matrix: one matmul, differentiable.
                let tokens = flat.dim(0)?;
                let mut weights = vec![0f64; self.batch() * tokens];
                for (b, len) in self.lengths().enumerate() {
                    for t in self.cu_seqlens[b]..self.cu_seqlens[b + 1] {
                        weights[b * tokens + t] = 1.0 / len as f64;
                    }
                }
                let w = Tensor::from_vec(weights, (self.batch(), tokens), dev)?.to_dtype(flat.dtype())?;
                Ok(w.matmul(flat)?)
            }
        }
    }
}

/// Right-pads rows of token ids to the longest with `pad_id`: ids and attention mask, u32 [rows, longest].
pub fn pad_batch(rows: &[&[u32]], pad_id: u32, dev: &Device) -> Result<(Tensor, Tensor)> {
    let len = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(rows.len() * len);
    let mut mask = Vec::with_capacity(rows.len() * len);
    for r in rows {
        ids.extend_from_slice(r);
        ids.extend(std::iter::repeat_n(pad_id, len - r.len()));
        mask.extend(std::iter::repeat_n(1u32, r.len()));
        mask.extend(std::iter::repeat_n(0u32, len - r.len()));
    }
    Ok((Tensor::from_vec(ids, (rows.len(), len), dev)?, Tensor::from_vec(mask, (rows.len(), len), dev)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_their_padded_form_pack_the_same() {
        let dev = Device::Cpu;
        let rows: Vec<&[u32]> = vec![&[5, 6, 7], &[8], &[9, 0]];
        let a = Packed::from_rows(&rows, Some(0), &dev).unwrap();
        let (ids, mask) = a.padded(3).unwrap();
        assert_eq!(ids.to_vec2::<u32>().unwrap(), vec![vec![5, 6, 7], vec![8, 3, 3], vec![9, 0, 3]]);
        let b = Packed::from_padded(&ids, Some(&mask), Some(0)).unwrap().unwrap();
        assert_eq!(a.ids.to_vec1::<u32>().unwrap(), b.ids.to_vec1::<u32>().unwrap());
        assert_eq!(a.cu_seqlens, b.cu_seqlens);
        assert_eq!((a.has_pad, a.tokens(), a.padded_tokens(), a.row(2)), (true, 6, 9, &[9u32, 0][..]));
        assert!(!Packed::from_rows(&rows[..2], Some(0), &dev).unwrap().has_pad);
    }
}
