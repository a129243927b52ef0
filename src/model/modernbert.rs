//! ModernBERT, module for module as transformers defines it (`modeling_modernbert.py`), with tensor
//! names exactly as transformers saves them.
//!
//! ```text
//! model.embeddings   tok_embeddings → norm → dropout
//! model.layers.N     x + attn(attn_norm(x)); x + mlp(mlp_norm(x))      (layer 0: attn_norm = Identity)
//!   attn             Wqkv → rotary(q, k) → softmax(q·kᵀ/√d + mask) · v → Wo
//!   mlp              Wi → (input, gate) → act(input) · gate → Wo        (GeGLU)
//! model.final_norm
//! head               dense → act → norm                                 (ModernBertPredictionHead)
//! classifier         Linear(hidden, num_labels) → logits
//! ```
//! Layers alternate global attention (every token) and local attention (|i - j| <= local_attention/2),
//! each with its own rotary base.
//!
//! Two execution paths compute the same function (tests/it/unpadded.rs): the **unpadded** one (CPU,
//! f32/f64: the batch's real tokens concatenated, attention by the fused kernel in `attention.rs`,
//! banded in local layers) that `forward` takes whenever it can, and the **padded** reference
//! (`forward_padded`: dense masked attention over `[batch, heads, seq, seq]`, any device or dtype).

use std::sync::Arc;

use candle_core::{DType, Device, IndexOp, Tensor, D};
use candle_nn::VarBuilder;

use crate::error::Result;
use crate::model::config::{LayerType, ModernBertConfig, Pooling};
use crate::kernels::VarlenAttention;
use crate::model::packed::Packed;
use crate::model::nn::{apply_rope, rope_tables, rope_values, softmax_last_dim, Activation, Embedding, LayerNorm, Linear, Mode};

/// Init standard deviations, as `ModernBertPreTrainedModel._init_weights` chooses them.
struct InitStd {
    input: f64,
    out: f64,
    final_out: f64,
}

impl InitStd {
    fn new(c: &ModernBertConfig) -> Self {
        InitStd {
            input: c.initializer_range,
            out: c.initializer_range / (2.0 * c.num_hidden_layers as f64).sqrt(),
            final_out: (c.hidden_size as f64).powf(-0.5),
        }
    }
}

pub struct Embeddings {
    tok_embeddings: Embedding,
    norm: LayerNorm,
    dropout: f64,
    pad_token_id: Option<u32>,
}

impl Embeddings {
    fn new(vb: VarBuilder, c: &ModernBertConfig) -> Result<Self> {
        Ok(Embeddings {
            tok_embeddings: Embedding::new(vb.pp("tok_embeddings"), c.vocab_size, c.hidden_size, c.initializer_range)?,
            norm: LayerNorm::new(vb.pp("norm"), c.hidden_size, c.norm_bias, c.norm_eps)?,
            dropout: c.embedding_dropout,
            pad_token_id: c.pad_token_id,
        })
    }

    /// `may_contain_pad`: false when the caller knows no id is the pad id (skips the pad-row rule).
    fn forward(&self, input_ids: &Tensor, may_contain_pad: bool, mode: &Mode) -> Result<Tensor> {
        let mut e = self.tok_embeddings.forward(input_ids, mode)?;
        // nn.Embedding(padding_idx=pad) never sends gradient to the pad row; do the same.
        if let (Some(pad), true, true) = (self.pad_token_id, self.tok_embeddings.weight.track_op(), may_contain_pad) {
            let is_pad = input_ids.eq(pad)?.unsqueeze(D::Minus1)?.broadcast_as(e.shape())?;
            e = is_pad.where_cond(&e.detach(), &e)?;
        }
        mode.dropout(&self.norm.forward(&e)?, self.dropout)
    }
}

pub struct Attention {
    wqkv: Linear,
    wo: Linear,
    num_heads: usize,
    head_dim: usize,
    dropout: f64,
    pub layer_type: LayerType,
}

