//! Command-line flags, defined once, and their conversion into validated options.

pub mod run;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::device::parse_device;
use crate::commands::embed::{EmbedOptions, EmbedderOptions, InputFormat, OutputFormat};
use crate::error::Result;
use crate::inference::{Budget, Lengths};
use crate::model::Pooling;

#[derive(Parser, Debug)]
#[command(name = "modernft", version, about = "Fine-tune ModernBERT encoders and serve what they learn")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Turn texts into vectors: stdin (or --input) to stdout (or --output), one vector per input,
    /// in input order.
    Embed(EmbedArgs),
    /// Show what a dataset looks like through the tokenizer: rows, labels, lengths, padding.
    Data(DataArgs),
    /// Fine-tune ModernBERT as a run config describes (or continue a run with --resume).
    Train(TrainArgs),
    /// Write a commented run-config template to start from.
    Init(InitArgs),
    /// Score a fine-tuned model on labelled data: a table for people, --json for scripts.
    #[command(alias = "evaluate")]
    Eval(EvalArgs),
    /// Label texts with a fine-tuned model: stdin (or --input) to JSONL, in input order.
    Predict(PredictArgs),
    /// Export a portable model folder for transformers or sentence-transformers.
    Save(SaveArgs),
    /// Serve a model over HTTP: text-embeddings-inference's routes (/embed, /tokenize, /info,
    /// /health) and OpenAI's /v1/embeddings, requests batched by a token budget.
    Serve(ServeArgs),
    /// Measure training and embedding throughput (one JSON line; the cases of ../shared/bench/hf_bench.py).
    Bench(BenchArgs),
    /// Check the parts of a sharded `embed` or `predict` run (`--shard`) and concatenate them into
    /// what one unsharded run writes.
    MergeParts(MergePartsArgs),
}

#[derive(Args, Debug)]
pub struct MergePartsArgs {
    /// The parts (part-IIIII-of-NNNNN.jsonl or .npy files), or the folder holding them.
    #[arg(required = true)]
    pub parts: Vec<PathBuf>,
    /// The merged file (written atomically).
    #[arg(long, short)]
    pub output: PathBuf,
    /// Replace an existing --output.
    #[arg(long)]
    pub overwrite: bool,
}

