//! `modernft serve`: a model behind the HTTP API existing clients speak, text-embeddings-inference's
//! routes and OpenAI's `/v1/embeddings`.
//!
//! ```text
//! request → JSON (api.rs) → checks → tokenize (blocking threads) → queue → model thread (batcher.rs:
//!          requests batched by token budget, one inference path) → per-request post-processing → JSON
//! ```
//! `routes.rs` holds the handlers; this file loads the model, builds the router and serves it.

pub mod api;
pub mod batcher;
pub mod metrics;
pub mod routes;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::data::TargetKind;
use crate::error::{Context, Result};
use crate::inference::classifier::Classifier;
use crate::inference::embedder::{Embedder, EmbedderOptions};
use crate::inference::Lengths;
use crate::model::{ModelFiles, ModernBertConfig, Pooling};
use batcher::{Batcher, Work};
use metrics::Metrics;

/// `modernft serve`'s options, validated.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub model: String,
    pub host: String,
    pub port: u16,
    /// Tokens per forward pass (rows × longest row) when requests are batched together.
    pub max_batch_tokens: usize,
    /// Inputs one request may hold (413 beyond).
    pub max_client_batch_size: usize,
    /// Requests in flight at once (429 beyond).
    pub max_concurrent_requests: usize,
    /// Cut over-long inputs when a request does not say (`truncate`), instead of answering 413.
    pub auto_truncate: bool,
    pub max_length: Option<usize>,
    /// Embedding models: pooling instead of the folder's.
    pub pooling: Option<Pooling>,
    pub device: candle_core::Device,
    /// Requests must carry `Authorization: Bearer KEY` (401 without it; `/health` stays open).
    pub api_key: Option<String>,
    /// Largest request body in bytes (413 beyond).
    pub payload_limit: usize,
    /// bf16 matrix products (`--precision bf16`, as `embed`).
    pub bf16: bool,
}

/// What the served model is.
#[derive(Clone, Debug, PartialEq)]
pub enum Served {
    /// An encoder: `/embed`, `/v1/embeddings`, `/similarity`.
    Embedding { pooling: Pooling, hidden: usize },
    /// A fine-tuned head: `/predict` (and `/rerank` for pair models).
    Classifier { kind: TargetKind, labels: Vec<String> },
}

/// Everything a request needs, shared by all of them.
pub struct State {
    pub model_id: String,
    pub served: Served,
    pub config: ModernBertConfig,
    /// The tokenizer without truncation (to measure), and cutting at the max input length from
    /// the right and from the left.
    pub tokenizer: Tokenizer,
    pub cut_right: Tokenizer,
    pub cut_left: Tokenizer,
    pub max_input_length: usize,
    /// sentence-transformers prompts by name, and the default prompt's text.
    pub prompts: BTreeMap<String, String>,
    pub default_prompt: String,
    pub opts: ServeOptions,
    pub batcher: Batcher,
    pub tokenization_workers: usize,
    /// One permit per request in flight (`--max-concurrent-requests`); none left: 429.
    pub permits: Arc<tokio::sync::Semaphore>,
    /// Set on SIGTERM / Ctrl-C: new requests get 503 while those in flight finish.
    pub draining: std::sync::atomic::AtomicBool,
    /// What `GET /metrics` reports.
    pub metrics: Arc<Metrics>,
}

fn cutting(tokenizer: &Tokenizer, max_length: usize, direction: TruncationDirection) -> Result<Tokenizer> {
    let mut t = tokenizer.clone();
    t.with_truncation(Some(TruncationParams { max_length, strategy: TruncationStrategy::LongestFirst, stride: 0, direction }))
        .context("cannot configure truncation")?;
    Ok(t)
}