impl Attention {
    fn new(vb: VarBuilder, c: &ModernBertConfig, layer_type: LayerType) -> Result<Self> {
        let std = InitStd::new(c);
        Ok(Attention {
            wqkv: Linear::new(vb.pp("Wqkv"), c.hidden_size, 3 * c.hidden_size, c.attention_bias, std.input)?,
            wo: Linear::new(vb.pp("Wo"), c.hidden_size, c.hidden_size, c.attention_bias, std.out)?,
            num_heads: c.num_attention_heads,
            head_dim: c.head_dim(),
            dropout: c.attention_dropout,
            layer_type,
        })
    }

    /// `x`: [batch, seq, hidden]; `mask`: additive, broadcastable to [batch, heads, seq, seq].
    fn forward(&self, x: &Tensor, rope: &(Tensor, Tensor), mask: &Tensor, mode: &Mode) -> Result<Tensor> {
        let (b, s, h) = x.dims3()?;
        let qkv = self.wqkv.forward(x)?.reshape((b, s, 3, self.num_heads, self.head_dim))?;
        let part = |i: usize| -> Result<Tensor> { Ok(qkv.i((.., .., i))?.transpose(1, 2)?.contiguous()?) };
        let (q, k, v) = (part(0)?, part(1)?, part(2)?);
        let q = apply_rope(&q, &rope.0, &rope.1)?;
        let k = apply_rope(&k, &rope.0, &rope.1)?;

        let scale = (self.head_dim as f64).powf(-0.5);
        let scores = (q.matmul(&k.t()?)? * scale)?;
        // Mask and softmax in f32 (f64 for f64 models) even for half-precision weights.
        let work = mask.dtype();
        let probs = softmax_last_dim(&scores.to_dtype(work)?.broadcast_add(mask)?)?.to_dtype(x.dtype())?;
        let probs = mode.dropout(&probs, self.dropout)?;
        let out = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, s, h))?;
        mode.dropout(&self.wo.forward(&out)?, self.dropout)
    }

    /// `x`: the concatenated real tokens [tokens, hidden]; `kernel` knows the sequences and window.
    fn forward_packed(&self, x: &Tensor, kernel: &VarlenAttention, mode: &Mode) -> Result<Tensor> {
        let out = kernel.apply(&self.wqkv.forward(x)?)?;
        mode.dropout(&self.wo.forward(&out)?, self.dropout)
    }
}

pub struct Mlp {
    wi: Linear,
    wo: Linear,
    act: Activation,
    dropout: f64,
}

impl Mlp {
    fn new(vb: VarBuilder, c: &ModernBertConfig) -> Result<Self> {
        let std = InitStd::new(c);
        Ok(Mlp {
            wi: Linear::new(vb.pp("Wi"), c.hidden_size, 2 * c.intermediate_size, c.mlp_bias, std.input)?,
            wo: Linear::new(vb.pp("Wo"), c.intermediate_size, c.hidden_size, c.mlp_bias, std.out)?,
            act: c.hidden_activation,
            dropout: c.mlp_dropout,
        })
    }

    fn forward(&self, x: &Tensor, mode: &Mode) -> Result<Tensor> {
        let hidden = crate::kernels::glu(&self.wi.forward(x)?, self.act)?;
        self.wo.forward(&mode.dropout(&hidden, self.dropout)?)
    }
}

pub struct EncoderLayer {
    /// `None` for layer 0: transformers uses Identity there and saves no `attn_norm` weights.
    attn_norm: Option<LayerNorm>,
    attn: Attention,
    mlp_norm: LayerNorm,
    mlp: Mlp,
}

