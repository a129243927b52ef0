//! The token-embedding gradient kept to the rows a step read (`Mode::train_sparse`) updates the
//! model exactly as the dense gradient does: AdamW still moves every row.

use candle_core::{DType, Device, Tensor};
use modernft::data::pad_batch;
use modernft::model::{build, HeadKind, LoadOptions, Loaded, Mode, ModernBertConfig};
use modernft::rng::Rng;
use modernft::tasks::loss::cross_entropy;
use modernft::train::grads::Grads;
use modernft::train::{AdamW, AdamWConfig};
use serde_json::json;

fn model() -> Loaded {
    let config = ModernBertConfig::from_value(&json!({
        "vocab_size": 300, "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2,
        "num_attention_heads": 2, "max_position_embeddings": 64, "local_attention": 4,
        "global_attn_every_n_layers": 2, "initializer_range": 0.3, "pad_token_id": 0,
        "classifier_pooling": "mean", "num_labels": 3
    }))
    .unwrap();
    build(&config, None, HeadKind::Sequence, &LoadOptions { dtype: DType::F32, trainable: true, seed: 5, ..Default::default() }).unwrap()
}

/// Rows of ids drawn from a few hundred, different each step and micro-batch (ids repeat inside a
/// row and across rows; a row read in one step is often absent from the next).
fn rows(step: usize, part: usize) -> Vec<Vec<u32>> {
    (0..3)
        .map(|r| {
            let len = 4 + (step + part + r) % 5;
            (0..len).map(|i| (1 + (step * 37 + part * 101 + r * 13 + i * i * 7) % 299) as u32).collect()
        })
        .collect()
}

fn loss(m: &Loaded, rows: &[Vec<u32>], labels: &[u32], mode: &Mode) -> Tensor {
    let dev = Device::Cpu;
    let refs: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
    let (ids, mask) = pad_batch(&refs, 0, &dev).unwrap();
    let logits = m.model.forward(&ids, Some(&mask), mode).unwrap().logits.unwrap();
    cross_entropy(&logits, &Tensor::new(labels, &dev).unwrap()).unwrap()
}

/// Five optimizer steps of two accumulated micro-batches, the second reading the embeddings twice
/// (as a pair batch does), clipped to a norm they exceed, weight decay on. Returns every parameter
/// and every moment after the steps, and how many steps had the embedding's gradient sparse.
fn train(sparse: bool) -> (Vec<(String, Vec<f32>)>, usize) {
    let m = model();
    let mut opt = AdamW::new(&m.params, AdamWConfig { weight_decay: 0.01, ..Default::default() }).unwrap();
    let embedding = m.params.iter().find(|(n, _)| n.contains("tok_embeddings")).unwrap().1.clone();
    let mut sparse_steps = 0;
    for step in 0..5 {
        let mode = if sparse { Mode::train_sparse(Rng::new(1)) } else { Mode::train(Rng::new(1)) };
        let backward = |l: Tensor| if sparse { Grads::backward(&l, &mode).unwrap() } else { Grads::from(l.backward().unwrap()) };
        let mut grads = backward((loss(&m, &rows(step, 0), &[0, 2, 1], &mode) * 0.5).unwrap());
        let pair = (loss(&m, &rows(step, 1), &[1, 1, 0], &mode) + loss(&m, &rows(step, 2), &[2, 0, 2], &mode)).unwrap();
        grads.accumulate(backward((pair * 0.5).unwrap()), &m.params).unwrap();
        if grads.sparse_of(embedding.as_tensor()).is_some() {
            assert!(grads.dense.get(embedding.as_tensor()).is_none(), "the embedding has a dense and a sparse gradient");
            sparse_steps += 1;
        }
        let norm = grads.sum_sq(&m.params).unwrap().sqrt();
        assert!(norm > 0.1, "the clipping below must act (norm {norm})");
        grads.scale(0.1 / (norm + 1e-6), &m.params).unwrap();
        opt.step(&grads, 1e-2).unwrap();
    }
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let mut out: Vec<(String, Vec<f32>)> = m.params.iter().map(|(n, v)| (n.clone(), flat(v.as_tensor()))).collect();
    out.extend(opt.params.iter().map(|p| (format!("{} moments", p.name), flat(&p.moments))));
    (out, sparse_steps)
}

#[test]
fn a_sparse_embedding_gradient_moves_every_parameter_as_the_dense_one_over_five_steps() {
    let (dense, none) = train(false);
    let (sparse, steps) = train(true);
    assert_eq!(none, 0);
    assert_eq!(steps, 5, "the sparse run kept the embedding gradient dense");
    let mut worst = (0f64, String::new());
    for ((name, a), (_, b)) in sparse.iter().zip(&dense) {
        let scale = b.iter().fold(0f64, |m, x| m.max(x.abs() as f64)).max(1e-30);
        let diff = a.iter().zip(b).fold(0f64, |m, (x, y)| m.max((x - y).abs() as f64));
        if diff / scale > worst.0 {
            worst = (diff / scale, name.clone());
        }
    }
    eprintln!("worst relative difference, sparse vs dense: {:.2e} ({})", worst.0, worst.1);
    assert!(worst.0 <= 1e-7, "{} differs by {:.2e} relative", worst.1, worst.0);
    // Rows no step read were still moved by weight decay (AdamW moves every row).
    let fresh = model();
    let (_, w0) = fresh.params.iter().find(|(n, _)| n.contains("tok_embeddings")).unwrap();
    let w0 = w0.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let w5 = &sparse.iter().find(|(n, _)| n.contains("tok_embeddings") && !n.ends_with("moments")).unwrap().1;
    let read: std::collections::HashSet<u32> = (0..5).flat_map(|s| (0..3).flat_map(move |p| rows(s, p).concat())).collect();
    let unread = (1..300u32).find(|id| !read.contains(id)).expect("an id no step reads") as usize * 16;
    let decayed = (1.0 - 1e-2 * 0.01f32).powi(5);
    assert!((0..16).all(|j| w5[unread + j] != w0[unread + j] && (w5[unread + j] / w0[unread + j] - decayed).abs() < 1e-6));
}
