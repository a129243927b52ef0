//! The handlers: check the request, tokenize it on a blocking thread, queue it for the model,
//! shape the answer as TEI (or OpenAI) does.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State as Shared;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::json;

use super::api::{
    ApiError, EmbedRequest, EncodingFormat, ErrorType, Json, OpenAiEmbedding, OpenAiRequest, OpenAiResponse, OpenAiUsage, OpenAiVector, PredictInput, PredictRequest, Prediction, Rank, RerankRequest,
    SimilarityRequest, SimpleToken, TokenizeRequest, TruncationDirection,
};
use crate::data::TargetKind;
use super::batcher::{Output, Timing};
use super::{Served, State};

type Reply = Result<Response, ApiError>;

/// The routes, for the 404 answer.
const ROUTES: &str = "POST / (embed or predict, as the model is), POST /embed, POST /v1/embeddings, POST /predict, POST /rerank, POST /similarity, POST /tokenize, GET /info, GET /health, GET /metrics";

/// The inputs of a request, checked: at least one, at most `--max-client-batch-size`.
fn checked_inputs(state: &State, inputs: Vec<String>) -> Result<Vec<String>, ApiError> {
    if inputs.is_empty() {
        return Err(ApiError::new(ErrorType::Empty, "`inputs` cannot be empty"));
    }
    if inputs.len() > state.opts.max_client_batch_size {
        return Err(ApiError::new(
            ErrorType::Validation,
            format!("batch size {} > maximum allowed batch size {} (--max-client-batch-size)", inputs.len(), state.opts.max_client_batch_size),
        ));
    }
    Ok(inputs)
}

/// The text a prompt name stands for (none: the model's default prompt, usually empty).
fn prompt(state: &State, name: Option<&str>) -> Result<String, ApiError> {
    match name {
        None => Ok(state.default_prompt.clone()),
        Some(n) => state.prompts.get(n).cloned().ok_or_else(|| {
            let known: Vec<&str> = state.prompts.keys().map(String::as_str).collect();
            ApiError::new(
                ErrorType::Validation,
                if known.is_empty() { format!("prompt_name `{n}`: the model has no prompts (config_sentence_transformers.json)") } else { format!("prompt_name `{n}` is not one of the model's prompts: {}", known.join(", ")) },
            )
        }),
    }
}

/// An input as the model reads it: a text (its prompt already prepended) or a pair of texts.
pub type Row = (String, Option<String>);

/// The 413 of an input longer than the model takes without `truncate`.
fn too_long(state: &State, i: usize, tokens: usize) -> ApiError {
    ApiError::new(
        ErrorType::Validation,
        format!(
            "input {i} has {tokens} tokens, more than the model's {} (send \"truncate\": true to cut it, or start the server with --auto-truncate)",
            state.max_input_length
        ),
    )
}

/// Every row tokenized: an input longer than the max input length is cut from `direction` with
/// `truncate` (a pair from its longer side first), else refused (413, as TEI).
fn encode_all(state: &State, rows: &[Row], truncate: bool, direction: TruncationDirection) -> Result<Vec<tokenizers::Encoding>, ApiError> {
    let encode = |t: &tokenizers::Tokenizer, (text, pair): &Row| {
        match pair {
            Some(p) => t.encode((text.as_str(), p.as_str()), true),
            None => t.encode(text.as_str(), true),
        }
        .map_err(|e| ApiError::new(ErrorType::Tokenizer, format!("cannot tokenize an input: {e}")))
    };
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let enc = encode(&state.tokenizer, row)?;
            if enc.len() <= state.max_input_length {
                return Ok(enc);
            }
            if !truncate {
                return Err(too_long(state, i, enc.len()));
            }
            encode(if direction == TruncationDirection::Left { &state.cut_left } else { &state.cut_right }, row)
        })
        .collect()
}

