//! The wire format: requests and responses as text-embeddings-inference (TEI) and OpenAI's
//! embeddings API define them, and errors as TEI writes them (`{"error", "error_type"}` with TEI's
//! status codes; `{"message", "code", "type"}` on the OpenAI route). Every body is JSON, a rejected
//! one included: malformed JSON, a wrong type or a missing field is a JSON error, never a bare text.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// TEI's error kinds, each with its status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ErrorType {
    /// 503: the model cannot answer.
    Unhealthy,
    /// 424: the model failed, or cannot do what the route asks (an embedding route on a classifier).
    Backend,
    /// 429: too many requests at once.
    Overloaded,
    /// 413: too many inputs, or an input too long without `truncate`.
    Validation,
    /// 422: a request the server cannot read (wrong JSON types, a missing field, a bad value).
    Tokenizer,
    /// 400: nothing to work on (empty inputs), or not JSON at all.
    Empty,
    /// 401: `--api-key` is set and the request does not carry it.
    Unauthorized,
}

impl ErrorType {
    pub fn status(self) -> StatusCode {
        match self {
            ErrorType::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Backend => StatusCode::FAILED_DEPENDENCY,
            ErrorType::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            ErrorType::Validation => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorType::Tokenizer => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Empty => StatusCode::BAD_REQUEST,
            ErrorType::Unauthorized => StatusCode::UNAUTHORIZED,
        }
    }
}

/// An error answer: TEI's body, or (for `/v1/embeddings`) OpenAI's.
#[derive(Debug)]
pub struct ApiError {
    pub message: String,
    pub kind: ErrorType,
    /// A status other than the kind's (404, 405).
    pub status: Option<StatusCode>,
    pub openai: bool,
}

impl ApiError {
    pub fn new(kind: ErrorType, message: impl Into<String>) -> Self {
        ApiError { message: message.into(), kind, status: None, openai: false }
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    /// The same error in OpenAI's shape.
    pub fn openai(mut self) -> Self {
        self.openai = true;
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status.unwrap_or(self.kind.status())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = if self.openai {
            serde_json::json!({"message": self.message, "code": status.as_u16(), "type": self.kind})
        } else {
            serde_json::json!({"error": self.message, "error_type": self.kind})
        };
        (status, axum::Json(body)).into_response()
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        ApiError::new(ErrorType::Backend, e.chain())
    }
}

/// A JSON body whose rejection is a JSON error: 400 for a body that is not JSON, 422 for JSON of
/// the wrong shape (naming the field), 413 for a body over the limit, 415 without a JSON content type.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rejection) => Err(rejected(rejection)),
        }
    }
}

fn rejected(rejection: JsonRejection) -> ApiError {
    let text = rejection.body_text();
    match rejection {
        JsonRejection::JsonDataError(_) => ApiError::new(ErrorType::Tokenizer, text),
        JsonRejection::JsonSyntaxError(_) => ApiError::new(ErrorType::Empty, text),
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::new(ErrorType::Empty, "send the body as JSON with the header `Content-Type: application/json`").with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        }
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(ErrorType::Validation, format!("the request body is too large: {text}")),
        other => ApiError::new(ErrorType::Empty, text).with_status(other.status()),
    }
}

/// One text or a list of texts (`inputs` of TEI, `input` of OpenAI).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Input {
    Single(String),
    Batch(Vec<String>),
}

impl Input {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Input::Single(s) => vec![s],
            Input::Batch(v) => v,
        }
    }
}

/// Which end of an over-long input `truncate` cuts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum TruncationDirection {
    #[serde(alias = "left")]
    Left,
    #[default]
    #[serde(alias = "right")]
    Right,
}

/// `POST /embed`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedRequest {
    pub inputs: Input,
    /// Cut inputs longer than the model's max input length (else 413) [default: `--auto-truncate`].
    #[serde(default)]
    pub truncate: Option<bool>,
    #[serde(default)]
    pub truncation_direction: TruncationDirection,
    /// A key of the model's sentence-transformers `prompts`, prepended to every input.
    #[serde(default)]
    pub prompt_name: Option<String>,
    #[serde(default = "yes")]
    pub normalize: bool,
    /// Keep the first `dimensions` of each vector (Matryoshka models), before normalising.
    #[serde(default)]
    pub dimensions: Option<usize>,
}

fn yes() -> bool {
    true
}

/// `POST /v1/embeddings`.
#[derive(Debug, Deserialize)]
pub struct OpenAiRequest {
    pub input: Input,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub encoding_format: EncodingFormat,
    #[serde(default)]
    pub dimensions: Option<usize>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncodingFormat {
    #[default]
    Float,
    /// Little-endian float32 bytes, base64-encoded (what the `openai` client asks for by default).
    Base64,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum OpenAiVector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Debug, Serialize)]