/// Where `embed` and `predict` write, and which part of the input they take.
#[derive(Args, Debug)]
pub struct PartArgs {
    /// Write to this file instead of stdout, atomically (under a temporary name, renamed when
    /// complete). With --shard: a folder, where the shard writes part-IIIII-of-NNNNN.jsonl (or
    /// .npy); that part's own path; or a file name holding {index} (and {count}), e.g.
    /// out/emb-{index}.jsonl.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Replace an existing --output.
    #[arg(long, conflicts_with = "skip_existing")]
    pub overwrite: bool,
    /// Leave an existing --output alone (a finished part) and exit.
    #[arg(long)]
    pub skip_existing: bool,
    /// Take one contiguous part of the input rows: INDEX/COUNT (0-based, e.g. 3/16), or `auto`
    /// (`auto/COUNT`) to read them from a Slurm job array, a Kubernetes Indexed Job
    /// (JOB_COMPLETION_INDEX, with auto/COUNT), an AWS Batch array job (with auto/COUNT) or an MPI
    /// launcher. `merge-parts` joins the parts.
    #[arg(long, value_name = "I/N|auto[/N]")]
    pub shard: Option<String>,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Model folder, run folder, checkpoint or hub id: an embedding model or a fine-tuned classifier.
    #[arg(long)]
    pub model: String,
    /// Address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port; the address is printed).
    #[arg(long, default_value_t = 3000)]
    pub port: u16,
    /// Tokens per forward pass (rows × longest row) when requests are batched together.
    #[arg(long, default_value_t = 16384, value_parser = at_least_one)]
    pub max_batch_tokens: usize,
    /// Inputs one request may send (more: 413).
    #[arg(long, default_value_t = 32, value_parser = at_least_one)]
    pub max_client_batch_size: usize,
    /// Requests handled at once; one more is answered 429 (Overloaded) at once.
    #[arg(long, default_value_t = 512, value_parser = at_least_one)]
    pub max_concurrent_requests: usize,
    /// Cut inputs longer than the max input length when a request does not set `truncate`
    /// (without: 413).
    #[arg(long)]
    pub auto_truncate: bool,
    /// Max input length in tokens [default: the folder's max_seq_length, else the model's positions].
    #[arg(long, value_parser = max_length_arg)]
    pub max_length: Option<usize>,
    /// Embedding models: pooling instead of the folder's.
    #[arg(long, value_enum)]
    pub pooling: Option<PoolingArg>,
    /// auto (CUDA if this build and machine have it, then Metal, else the CPU; the choice is printed
    /// once), cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Require `Authorization: Bearer KEY` on every route but /health (401 without it); also read
    /// from MODERNFT_API_KEY.
    #[arg(long, env = "MODERNFT_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Largest request body in bytes (more: 413).
    #[arg(long, default_value_t = 2_000_000, value_parser = at_least_one)]
    pub payload_limit: usize,
    /// Precision of the matrix products, as `embed` has it: f32, or bf16 on CPUs with AVX-512 BF16.
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub precision: PrecisionArg,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Random-init ModernBERT size (hf_bench.py's tiny, small or base).
    #[arg(long)]
    pub size: Option<String>,
    /// A model folder whose config.json to use instead (random init).
    #[arg(long, conflicts_with = "size")]
    pub model_dir: Option<PathBuf>,
    /// train (forward, loss, backward, AdamW), embed (forward + pooling), or kernels (one base
    /// layer's pieces timed one by one at --batch × --seq tokens, best of --steps runs each).
    #[arg(long, default_value = "train")]
    pub mode: String,
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Tokens per row [default: 128, or 512 with --data].
    #[arg(long)]
    pub seq: Option<usize>,
    /// Timed steps (fixed-shape mode); repetitions per kernel (kernels mode).
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Real text: a JSONL file with "text" (and "label"); one timed pass over --rows rows.
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    #[arg(long, default_value_t = 2048)]
    pub rows: usize,
    /// Sort rows longest-first inside chunks of --group-mult batches (as hf_bench.py does).
    #[arg(long)]
    pub group_by_length: bool,
    #[arg(long, default_value_t = 50)]
    pub group_mult: usize,
    /// Worker threads [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Matrix-product precision: fp32, or bf16 (hf_bench.py's names; embed: the AVX-512 BF16
    /// kernels; train: `precision = "bf16"`, as autocast trains).
    #[arg(long, default_value = "fp32", value_parser = ["fp32", "bf16"])]
    pub dtype: String,
    /// Run the padded path (dense masked attention over padded batches) instead of the unpadded one.
    #[arg(long)]
    pub padded: bool,
    /// Where to run: cpu (the default, as the side-by-side scripts compare with PyTorch on the CPU),
    /// cuda, cuda:N or metal. Steps are timed to the device's completion.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// How long inputs may be and how many tokens a forward pass holds: the same flags on `eval`,
/// `predict` and `embed`.
#[derive(Args, Debug)]
pub struct LengthArgs {
    /// Truncate inputs to this many tokens, special tokens included [default: a sentence-transformers
    /// folder's max_seq_length, else the model's positions].
    #[arg(long, value_parser = max_length_arg)]
    pub max_length: Option<usize>,
    /// Refuse inputs longer than the max length (an error naming the first) instead of truncating them.
    #[arg(long)]
    pub no_truncate: bool,
    /// Also cap each forward pass at N padded tokens (rows × longest row; inputs are grouped by
    /// length, so long inputs go in smaller batches) [default: rows only].
    #[arg(long, value_parser = at_least_one)]
    pub max_batch_tokens: Option<usize>,
}

impl LengthArgs {
    pub fn lengths(&self) -> Lengths {
        Lengths { max_length: self.max_length, truncate: !self.no_truncate }
    }

    /// `rows` per forward pass, within `--max-batch-tokens`.
    pub fn budget(&self, rows: usize) -> Budget {
        Budget { rows: rows.max(1), tokens: self.max_batch_tokens }
    }
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Run folder (its best model), checkpoint, exported folder or hub id.
    #[arg(long)]
    pub model: String,
    /// Labelled data file(s) (.jsonl, .csv, .tsv, .parquet; optionally .gz). Embedding models: pairs
    /// (text, text_pair[, score]); see --evaluation.
    #[arg(long, required_unless_present_any = ["config", "corpus"])]
    pub data: Vec<PathBuf>,
    /// Embedding models, pair data: `sts` (Spearman of cosine against the pairs' scores), `retrieval`
    /// (each pair's second text is the one relevant document for its first), or `auto`: STS when
    /// the pairs have a score column (--label-column, else `label` or `score`), retrieval otherwise.
    #[arg(long, value_enum, default_value_t = EvaluationArg::Auto)]
    pub evaluation: EvaluationArg,
    /// Embedding models: a JSONL corpus of {"id", "text"} to retrieve from (with --queries).
    #[arg(long, requires = "queries")]
    pub corpus: Option<PathBuf>,
    /// Embedding models: JSONL queries {"text", "relevant": [corpus ids]}.
    #[arg(long, requires = "corpus")]
    pub queries: Option<PathBuf>,
    /// Reuse a run config's [data] section (its validation split unless --split says otherwise).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// With --config: which split to score.
    #[arg(long, value_enum, default_value_t = SplitArg::Validation)]
    pub split: SplitArg,
    #[command(flatten)]
    pub columns: ColumnArgs,
    #[arg(long, default_value_t = 64, value_parser = at_least_one)]
    pub batch_size: usize,
    #[command(flatten)]
    pub lengths: LengthArgs,
    /// Multi-label decision threshold on sigmoid scores.
    #[arg(long, default_value_t = 0.5, value_parser = probability)]
    pub threshold: f32,
    /// Token classification: read entities with seqeval's default chunking, or strict IOB2.
    #[arg(long, value_enum, default_value_t = SchemeArg::Default)]
    pub entity_scheme: SchemeArg,
    /// Score rows whose gold label the model does not know as errors (each such label its own
    /// class in the averages, as scikit-learn scores them) instead of refusing the data.
    #[arg(long)]
    pub allow_unknown_labels: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Write confusion_matrix.svg into this folder.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// auto (CUDA if this build and machine have it, then Metal, else the CPU; the choice is printed
    /// once), cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EvaluationArg {
    Auto,
    Sts,
    Retrieval,
}

impl From<EvaluationArg> for crate::commands::eval::PairEvaluation {
    fn from(a: EvaluationArg) -> Self {
        match a {
            EvaluationArg::Auto => crate::commands::eval::PairEvaluation::Auto,
            EvaluationArg::Sts => crate::commands::eval::PairEvaluation::Sts,
            EvaluationArg::Retrieval => crate::commands::eval::PairEvaluation::Retrieval,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SchemeArg {
    Default,
    StrictIob2,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SplitArg {
    Train,
    Validation,
    Test,
}

#[derive(Args, Debug, Default)]
pub struct ColumnArgs {
    #[command(flatten)]
    pub text: TextArgs,
    #[arg(long)]
    pub label_column: Option<String>,
    /// Token classification: the words column (JSONL).
    #[arg(long)]
    pub tokens_column: Option<String>,
    /// Token classification: the tags column (JSONL).
    #[arg(long)]
    pub tags_column: Option<String>,
    /// Names for the labels as the file stores them: `1=World,2=Sports,...`, or a file with one
    /// name per line (AG News's classes.txt).
    #[arg(long, value_name = "FILE|K=NAME,...")]
    pub label_names: Option<String>,
    #[command(flatten)]
    pub read: ReadArgs,
}

/// The text columns of a data file (`[data]`'s `text_column`, `text_separator`, `text_pair_column`).
#[derive(Args, Debug, Default)]
pub struct TextArgs {
    /// The text column; given more than once, those columns joined (by --text-separator).
    #[arg(long)]
    pub text_column: Vec<String>,
    /// What joins several --text-column columns [default: a space].
    #[arg(long)]
    pub text_separator: Option<String>,
    #[arg(long)]
    pub text_pair_column: Option<String>,
}

/// How to read a data file (`[data]`'s `format`, `header`, `columns`, `encoding`, `pattern`,
/// `skip_unmatched`).
#[derive(Args, Debug, Default)]
pub struct ReadArgs {
    /// File format when the extension does not say it.
    #[arg(long, value_enum)]
    pub format: Option<DataFormatArg>,
    /// CSV/TSV: whether the first line names the columns (`--header false` for a file without one).
    #[arg(long, value_name = "true|false")]
    pub header: Option<bool>,
    /// CSV/TSV without a header: the columns' names in order, comma-separated (without them the
    /// columns are named 0, 1, 2, ...).
    #[arg(long, value_delimiter = ',', value_name = "NAME,NAME,...")]
    pub columns: Option<Vec<String>>,
    /// Text files in another encoding than UTF-8: latin-1, windows-1252, utf-16, shift_jis, ...
    #[arg(long)]
    pub encoding: Option<String>,
    /// `--format lines`: a regular expression whose named groups are the columns, e.g.
    /// '^(?P<label>[A-Z]+):\S+ (?P<text>.*)$' (TREC).
    #[arg(long)]
    pub pattern: Option<String>,
    /// `--format lines`: skip (and count) lines the pattern does not match.
    #[arg(long)]
    pub skip_unmatched: bool,
}

impl ReadArgs {
    /// Whether any of these flags was given.
    pub fn any(&self) -> bool {
        self.format.is_some() || self.header.is_some() || self.columns.is_some() || self.encoding.is_some() || self.pattern.is_some() || self.skip_unmatched
    }
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// Run folder (its best model), checkpoint, exported folder or hub id.
    #[arg(long)]
    pub model: String,
    /// Read texts from this file instead of stdin.
    #[arg(long, short)]
    pub input: Option<PathBuf>,
    /// Plain lines, or JSONL with "text" (and optional "text_pair", "id"). A .csv, .tsv or .parquet
    /// --input (or one read with --format/--header/--columns/--encoding/--pattern) is read as a data
    /// file, its text from --text-column (default `text`) and --text-pair-column.
    #[arg(long, value_enum, default_value_t = InputFormatArg::Auto)]
    pub input_format: InputFormatArg,
    #[command(flatten)]
    pub text: TextArgs,
    #[command(flatten)]
    pub read: ReadArgs,
    /// Include every label's probability.
    #[arg(long)]
    pub all_scores: bool,
    /// Include the K most likely labels.
    #[arg(long, value_parser = at_least_one)]
    pub top_k: Option<usize>,
    /// Include the raw logits.
    #[arg(long)]
    pub logits: bool,
    /// Multi-label models: labels with sigmoid score at least this are predicted.
    #[arg(long, default_value_t = 0.5, value_parser = probability)]
    pub threshold: f32,
    #[arg(long, default_value_t = 32, value_parser = at_least_one)]
    pub batch_size: usize,
    #[command(flatten)]
    pub lengths: LengthArgs,
    /// auto (CUDA if this build and machine have it, then Metal, else the CPU; the choice is printed
    /// once), cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[command(flatten)]
    pub part: PartArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ExportFormatArg {
    Hf,
    SentenceTransformers,
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Run folder, checkpoint, model folder or hub id.
    pub source: String,
    /// Folder to write.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = ExportFormatArg::Hf)]
    pub format: ExportFormatArg,
    /// Weight precision: f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// sentence-transformers: pooling [default: the model's classifier_pooling].
    #[arg(long, value_enum)]
    pub pooling: Option<PoolingArg>,
    /// sentence-transformers: L2-normalise embeddings (adds a Normalize module).
    #[arg(long)]
    pub normalize: bool,
    /// Replace an existing folder.
    #[arg(long)]
    pub overwrite: bool,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The run config (TOML). Every key is documented in configs/README.md.
    #[arg(long, required_unless_present = "resume")]
    pub config: Option<PathBuf>,
    /// Continue the run in this folder from its latest checkpoint, or from one checkpoint of a run
    /// (`--resume runs/x/checkpoint-120`; later checkpoints are moved into `runs/x/superseded/`).
    #[arg(long, conflicts_with_all = ["config", "set", "overwrite"])]
    pub resume: Option<PathBuf>,
    /// Override a config key, e.g. --set training.learning_rate=3e-5 (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub set: Vec<String>,
    /// Replace an existing output folder.
    #[arg(long)]
    pub overwrite: bool,
    /// auto (CUDA if this build and machine have it, then Metal, else the CPU; the choice is printed
    /// once), cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// No progress bar (one line per logging step instead).
    #[arg(long)]
    pub quiet: bool,
    /// Refuse rows longer than `[data] max_length` (an error naming the first) instead of truncating
    /// them: the same as `--set data.truncate=false`.
    #[arg(long, conflicts_with = "resume")]
    pub no_truncate: bool,
    /// Also report metrics to `tensorboard` (event files in RUN/tensorboard/, for
    /// `tensorboard --logdir runs`): the same as `--set 'output.report_to=["tensorboard"]'`.
    #[arg(long, value_parser = ["tensorboard", "none"], conflicts_with = "resume")]
    pub report_to: Vec<String>,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Where to write the template.
    #[arg(default_value = "modernft.toml")]
    pub path: PathBuf,
    /// Replace an existing file.
    #[arg(long)]
    pub overwrite: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TaskArg {
    Classification,
    MultiLabel,
    Regression,
    /// Tags per word (tokens + tags columns, or CoNLL).
    TokenClassification,
    /// Read no labels.
    None,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DataFormatArg {
    Jsonl,
    Csv,
    Tsv,
    Parquet,
    Conll,
    /// One document per line (masked-LM text).
    Text,
    /// One row per line, its columns the named groups of --pattern.
    Lines,
}

#[derive(Args, Debug, Default)]
pub struct DataSourceArgs {
    /// Training file (.jsonl, .csv, .tsv, .parquet; optionally .gz).
    #[arg(long)]
    pub train: Option<PathBuf>,
    #[arg(long)]
    pub validation: Option<PathBuf>,
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// Hub dataset id, read from its Parquet conversion (e.g. stanfordnlp/imdb).
    #[arg(long)]
    pub hub: Option<String>,
    /// Hub dataset config name (e.g. plain_text).
    #[arg(long)]
    pub subset: Option<String>,
    #[command(flatten)]
    pub columns: ColumnArgs,
}

#[derive(Args, Debug)]
pub struct DataArgs {
    /// A run config (TOML); its [model] and [data] sections are used, flags override them.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// With --config: override a key, e.g. --set data.max_length=128 (repeatable), as `train` does.
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE", requires = "config")]
    pub set: Vec<String>,
    #[command(flatten)]
    pub source: DataSourceArgs,
    /// Model folder or hub id whose tokenizer.json to use.
    #[arg(long)]
    pub model: Option<String>,
    /// A tokenizer.json to use instead of the model's.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// How to read labels.
    #[arg(long, value_enum)]
    pub task: Option<TaskArg>,
    /// Token budget per row (for the truncation count and padding figures) [default: the config's
    /// `max_length`, else the model's positions as `train` uses them; 512 with only a tokenizer].
    #[arg(long, value_parser = max_length_arg)]
    pub max_length: Option<usize>,
    /// Batch size for the padding figures.
    #[arg(long, default_value_t = 16, value_parser = at_least_one)]
    pub batch_size: usize,
    /// Seed of the shuffled order used for the padding figures.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Print JSON (one object per split) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// A token to add to the tokenizer (as `[model] add_tokens`; repeat the flag for more): the
    /// report then says how many rows contain each added token and how much shorter the data
    /// tokenizes.
    #[arg(long, value_name = "TOKEN")]
    pub add_token: Vec<String>,
    /// Instead of the report: the first N training rows next to their augmented copies (the
    /// config's [data.augment], as the first epoch of `train` makes them).
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub augment_preview: Option<usize>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PoolingArg {
    Cls,
    Mean,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FormatArg {
    Jsonl,
    Npy,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum InputFormatArg {
    Auto,
    Text,
    Jsonl,
}

#[derive(Args, Debug)]
pub struct EmbedArgs {
    /// Model folder (config.json, model.safetensors, tokenizer.json) or hub id (org/name[@revision]).
    #[arg(long)]
    pub model: String,
    /// Read texts from this file instead of stdin.
    #[arg(long, short)]
    pub input: Option<PathBuf>,
    /// How to read the input: plain lines, JSONL with a "text" field, or auto-detect.
    #[arg(long, value_enum, default_value_t = InputFormatArg::Auto)]
    pub input_format: InputFormatArg,
    /// Output format: JSONL ({"embedding": [...]} per line) or a float32 .npy array.
    #[arg(long, value_enum, default_value_t = FormatArg::Jsonl)]
    pub format: FormatArg,
    /// Pooling over tokens [default: a sentence-transformers folder's Pooling module, else the
    /// model config's classifier_pooling].
    #[arg(long, value_enum)]
    pub pooling: Option<PoolingArg>,
    /// L2-normalise every vector (for cosine similarity by dot product).
    #[arg(long)]
    pub normalize: bool,
    #[command(flatten)]
    pub lengths: LengthArgs,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 32, value_parser = at_least_one)]
    pub batch_size: usize,
    /// Text prepended to every input, e.g. "search_query: " [default: a sentence-transformers
    /// folder's default prompt, else none; --prefix "" turns the default prompt off].
    #[arg(long)]
    pub prefix: Option<String>,
    /// auto (CUDA if this build and machine have it, then Metal, else the CPU; the choice is printed
    /// once), cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Precision of the matrix products: f32, or bf16 (like PyTorch's CPU autocast: about twice as
    /// fast on CPUs with AVX-512 BF16; vectors within cosine 0.999 of f32).
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub precision: PrecisionArg,
    #[command(flatten)]
    pub part: PartArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PrecisionArg {
    F32,
    Bf16,
}

impl EmbedArgs {
    pub fn to_options(&self) -> Result<EmbedOptions> {
        if self.batch_size == 0 {
            crate::bail!("--batch-size must be at least 1");
        }
        if let Some(n) = self.lengths.max_length {
            if n < 2 {
                crate::bail!("--max-length must be at least 2 (room for [CLS] and [SEP])");
            }
        }
        Ok(EmbedOptions {
            embedder: EmbedderOptions {
                model: self.model.clone(),
                pooling: self.pooling.map(|p| match p {
                    PoolingArg::Cls => Pooling::Cls,
                    PoolingArg::Mean => Pooling::Mean,
                }),
                normalize: self.normalize,
                max_length: self.lengths.max_length,
                truncate: !self.lengths.no_truncate,
                prefix: self.prefix.clone(),
                device: parse_device(&self.device)?,
                bf16: self.precision == PrecisionArg::Bf16,
            },
            budget: self.lengths.budget(self.batch_size),
            format: match self.format {
                FormatArg::Jsonl => OutputFormat::Jsonl,
                FormatArg::Npy => OutputFormat::Npy,
            },
            input_format: match self.input_format {
                InputFormatArg::Auto => InputFormat::Auto,
                InputFormatArg::Text => InputFormat::Text,
                InputFormatArg::Jsonl => InputFormat::Jsonl,
            },
            shard: self.part.shard()?,
        })
    }
}

impl PartArgs {
    /// `--shard` read (`auto` from this process's environment).
    pub fn shard(&self) -> Result<Option<crate::commands::shard::Shard>> {
        self.shard.as_deref().map(|s| crate::commands::shard::Shard::parse(s, &|k| std::env::var(k).ok())).transpose()
    }
}

/// `--batch-size`, `--top-k`: a whole number of at least 1 (0 is refused, never clamped).
fn at_least_one(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        Ok(_) => Err("must be at least 1".into()),
        Err(_) => Err(format!("`{s}` is not a whole number")),
    }
}

/// `--max-length`: room for [CLS] and [SEP] at least.
fn max_length_arg(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 2 => Ok(n),
        Ok(_) => Err("must be at least 2 (room for [CLS] and [SEP])".into()),
        Err(_) => Err(format!("`{s}` is not a whole number")),
    }
}

/// `--threshold`: a probability in [0, 1].
fn probability(s: &str) -> std::result::Result<f32, String> {
    match s.parse::<f32>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        Ok(_) => Err("must be between 0 and 1".into()),
        Err(_) => Err(format!("`{s}` is not a number")),
    }
}