/// Tokenizes on one of tokio's blocking threads (the async threads keep answering).
async fn encoded(state: &Arc<State>, rows: Vec<Row>, truncate: bool, direction: TruncationDirection) -> Result<Vec<tokenizers::Encoding>, ApiError> {
    let s = state.clone();
    tokio::task::spawn_blocking(move || encode_all(&s, &rows, truncate, direction))
        .await
        .map_err(|e| ApiError::new(ErrorType::Backend, format!("tokenization failed: {e}")))?
}

/// Runs encoded rows through the model thread: the results in order, the timing, the token count.
async fn run_model(state: &State, encodings: &[tokenizers::Encoding]) -> Result<(Vec<Output>, Timing, usize), ApiError> {
    let ids: Vec<Vec<u32>> = encodings.iter().map(|e| e.get_ids().to_vec()).collect();
    let tokens = ids.iter().map(Vec::len).sum();
    let (outputs, timing) = state.batcher.run(ids).await.map_err(|e| ApiError::new(ErrorType::Backend, e))?;
    state.metrics.queue_duration.observe(timing.queue.as_secs_f64());
    state.metrics.request_tokens.observe(tokens as f64);
    state.metrics.input_tokens.inc_by(tokens as u64);
    Ok((outputs, timing, tokens))
}

/// TEI's timing headers.
fn headers(state: &State, started: Instant, timing: Timing, tokens: usize, chars: usize) -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    };
    put("x-compute-type", crate::device::describe(&state.opts.device).split(':').next().unwrap_or("cpu").to_string());
    put("x-compute-tokens", tokens.to_string());
    put("x-compute-characters", chars.to_string());
    put("x-queue-time", timing.queue.as_millis().to_string());
    put("x-inference-time", timing.inference.as_millis().to_string());
    put("x-total-time", started.elapsed().as_millis().to_string());
    put("x-batch-rows", timing.batch_rows.to_string());
    h
}

/// A pooled vector as a request asks for it: its first `dimensions`, then unit length.
fn finished(mut v: Vec<f32>, dimensions: Option<usize>, normalize: bool) -> Vec<f32> {
    if let Some(d) = dimensions {
        v.truncate(d);
    }
    if normalize {
        let norm = v.iter().map(|x| (*x as f64) * (*x as f64)).sum::<f64>().sqrt().max(1e-12);
        for x in &mut v {
            *x = (*x as f64 / norm) as f32;
        }
    }
    v
}

fn embedding_model(state: &State, route: &str) -> Result<usize, ApiError> {
    match &state.served {
        Served::Embedding { hidden, .. } => Ok(*hidden),
        Served::Classifier { .. } => Err(ApiError::new(
            ErrorType::Backend,
            format!("{} is a classifier ({}): {route} serves embedding models; use /predict", state.model_id, state.config.architectures.join(", ")),
        )),
    }
}

fn check_dimensions(dimensions: Option<usize>, hidden: usize) -> Result<(), ApiError> {
    match dimensions {
        Some(d) if d == 0 || d > hidden => Err(ApiError::new(ErrorType::Tokenizer, format!("`dimensions` = {d}: give a size from 1 to the model's {hidden}"))),
        _ => Ok(()),
    }
}

/// Vectors for `texts` (unnormalised, as pooled), with the timing, token and character counts.
async fn pooled(state: &Arc<State>, texts: Vec<String>, prompt: String, truncate: bool, direction: TruncationDirection) -> Result<(Vec<Vec<f32>>, Timing, usize, usize), ApiError> {
    let chars = texts.iter().map(|t| t.chars().count()).sum();
    let rows: Vec<Row> = texts.into_iter().map(|t| (format!("{prompt}{t}"), None)).collect();
    let encodings = encoded(state, rows, truncate, direction).await?;
    let (outputs, timing, tokens) = run_model(state, &encodings).await?;
    Ok((outputs.into_iter().map(|o| o.into_vector()).collect(), timing, tokens, chars))
}

