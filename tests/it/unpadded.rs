//! The unpadded path (real tokens only, fused attention kernel with banded local layers) computes the
//! same function as the padded reference path: hidden states at real positions, logits, and the
//! gradient of every parameter, in f64 so that any difference beyond rounding shows.

use crate::common;

use candle_core::{DType, Device, IndexOp, Tensor};
use modernft::data::pad_batch;
use modernft::tasks::loss::cross_entropy;
use modernft::model::{build, HeadKind, LoadOptions, Loaded, Mode, ModernBertConfig, Packed};
use modernft::rng::Rng;
use serde_json::json;

/// `local_attention` 6 (keys within ±3) exercises the band inside the 64-row query tiles; 200
/// (±100) a window wider than a tile, clipped at the sequence ends.
fn config(local_attention: usize, pooling: &str) -> ModernBertConfig {
    ModernBertConfig::from_value(&json!({
        "vocab_size": 50, "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 3,
        "num_attention_heads": 2, "max_position_embeddings": 256, "local_attention": local_attention,
        "global_attn_every_n_layers": 2, "initializer_range": 0.3, "pad_token_id": 0,
        "norm_bias": true, "attention_bias": true, "mlp_bias": true, "classifier_bias": true,
        "classifier_pooling": pooling, "num_labels": 3
    }))
    .unwrap()
}

/// Rows of 150 (three query tiles), 70, 9 and 1 tokens; one row contains the pad id as a real token.
fn batch(dev: &Device) -> (Tensor, Tensor) {
    let mut rng = Rng::new(5);
    let rows: Vec<Vec<u32>> = [150usize, 70, 9, 1]
        .iter()
        .map(|&n| (0..n).map(|_| 1 + rng.below(49) as u32).collect())
        .collect();
    let mut rows = rows;
    rows[2][4] = 0;
    let refs: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
    pad_batch(&refs, 0, dev).unwrap()
}

fn model(c: &ModernBertConfig, kind: HeadKind) -> Loaded {
    let opts = LoadOptions { dtype: DType::F64, trainable: true, seed: 11, ..Default::default() };
    build(c, None, kind, &opts).unwrap()
}

fn lengths(mask: &Tensor) -> Vec<usize> {
    mask.to_vec2::<u32>().unwrap().iter().map(|r| r.iter().filter(|&&v| v != 0).count()).collect()
}

fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
    let d = common::max_abs_diff(a, b) as f64;
    let scale = b.abs().unwrap().max_all().unwrap().to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap();
    d / scale.max(1e-30)
}

#[test]
fn unpadded_path_equals_padded_path_forward_and_backward() {
    let dev = Device::Cpu;
    let (ids, mask) = batch(&dev);
    let packed = Packed::from_padded(&ids, Some(&mask), Some(0)).unwrap().expect("right-padded batch packs");
    assert_eq!(packed.cu_seqlens.as_slice(), &[0, 150, 220, 229, 230]);
    let labels = Tensor::new(&[2u32, 0, 1, 1], &dev).unwrap();
    let mut checked = 0;
    for (local, pooling) in [(6, "mean"), (200, "cls"), (6, "cls")] {
        let m = model(&config(local, pooling), HeadKind::Sequence);
        let padded = m.model.forward_padded(&ids, Some(&mask), &Mode::eval()).unwrap();
        let unpadded = m.model.forward_packed(&packed, &Mode::eval()).unwrap();
        for (row, len) in lengths(&mask).into_iter().enumerate() {
            let a = unpadded.last_hidden_state.i((row, 0..len)).unwrap();
            let b = padded.last_hidden_state.i((row, 0..len)).unwrap();
            assert!(max_rel(&a, &b) < 1e-12, "local {local}: hidden row {row} differs by {}", max_rel(&a, &b));
        }
        let (lp, lu) = (padded.logits.unwrap(), unpadded.logits.unwrap());
        assert!(max_rel(&lu, &lp) < 1e-12, "local {local} {pooling}: logits differ by {}", max_rel(&lu, &lp));

        // The public forward takes the unpadded path for this batch: the same logits again.
        let auto = m.model.forward(&ids, Some(&mask), &Mode::eval()).unwrap().logits.unwrap();
        assert_eq!(common::max_abs_diff(&auto, &lu), 0.0);

        let gp = cross_entropy(&lp, &labels).unwrap().backward().unwrap();
        let gu = cross_entropy(&lu, &labels).unwrap().backward().unwrap();
        for (name, var) in &m.params {
            let a = gu.get(var.as_tensor()).unwrap_or_else(|| panic!("{name}: no gradient on the unpadded path"));
            let b = gp.get(var.as_tensor()).unwrap();
            let norm = b.abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
            assert!(norm > 0.0, "{name}: zero gradient");
            assert!(max_rel(a, b) < 1e-10, "local {local} {pooling}: gradient of {name} differs by {}", max_rel(a, b));
            checked += 1;
        }
    }
    assert!(checked > 3 * 30);
}