impl EncoderLayer {
    fn new(vb: VarBuilder, c: &ModernBertConfig, index: usize) -> Result<Self> {
        let attn_norm = if index == 0 {
            None
        } else {
            Some(LayerNorm::new(vb.pp("attn_norm"), c.hidden_size, c.norm_bias, c.norm_eps)?)
        };
        Ok(EncoderLayer {
            attn_norm,
            attn: Attention::new(vb.pp("attn"), c, c.layer_types[index])?,
            mlp_norm: LayerNorm::new(vb.pp("mlp_norm"), c.hidden_size, c.norm_bias, c.norm_eps)?,
            mlp: Mlp::new(vb.pp("mlp"), c)?,
        })
    }

    fn forward(&self, x: &Tensor, rope: &(Tensor, Tensor), mask: &Tensor, mode: &Mode) -> Result<Tensor> {
        let normed = match &self.attn_norm {
            Some(n) => n.forward(x)?,
            None => x.clone(),
        };
        let x = (x + self.attn.forward(&normed, rope, mask, mode)?)?;
        let y = self.mlp.forward(&self.mlp_norm.forward(&x)?, mode)?;
        Ok((x + y)?)
    }

    fn forward_packed(&self, x: &Tensor, kernel: &VarlenAttention, mode: &Mode) -> Result<Tensor> {
        let normed = match &self.attn_norm {
            Some(n) => n.forward(x)?,
            None => x.clone(),
        };
        let x = (x + self.attn.forward_packed(&normed, kernel, mode)?)?;
        let y = self.mlp.forward(&self.mlp_norm.forward(&x)?, mode)?;
        Ok((x + y)?)
    }
}

/// The encoder (`ModernBertModel`, weights under `model.` in task checkpoints).
pub struct ModernBertModel {
    embeddings: Embeddings,
    layers: Vec<EncoderLayer>,
    final_norm: LayerNorm,
    config: ModernBertConfig,
}

impl ModernBertModel {
    pub fn new(vb: VarBuilder, c: &ModernBertConfig) -> Result<Self> {
        let layers = (0..c.num_hidden_layers)
            .map(|i| EncoderLayer::new(vb.pp(format!("layers.{i}")), c, i))
            .collect::<Result<Vec<_>>>()?;
        Ok(ModernBertModel {
            embeddings: Embeddings::new(vb.pp("embeddings"), c)?,
            layers,
            final_norm: LayerNorm::new(vb.pp("final_norm"), c.hidden_size, c.norm_bias, c.norm_eps)?,
            config: c.clone(),
        })
    }

    pub fn config(&self) -> &ModernBertConfig {
        &self.config
    }

    /// The token embedding matrix [vocab, hidden] (the masked-LM decoder's weight when tied).
    pub fn token_embeddings(&self) -> &Tensor {
        &self.embeddings.tok_embeddings.weight
    }

    pub fn dtype(&self) -> DType {
        self.final_norm.weight.dtype()
    }

    pub fn device(&self) -> &Device {
        self.final_norm.weight.device()
    }

    /// `input_ids`: u32 [batch, seq]; `attention_mask`: u32 [batch, seq], 1 for real tokens, 0 for padding
    /// (`None`: every token is real). Returns the last hidden state [batch, seq, hidden].
    pub fn forward(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>, mode: &Mode) -> Result<Tensor> {
        let (batch, seq) = input_ids.dims2()?;
        if seq > self.config.max_position_embeddings {
            crate::bail!(
                "sequence of {seq} tokens exceeds the model's max_position_embeddings ({}); truncate inputs",
                self.config.max_position_embeddings
            );
        }
        let valid: Vec<Vec<u32>> = match attention_mask {
            Some(m) => m.to_dtype(DType::U32)?.to_vec2()?,
            None => vec![vec![1; seq]; batch],
        };
        let dtype = self.dtype();
        let dev = self.device();
        let work = if dtype == DType::F64 { DType::F64 } else { DType::F32 };
        let global_mask = attention_bias(&valid, None, work, dev)?;
        let local_mask = if self.layers.iter().any(|l| l.attn.layer_type == LayerType::Sliding) {
            Some(attention_bias(&valid, Some(self.config.sliding_window()), work, dev)?)
        } else {
            None
        };
        let hd = self.config.head_dim();
        let rope_global = rope_tables(self.config.global_rope_theta, hd, seq, dtype, dev)?;
        let rope_local = rope_tables(self.config.local_rope_theta, hd, seq, dtype, dev)?;

        let mut x = self.embeddings.forward(input_ids, true, mode)?;
        for layer in &self.layers {
            x = match layer.attn.layer_type {
                LayerType::Full => layer.forward(&x, &rope_global, &global_mask, mode)?,
                LayerType::Sliding => {
                    layer.forward(&x, &rope_local, local_mask.as_ref().expect("built above"), mode)?
                }
            };
        }
        self.final_norm.forward(&x)
    }

