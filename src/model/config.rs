//! `config.json` of a ModernBERT checkpoint, in both schemas transformers has written.
//!
//! - v4 (transformers 4.x, the original answerdotai checkpoints): `global_attn_every_n_layers`,
//!   `global_rope_theta`, `local_rope_theta`, and often `layer_norm_eps` beside `norm_eps`.
//! - v5 (transformers 5.x): `layer_types` (one of `full_attention` / `sliding_attention` per layer) and
//!   `rope_parameters` (`rope_theta` per layer type).
//!
//! Both parse into one [`ModernBertConfig`]; defaults are transformers' defaults, so a config that
//! omits a key means what it means to transformers. Keys we do not model are kept in `extra` and
//! written back on save.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::error::{Context, Error, Result};
use crate::model::nn::Activation;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerType {
    /// Every token attends to every (non-pad) token; rotary base `global_rope_theta`.
    Full,
    /// Tokens attend within |i - j| <= local_attention / 2; rotary base `local_rope_theta`.
    Sliding,
}

impl LayerType {
    pub fn as_str(self) -> &'static str {
        match self {
            LayerType::Full => "full_attention",
            LayerType::Sliding => "sliding_attention",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    Cls,
    Mean,
}

impl Pooling {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "cls" => Ok(Pooling::Cls),
            "mean" => Ok(Pooling::Mean),
            other => Err(crate::err!("unknown pooling `{other}`: use `cls` or `mean`")),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Pooling::Cls => "cls",
            Pooling::Mean => "mean",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModernBertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub hidden_activation: Activation,
    pub max_position_embeddings: usize,
    pub initializer_range: f64,
    pub initializer_cutoff_factor: f64,
    pub norm_eps: f64,
    pub norm_bias: bool,
    pub pad_token_id: Option<u32>,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    pub cls_token_id: Option<u32>,
    pub sep_token_id: Option<u32>,
    pub attention_bias: bool,
    pub attention_dropout: f64,
    pub layer_types: Vec<LayerType>,
    pub global_rope_theta: f64,
    pub local_rope_theta: f64,
    /// Total local window; a token sees neighbours up to `local_attention / 2` away.
    pub local_attention: usize,
    pub embedding_dropout: f64,
    pub mlp_bias: bool,
    pub mlp_dropout: f64,
    pub decoder_bias: bool,
    pub classifier_pooling: Pooling,
    pub classifier_dropout: f64,
    pub classifier_bias: bool,
    pub classifier_activation: Activation,
    /// Label names in id order (`id2label`); its length is `num_labels`.
    pub id2label: Vec<String>,
    pub problem_type: Option<String>,
    pub architectures: Vec<String>,
    /// Keys this struct does not model, written back unchanged on save.
    pub extra: Map<String, Value>,
}

impl Default for ModernBertConfig {
    fn default() -> Self {
        Self::from_value(&json!({})).expect("transformers' defaults form a valid config")
    }
}

/// Keys that [`ModernBertConfig`] reads; everything else lands in `extra`.
const KNOWN_KEYS: &[&str] = &[
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "hidden_activation", "max_position_embeddings", "initializer_range", "initializer_cutoff_factor",
    "norm_eps", "layer_norm_eps", "norm_bias", "pad_token_id", "bos_token_id", "eos_token_id",
    "cls_token_id", "sep_token_id", "attention_bias", "attention_dropout", "layer_types",
    "global_attn_every_n_layers", "rope_parameters", "global_rope_theta", "local_rope_theta",
    "rope_theta", "local_attention", "sliding_window", "embedding_dropout", "mlp_bias", "mlp_dropout",
    "decoder_bias", "classifier_pooling", "classifier_dropout", "classifier_bias",
    "classifier_activation", "id2label", "label2id", "num_labels", "problem_type", "architectures",
    "model_type",
];

struct Fields<'a> {
    obj: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn bad(&self, key: &str, want: &str) -> Error {
        crate::err!("field `{key}` must be {want}, found {}", self.obj[key])
    }
    fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_u64().map(|x| x as usize).ok_or_else(|| self.bad(key, "a non-negative integer")),
        }
    }
    fn positive(&self, key: &str, default: usize) -> Result<usize> {
        let v = self.usize_or(key, default)?;
        if v == 0 {
            return Err(self.bad(key, "a positive integer"));
        }
        Ok(v)
    }
    fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_f64().filter(|x| x.is_finite()).ok_or_else(|| self.bad(key, "a number")),
        }
    }
    fn prob(&self, key: &str) -> Result<f64> {
        let p = self.f64_or(key, 0.0)?;
        if !(0.0..1.0).contains(&p) {
            return Err(self.bad(key, "a probability in [0, 1)"));
        }
        Ok(p)
    }
    fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.bad(key, "true or false")),
        }
    }
    fn str_or(&self, key: &str, default: &'a str) -> Result<&'a str> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_str().ok_or_else(|| self.bad(key, "a string")),
        }
    }
    fn token_id(&self, key: &str, default: Option<u32>) -> Result<Option<u32>> {
        match self.obj.get(key) {
            None => Ok(default),
            Some(Value::Null) => Ok(None),
            // eos_token_id may be a list in generic configs; the first entry is the one encoders use.
            Some(Value::Array(a)) if !a.is_empty() => {
                a[0].as_u64().map(|x| Some(x as u32)).ok_or_else(|| self.bad(key, "a token id"))
            }
            Some(v) => v.as_u64().map(|x| Some(x as u32)).ok_or_else(|| self.bad(key, "a token id")),
        }
    }
}