/// `POST /`: `/embed` on an embedding model, `/predict` on a classifier (as TEI; what
/// `huggingface_hub`'s `InferenceClient(base_url)` calls).
pub async fn root(Shared(state): Shared<Arc<State>>, Json(body): Json<serde_json::Value>) -> Reply {
    let unreadable = |e: serde_json::Error| ApiError::new(ErrorType::Tokenizer, format!("Failed to deserialize the JSON body into the target type: {e}"));
    match state.served {
        Served::Embedding { .. } => embed(Shared(state.clone()), Json(serde_json::from_value(body).map_err(unreadable)?)).await,
        Served::Classifier { .. } => predict(Shared(state.clone()), Json(serde_json::from_value(body).map_err(unreadable)?)).await,
    }
}

/// `POST /embed`: `[[f32]]`, one vector per input.
pub async fn embed(Shared(state): Shared<Arc<State>>, Json(req): Json<EmbedRequest>) -> Reply {
    let started = Instant::now();
    let hidden = embedding_model(&state, "/embed")?;
    check_dimensions(req.dimensions, hidden)?;
    let texts = checked_inputs(&state, req.inputs.into_vec())?;
    let prompt = prompt(&state, req.prompt_name.as_deref())?;
    let truncate = req.truncate.unwrap_or(state.opts.auto_truncate);
    let (vectors, timing, tokens, chars) = pooled(&state, texts, prompt, truncate, req.truncation_direction).await?;
    let vectors: Vec<Vec<f32>> = vectors.into_iter().map(|v| finished(v, req.dimensions, req.normalize)).collect();
    Ok((headers(&state, started, timing, tokens, chars), axum::Json(vectors)).into_response())
}

/// `POST /v1/embeddings`: OpenAI's shape (unit vectors; `encoding_format` float or base64).
pub async fn openai_embeddings(Shared(state): Shared<Arc<State>>, body: Result<Json<OpenAiRequest>, ApiError>) -> Reply {
    let started = Instant::now();
    let Json(req) = body.map_err(ApiError::openai)?;
    let inner = async {
        let hidden = embedding_model(&state, "/v1/embeddings")?;
        check_dimensions(req.dimensions, hidden)?;
        let texts = checked_inputs(&state, req.input.into_vec())?;
        let truncate = state.opts.auto_truncate;
        pooled(&state, texts, state.default_prompt.clone(), truncate, TruncationDirection::Right).await
    };
    let (vectors, timing, tokens, chars) = inner.await.map_err(ApiError::openai)?;
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| {
            let v = finished(v, req.dimensions, true);
            let embedding = match req.encoding_format {
                EncodingFormat::Float => OpenAiVector::Float(v),
                EncodingFormat::Base64 => {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    OpenAiVector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
                }
            };
            OpenAiEmbedding { object: "embedding", embedding, index }
        })
        .collect();
    let body = OpenAiResponse { object: "list", data, model: req.model.unwrap_or_else(|| state.model_id.clone()), usage: OpenAiUsage { prompt_tokens: tokens, total_tokens: tokens } };
    Ok((headers(&state, started, timing, tokens, chars), axum::Json(body)).into_response())
}

/// `POST /tokenize`: per input, its tokens with ids, text and byte offsets.
pub async fn tokenize(Shared(state): Shared<Arc<State>>, Json(req): Json<TokenizeRequest>) -> Reply {
    let texts = checked_inputs(&state, req.inputs.into_vec())?;
    let prompt = prompt(&state, req.prompt_name.as_deref())?;
    let s = state.clone();
    let add_special = req.add_special_tokens;
    let tokens = tokio::task::spawn_blocking(move || {
        texts
            .iter()
            .map(|text| {
                let text = format!("{prompt}{text}");
                let enc = s.tokenizer.encode(text.as_str(), add_special).map_err(|e| ApiError::new(ErrorType::Tokenizer, format!("cannot tokenize an input: {e}")))?;
                Ok(enc
                    .get_ids()
                    .iter()
                    .zip(enc.get_offsets())
                    .zip(enc.get_special_tokens_mask())
                    .zip(enc.get_tokens())
                    .map(|(((&id, &(start, stop)), &special), token)| {
                        let special = special == 1;
                        let piece = if special { None } else { text.get(start..stop) };
                        SimpleToken {
                            id,
                            text: piece.map_or_else(|| token.clone(), str::to_string),
                            special,
                            start: (!special).then_some(start),
                            stop: (!special).then_some(stop),
                        }
                    })
                    .collect::<Vec<_>>())
            })
            .collect::<Result<Vec<_>, ApiError>>()
    })
    .await
    .map_err(|e| ApiError::new(ErrorType::Backend, format!("tokenization failed: {e}")))??;
    Ok(axum::Json(tokens).into_response())
}