    /// The encoder on a batch without padding: the real tokens of every sequence concatenated
    /// ([tokens]) and where each sequence starts. Returns the last hidden state [tokens, hidden].
    pub fn forward_packed(&self, packed: &Packed, mode: &Mode) -> Result<Tensor> {
        let longest = packed.lengths().max().unwrap_or(0);
        if longest > self.config.max_position_embeddings {
            crate::bail!(
                "sequence of {longest} tokens exceeds the model's max_position_embeddings ({}); truncate inputs",
                self.config.max_position_embeddings
            );
        }
        let hd = self.config.head_dim();
        let kernel = |theta: f64, window: Option<usize>| {
            let (cos, sin) = rope_values(theta, hd, longest);
            VarlenAttention {
                cu_seqlens: packed.cu_seqlens.clone(),
                heads: self.config.num_attention_heads,
                head_dim: hd,
                window,
                cos: Arc::new(cos),
                sin: Arc::new(sin),
            }
        };
        let global = kernel(self.config.global_rope_theta, None);
        let local = kernel(self.config.local_rope_theta, Some(self.config.sliding_window()));
        let mut x = self.embeddings.forward(&packed.ids, packed.has_pad, mode)?;
        for layer in &self.layers {
            let k = match layer.attn.layer_type {
                LayerType::Full => &global,
                LayerType::Sliding => &local,
            };
            x = layer.forward_packed(&x, k, mode)?;
        }
        self.final_norm.forward(&x)
    }
}

/// The additive attention mask: 0 where query i may attend key j, the dtype's most negative finite
/// value elsewhere (finite so that a row with every key masked gives a uniform softmax, never NaN).
/// `window`: `Some(w)` restricts to |i - j| <= w (local layers); then the mask is [batch, 1, seq, seq],
/// otherwise a key-padding mask [batch, 1, 1, seq].
pub fn attention_bias(valid: &[Vec<u32>], window: Option<usize>, dtype: DType, dev: &Device) -> Result<Tensor> {
    let batch = valid.len();
    let seq = valid.first().map_or(0, Vec::len);
    let min = if dtype == DType::F64 { f64::MIN } else { f32::MIN as f64 };
    let t = match window {
        None => {
            let data: Vec<f64> = valid.iter().flatten().map(|&v| if v != 0 { 0.0 } else { min }).collect();
            Tensor::from_vec(data, (batch, 1, 1, seq), dev)?
        }
        Some(w) => {
            let mut data = Vec::with_capacity(batch * seq * seq);
            for row in valid {
                for i in 0..seq {
                    for (j, &v) in row.iter().enumerate() {
                        data.push(if v != 0 && i.abs_diff(j) <= w { 0.0 } else { min });
                    }
                }
            }
            Tensor::from_vec(data, (batch, 1, seq, seq), dev)?
        }
    };
    Ok(t.to_dtype(dtype)?)
}