impl ModernBertConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read model config {}", path.display()))?;
        Self::from_json_str(&text).with_context(|| format!("invalid model config {}", path.display()))
    }

    pub fn from_json_str(text: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text).context("not valid JSON")?;
        Self::from_value(&value)
    }

    pub fn from_value(value: &Value) -> Result<Self> {
        let obj = value.as_object().context("expected a JSON object")?;
        if let Some(mt) = obj.get("model_type").and_then(Value::as_str) {
            if mt != "modernbert" {
                crate::bail!("`model_type` is `{mt}`, but modernft only runs `modernbert` models");
            }
        }
        let f = Fields { obj };
        let hidden_size = f.positive("hidden_size", 768)?;
        let num_attention_heads = f.positive("num_attention_heads", 12)?;
        let num_hidden_layers = f.positive("num_hidden_layers", 22)?;
        if hidden_size % num_attention_heads != 0 {
            crate::bail!(
                "`hidden_size` ({hidden_size}) must be a multiple of `num_attention_heads` ({num_attention_heads})"
            );
        }
        if (hidden_size / num_attention_heads) % 2 != 0 {
            crate::bail!("the head dimension hidden_size / num_attention_heads must be even for rotary embeddings");
        }

        // transformers 5 reads `norm_eps`; 4.x checkpoints often carry `layer_norm_eps` too.
        let norm_eps = match obj.get("norm_eps") {
            Some(v) if !v.is_null() => f.f64_or("norm_eps", 1e-5)?,
            _ => f.f64_or("layer_norm_eps", 1e-5)?,
        };

        let layer_types = match obj.get("layer_types") {
            Some(Value::Array(items)) => {
                let types = items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| match v.as_str() {
                        Some("full_attention") => Ok(LayerType::Full),
                        Some("sliding_attention") => Ok(LayerType::Sliding),
                        _ => Err(crate::err!(
                            "`layer_types[{i}]` must be \"full_attention\" or \"sliding_attention\", found {v}"
                        )),
                    })
                    .collect::<Result<Vec<_>>>()?;
                if types.len() != num_hidden_layers {
                    crate::bail!(
                        "`layer_types` has {} entries but `num_hidden_layers` is {num_hidden_layers}",
                        types.len()
                    );
                }
                types
            }
            None | Some(Value::Null) => {
                let every = f.positive("global_attn_every_n_layers", 3)?;
                (0..num_hidden_layers)
                    .map(|i| if i % every == 0 { LayerType::Full } else { LayerType::Sliding })
                    .collect()
            }
            Some(_) => return Err(f.bad("layer_types", "a list of strings")),
        };

        let (global_rope_theta, local_rope_theta) = rope_thetas(obj, &f)?;

        let local_attention = match (obj.get("local_attention"), obj.get("sliding_window")) {
            (Some(v), _) if !v.is_null() => f.positive("local_attention", 128)?,
            (_, Some(v)) if !v.is_null() => 2 * f.positive("sliding_window", 64)?,
            _ => 128,
        };

        let id2label = parse_labels(obj, &f)?;

        let architectures = match obj.get("architectures") {
            Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            _ => Vec::new(),
        };
        let extra = obj
            .iter()
            .filter(|(k, _)| !KNOWN_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();

        Ok(ModernBertConfig {
            vocab_size: f.positive("vocab_size", 50368)?,
            hidden_size,
            intermediate_size: f.positive("intermediate_size", 1152)?,
            num_hidden_layers,
            num_attention_heads,
            hidden_activation: Activation::parse(f.str_or("hidden_activation", "gelu")?)
                .context("field `hidden_activation`")?,
            max_position_embeddings: f.positive("max_position_embeddings", 8192)?,
            initializer_range: f.f64_or("initializer_range", 0.02)?,
            initializer_cutoff_factor: f.f64_or("initializer_cutoff_factor", 2.0)?,
            norm_eps,
            norm_bias: f.bool_or("norm_bias", false)?,
            pad_token_id: f.token_id("pad_token_id", Some(50283))?,
            bos_token_id: f.token_id("bos_token_id", Some(50281))?,
            eos_token_id: f.token_id("eos_token_id", Some(50282))?,
            cls_token_id: f.token_id("cls_token_id", Some(50281))?,
            sep_token_id: f.token_id("sep_token_id", Some(50282))?,
            attention_bias: f.bool_or("attention_bias", false)?,
            attention_dropout: f.prob("attention_dropout")?,
            layer_types,
            global_rope_theta,
            local_rope_theta,
            local_attention,
            embedding_dropout: f.prob("embedding_dropout")?,
            mlp_bias: f.bool_or("mlp_bias", false)?,
            mlp_dropout: f.prob("mlp_dropout")?,
            decoder_bias: f.bool_or("decoder_bias", true)?,
            classifier_pooling: Pooling::parse(f.str_or("classifier_pooling", "cls")?)
                .context("field `classifier_pooling`")?,
            classifier_dropout: f.prob("classifier_dropout")?,
            classifier_bias: f.bool_or("classifier_bias", false)?,
            classifier_activation: Activation::parse(f.str_or("classifier_activation", "gelu")?)
                .context("field `classifier_activation`")?,
            id2label,
            problem_type: obj.get("problem_type").and_then(Value::as_str).map(str::to_string),
            architectures,
            extra,
        })
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    pub fn num_labels(&self) -> usize {
        self.id2label.len()
    }

    /// Half-window of the local layers: token i sees j when |i - j| <= this (transformers'
    /// `config.sliding_window`).
    pub fn sliding_window(&self) -> usize {
        self.local_attention / 2
    }

    pub fn rope_theta(&self, layer: LayerType) -> f64 {
        match layer {
            LayerType::Full => self.global_rope_theta,
            LayerType::Sliding => self.local_rope_theta,
        }
    }

    /// Replaces the label set (names in id order).
    pub fn set_labels(&mut self, names: Vec<String>) {
        self.id2label = names;
    }

    pub fn label_id(&self, name: &str) -> Option<usize> {
        self.id2label.iter().position(|l| l == name)
    }

    /// The config as transformers 5 writes it, plus the v4 keys so that transformers 4.x and other
    /// readers (candle-transformers, text-embeddings-inference) load it too.
    pub fn to_json(&self) -> Value {
        let mut m = self.extra.clone();
        let mut put = |k: &str, v: Value| {
            m.insert(k.to_string(), v);
        };
        put("model_type", json!("modernbert"));
        if !self.architectures.is_empty() {
            put("architectures", json!(self.architectures));
        }
        put("vocab_size", json!(self.vocab_size));
        put("hidden_size", json!(self.hidden_size));
        put("intermediate_size", json!(self.intermediate_size));
        put("num_hidden_layers", json!(self.num_hidden_layers));
        put("num_attention_heads", json!(self.num_attention_heads));
        put("hidden_activation", json!(self.hidden_activation.as_str()));
        put("max_position_embeddings", json!(self.max_position_embeddings));
        put("initializer_range", json!(self.initializer_range));
        put("initializer_cutoff_factor", json!(self.initializer_cutoff_factor));
        put("norm_eps", json!(self.norm_eps));
        put("layer_norm_eps", json!(self.norm_eps));
        put("norm_bias", json!(self.norm_bias));
        put("pad_token_id", json!(self.pad_token_id));
        put("bos_token_id", json!(self.bos_token_id));
        put("eos_token_id", json!(self.eos_token_id));
        put("cls_token_id", json!(self.cls_token_id));
        put("sep_token_id", json!(self.sep_token_id));
        put("attention_bias", json!(self.attention_bias));
        put("attention_dropout", json!(self.attention_dropout));
        let types: Vec<&str> = self.layer_types.iter().map(|t| t.as_str()).collect();
        put("layer_types", json!(types));
        if let Some(every) = self.global_every_n() {
            put("global_attn_every_n_layers", json!(every));
        }
        put(
            "rope_parameters",
            json!({
                "full_attention": {"rope_theta": self.global_rope_theta, "rope_type": "default"},
                "sliding_attention": {"rope_theta": self.local_rope_theta, "rope_type": "default"},
            }),
        );
        put("global_rope_theta", json!(self.global_rope_theta));
        put("local_rope_theta", json!(self.local_rope_theta));
        put("local_attention", json!(self.local_attention));
        put("embedding_dropout", json!(self.embedding_dropout));
        put("mlp_bias", json!(self.mlp_bias));
        put("mlp_dropout", json!(self.mlp_dropout));
        put("decoder_bias", json!(self.decoder_bias));
        put("classifier_pooling", json!(self.classifier_pooling.as_str()));
        put("classifier_dropout", json!(self.classifier_dropout));
        put("classifier_bias", json!(self.classifier_bias));
        put("classifier_activation", json!(self.classifier_activation.as_str()));
        let id2label: BTreeMap<String, &String> =
            self.id2label.iter().enumerate().map(|(i, l)| (i.to_string(), l)).collect();
        let label2id: BTreeMap<&String, usize> =
            self.id2label.iter().enumerate().map(|(i, l)| (l, i)).collect();
        put("id2label", json!(id2label));
        put("label2id", json!(label2id));
        if let Some(p) = &self.problem_type {
            put("problem_type", json!(p));
        }
        Value::Object(m)
    }

    /// `Some(n)` when the layer pattern is "global every n layers" (the v4 schema can express it).
    fn global_every_n(&self) -> Option<usize> {
        (1..=self.num_hidden_layers).find(|&n| {
            self.layer_types.iter().enumerate().all(|(i, t)| {
                (*t == LayerType::Full) == (i % n == 0)
            })
        })
    }
}