pub struct OpenAiEmbedding {
    pub object: &'static str,
    pub embedding: OpenAiVector,
    pub index: usize,
}

#[derive(Debug, Serialize)]
pub struct OpenAiUsage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

#[derive(Debug, Serialize)]
pub struct OpenAiResponse {
    pub object: &'static str,
    pub data: Vec<OpenAiEmbedding>,
    pub model: String,
    pub usage: OpenAiUsage,
}

/// `POST /tokenize`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizeRequest {
    pub inputs: Input,
    #[serde(default = "yes")]
    pub add_special_tokens: bool,
    #[serde(default)]
    pub prompt_name: Option<String>,
}

/// One token of `/tokenize`: `start`/`stop` are byte offsets into the input (null for special tokens).
#[derive(Debug, Serialize)]
pub struct SimpleToken {
    pub id: u32,
    pub text: String,
    pub special: bool,
    pub start: Option<usize>,
    pub stop: Option<usize>,
}

/// An input of `/predict`: a text, or a pair of texts.
pub type PredictRow = (String, Option<String>);

/// `/predict`'s `inputs`, as TEI reads them: `"text"` or `["text"]` (one input), `["a", "b"]` (one
/// pair), or a batch of those as lists: `[["t1"], ["a", "b"], ...]`.
#[derive(Debug)]
pub enum PredictInput {
    Single(PredictRow),
    Batch(Vec<PredictRow>),
}

impl<'de> Deserialize<'de> for PredictInput {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        use serde_json::Value;
        const SHAPES: &str = "a string, a pair of strings [string, string], or a batch of single strings and pairs [[string], [string, string], ...]";
        fn row<E: Error>(items: &[Value]) -> Result<PredictRow, E> {
            let text = |v: &Value| v.as_str().map(str::to_string).ok_or_else(|| E::custom(format!("expected a string, found {v}; `inputs` is {SHAPES}")));
            match items {
                [a] => Ok((text(a)?, None)),
                [a, b] => Ok((text(a)?, Some(text(b)?))),
                _ => Err(E::custom(format!("an input of {} strings; each is one string or a pair: `inputs` is {SHAPES}", items.len()))),
            }
        }
        match Value::deserialize(d)? {
            Value::String(s) => Ok(PredictInput::Single((s, None))),
            Value::Array(items) if items.first().is_some_and(Value::is_array) => items
                .iter()
                .map(|item| match item {
                    Value::Array(parts) => row(parts),
                    other => Err(D::Error::custom(format!("a batch holds lists ([\"text\"] or [\"a\", \"b\"]), found {other}"))),
                })
                .collect::<Result<_, _>>()
                .map(PredictInput::Batch),
            Value::Array(items) if items.is_empty() => Ok(PredictInput::Batch(Vec::new())),
            Value::Array(items) => row(&items).map(PredictInput::Single),
            other => Err(D::Error::custom(format!("found {other}; `inputs` is {SHAPES}"))),
        }
    }
}

/// `POST /predict`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictRequest {
    pub inputs: PredictInput,
    #[serde(default)]
    pub truncate: Option<bool>,
    #[serde(default)]
    pub truncation_direction: TruncationDirection,
    /// The logits as they are, instead of probabilities.
    #[serde(default)]
    pub raw_scores: bool,
}

/// One label's score (sorted best first in an answer).
#[derive(Debug, Serialize)]
pub struct Prediction {
    pub score: f32,
    pub label: String,
}

/// `POST /rerank`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RerankRequest {
    pub query: String,
    pub texts: Vec<String>,
    #[serde(default)]
    pub truncate: Option<bool>,
    #[serde(default)]
    pub truncation_direction: TruncationDirection,
    #[serde(default)]
    pub raw_scores: bool,
    #[serde(default)]
    pub return_text: bool,
}

#[derive(Debug, Serialize)]
pub struct Rank {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    pub score: f32,
}

/// `POST /similarity`: `{"inputs": {"source_sentence", "sentences"}, "parameters": {...}}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimilarityRequest {
    pub inputs: SimilarityInput,
    #[serde(default)]
    pub parameters: Option<SimilarityParameters>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimilarityInput {
    pub source_sentence: String,
    pub sentences: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimilarityParameters {
    #[serde(default)]
    pub truncate: Option<bool>,
    #[serde(default)]
    pub truncation_direction: TruncationDirection,
    #[serde(default)]
    pub prompt_name: Option<String>,
}