/// Pools [batch, seq, hidden] to [batch, hidden]: the first token (`cls`) or the mean over real tokens.
pub fn pool(hidden: &Tensor, attention_mask: Option<&Tensor>, pooling: Pooling) -> Result<Tensor> {
    match pooling {
        Pooling::Cls => Ok(hidden.i((.., 0))?),
        Pooling::Mean => {
            let (b, s, _) = hidden.dims3()?;
            let mask = match attention_mask {
                Some(m) => m.to_dtype(hidden.dtype())?,
                None => Tensor::ones((b, s), hidden.dtype(), hidden.device())?,
            };
            let summed = hidden.broadcast_mul(&mask.unsqueeze(D::Minus1)?)?.sum(1)?;
            let counts = mask.sum_keepdim(1)?;
            Ok(summed.broadcast_div(&counts)?)
        }
    }
}

/// `ModernBertPredictionHead`: dense → activation → norm.
pub struct PredictionHead {
    dense: Linear,
    act: Activation,
    norm: LayerNorm,
}

impl PredictionHead {
    pub fn new(vb: VarBuilder, c: &ModernBertConfig) -> Result<Self> {
        let std = InitStd::new(c);
        Ok(PredictionHead {
            dense: Linear::new(vb.pp("dense"), c.hidden_size, c.hidden_size, c.classifier_bias, std.out)?,
            act: c.classifier_activation,
            norm: LayerNorm::new(vb.pp("norm"), c.hidden_size, c.norm_bias, c.norm_eps)?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.norm.forward(&self.act.forward(&self.dense.forward(x)?)?)
    }
}

/// The task head on top of the encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadKind {
    /// No head: the encoder alone (embeddings).
    None,
    /// `ModernBertForSequenceClassification`: pooled → head → classifier.
    Sequence,
    /// `ModernBertForTokenClassification`: every token → head → classifier.
    Token,
    /// `ModernBertForMaskedLM`: every token → head → decoder (its weight tied to the token
    /// embeddings unless the config sets `tie_word_embeddings = false`; its own bias).
    MaskedLm,
}

/// ModernBERT with an optional task head (a classifier, or the masked-LM decoder). Heads return
/// **logits**.
pub struct ModernBert {
    pub model: ModernBertModel,
    head: Option<(PredictionHead, Linear)>,
    kind: HeadKind,
}

/// Whether the masked-LM decoder shares the token embeddings (transformers' default).
pub fn ties_word_embeddings(c: &ModernBertConfig) -> bool {
    c.extra.get("tie_word_embeddings").and_then(|v| v.as_bool()).unwrap_or(true)
}

/// Outputs of one forward pass.
pub struct Output {
    pub last_hidden_state: Tensor,
    /// `[batch, num_labels]` for sequence heads, `[batch, seq, num_labels]` for token heads.
    pub logits: Option<Tensor>,
}

impl ModernBert {
    pub fn new(vb: VarBuilder, c: &ModernBertConfig, kind: HeadKind) -> Result<Self> {
        let model = ModernBertModel::new(vb.pp("model"), c)?;
        let head = match kind {
            HeadKind::None => None,
            HeadKind::Sequence | HeadKind::Token => {
                let std = InitStd::new(c);
                let head = PredictionHead::new(vb.pp("head"), c)?;
                // nn.Linear(hidden, num_labels) always has a bias.
                let classifier = Linear::new(vb.pp("classifier"), c.hidden_size, c.num_labels(), true, std.final_out)?;
                Some((head, classifier))
            }
            HeadKind::MaskedLm => {
                let std = InitStd::new(c);
                let head = PredictionHead::new(vb.pp("head"), c)?;
                let decoder = if ties_word_embeddings(c) {
                    let bias = if c.decoder_bias { Some(vb.pp("decoder").get_with_hints(c.vocab_size, "bias", candle_nn::Init::Const(0.0))?) } else { None };
                    Linear::from_parts(model.token_embeddings().clone(), bias)
                } else {
                    Linear::new(vb.pp("decoder"), c.hidden_size, c.vocab_size, c.decoder_bias, std.out)?
                };
                Some((head, decoder))
            }
        };
        Ok(ModernBert { model, head, kind })
    }

    pub fn config(&self) -> &ModernBertConfig {
        self.model.config()
    }

