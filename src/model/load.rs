//! Building a model from a checkpoint: every tensor the modules ask for comes from the checkpoint,
//! or, for task-head tensors only, from a fresh initialisation the way transformers initialises them.
//!
//! The modules ask through a candle `VarBuilder`; [`ParamSource`] is its backend. It checks shapes,
//! records which tensors were requested (so unused checkpoint tensors are reported), initialises
//! missing head tensors from a seeded RNG, and, for training, turns every tensor into a `Var`.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::{Init, VarBuilder};

use crate::error::{Context, Result};
use crate::model::config::ModernBertConfig;
use crate::model::modernbert::{HeadKind, ModernBert};
use crate::rng::Rng;

/// The tensors of a safetensors checkpoint (one file or a sharded set), memory-mapped.
pub struct Weights {
    files: Vec<PathBuf>,
    st: MmapedSafetensors,
    names: BTreeSet<String>,
    /// True when encoder tensors are saved without the `model.` prefix (a bare `ModernBertModel`).
    bare_encoder: bool,
}

impl Weights {
    pub fn open(files: &[PathBuf]) -> Result<Self> {
        for f in files {
            if !f.is_file() {
                crate::bail!("weights file {} does not exist", f.display());
            }
        }
        let st = crate::kernels::mmap_safetensors(files).with_context(|| {
            format!("cannot read safetensors from {}", files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "))
        })?;
        let names: BTreeSet<String> = st.tensors().into_iter().map(|(n, _)| n).collect();
        let bare_encoder = !names.contains("model.embeddings.tok_embeddings.weight")
            && names.contains("embeddings.tok_embeddings.weight");
        Ok(Weights { files: files.to_vec(), st, names, bare_encoder })
    }

    /// Whether the checkpoint holds `name` (a transformers name, `model.` prefix included).
    pub fn contains(&self, name: &str) -> bool {
        self.names.contains(&self.stored_name(name))
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The checkpoint name of a tensor the model asks for by its transformers name.
    fn stored_name(&self, name: &str) -> String {
        match (self.bare_encoder, name.strip_prefix("model.")) {
            (true, Some(rest)) => rest.to_string(),
            _ => name.to_string(),
        }
    }

    fn load(&self, stored: &str, dev: &Device) -> Result<Tensor> {
        Ok(self.st.load(stored, dev)?)
    }
}

/// How to build the model.
pub struct LoadOptions {
    pub dtype: DType,
    pub device: Device,
    /// Make every tensor a trainable `Var` (returned in [`Loaded::params`]).
    pub trainable: bool,
    /// Seed for tensors initialised because the checkpoint lacks them.
    pub seed: u64,
    /// Re-initialise `classifier.*` tensors whose shape differs from the checkpoint's (a new label
    /// set), instead of failing; transformers' `ignore_mismatched_sizes` for the classifier only.
    pub reinit_mismatched_classifier: bool,
    /// Grow the checkpoint's token embeddings (and a masked-LM decoder's bias) to the config's
    /// larger `vocab_size`, as `resize_token_embeddings` does ([`crate::model::vocabulary`]): for
    /// runs that add tokens.
    pub grow_vocab: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { dtype: DType::F32, device: Device::Cpu, trainable: false, seed: 42, reinit_mismatched_classifier: false, grow_vocab: false }
    }
}

/// The tensors [`LoadOptions::grow_vocab`] grows.
const TOKEN_EMBEDDINGS: &str = "model.embeddings.tok_embeddings.weight";
const DECODER_BIAS: &str = "decoder.bias";

pub struct Loaded {
    pub model: ModernBert,
    /// Trainable parameters by transformers name, in module order (empty unless `trainable`).
    pub params: Vec<(String, Var)>,
    /// Tensors the checkpoint did not have, freshly initialised.
    pub initialised: Vec<String>,
    /// Every tensor of the model by transformers name, in module order (for saving). For trainable
    /// models these share storage with `params`, so they always hold the current weights.
    pub tensors: Vec<(String, Tensor)>,
}

impl Loaded {
    pub fn tensor(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

struct SourceState {
    requested: BTreeSet<String>,
    initialised: Vec<String>,
    params: Vec<(String, Var)>,
    tensors: Vec<(String, Tensor)>,
    rng: Rng,
}

/// The `VarBuilder` backend: checkpoint first, initialisation for missing head tensors.
pub struct ParamSource<'a> {
    weights: Option<&'a Weights>,
    trainable: bool,
    reinit_mismatched_classifier: bool,
    grow_vocab: bool,
    seed: u64,
    cutoff: f64,
    state: Arc<Mutex<SourceState>>,
}

fn msg(text: String) -> candle_core::Error {
    candle_core::Error::Msg(text)
}

impl<'a> ParamSource<'a> {
    fn init(&self, shape: &Shape, hint: Init, dtype: DType, dev: &Device, rng: &mut Rng) -> candle_core::Result<Tensor> {
        let n = shape.elem_count();
        let values: Vec<f64> = match hint {
            Init::Const(v) => vec![v; n],
            // transformers initialises ModernBERT weights with trunc_normal_(std, a=-cutoff*std, b=cutoff*std).
            Init::Randn { mean, stdev } => (0..n).map(|_| mean + rng.trunc_normal(stdev, self.cutoff)).collect(),
            Init::Uniform { lo, up } => (0..n).map(|_| lo + (up - lo) * rng.uniform()).collect(),
            other => return Err(msg(format!("unsupported init {other:?}"))),
        };
        Tensor::from_vec(values, shape.clone(), dev)?.to_dtype(dtype)
    }
}

impl ParamSource<'_> {
    /// `t` grown to `shape` when it is the token embeddings or a decoder bias with fewer rows than
    /// the config's vocabulary and growing is asked for; otherwise `t` as it is.
    fn grown(&self, name: &str, t: Tensor, shape: &Shape) -> Result<Tensor> {
        let (have, want) = (t.dims(), shape.dims());
        if !self.grow_vocab || have.len() != want.len() || have.first() >= want.first() || have[1..] != want[1..] {
            return Ok(t);
        }
        match name {
            TOKEN_EMBEDDINGS => crate::model::vocabulary::grow_embeddings(&t, want[0], self.seed),
            DECODER_BIAS => crate::model::vocabulary::grow_bias(&t, want[0]),
            _ => Ok(t),
        }
    }
}

impl candle_nn::var_builder::SimpleBackend for ParamSource<'_> {
    fn get(&self, shape: Shape, name: &str, hint: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let mut state = self.state.lock().expect("param source lock");
        state.requested.insert(name.to_string());
        let stored = self.weights.map(|w| (w, w.stored_name(name)));
        let mismatched_head = |w: &Weights, stored: &str| {
            self.reinit_mismatched_classifier
                && name.starts_with("classifier.")
                && w.st.get(stored).is_ok_and(|view| view.shape() != shape.dims())
        };
        let tensor = match stored {
            Some((w, stored)) if w.names.contains(&stored) && !mismatched_head(w, &stored) => {
                let files = || w.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ");
                let t = w.load(&stored, dev).map_err(|e| msg(format!("{}: tensor `{stored}`: {}", files(), e.chain())))?;
                let t = match self.grown(name, t, &shape) {
                    Ok(t) => t,
                    Err(e) => return Err(msg(format!("{}: tensor `{stored}`: {}", files(), e.chain()))),
                };
                if t.shape() != &shape {
                    return Err(msg(format!(
                        "{}: tensor `{stored}` has shape {:?}, but config.json needs {:?}: the weights and config.json do not belong together",
                        files(),
                        t.dims(),
                        shape.dims()
                    )));
                }
                t.to_dtype(dtype)?
            }
            Some((w, stored)) if name.starts_with("model.") => {
                return Err(msg(format!(
                    "{} has no encoder tensor `{stored}`; the weights do not match config.json",
                    w.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
                )));
            }
            _ => {
                state.initialised.push(name.to_string());
                let mut rng = std::mem::replace(&mut state.rng, Rng::new(0));
                let t = self.init(&shape, hint, dtype, dev, &mut rng);
                state.rng = rng;
                t?
            }
        };
        let tensor = if self.trainable {
            let var = Var::from_tensor(&tensor)?;
            let t = var.as_tensor().clone();
            state.params.push((name.to_string(), var));
            t
        } else {
            tensor
        };
        state.tensors.push((name.to_string(), tensor.clone()));
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let w = self.weights.ok_or_else(|| msg(format!("no checkpoint to read `{name}` from")))?;
        w.load(&w.stored_name(name), dev).map_err(|e| msg(e.chain()))?.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.weights.is_some_and(|w| w.names.contains(&w.stored_name(name)))
    }
}

