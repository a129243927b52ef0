//! One optimizer step, as nanoGPT writes it: forward and backward over the micro-batches, clip the
//! global gradient norm, AdamW at the scheduled rate.


use candle_core::Tensor;

use crate::data::{Batch, TokenStore};
use crate::error::{Context, Result};
use crate::model::{Loaded, Mode, Pooling};
use crate::tasks;
use crate::train::grads::Grads;
use crate::train::setup::Run;
use crate::train::trainer::last_checkpoint_hint;

/// One optimizer step: forward and backward over the micro-batches, clip, AdamW at the scheduled
/// rate. Returns (loss, gradient norm before clipping, learning rate, real tokens). `epoch` is the
/// epoch the micro-batches come from (masked-LM masks per epoch).
pub(crate) fn step(run: &mut Run, group: &[Vec<usize>], mode: &Mode, done: usize, epoch: usize) -> Result<(f64, f64, f64, usize)> {
    let (mut loss, mut grads, mut tokens) = accumulate(run, group, mode, epoch)
        .map_err(|e| e.wrap(format!("training stopped at step {}{}", done + 1, last_checkpoint_hint(&run.dir))))?;
    if run.world.size() > 1 {
        // Each rank's loss and gradients are its share of the global batch's: their sums are the
        // global batch's (in 64 MiB fusion buffers, parameters in one order on every rank).
        let started = std::time::Instant::now();
        let mut totals = [loss, tokens as f64];
        run.world.sum_f64(&mut totals)?;
        (loss, tokens) = (totals[0], totals[1] as usize);
        run.world.sum_gradients(&mut grads, &run.loaded.params)?;
        run.allreduce_seconds += started.elapsed().as_secs_f64();
    }
    let grad_norm = clip_grad_norm(&run.loaded, &mut grads, run.cfg.training.max_grad_norm)?;
    let lr = run.schedule.lr(done);
    run.optimizer.step(&grads, lr)?;
    Ok((loss, grad_norm, lr, tokens))
}

/// Forward and backward over the micro-batches of one step; returns the step's loss, the summed
/// gradients, and the number of real tokens. The step's loss is the mean over its micro-batches,
/// except for a masked-LM: the mean over every masked token of the step, each micro-batch weighted
/// by its share of them (transformers' Trainer passes `num_items_in_batch` to ForMaskedLMLoss).
///
/// Under MPI, `group` holds the global micro-batches and this rank trains on its share of each
/// ([`World::part`](crate::train::dist::World::part)), its loss weighted by its share of what the
/// loss averages over (rows; tagged words; masked tokens), so that the ranks' sums are one
/// process's numbers. Contrastive losses take their in-batch negatives from the rank's own rows
/// (as sentence-transformers does under DDP).
pub(crate) fn accumulate(run: &Run, group: &[Vec<usize>], mode: &Mode, epoch: usize) -> Result<(f64, Grads, usize)> {
    let dev = run.loaded.model.model.device().clone();
    let world = &run.world;
    let mut total: Option<Grads> = None;
    let (mut loss_sum, mut tokens) = (0f64, 0usize);
    let local: Vec<&[usize]> = group.iter().map(|rows| world.part(rows)).collect();
    let mut masked = match &run.mlm {
        Some(masking) => local.iter().map(|rows| masked_batch(masking, &run.train_rows().tokens, rows, epoch, run.config.pad_token_id, &dev).map(Some)).collect::<Result<Vec<_>>>()?,
        None => group.iter().map(|_| None).collect(),
    };
    let masked_tokens: usize = match (&run.mlm, world.size()) {
        (Some(masking), n) if n > 1 => {
            let store = &run.train_rows().tokens;
            group.iter().flatten().map(|&r| masking.row(store.row(r), epoch, r).targets.len()).sum()
        }
        _ => masked.iter().flatten().map(|(_, at, _)| at.len()).sum(),
    };
    for ((&rows, global), masked) in local.iter().zip(group).zip(masked.iter_mut()) {
        let ds = run.train_rows();
        // This rank's share of what the micro-batch's loss averages over (1 for one process).
        let share = match world.size() {
            1 => 1.0,
            _ if run.kind == crate::data::TargetKind::Tags && run.embedding.is_none() && run.mlm.is_none() => {
                tasks::tokens::tagged_words(ds, rows) as f64 / tasks::tokens::tagged_words(ds, global).max(1) as f64
            }
            _ => rows.len() as f64 / global.len() as f64,
        };
        if share == 0.0 {
            // Nothing of this micro-batch falls to this rank.
            continue;
        }
        let loss = match (&run.embedding, masked.take()) {
            (_, Some((batch, at, targets))) => {
                tokens += batch.tokens();
                let share = at.len() as f64 / masked_tokens.max(1) as f64;
                (masked_lm_loss(&run.loaded.model, &batch, &at, &targets, mode)? * share)?
            }
            (Some(e), _) => {
                // Anchors, positives (and negatives) packed into one forward, then split by column.
                let stores: Vec<&TokenStore> = std::iter::once(&ds.tokens).chain(&ds.extra).collect();
                let pooled = pooled_rows(&run.loaded.model, &stores, rows, e.pooling, mode)?;
                let columns = (0..stores.len()).map(|c| pooled.narrow(0, c * rows.len(), rows.len())).collect::<candle_core::Result<Vec<_>>>()?;
                tokens += rows.iter().map(|&r| ds.tokens.row_len(r) + ds.extra.iter().map(|s| s.row_len(r)).sum::<usize>()).sum::<usize>();
                let scores: Option<Vec<f32>> = match &ds.targets {
                    Some(crate::data::Targets::Regression(v)) => Some(rows.iter().map(|&r| v[r]).collect()),
                    _ => None,
                };
                let l = crate::tasks::embedding::embedding_loss_with(e.loss, &columns, scores.as_deref(), e.scale, e.dims.as_deref(), &e.mnrl)?;
                weighted(l, group.len(), share)?
            }
            (None, None) => {
                let batch = Batch::new(ds, rows, run.config.pad_token_id, &dev)?;
                tokens += batch.real_tokens();
                let logits = run.loaded.model.forward_batch(&batch.packed, mode)?.logits.context("no head")?;
                weighted(tasks::batch_loss(run.kind, &logits, ds, rows, run.config.num_labels())?, group.len(), share)?
            }
        };
        let value = loss.to_scalar::<f32>()? as f64;
        if !value.is_finite() {
            crate::bail!("the training loss is {value}; lower the learning rate, or check the data for extreme targets");
        }
        loss_sum += value;
        let grads = Grads::backward(&loss, mode)?;
        total = Some(match total {
            None => grads,
            Some(mut acc) => {
                acc.accumulate(grads, &run.loaded.params)?;
                acc
            }
        });
    }
    let grads = match total {
        Some(g) => g,
        // A rank with no rows this step: no gradients (it adds zeros to the others' sums).
        None if world.size() > 1 => Grads::from(Tensor::new(0f32, &dev)?.backward()?),
        None => crate::bail!("an empty step"),
    };
    Ok((loss_sum, grads, tokens))
}

