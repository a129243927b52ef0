//! Loading checkpoints: head initialisation, bare encoders, shards, and errors that name the tensor.

use crate::common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use common::{fixtures, max_abs_diff, Timed};
use modernft::model::{build, load_pretrained, HeadKind, LoadOptions, Mode, ModelFiles, ModernBertConfig, Weights};

fn weight(loaded: &modernft::model::Loaded, name: &str) -> Vec<f32> {
    loaded.tensor(name).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

fn tiny_tensors() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join("tiny-v4/model.safetensors"), &Device::Cpu).unwrap()
}

/// A model folder with tiny-v4's config and the given tensors.
fn folder(tensors: &HashMap<String, Tensor>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixtures().join("tiny-v4/config.json"), dir.path().join("config.json")).unwrap();
    candle_core::safetensors::save(tensors, dir.path().join("model.safetensors")).unwrap();
    dir
}

fn load(dir: &Path, kind: HeadKind) -> modernft::Result<modernft::model::Loaded> {
    let files = ModelFiles::from_dir(dir)?;
    load_pretrained(&files, kind, &LoadOptions::default()).map(|(_, l)| l)
}

#[test]
fn pretrained_mlm_checkpoint_gets_a_fresh_classifier_initialised_like_transformers() {
    let mut t = tiny_tensors();
    t.remove("classifier.weight");
    t.remove("classifier.bias");
    t.insert("decoder.bias".into(), Tensor::zeros(320, candle_core::DType::F32, &Device::Cpu).unwrap());
    let dir = folder(&t);
    let loaded = load(dir.path(), HeadKind::Sequence).unwrap();
    assert_eq!(loaded.initialised, vec!["classifier.weight", "classifier.bias"]);
    // transformers: trunc_normal(std = hidden^-0.5, cut at ±2 std) for the classifier, zero bias.
    let std = (32f64).powf(-0.5);
    let w: Vec<f32> = weight(&loaded, "classifier.weight");
    assert!(w.iter().all(|x| (*x as f64).abs() <= 2.0 * std + 1e-6));
    let sample_std = (w.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
    assert!(sample_std > 0.5 * std && sample_std < 1.2 * std, "{sample_std} vs {std}");
    assert!(weight(&loaded, "classifier.bias").iter().all(|x| *x == 0.0));
    // The same seed initialises the same head.
    let again = load(dir.path(), HeadKind::Sequence).unwrap();
    assert_eq!(weight(&again, "classifier.weight"), w);
}

#[test]
fn bare_encoder_checkpoints_load_and_embeddings_ignore_head_tensors() {
    let t: HashMap<String, Tensor> = tiny_tensors()
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix("model.").map(|k| (k.to_string(), v)))
        .collect();
    let dir = folder(&t);
    let loaded = load(dir.path(), HeadKind::Sequence).unwrap();
    assert_eq!(loaded.initialised, vec!["head.dense.weight", "head.norm.weight", "classifier.weight", "classifier.bias"]);
    // Encoder-only use of a full classification checkpoint ignores head and classifier.
    let full = load(&fixtures().join("tiny-v4"), HeadKind::None).unwrap();
    assert!(full.initialised.is_empty());
    // And both encoders are the same.
    let ids = Tensor::new(&[[1u32, 40, 50, 2]], &Device::Cpu).unwrap();
    let a = loaded.model.forward(&ids, None, &Mode::eval()).unwrap().last_hidden_state;
    let b = full.model.forward(&ids, None, &Mode::eval()).unwrap().last_hidden_state;
    assert_eq!(max_abs_diff(&a, &b), 0.0);
}

#[test]
fn errors_name_the_tensor() {
    let mut t = tiny_tensors();
    t.remove("model.layers.2.mlp.Wo.weight");
    let e = load(folder(&t).path(), HeadKind::Sequence).err().unwrap().chain();
    assert!(e.contains("model.layers.2.mlp.Wo.weight"), "{e}");

    let mut t = tiny_tensors();
    // transformers has no attn_norm in layer 0; a checkpoint that has one does not match.
    t.insert("model.layers.0.attn_norm.weight".into(), Tensor::ones(32, candle_core::DType::F32, &Device::Cpu).unwrap());
    let e = load(folder(&t).path(), HeadKind::Sequence).err().unwrap().chain();
    assert!(e.contains("model.layers.0.attn_norm.weight") && e.contains("does not use"), "{e}");

    let mut t = tiny_tensors();
    t.insert("classifier.weight".into(), Tensor::zeros((5, 32), candle_core::DType::F32, &Device::Cpu).unwrap());
    let e = load(folder(&t).path(), HeadKind::Sequence).err().unwrap().chain();
    assert!(e.contains("classifier.weight") && e.contains("[5, 32]") && e.contains("[2, 32]"), "{e}");

    let e = ModelFiles::from_dir(Path::new("/nonexistent/model")).err().unwrap().chain();
    assert!(e.contains("config.json"), "{e}");
    let empty = tempfile::tempdir().unwrap();
    std::fs::copy(fixtures().join("tiny-v4/config.json"), empty.path().join("config.json")).unwrap();
    let e = ModelFiles::from_dir(empty.path()).err().unwrap().chain();
    assert!(e.contains("model.safetensors"), "{e}");
}