/// `GET /info`: the model and the server's limits, as TEI reports them (plus `task` and `labels`).
pub async fn info(Shared(state): Shared<Arc<State>>) -> Response {
    let (model_type, task, labels) = match &state.served {
        Served::Embedding { pooling, .. } => (json!({"embedding": {"pooling": pooling.as_str()}}), "embedding".to_string(), Vec::new()),
        Served::Classifier { kind, labels } => {
            let id2label: serde_json::Map<String, serde_json::Value> = labels.iter().enumerate().map(|(i, l)| (i.to_string(), json!(l))).collect();
            let label2id: serde_json::Map<String, serde_json::Value> = labels.iter().enumerate().map(|(i, l)| (l.clone(), json!(i))).collect();
            let key = if labels.len() == 1 { "reranker" } else { "classifier" };
            (json!({key: {"id2label": id2label, "label2id": label2id}}), crate::tasks::problem_type(*kind).unwrap_or("classification").to_string(), labels.clone())
        }
    };
    axum::Json(json!({
        "model_id": state.model_id,
        "model_sha": null,
        "model_dtype": if state.opts.bf16 { "bfloat16" } else { "float32" },
        "model_type": model_type,
        "task": task,
        "labels": labels,
        "max_concurrent_requests": state.opts.max_concurrent_requests,
        "max_input_length": state.max_input_length,
        "max_batch_tokens": state.opts.max_batch_tokens,
        "max_batch_requests": null,
        "max_client_batch_size": state.opts.max_client_batch_size,
        "auto_truncate": state.opts.auto_truncate,
        "tokenization_workers": state.tokenization_workers,
        "version": env!("CARGO_PKG_VERSION"),
        "sha": null,
        "docker_label": null,
    }))
    .into_response()
}

/// `--api-key`: every route but `GET /health` needs `Authorization: Bearer KEY` (401 without).
pub async fn authorize(Shared(state): Shared<Arc<State>>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let Some(key) = &state.opts.api_key else { return next.run(req).await };
    if req.uri().path() == "/health" {
        return next.run(req).await;
    }
    let given = req.headers().get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if given.is_some_and(|g| constant_time_eq(g.trim().as_bytes(), key.as_bytes())) {
        return next.run(req).await;
    }
    let e = ApiError::new(ErrorType::Unauthorized, "this server needs an API key: send the header `Authorization: Bearer KEY`");
    if req.uri().path().ends_with("embeddings") { e.openai() } else { e }.into_response()
}

/// Compares without stopping at the first difference (the time taken does not tell how much of a
/// guessed key was right).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `GET /health`: 200 while the model thread takes work, else 503 (also while shutting down).
pub async fn health(Shared(state): Shared<Arc<State>>) -> Response {
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return ApiError::new(ErrorType::Unhealthy, "the server is shutting down").into_response();
    }
    if state.batcher.alive() {
        StatusCode::OK.into_response()
    } else {
        ApiError::new(ErrorType::Unhealthy, "the model thread has stopped").into_response()
    }
}

