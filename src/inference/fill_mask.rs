//! A masked-LM (a `task = "mlm"` run, or a checkpoint published as `ModernBertForMaskedLM`): texts
//! with mask tokens in, the most likely tokens for each mask out, as transformers'
//! `pipeline("fill-mask")` gives them.

use candle_core::{DType, Device};

use crate::data::TextEncoder;
use crate::error::Result;
use crate::inference::{map_batches, Budget, Lengths};
use crate::model::{load_pretrained, HeadKind, LoadOptions, ModelFiles, ModernBert, ModernBertConfig, Mode};

pub struct FillMask {
    pub files: ModelFiles,
    pub config: ModernBertConfig,
    pub model: ModernBert,
    pub encoder: TextEncoder,
    pub mask_id: u32,
    pub mask_token: String,
}

/// One candidate for one mask.
#[derive(Clone, Debug, PartialEq)]
pub struct Fill {
    pub token: u32,
    /// The token decoded on its own (a leading space kept, as the pipeline's `token_str`).
    pub token_str: String,
    pub score: f32,
    /// The text with this mask filled, decoded without special tokens (so other masks drop out),
    /// as the pipeline decodes a one-mask text.
    pub sequence: String,
}

impl FillMask {
    /// Whether `config` describes a masked-LM checkpoint.
    pub fn is_masked_lm(config: &ModernBertConfig) -> bool {
        config.architectures.iter().any(|a| a == "ModernBertForMaskedLM")
    }

    pub fn load(spec: &str, lengths: &Lengths, device: &Device) -> Result<Self> {
        let files = ModelFiles::resolve(spec)?;
        let opts = LoadOptions { dtype: DType::F32, device: device.clone(), ..Default::default() };
        let (config, loaded) = load_pretrained(&files, HeadKind::MaskedLm, &opts)?;
        if !loaded.initialised.is_empty() {
            crate::bail!("{} has no masked-LM head (missing: {}); fill-mask needs a ModernBertForMaskedLM checkpoint", files.origin, loaded.initialised.join(", "));
        }
        let max_length = files.max_length(&config, lengths.asked().as_ref())?;
        let encoder = TextEncoder::from_file(files.tokenizer()?, max_length)?.refusing_longer(!lengths.truncate);
        let (mask_token, mask_id) = ["[MASK]", "<mask>"]
            .iter()
            .find_map(|t| encoder.token_id(t).map(|id| (t.to_string(), id)))
            .ok_or_else(|| crate::err!("{}: the tokenizer has no mask token ([MASK] or <mask>)", files.origin))?;
        Ok(FillMask { files, config, model: loaded.model, encoder, mask_id, mask_token })
    }

    /// The `k` most likely tokens for each mask of each text, and how many texts were truncated;
    /// `at(i)` names text i in errors. A text without a mask token is an error.
    pub fn fill(&self, texts: &[&str], k: usize, budget: Budget, at: &dyn Fn(usize) -> String) -> Result<(Vec<Vec<Vec<Fill>>>, usize)> {
        let encoded = self.encoder.encode_batch(texts)?;
        let cut = self.encoder.count_truncated(encoded.iter().map(|e| e.truncated), at)?;
        let masks: Vec<Vec<usize>> = encoded.iter().map(|e| e.ids.iter().enumerate().filter(|(_, &t)| t == self.mask_id).map(|(p, _)| p).collect()).collect();
        if let Some(i) = masks.iter().position(Vec::is_empty) {
            crate::bail!("{}: no {} in the text{}", at(i), self.mask_token, if encoded[i].truncated { " (it was cut at --max-length)" } else { "" });
        }
        let rows: Vec<&[u32]> = encoded.iter().map(|e| e.ids.as_slice()).collect();
        // Per row, per mask: the probabilities over the vocabulary, top k.
        let top: Vec<Vec<Vec<(u32, f32)>>> = map_batches(&self.model, &rows, budget, |packed| {
            let row_masks: Vec<Vec<usize>> = (0..packed.batch())
                .map(|b| packed.row(b).iter().enumerate().filter(|(_, &t)| t == self.mask_id).map(|(p, _)| p).collect())
                .collect();
            let at: Vec<(usize, usize)> = row_masks.iter().enumerate().flat_map(|(b, ps)| ps.iter().map(move |&p| (b, p))).collect();
            let logits = self.model.masked_logits(packed, &at, &Mode::eval())?;
            let probs = crate::kernels::softmax_last_dim(&logits)?.to_vec2::<f32>()?;
            let mut it = probs.into_iter();
            Ok(row_masks
                .iter()
                .map(|ps| {
                    ps.iter()
                        .map(|_| {
                            let p = it.next().unwrap_or_default();
                            let mut idx: Vec<usize> = (0..p.len()).collect();
                            idx.select_nth_unstable_by(k.min(p.len()).saturating_sub(1), |&a, &b| p[b].total_cmp(&p[a]));
                            idx.truncate(k);
                            idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
                            idx.into_iter().map(|i| (i as u32, p[i])).collect()
                        })
                        .collect()
                })
                .collect())
        })?;
        let tok = self.encoder.tokenizer();
        let mut out = Vec::with_capacity(texts.len());
        for (e, (per_mask, positions)) in encoded.iter().zip(top.into_iter().zip(&masks)) {
            let mut fills = Vec::with_capacity(per_mask.len());
            for (cands, &pos) in per_mask.into_iter().zip(positions) {
                let mut one = Vec::with_capacity(cands.len());
                for (id, score) in cands {
                    let mut ids = e.ids.clone();
                    ids[pos] = id;
                    let token_str = tok.decode(&[id], false).map_err(|err| crate::err!("cannot decode token {id}: {err}"))?;
                    let sequence = tok.decode(&ids, true).map_err(|err| crate::err!("cannot decode: {err}"))?;
                    one.push(Fill { token: id, token_str, score, sequence });
                }
                fills.push(one);
            }
            out.push(fills);
        }
        Ok((out, cut))
    }
}
