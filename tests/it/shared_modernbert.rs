//! The real ModernBERT tokenizer and configs from ../shared (skipped with a notice when absent).
//! Expected ids were computed with the Python `tokenizers` 0.23.3 on the same tokenizer.json.

use crate::common;

use candle_core::{DType, Device};
use common::shared;
use modernft::data::{pad_batch, TextEncoder};
use modernft::model::{build, HeadKind, LayerType, LoadOptions, Mode, ModernBertConfig, Pooling};

#[test]
fn real_tokenizer_frames_with_cls_and_sep() {
    let Some(shared) = shared() else { return };
    let dir = shared.join("data/modernbert");
    let enc = TextEncoder::from_file(&dir.join("tokenizer.json"), 8192).unwrap();
    assert_eq!(enc.token_id("[CLS]"), Some(50281));
    assert_eq!(enc.token_id("[SEP]"), Some(50282));
    assert_eq!(enc.token_id("[PAD]"), Some(50283));
    let got = enc.encode_batch(&["Hello world!", "ModernBERT fine-tuning, in Rust."]).unwrap();
    assert_eq!(got[0].ids, vec![50281, 12092, 1533, 2, 50282]);
    assert_eq!(got[1].ids, vec![50281, 33824, 35, 6366, 4030, 14, 85, 25004, 13, 275, 33932, 15, 50282]);
    assert!(!got[0].truncated);
    let pair = enc.tokenizer().encode(("The movie", "was great"), true).unwrap();
    assert_eq!(pair.get_ids(), &[50281, 510, 6440, 50282, 4238, 1270, 50282]);

    // Truncation keeps [CLS] ... [SEP] and says so.
    let short = TextEncoder::from_file(&dir.join("tokenizer.json"), 4).unwrap();
    let cut = short.encode_batch(&["ModernBERT fine-tuning, in Rust."]).unwrap();
    assert_eq!(cut[0].ids, vec![50281, 33824, 35, 50282]);
    assert!(cut[0].truncated);

    // The same tokenizer re-saved by a newer `tokenizers` encodes identically.
    let resaved = TextEncoder::from_file(&dir.join("crosscheck_p9_modernbert-base-finetune/tokenizer.json"), 8192).unwrap();
    let texts = ["Plants create energy through photosynthesis.", "  spaces\tand\nnewlines  ", "émigré naïve café 😀"];
    assert_eq!(enc.encode_batch(&texts).unwrap(), resaved.encode_batch(&texts).unwrap());
}

#[test]
fn base_large_and_v5_configs_parse() {
    let Some(shared) = shared() else { return };
    let dir = shared.join("data/modernbert");
    let base = ModernBertConfig::from_file(&dir.join("ModernBERT-base/config.reconstructed.json")).unwrap();
    assert_eq!((base.hidden_size, base.num_hidden_layers, base.num_attention_heads, base.intermediate_size), (768, 22, 12, 1152));
    assert_eq!((base.global_rope_theta, base.local_rope_theta, base.sliding_window()), (160_000.0, 10_000.0, 64));
    assert_eq!(base.classifier_pooling, Pooling::Mean);
    let full: Vec<usize> = (0..22).filter(|&i| base.layer_types[i] == LayerType::Full).collect();
    assert_eq!(full, vec![0, 3, 6, 9, 12, 15, 18, 21]);

    let large = ModernBertConfig::from_file(&dir.join("ModernBERT-large/config.json")).unwrap();
    assert_eq!((large.hidden_size, large.num_hidden_layers, large.num_attention_heads, large.intermediate_size), (1024, 28, 16, 2624));

    // The transformers 5 config of a fine-tuned base model describes the same architecture.
    let v5 = ModernBertConfig::from_file(&dir.join("crosscheck_p9_modernbert-base-finetune/config.json")).unwrap();
    assert_eq!(v5.layer_types, base.layer_types);
    assert_eq!((v5.global_rope_theta, v5.local_rope_theta), (base.global_rope_theta, base.local_rope_theta));
    assert_eq!(v5.problem_type.as_deref(), Some("single_label_classification"));
    assert_eq!(v5.num_labels(), 2);
    let embed_large = ModernBertConfig::from_file(&dir.join("modernbert-embed-large/config.reconstructed.json")).unwrap();
    assert_eq!(embed_large.hidden_size, 1024);
}

#[test]
fn base_model_builds_with_transformers_parameter_count_and_runs() {
    let Some(shared) = shared() else { return };
    let dir = shared.join("data/modernbert");
    let config = ModernBertConfig::from_file(&dir.join("ModernBERT-base/config.reconstructed.json")).unwrap();
    let loaded = build(&config, None, HeadKind::Sequence, &LoadOptions::default()).unwrap();
    // transformers' ModernBertForSequenceClassification(base config): 149,606,402 parameters.
    let count: usize = loaded.tensors.iter().map(|(_, t)| t.elem_count()).sum();
    assert_eq!(count, 149_606_402);
    let enc = TextEncoder::from_file(&dir.join("tokenizer.json"), 512).unwrap();
    let rows = enc.encode_batch(&["A short sentence.", "Another, somewhat longer sentence for the batch."]).unwrap();
    let refs: Vec<&[u32]> = rows.iter().map(|r| r.ids.as_slice()).collect();
    let (ids, mask) = pad_batch(&refs, 50283, &Device::Cpu).unwrap();
    let logits = loaded.model.forward(&ids, Some(&mask), &Mode::eval()).unwrap().logits.unwrap();
    assert_eq!(logits.dims(), &[2, 2]);
    let v: Vec<f32> = logits.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    assert!(v.iter().all(|x| x.is_finite()));
}