/// `GET /metrics`: Prometheus' text format (behind `--api-key` as every route but `/health`).
pub async fn metrics(Shared(state): Shared<Arc<State>>) -> Response {
    let in_flight = state.opts.max_concurrent_requests - state.permits.available_permits();
    state.metrics.in_flight.set(in_flight as i64);
    match state.metrics.render() {
        Ok(text) => ([(axum::http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response(),
        Err(e) => ApiError::new(ErrorType::Backend, e.to_string()).into_response(),
    }
}

/// Counts every answer by route and status, and times it, for `/metrics`.
pub async fn observe(Shared(state): Shared<Arc<State>>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let started = Instant::now();
    let route = req.extensions().get::<axum::extract::MatchedPath>().map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(req).await;
    state.metrics.answered(&route, response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

/// `--max-concurrent-requests`: a request that finds every permit taken is answered 429 at once
/// (TEI's `Overloaded`), not queued behind the others.
pub async fn limit(Shared(state): Shared<Arc<State>>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let openai = req.uri().path().ends_with("embeddings");
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        let e = ApiError::new(ErrorType::Unhealthy, "the server is shutting down");
        return if openai { e.openai() } else { e }.into_response();
    }
    let Ok(permit) = state.permits.clone().try_acquire_owned() else {
        let e = ApiError::new(
            ErrorType::Overloaded,
            format!("Model is overloaded: {} requests are in flight (--max-concurrent-requests); retry later", state.opts.max_concurrent_requests),
        );
        return if openai { e.openai() } else { e }.into_response();
    };
    let response = next.run(req).await;
    drop(permit);
    response
}

pub async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(ErrorType::Empty, format!("no route {method} {}; the routes are {ROUTES}", uri.path())).with_status(StatusCode::NOT_FOUND)
}

pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(ErrorType::Empty, format!("{} does not take {method}; the routes are {ROUTES}", uri.path())).with_status(StatusCode::METHOD_NOT_ALLOWED)
}

fn classifier_model<'a>(state: &'a State, route: &str) -> Result<(&'a [String], TargetKind), ApiError> {
    match &state.served {
        Served::Classifier { kind, labels } => Ok((labels, *kind)),
        Served::Embedding { .. } => Err(ApiError::new(
            ErrorType::Backend,
            format!("{} is an embedding model: {route} serves fine-tuned classifiers; use /embed or /similarity", state.model_id),
        )),
    }
}

/// A row's scores as `/predict` and `/rerank` give them: the logits with `raw_scores` (and a
/// regression model's number, always); else a softmax over several labels, a sigmoid per label
/// for multi-label models and for a single output.
fn scores(kind: TargetKind, logits: &[f32], raw: bool) -> Vec<f32> {
    match kind {
        _ if raw => logits.to_vec(),
        TargetKind::Regression => logits.to_vec(),
        TargetKind::Classification if logits.len() > 1 => crate::tasks::softmax(logits),
        _ => logits.iter().map(|&x| crate::tasks::sigmoid(x)).collect(),
    }
}

fn check_count(state: &State, n: usize, what: &str) -> Result<(), ApiError> {
    if n == 0 {
        return Err(ApiError::new(ErrorType::Empty, format!("`{what}` cannot be empty")));
    }
    if n > state.opts.max_client_batch_size {
        return Err(ApiError::new(ErrorType::Validation, format!("batch size {n} > maximum allowed batch size {} (--max-client-batch-size)", state.opts.max_client_batch_size)));
    }
    Ok(())
}

/// `POST /predict`: per input, every label's score, best first (`[{score, label}]`); a batch is a
/// list of those. A token-classification model answers each text with its entities
/// (`[{entity, start, end, text, score}]`, character offsets).
pub async fn predict(Shared(state): Shared<Arc<State>>, Json(req): Json<PredictRequest>) -> Reply {
    let started = Instant::now();
    let (labels, kind) = classifier_model(&state, "/predict")?;
    let (rows, single) = match req.inputs {
        PredictInput::Single(r) => (vec![r], true),
        PredictInput::Batch(rows) => (rows, false),
    };
    check_count(&state, rows.len(), "inputs")?;
    if kind == TargetKind::Tags && rows.iter().any(|r| r.1.is_some()) {
        return Err(ApiError::new(ErrorType::Tokenizer, "a token-classification model tags one text per input, not a pair"));
    }
    let chars = rows.iter().map(|(a, b)| a.chars().count() + b.as_ref().map_or(0, |b| b.chars().count())).sum();
    let truncate = req.truncate.unwrap_or(state.opts.auto_truncate);
    let encodings = encoded(&state, rows.clone(), truncate, req.truncation_direction).await?;
    let (outputs, timing, tokens) = run_model(&state, &encodings).await?;
    let answers: Vec<serde_json::Value> = outputs
        .into_iter()
        .zip(&encodings)
        .zip(&rows)
        .map(|((out, enc), (text, _))| {
            if kind == TargetKind::Tags {
                let special: Vec<bool> = enc.get_special_tokens_mask().iter().map(|&s| s == 1).collect();
                let found = crate::commands::predict::entities(labels, text, &out.into_tokens(), enc.get_offsets(), &special, false);
                found["entities"].clone()
            } else {
                let s = scores(kind, &out.into_vector(), req.raw_scores);
                let mut p: Vec<Prediction> = s.iter().zip(labels).map(|(&score, label)| Prediction { score, label: label.clone() }).collect();
                p.sort_by(|a, b| b.score.total_cmp(&a.score));
                json!(p)
            }
        })
        .collect();
    let body = if single { answers.into_iter().next().unwrap_or_default() } else { json!(answers) };
    Ok((headers(&state, started, timing, tokens, chars), axum::Json(body)).into_response())
}

/// `POST /rerank`: each text scored against the query by a one-output pair model (a
/// cross-encoder), best first: `[{index, score, text?}]`.
pub async fn rerank(Shared(state): Shared<Arc<State>>, Json(req): Json<RerankRequest>) -> Reply {
    let started = Instant::now();
    let (labels, kind) = classifier_model(&state, "/rerank")?;
    if labels.len() != 1 || kind == TargetKind::Tags {
        return Err(ApiError::new(
            ErrorType::Backend,
            format!("/rerank needs a model with one output per (query, text) pair, a cross-encoder; {} has {} label(s): use /predict", state.model_id, labels.len()),
        ));
    }
    check_count(&state, req.texts.len(), "texts")?;
    let chars = req.texts.iter().map(|t| t.chars().count() + req.query.chars().count()).sum();
    let rows: Vec<Row> = req.texts.iter().map(|t| (req.query.clone(), Some(t.clone()))).collect();
    let truncate = req.truncate.unwrap_or(state.opts.auto_truncate);
    let encodings = encoded(&state, rows, truncate, req.truncation_direction).await?;
    let (outputs, timing, tokens) = run_model(&state, &encodings).await?;
    let mut ranks: Vec<Rank> = outputs
        .into_iter()
        .enumerate()
        .map(|(index, out)| Rank { index, text: req.return_text.then(|| req.texts[index].clone()), score: scores(kind, &out.into_vector(), req.raw_scores)[0] })
        .collect();
    ranks.sort_by(|a, b| b.score.total_cmp(&a.score));
    Ok((headers(&state, started, timing, tokens, chars), axum::Json(ranks)).into_response())
}

/// `POST /similarity`: the cosine similarity of `source_sentence` to each of `sentences`.
pub async fn similarity(Shared(state): Shared<Arc<State>>, Json(req): Json<SimilarityRequest>) -> Reply {
    let started = Instant::now();
    embedding_model(&state, "/similarity")?;
    let params = req.parameters.unwrap_or_default();
    check_count(&state, req.inputs.sentences.len(), "sentences")?;
    let prompt = prompt(&state, params.prompt_name.as_deref())?;
    let truncate = params.truncate.unwrap_or(state.opts.auto_truncate);
    let mut texts = vec![req.inputs.source_sentence];
    texts.extend(req.inputs.sentences);
    let (vectors, timing, tokens, chars) = pooled(&state, texts, prompt, truncate, params.truncation_direction).await?;
    let source = finished(vectors[0].clone(), None, true);
    let sims: Vec<f32> = vectors[1..].iter().map(|v| finished(v.clone(), None, true).iter().zip(&source).map(|(a, b)| a * b).sum()).collect();
    Ok((headers(&state, started, timing, tokens, chars), axum::Json(sims)).into_response())
}