fn rope_thetas(obj: &Map<String, Value>, f: &Fields) -> Result<(f64, f64)> {
    let mut global = f.f64_or("global_rope_theta", 160_000.0)?;
    let mut local = f.f64_or("local_rope_theta", 10_000.0)?;
    if let Some(rp) = obj.get("rope_parameters").filter(|v| !v.is_null()) {
        let rp = rp.as_object().context("field `rope_parameters` must be an object")?;
        let read = |section: &Map<String, Value>, path: &str| -> Result<Option<f64>> {
            if let Some(t) = section.get("rope_type").or_else(|| section.get("type")) {
                if t.as_str() != Some("default") {
                    crate::bail!(
                        "`{path}.rope_type` is {t}; modernft supports only \"default\" rotary embeddings"
                    );
                }
            }
            match section.get("rope_theta") {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| crate::err!("`{path}.rope_theta` must be a number, found {v}")),
            }
        };
        if rp.contains_key("full_attention") || rp.contains_key("sliding_attention") {
            for (key, slot) in [("full_attention", &mut global), ("sliding_attention", &mut local)] {
                if let Some(section) = rp.get(key).and_then(Value::as_object) {
                    if let Some(theta) = read(section, &format!("rope_parameters.{key}"))? {
                        *slot = theta;
                    }
                }
            }
        } else if let Some(theta) = read(rp, "rope_parameters")? {
            // One un-nested dict applies to every layer type.
            global = theta;
            local = theta;
        }
    }
    if !(global > 0.0 && local > 0.0) {
        crate::bail!("rope thetas must be positive (global {global}, local {local})");
    }
    Ok((global, local))
}