#[test]
fn sharded_checkpoints_load_like_single_files() {
    let t = tiny_tensors();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixtures().join("tiny-v4/config.json"), dir.path().join("config.json")).unwrap();
    let (mut a, mut b) = (HashMap::new(), HashMap::new());
    let mut map = serde_json::Map::new();
    for (i, (k, v)) in t.iter().enumerate() {
        let (shard, file) = if i % 2 == 0 { (&mut a, "model-00001-of-00002.safetensors") } else { (&mut b, "model-00002-of-00002.safetensors") };
        shard.insert(k.clone(), v.clone());
        map.insert(k.clone(), serde_json::json!(file));
    }
    candle_core::safetensors::save(&a, dir.path().join("model-00001-of-00002.safetensors")).unwrap();
    candle_core::safetensors::save(&b, dir.path().join("model-00002-of-00002.safetensors")).unwrap();
    std::fs::write(dir.path().join("model.safetensors.index.json"), serde_json::json!({"metadata": {}, "weight_map": map}).to_string()).unwrap();
    let files = ModelFiles::from_dir(dir.path()).unwrap();
    assert_eq!(files.weights.len(), 2);
    let sharded = load(dir.path(), HeadKind::Sequence).unwrap();
    let single = load(&fixtures().join("tiny-v4"), HeadKind::Sequence).unwrap();
    let ids = Tensor::new(&[[1u32, 40, 50, 2]], &Device::Cpu).unwrap();
    let x = sharded.model.forward(&ids, None, &Mode::eval()).unwrap().logits.unwrap();
    let y = single.model.forward(&ids, None, &Mode::eval()).unwrap().logits.unwrap();
    assert_eq!(max_abs_diff(&x, &y), 0.0);
}

#[test]
fn from_scratch_models_initialise_everything_reproducibly() {
    let config = ModernBertConfig::from_file(&fixtures().join("tiny-v5/config.json")).unwrap();
    let opts = LoadOptions { seed: 5, ..Default::default() };
    let a = build(&config, None::<&Weights>, HeadKind::Sequence, &opts).unwrap();
    let b = build(&config, None::<&Weights>, HeadKind::Sequence, &opts).unwrap();
    assert_eq!(a.initialised.len(), 57);
    assert_eq!(weight(&a, "model.layers.1.attn.Wqkv.weight"), weight(&b, "model.layers.1.attn.Wqkv.weight"));
    // LayerNorm weights start at one, biases at zero, as in transformers.
    assert!(weight(&a, "model.final_norm.weight").iter().all(|x| *x == 1.0));
    assert!(weight(&a, "model.final_norm.bias").iter().all(|x| *x == 0.0));
}

/// A mistyped local path is reported as a missing folder, with its neighbours, before the hub
/// error: the user sees the typo, not a network failure.
#[test]
fn a_mistyped_model_path_names_the_folder_and_its_neighbours() {
    let cwd = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(cwd.path().join("runs/quickstart/model")).unwrap();
    let home = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::binary())
        .current_dir(cwd.path())
        .args(["embed", "--model", "runs/quickstrt"])
        .env("HF_HOME", home.path())
        .env("HF_HUB_OFFLINE", "1")
        .timed_output();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(e.contains("there is no local folder runs/quickstrt") && e.contains("holds: quickstart"), "{e}");
}

/// sentence-transformers folders: a Pooling module is optional (mean pooling, said aloud), and a
/// module without a "path" is an error naming modules.json rather than a guess.
#[test]
fn sentence_transformers_modules_without_pooling_or_path() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixtures().join("tiny-v4").join(f), dir.path().join(f)).unwrap();
    }
    let modules = |text: &str| std::fs::write(dir.path().join("modules.json"), text).unwrap();
    modules(r#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]"#);
    let files = ModelFiles::from_dir(dir.path()).unwrap();
    let st = files.sentence.as_ref().expect("read as a sentence-transformers folder");
    assert_eq!(st.pooling, modernft::model::Pooling::Mean);
    assert!(!st.normalize);
    let out = std::process::Command::new(common::binary()).args(["embed", "--model"]).arg(dir.path()).timed_output();
    assert!(String::from_utf8_lossy(&out.stderr).contains("lists no Pooling module; using mean pooling"));

    modules(r#"[{"idx": 0, "name": "0", "type": "sentence_transformers.models.Transformer"}]"#);
    let e = ModelFiles::from_dir(dir.path()).unwrap_err().chain();
    assert!(e.contains("modules.json") && e.contains("Transformer module has no \"path\""), "{e}");
}