/// Loads the model named in `opts` and everything its routes need.
pub fn load(opts: &ServeOptions) -> Result<State> {
    let files = ModelFiles::resolve(&opts.model)?;
    let config = ModernBertConfig::from_file(&files.config)?;
    if crate::inference::fill_mask::FillMask::is_masked_lm(&config) {
        crate::bail!(
            "{} is a masked-LM (ModernBertForMaskedLM): serve has no fill-mask route (text-embeddings-inference has none either); fill masks with `modernft predict`, or fine-tune it and serve the result",
            files.origin
        );
    }
    let classifier = config.architectures.iter().any(|a| a.ends_with("Classification"));
    let lengths = Lengths { max_length: opts.max_length, truncate: true };
    let (served, model, tokenizer, max_input_length, default_prompt, work) = if classifier {
        if opts.pooling.is_some() {
            eprintln!("note: --pooling applies to embedding models; {} is a classifier and keeps its own", files.origin);
        }
        let mut c = Classifier::load(&opts.model, &lengths, &opts.device)?;
        if opts.bf16 {
            c.model.use_bf16_matmuls()?;
        }
        let work = if c.kind == TargetKind::Tags { Work::Tokens } else { Work::Sequence };
        let served = Served::Classifier { kind: c.kind, labels: c.config.id2label.clone() };
        let max = c.encoder.max_length();
        (served, c.model, c.encoder.tokenizer().clone(), max, String::new(), work)
    } else {
        let e = Embedder::load(&EmbedderOptions {
            model: opts.model.clone(),
            pooling: opts.pooling,
            normalize: false,
            max_length: opts.max_length,
            truncate: true,
            prefix: None,
            device: opts.device.clone(),
            bf16: opts.bf16,
        })?;
        let served = Served::Embedding { pooling: e.setup.pooling, hidden: e.hidden_size() };
        let work = Work::Pooled(e.setup.pooling);
        (served, e.model, e.encoder.tokenizer().clone(), e.setup.max_length, e.setup.prefix.clone(), work)
    };
    let mut tokenizer = tokenizer;
    tokenizer.with_truncation(None).context("cannot configure truncation")?;
    tokenizer.with_padding(None);
    let (prompt_values, _) = crate::model::save::read_prompts(&files.config)?;
    let metrics = Arc::new(Metrics::new()?);
    let prompts = prompt_values
        .as_object()
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default();
    Ok(State {
        model_id: opts.model.clone(),
        served,
        cut_right: cutting(&tokenizer, max_input_length, TruncationDirection::Right)?,
        cut_left: cutting(&tokenizer, max_input_length, TruncationDirection::Left)?,
        tokenizer,
        max_input_length,
        prompts,
        default_prompt,
        batcher: Batcher::start(model, work, opts.max_batch_tokens, metrics.clone())?,
        metrics,
        tokenization_workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        permits: Arc::new(tokio::sync::Semaphore::new(opts.max_concurrent_requests)),
        draining: std::sync::atomic::AtomicBool::new(false),
        config,
        opts: opts.clone(),
    })
}

/// Every route, on `state`.
pub fn router(state: Arc<State>) -> Router {
    // The routes that queue work hold a permit from before their body is read until they answer.
    let work = Router::new()
        .route("/", post(routes::root))
        .route("/embed", post(routes::embed))
        .route("/v1/embeddings", post(routes::openai_embeddings))
        .route("/embeddings", post(routes::openai_embeddings))
        .route("/predict", post(routes::predict))
        .route("/rerank", post(routes::rerank))
        .route("/similarity", post(routes::similarity))
        .route("/tokenize", post(routes::tokenize))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), routes::limit));
    Router::new()
        .merge(work)
        .route("/info", get(routes::info))
        .route("/health", get(routes::health))
        .route("/metrics", get(routes::metrics))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), routes::authorize))
        .layer(axum::extract::DefaultBodyLimit::max(state.opts.payload_limit))
        // Outermost: every answer is counted, refusals included.
        .layer(axum::middleware::from_fn_with_state(state.clone(), routes::observe))
        .with_state(state)
}

/// Loads the model, binds `--host:--port` and serves until Ctrl-C or SIGTERM (requests in flight
/// finish first). Prints the address it listens on (port 0 picks a free one).
pub fn run(opts: &ServeOptions) -> Result<()> {
    let state = Arc::new(load(opts)?);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the server's runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((opts.host.as_str(), opts.port))
            .await
            .with_context(|| format!("cannot listen on --host {} --port {} (is the port taken? --port 0 picks a free one)", opts.host, opts.port))?;
        let bound = listener.local_addr()?;
        let what = match &state.served {
            Served::Embedding { pooling, .. } => format!("embedding model, {} pooling{}", pooling.as_str(), if opts.bf16 { ", bf16 products" } else { "" }),
            Served::Classifier { kind, labels } => format!("{} model, {} label(s)", crate::tasks::problem_type(*kind).unwrap_or("classification"), labels.len()),
        };
        if opts.api_key.is_none() && !bound.ip().is_loopback() {
            eprintln!("note: listening on {bound}, beyond this machine, without --api-key: anyone who can reach it can use the model");
        }
        eprintln!("modernft serve: {} ({what}, max input {} tokens) listening on http://{bound}", state.model_id, state.max_input_length);
        axum::serve(listener, router(state.clone())).with_graceful_shutdown(drained(state)).await.context("the server stopped")?;
        eprintln!("modernft serve: stopped");
        Ok(())
    })
}

/// Resolves once a shutdown signal came and every request in flight has been answered (new ones
/// get 503 meanwhile); axum then stops listening.
async fn drained(state: Arc<State>) {
    shutdown_signal().await;
    state.draining.store(true, std::sync::atomic::Ordering::SeqCst);
    let busy = || state.opts.max_concurrent_requests - state.permits.available_permits();
    eprintln!("modernft serve: shutting down after {} request(s) in flight", busy());
    while busy() > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