fn parse_labels(obj: &Map<String, Value>, f: &Fields) -> Result<Vec<String>> {
    let as_index = |key: &str, v: &Value| -> Result<usize> {
        v.as_u64()
            .map(|x| x as usize)
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| crate::err!("field `{key}` must map to label ids (integers), found {v}"))
    };
    let label_text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut by_id: BTreeMap<usize, String> = BTreeMap::new();
    if let Some(m) = obj.get("id2label").and_then(Value::as_object) {
        for (k, v) in m {
            let id: usize = k
                .parse()
                .map_err(|_| crate::err!("field `id2label` has key {k:?}, which is not a label id"))?;
            by_id.insert(id, label_text(v));
        }
    } else if let Some(m) = obj.get("label2id").and_then(Value::as_object) {
        for (name, v) in m {
            by_id.insert(as_index("label2id", v)?, name.clone());
        }
    }
    if by_id.is_empty() {
        let n = f.positive("num_labels", 2)?;
        return Ok((0..n).map(|i| format!("LABEL_{i}")).collect());
    }
    let n = by_id.len();
    if by_id.keys().copied().ne(0..n) {
        crate::bail!("`id2label` must number labels 0..{} without gaps", n);
    }
    Ok(by_id.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_and_v5_schemas_agree() {
        let v4 = ModernBertConfig::from_value(&json!({
            "num_hidden_layers": 4, "global_attn_every_n_layers": 2,
            "global_rope_theta": 1000.0, "local_rope_theta": 50.0, "layer_norm_eps": 1e-6,
            "label2id": {"neg": 0, "pos": 1}
        }))
        .unwrap();
        let v5 = ModernBertConfig::from_value(&json!({
            "num_hidden_layers": 4,
            "layer_types": ["full_attention", "sliding_attention", "full_attention", "sliding_attention"],
            "rope_parameters": {"full_attention": {"rope_theta": 1000.0, "rope_type": "default"},
                                 "sliding_attention": {"rope_theta": 50.0, "rope_type": "default"}},
            "norm_eps": 1e-6, "id2label": {"0": "neg", "1": "pos"}
        }))
        .unwrap();
        assert_eq!(v4.layer_types, v5.layer_types);
        assert_eq!((v4.global_rope_theta, v4.local_rope_theta), (1000.0, 50.0));
        assert_eq!((v5.global_rope_theta, v5.local_rope_theta), (1000.0, 50.0));
        assert_eq!(v4.norm_eps, 1e-6);
        assert_eq!(v4.id2label, vec!["neg", "pos"]);
        assert_eq!(v5.id2label, v4.id2label);
        // Round trip through our own writer.
        let again = ModernBertConfig::from_value(&v5.to_json()).unwrap();
        assert_eq!(again, v5);
    }

    #[test]
    fn label2id_with_string_values_and_bad_fields_are_reported() {
        let c = ModernBertConfig::from_value(&json!({"label2id": {"b": "1", "a": "0"}})).unwrap();
        assert_eq!(c.id2label, vec!["a", "b"]);
        let e = ModernBertConfig::from_value(&json!({"hidden_size": "big"})).unwrap_err();
        assert!(e.chain().contains("hidden_size"), "{}", e.chain());
        let e = ModernBertConfig::from_value(&json!({"num_hidden_layers": 2, "layer_types": ["full_attention"]}))
            .unwrap_err();
        assert!(e.chain().contains("layer_types"), "{}", e.chain());
        let e = ModernBertConfig::from_value(&json!({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1.0}}))
            .unwrap_err();
        assert!(e.chain().contains("rope_type"), "{}", e.chain());
        let e = ModernBertConfig::from_value(&json!({"model_type": "bert"})).unwrap_err();
        assert!(e.chain().contains("bert"));
    }

    #[test]
    fn defaults_are_transformers_defaults() {
        let c = ModernBertConfig::default();
        assert_eq!(c.hidden_size, 768);
        assert_eq!(c.sliding_window(), 64);
        assert_eq!(c.layer_types[0], LayerType::Full);
        assert_eq!(c.layer_types[1], LayerType::Sliding);
        assert_eq!(c.num_labels(), 2);
        assert_eq!(c.pad_token_id, Some(50283));
    }
}