    /// Switches every linear layer to bf16 products (PyTorch's CPU bf16 autocast for matmuls):
    /// about twice the f32 speed on CPUs with AVX-512 BF16, for inference; on a GPU, bf16 products on
    /// the device. Errors on other CPUs.
    pub fn use_bf16_matmuls(&mut self) -> Result<()> {
        if !self.model.device().is_cpu() && self.model.dtype() == DType::F32 {
            // On a GPU: bf16 products on the device (`nn::bf16_product`), f32 weights kept.
            self.train_in_bf16();
            return Ok(());
        }
        if !crate::kernels::bf16_supported() || self.model.dtype() != DType::F32 {
            crate::bail!("bf16 matmuls need f32 weights on a CPU with AVX-512 BF16 (this one has none); run with --precision f32");
        }
        for layer in &mut self.model.layers {
            for l in [&mut layer.attn.wqkv, &mut layer.attn.wo, &mut layer.mlp.wi, &mut layer.mlp.wo] {
                l.use_bf16()?;
            }
        }
        if let Some((head, classifier)) = &mut self.head {
            head.dense.use_bf16()?;
            classifier.use_bf16()?;
        }
        Ok(())
    }

    /// Mixed-precision training: every linear layer (attention, MLP, head, classifier or decoder)
    /// multiplies in bf16 as autocast does ([`Linear::train_in_bf16`]); embeddings, LayerNorm,
    /// attention scores, softmax and the loss stay f32, as do the weights and the optimizer.
    pub fn train_in_bf16(&mut self) {
        for layer in &mut self.model.layers {
            for l in [&mut layer.attn.wqkv, &mut layer.attn.wo, &mut layer.mlp.wi, &mut layer.mlp.wo] {
                l.train_in_bf16();
            }
        }
        if let Some((head, out)) = &mut self.head {
            head.dense.train_in_bf16();
            out.train_in_bf16();
        }
    }

    /// Whether `forward_batch` runs the unpadded kernels: CPU, f32/f64 weights, no attention-probability
    /// dropout. Otherwise the padded reference path runs. Both give the same numbers
    /// (tests/it/unpadded.rs).
    fn packs(&self, mode: &Mode) -> bool {
        self.model.device().is_cpu()
            && matches!(self.model.dtype(), DType::F32 | DType::F64)
            && !(mode.is_train() && self.config().attention_dropout > 0.0)
    }

    /// The forward pass of a packed batch (what every command and the trainer call): unpadded when
    /// [`Self::packs`], else through its padded form. `last_hidden_state` and token logits come
    /// back padded ([batch, longest, ...]).
    pub fn forward_batch(&self, batch: &Packed, mode: &Mode) -> Result<Output> {
        if self.packs(mode) {
            return self.forward_packed(batch, mode);
        }
        let (ids, mask) = batch.padded(self.config().pad_token_id.unwrap_or(0))?;
        self.forward_padded(&ids, Some(&mask), mode)
    }

    /// The encoder's pooled vectors of a packed batch, [batch, hidden] (gradients flow).
    pub fn pooled(&self, batch: &Packed, pooling: Pooling, mode: &Mode) -> Result<Tensor> {
        if self.packs(mode) {
            return batch.pool(&self.model.forward_packed(batch, mode)?, pooling);
        }
        let (ids, mask) = batch.padded(self.config().pad_token_id.unwrap_or(0))?;
        pool(&self.model.forward(&ids, Some(&mask), mode)?, Some(&mask), pooling)
    }

    /// transformers' calling convention: padded ids and mask. Packs them when it can (right-padded
    /// masks) and [`Self::packs`], else runs the padded path.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>, mode: &Mode) -> Result<Output> {
        if self.packs(mode) {
            if let Some(packed) = Packed::from_padded(input_ids, attention_mask, self.config().pad_token_id)? {
                return self.forward_packed(&packed, mode);
            }
        }
        self.forward_padded(input_ids, attention_mask, mode)
    }