/// A micro-batch's loss as a part of the step's: the mean over the micro-batches, times this rank's
/// share (exactly `loss / micro_batches` for one process, as before MPI).
fn weighted(loss: Tensor, micro_batches: usize, share: f64) -> Result<Tensor> {
    let mean = (loss / micro_batches as f64)?;
    Ok(if share == 1.0 { mean } else { (mean * share)? })
}

/// Rows of `store` masked as `epoch` masks them, packed, with the masked tokens ((row in the batch,
/// position)) and their original ids.
pub fn masked_batch(masking: &crate::tasks::mlm::Masking, store: &TokenStore, rows: &[usize], epoch: usize, pad: Option<u32>, dev: &candle_core::Device) -> Result<(crate::model::Packed, Vec<(usize, usize)>, Vec<u32>)> {
    let (mut seqs, mut at, mut targets) = (Vec::with_capacity(rows.len()), Vec::new(), Vec::new());
    for (b, &r) in rows.iter().enumerate() {
        let m = masking.row(store.row(r), epoch, r);
        at.extend(m.targets.iter().map(|&(p, _)| (b, p)));
        targets.extend(m.targets.iter().map(|&(_, t)| t));
        seqs.push(m.ids);
    }
    let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
    Ok((crate::model::Packed::from_rows(&refs, pad, dev)?, at, targets))
}

/// Mean cross-entropy over the masked tokens. A batch without one (short rows, bad luck) gives a
/// zero loss with zero gradients, not the NaN of an empty mean.
pub fn masked_lm_loss(model: &crate::model::ModernBert, batch: &crate::model::Packed, at: &[(usize, usize)], targets: &[u32], mode: &Mode) -> Result<Tensor> {
    if at.is_empty() {
        return Ok((model.masked_logits(batch, &[(0, 0)], mode)?.sum_all()? * 0.0)?);
    }
    let logits = model.masked_logits(batch, at, mode)?;
    crate::tasks::loss::cross_entropy(&logits, &Tensor::new(targets, logits.device())?)
}

/// Pooled vectors of some rows of each store, in one packed forward: `[stores × rows, hidden]`, the
/// first store's rows first, each in the given order (gradients flow). Rows never see each other
/// (unpadded attention), so a row's vector is the one its own forward would give.
pub fn pooled_rows(model: &crate::model::ModernBert, stores: &[&TokenStore], rows: &[usize], pooling: Pooling, mode: &Mode) -> Result<Tensor> {
    let seqs: Vec<&[u32]> = stores.iter().flat_map(|store| rows.iter().map(|&i| store.row(i))).collect();
    model.pooled(&crate::model::Packed::from_rows(&seqs, model.config().pad_token_id, model.model.device())?, pooling, mode)
}

/// `torch.nn.utils.clip_grad_norm_`: scales all gradients by max_norm / (norm + 1e-6) when that is
/// below 1. Returns the norm before clipping.
pub(crate) fn clip_grad_norm(loaded: &Loaded, grads: &mut Grads, max_norm: f64) -> Result<f64> {
    let norm = grads.sum_sq(&loaded.params)?.sqrt();
    if max_norm > 0.0 {
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            grads.scale(coef, &loaded.params)?;
        }
    }
    Ok(norm)
}
