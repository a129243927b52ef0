//! Gradients are complete and correct, independently of any reference implementation:
//! a finite-difference check in f64, and every parameter receiving a non-zero gradient.

use crate::common;

use candle_core::{DType, Device, Tensor, Var};
use modernft::data::pad_batch;
use modernft::tasks::loss::cross_entropy;
use modernft::model::{build, HeadKind, LoadOptions, Loaded, Mode, ModernBertConfig};
use modernft::rng::Rng;
use serde_json::json;

fn tiny_config() -> ModernBertConfig {
    ModernBertConfig::from_value(&json!({
        "vocab_size": 40, "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 3,
        "num_attention_heads": 2, "max_position_embeddings": 64, "local_attention": 4,
        "global_attn_every_n_layers": 2, "initializer_range": 0.3, "pad_token_id": 0,
        "norm_bias": true, "attention_bias": true, "mlp_bias": true, "classifier_bias": true,
        "classifier_pooling": "mean", "num_labels": 3
    }))
    .unwrap()
}

fn batch(dev: &Device) -> (Tensor, Tensor, Tensor) {
    let rows: [&[u32]; 2] = [&[1, 5, 9, 13, 7, 22, 31, 8, 2], &[1, 17, 3, 4, 6, 2]];
    let (ids, mask) = pad_batch(&rows, 0, dev).unwrap();
    (ids, mask, Tensor::new(&[2u32, 0], dev).unwrap())
}

fn model(dtype: DType, kind: HeadKind) -> Loaded {
    let opts = LoadOptions { dtype, trainable: true, seed: 3, ..Default::default() };
    build(&tiny_config(), None, kind, &opts).unwrap()
}

fn loss_of(m: &Loaded, ids: &Tensor, mask: &Tensor, labels: &Tensor) -> Tensor {
    let logits = m.model.forward(ids, Some(mask), &Mode::eval()).unwrap().logits.unwrap();
    cross_entropy(&logits, labels).unwrap()
}

fn set_entry(var: &Var, index: usize, value: f64) {
    let mut v: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
    v[index] = value;
    var.set(&Tensor::from_vec(v, var.shape(), var.device()).unwrap()).unwrap();
}

#[test]
fn finite_differences_agree_with_backprop_in_f64() {
    let dev = Device::Cpu;
    let m = model(DType::F64, HeadKind::Sequence);
    let (ids, mask, labels) = batch(&dev);
    let grads = loss_of(&m, &ids, &mask, &labels).backward().unwrap();
    let mut rng = Rng::new(9);
    let h = 1e-6;
    let mut checked = 0;
    for (name, var) in &m.params {
        let analytic: Vec<f64> = grads.get(var.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let original: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        // The largest-gradient entry plus two random ones, per parameter.
        let argmax = (0..analytic.len()).max_by(|&a, &b| analytic[a].abs().total_cmp(&analytic[b].abs())).unwrap();
        for idx in [argmax, rng.below(analytic.len()), rng.below(analytic.len())] {
            set_entry(var, idx, original[idx] + h);
            let up = loss_of(&m, &ids, &mask, &labels).to_scalar::<f64>().unwrap();
            set_entry(var, idx, original[idx] - h);
            let down = loss_of(&m, &ids, &mask, &labels).to_scalar::<f64>().unwrap();
            set_entry(var, idx, original[idx]);
            let numeric = (up - down) / (2.0 * h);
            let err = (numeric - analytic[idx]).abs();
            assert!(
                err <= 1e-6 + 1e-4 * analytic[idx].abs(),
                "{name}[{idx}]: backprop {} vs finite difference {numeric}",
                analytic[idx]
            );
            checked += 1;
        }
    }
    assert!(checked >= 3 * 30, "checked {checked} entries");
}

#[test]
fn every_parameter_gets_a_nonzero_gradient() {
    let dev = Device::Cpu;
    let (ids, mask, labels) = batch(&dev);
    for kind in ["sequence", "token", "masked-lm"] {
        let m = model(DType::F32, match kind {
            "sequence" => HeadKind::Sequence,
            "token" => HeadKind::Token,
            _ => HeadKind::MaskedLm,
        });
        // Training mode, dropout included, must not cut the graph either.
        let mode = Mode::train(Rng::new(1));
        let logits = m.model.forward(&ids, Some(&mask), &mode).unwrap().logits.unwrap();
        let loss = match kind {
            "sequence" => cross_entropy(&logits, &labels).unwrap(),
            _ => {
                let (b, s, c) = logits.dims3().unwrap();
                let targets: Vec<u32> = (0..(b * s) as u32).map(|i| i % c as u32).collect();
                let targets = Tensor::new(targets, &dev).unwrap();
                cross_entropy(&logits.reshape((b * s, c)).unwrap(), &targets).unwrap()
            }
        };
        let grads = loss.backward().unwrap();
        assert!(m.params.len() > 30);
        for (name, var) in &m.params {
            let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{kind}: {name} has no gradient"));
            let norm = g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(norm > 0.0 && norm.is_finite(), "{kind}: gradient of {name} is {norm}");
        }
    }
}

#[test]
fn dropout_is_active_only_in_training() {
    let dev = Device::Cpu;
    let mut config = tiny_config();
    config.mlp_dropout = 0.5;
    config.embedding_dropout = 0.1;
    let m = build(&config, None, HeadKind::Sequence, &LoadOptions::default()).unwrap();
    let (ids, mask, _) = batch(&dev);
    let eval = |mode: &Mode| m.model.forward(&ids, Some(&mask), mode).unwrap().logits.unwrap();
    let a = eval(&Mode::eval());
    assert_eq!(common::max_abs_diff(&a, &eval(&Mode::eval())), 0.0);
    let t1 = eval(&Mode::train(Rng::new(1)));
    assert!(common::max_abs_diff(&a, &t1) > 1e-4);
    // Seeded: the same seed drops the same units.
    assert_eq!(common::max_abs_diff(&t1, &eval(&Mode::train(Rng::new(1)))), 0.0);
}