    /// Masked-LM logits at the tokens `at` ((row, position in the row) pairs), [n, vocab]: the head
    /// and the decoder run on those tokens only (transformers' `sparse_prediction`, which gives the
    /// same logits and loss at those tokens).
    pub fn masked_logits(&self, batch: &Packed, at: &[(usize, usize)], mode: &Mode) -> Result<Tensor> {
        self.mlm_decode(&self.masked_hidden(batch, at, mode)?)
    }

    /// The encoder's last hidden states at the tokens `at`, [n, hidden].
    pub fn masked_hidden(&self, batch: &Packed, at: &[(usize, usize)], mode: &Mode) -> Result<Tensor> {
        let (hidden, index): (Tensor, Vec<u32>) = if self.packs(mode) {
            (self.model.forward_packed(batch, mode)?, at.iter().map(|&(r, p)| (batch.cu_seqlens[r] + p) as u32).collect())
        } else {
            let (ids, mask) = batch.padded(self.config().pad_token_id.unwrap_or(0))?;
            let h = self.model.forward(&ids, Some(&mask), mode)?;
            let (b, s, d) = h.dims3()?;
            (h.reshape((b * s, d))?, at.iter().map(|&(r, p)| (r * s + p) as u32).collect())
        };
        let n = index.len();
        Ok(hidden.index_select(&Tensor::from_vec(index, n, hidden.device())?, 0)?)
    }

    /// The masked-LM head and decoder over hidden states [n, hidden] → logits [n, vocab].
    pub fn mlm_decode(&self, hidden: &Tensor) -> Result<Tensor> {
        let (Some((head, decoder)), HeadKind::MaskedLm) = (&self.head, &self.kind) else {
            crate::bail!("this model has no masked-LM head");
        };
        decoder.forward(&head.forward(hidden)?)
    }

    /// The same as `forward` on a packed batch; `last_hidden_state` and token logits come back padded.
    pub fn forward_packed(&self, packed: &Packed, mode: &Mode) -> Result<Output> {
        let flat = self.model.forward_packed(packed, mode)?;
        let logits = match (&self.head, &self.kind) {
            (Some((head, classifier)), HeadKind::Sequence) => {
                let pooled = packed.pool(&flat, self.config().classifier_pooling)?;
                let x = mode.dropout(&head.forward(&pooled)?, self.config().classifier_dropout)?;
                Some(classifier.forward(&x)?)
            }
            (Some((head, classifier)), HeadKind::Token) => {
                let x = mode.dropout(&head.forward(&flat)?, self.config().classifier_dropout)?;
                Some(packed.repad(&classifier.forward(&x)?)?)
            }
            (Some((head, decoder)), HeadKind::MaskedLm) => Some(packed.repad(&decoder.forward(&head.forward(&flat)?)?)?),
            _ => None,
        };
        Ok(Output { last_hidden_state: packed.repad(&flat)?, logits })
    }

    /// The padded path: dense [batch, heads, seq, seq] attention with additive masks, as transformers'
    /// eager attention computes it. Hidden states at padding positions are whatever that gives.
    pub fn forward_padded(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>, mode: &Mode) -> Result<Output> {
        let hidden = self.model.forward(input_ids, attention_mask, mode)?;
        let logits = match (&self.head, &self.kind) {
            (Some((head, classifier)), HeadKind::Sequence) => {
                let pooled = pool(&hidden, attention_mask, self.config().classifier_pooling)?;
                let x = mode.dropout(&head.forward(&pooled)?, self.config().classifier_dropout)?;
                Some(classifier.forward(&x)?)
            }
            (Some((head, classifier)), HeadKind::Token) => {
                let x = mode.dropout(&head.forward(&hidden)?, self.config().classifier_dropout)?;
                Some(classifier.forward(&x)?)
            }
            (Some((head, decoder)), HeadKind::MaskedLm) => Some(decoder.forward(&head.forward(&hidden)?)?),
            _ => None,
        };
        Ok(Output { last_hidden_state: hidden, logits })
    }
}