#[test]
fn token_head_unpadded_equals_padded_at_real_positions() {
    let dev = Device::Cpu;
    let (ids, mask) = batch(&dev);
    let m = model(&config(6, "mean"), HeadKind::Token);
    let packed = Packed::from_padded(&ids, Some(&mask), Some(0)).unwrap().unwrap();
    let padded = m.model.forward_padded(&ids, Some(&mask), &Mode::eval()).unwrap().logits.unwrap();
    let unpadded = m.model.forward_packed(&packed, &Mode::eval()).unwrap().logits.unwrap();
    assert_eq!(unpadded.dims(), padded.dims());
    for (row, len) in lengths(&mask).into_iter().enumerate() {
        let (a, b) = (unpadded.i((row, 0..len)).unwrap(), padded.i((row, 0..len)).unwrap());
        assert!(max_rel(&a, &b) < 1e-12, "row {row}: {}", max_rel(&a, &b));
        // Padding positions come back as zeros.
        if len < 150 {
            let pad = unpadded.i((row, len..)).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
            assert_eq!(pad, 0.0);
        }
    }
}

#[test]
fn f32_unpadded_path_matches_padded_within_float_rounding() {
    let dev = Device::Cpu;
    let (ids, mask) = batch(&dev);
    let opts = LoadOptions { dtype: DType::F32, trainable: true, seed: 11, ..Default::default() };
    let m = build(&config(6, "mean"), None, HeadKind::Sequence, &opts).unwrap();
    let packed = Packed::from_padded(&ids, Some(&mask), Some(0)).unwrap().unwrap();
    let a = m.model.forward_padded(&ids, Some(&mask), &Mode::eval()).unwrap().logits.unwrap();
    let b = m.model.forward_packed(&packed, &Mode::eval()).unwrap().logits.unwrap();
    assert!(max_rel(&b, &a) < 1e-5, "{}", max_rel(&b, &a));
}

#[test]
fn masks_that_are_not_right_padding_take_the_padded_path() {
    let dev = Device::Cpu;
    let ids = Tensor::new(&[[0u32, 5, 6], [7, 8, 9]], &dev).unwrap();
    let left = Tensor::new(&[[0u32, 1, 1], [1, 1, 1]], &dev).unwrap();
    assert!(Packed::from_padded(&ids, Some(&left), Some(0)).unwrap().is_none());
    let holes = Tensor::new(&[[1u32, 0, 1], [1, 1, 1]], &dev).unwrap();
    assert!(Packed::from_padded(&ids, Some(&holes), Some(0)).unwrap().is_none());
    // And the model still runs them, through the padded path.
    let m = model(&config(6, "mean"), HeadKind::Sequence);
    let a = m.model.forward(&ids, Some(&left), &Mode::eval()).unwrap().logits.unwrap();
    let b = m.model.forward_padded(&ids, Some(&left), &Mode::eval()).unwrap().logits.unwrap();
    assert_eq!(common::max_abs_diff(&a, &b), 0.0);
}
