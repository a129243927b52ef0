//! One error type for the whole tool.
//!
//! Every error is a message a user can act on, optionally wrapping the lower-level cause. Library code
//! adds context (which file, which tensor, which field) with [`Context::context`] as the error travels up,
//! so the top-level message reads like "loading model from runs/x: tensor `model.final_norm.weight` ...".

use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub struct Error {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    pub fn msg(message: impl Into<String>) -> Self {
        Error { message: message.into(), source: None }
    }

    /// Wraps this error under a higher-level message.
    pub fn wrap(self, message: impl Into<String>) -> Self {
        Error { message: message.into(), source: Some(Box::new(self)) }
    }

    /// The full chain "outer: inner: innermost", as printed to users.
    pub fn chain(&self) -> String {
        let mut out = self.message.clone();
        let mut cur: Option<&(dyn std::error::Error + 'static)> =
            self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static));
        while let Some(e) = cur {
            let text = e.to_string();
            if !text.is_empty() && !out.ends_with(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            cur = e.source();
        }
        out
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.chain())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Creates an [`Error`] from a format string, like `anyhow::anyhow!`.
#[macro_export]
macro_rules! err {
    ($($arg:tt)*) => { $crate::error::Error::msg(format!($($arg)*)) };
}

/// Returns early with an [`Error`] built from a format string.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => { return Err($crate::err!($($arg)*)) };
}

macro_rules! from_error {
    ($($ty:ty),*) => {$(
        impl From<$ty> for Error {
            fn from(e: $ty) -> Self {
                Error { message: e.to_string(), source: None }
            }
        }
    )*};
}
from_error!(
    candle_core::Error,
    std::io::Error,
    serde_json::Error,
    safetensors::SafeTensorError,
    std::fmt::Error
);

impl From<Box<dyn std::error::Error + Send + Sync>> for Error {
    fn from(e: Box<dyn std::error::Error + Send + Sync>) -> Self {
        Error { message: e.to_string(), source: None }
    }
}

/// Adds a higher-level message to any error on its way up.
pub trait Context<T> {
    fn context(self, message: impl Into<String>) -> Result<T>;
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, message: impl Into<String>) -> Result<T> {
        self.map_err(|e| e.into().wrap(message))
    }
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| e.into().wrap(f()))
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, message: impl Into<String>) -> Result<T> {
        self.ok_or_else(|| Error::msg(message))
    }
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.ok_or_else(|| Error::msg(f()))
    }
}