/// Checkpoint tensors that a model (with or without a task head) may leave unused without it being an error.
fn ignorable(name: &str, kind: HeadKind) -> bool {
    match kind {
        // A tied decoder's weight is the token embeddings (a saved copy is not read); a
        // classifier checkpoint's classifier has no place in a masked-LM model.
        HeadKind::MaskedLm => name == "decoder.weight" || name.starts_with("classifier."),
        // The masked-LM decoder of pretrained checkpoints is never used for fine-tuning or embeddings.
        HeadKind::Sequence | HeadKind::Token => name.starts_with("decoder."),
        HeadKind::None => name.starts_with("decoder.") || name.starts_with("head.") || name.starts_with("classifier."),
    }
}

/// Builds ModernBERT with the given head from `weights` (or from scratch when `None`).
pub fn build(config: &ModernBertConfig, weights: Option<&Weights>, kind: HeadKind, opts: &LoadOptions) -> Result<Loaded> {
    let state = Arc::new(Mutex::new(SourceState {
        requested: BTreeSet::new(),
        initialised: Vec::new(),
        params: Vec::new(),
        tensors: Vec::new(),
        rng: Rng::new(opts.seed),
    }));
    let source = ParamSource {
        weights,
        trainable: opts.trainable,
        reinit_mismatched_classifier: opts.reinit_mismatched_classifier,
        grow_vocab: opts.grow_vocab,
        seed: opts.seed,
        cutoff: config.initializer_cutoff_factor,
        state: state.clone(),
    };
    let unused_ok = |n: &str| ignorable(n, kind);
    let model = {
        let vb = VarBuilder::from_backend(Box::new(source), opts.dtype, opts.device.clone());
        ModernBert::new(vb, config, kind)?
    };
    let state = std::mem::replace(
        &mut *state.lock().expect("param source lock"),
        SourceState {
            requested: BTreeSet::new(),
            initialised: Vec::new(),
            params: Vec::new(),
            tensors: Vec::new(),
            rng: Rng::new(0),
        },
    );
    if let Some(w) = weights {
        let used: BTreeSet<String> = state.requested.iter().map(|n| w.stored_name(n)).collect();
        let unexpected: Vec<&String> = w
            .names
            .iter()
            .filter(|n| !used.contains(*n) && !unused_ok(n))
            .collect();
        if !unexpected.is_empty() {
            let shown: Vec<&str> = unexpected.iter().take(8).map(|s| s.as_str()).collect();
            crate::bail!(
                "the checkpoint has {} tensor(s) this ModernBERT config does not use: {}{} (is config.json the one saved with these weights?)",
                unexpected.len(),
                shown.join(", "),
                if unexpected.len() > 8 { ", ..." } else { "" }
            );
        }
    }
    Ok(Loaded { model, params: state.params, initialised: state.initialised, tensors: state.tensors })
}

/// Every parameter of a loaded model by name (trainable models only), for optimizers and tests.
pub fn param_map(params: &[(String, Var)]) -> HashMap<&str, &Var> {
    params.iter().map(|(n, v)| (n.as_str(), v)).collect()
}

/// Loads a model from resolved files: config, weights, the requested head.
pub fn load_pretrained(
    files: &crate::model::ModelFiles,
    kind: HeadKind,
    opts: &LoadOptions,
) -> Result<(ModernBertConfig, Loaded)> {
    let config = ModernBertConfig::from_file(&files.config)?;
    let weights = Weights::open(&files.weights)?;
    let loaded = build(&config, Some(&weights), kind, opts)
        .with_context(|| format!("cannot load model {}", files.origin))?;
    Ok((config, loaded))
}
