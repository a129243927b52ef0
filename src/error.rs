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
    kind: Option<Kind>,
}

/// What an error is, for code that must react to it (never by matching message text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A data file has no column of this name.
    MissingColumn(String),
    /// A training run stopped on request (a signal) after saving a checkpoint.
    Stopped,
    /// Said already by another process of the job (rank 0): end non-zero without a message.
    SaidElsewhere,
}

impl Error {
    pub fn msg(message: impl Into<String>) -> Self {
        Error { message: message.into(), source: None, kind: None }
    }

    /// Wraps this error under a higher-level message (the error stays its source).
    pub fn wrap(self, message: impl Into<String>) -> Self {
        Error { message: message.into(), source: Some(Box::new(self)), kind: None }
    }

    /// Marks the error as being of `kind`.
    pub fn with_kind(mut self, kind: Kind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// Every error of the chain, this one first.
    fn causes(&self) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(self);
        std::iter::from_fn(move || {
            let e = cur?;
            cur = e.source();
            Some(e)
        })
    }

    /// The first [`Kind`] along the chain.
    pub fn kind(&self) -> Option<&Kind> {
        self.causes().filter_map(|e| e.downcast_ref::<Error>()).find_map(|e| e.kind.as_ref())
    }

    /// The kind of the I/O error along the chain, if one caused this.
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        self.causes().find_map(|e| match e.downcast_ref::<std::io::Error>() {
            Some(io) => Some(io.kind()),
            None => match e.downcast_ref::<candle_core::Error>() {
                Some(candle_core::Error::Io(io)) => Some(io.kind()),
                _ => None,
            },
        })
    }

    /// A closed pipe (`modernft embed ... | head`).
    pub fn is_broken_pipe(&self) -> bool {
        self.io_kind() == Some(std::io::ErrorKind::BrokenPipe)
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

/// Set on every rank of a job but rank 0: their notes would repeat rank 0's, once per rank.
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// From now on [`say!`] prints nothing in this process (errors still do).
pub fn quiet() {
    QUIET.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether [`say!`] keeps quiet.
pub fn is_quiet() -> bool {
    QUIET.load(std::sync::atomic::Ordering::Relaxed)
}

/// A note to the user on stderr, like `eprintln!`; said once per job (not by ranks other than 0).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { if !$crate::error::is_quiet() { eprintln!($($arg)*) } };
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
            /// Keeps `e` as the source, so its kind can be recognised further up.
            fn from(e: $ty) -> Self {
                Error { message: e.to_string(), source: Some(Box::new(e)), kind: None }
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
        Error { message: e.to_string(), source: Some(e), kind: None }
    }
}

thread_local! {
    /// Set while [`contained`] runs: its panics become errors, so the panic hook stays quiet.
    static CONTAINING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, a reader built on a dependency that may panic on malformed bytes, and turns such a
/// panic into an error that names `what` (the file) instead of aborting the command.
pub fn contained<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !CONTAINING.with(|c| c.get()) {
                previous(info)
            }
        }));
    });
    let was = CONTAINING.with(|c| c.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CONTAINING.with(|c| c.set(was));
    match result {
        Ok(r) => r,
        Err(payload) => {
            let why = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown failure".into());
            Err(Error::msg(format!("{what}: the file is damaged or not what its name says (its reader failed: {why})")))
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_and_kinds_survive_wrapping() {
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipe closed");
        let e = Error::from(io).wrap("writing vectors").wrap("embed");
        assert!(e.is_broken_pipe());
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(e.chain(), "embed: writing vectors: pipe closed");
        let e = crate::err!("a.csv: no column `label`").with_kind(Kind::MissingColumn("label".into())).wrap("reading a.csv");
        assert_eq!(e.kind(), Some(&Kind::MissingColumn("label".into())));
        assert!(!e.is_broken_pipe());
        // Text that merely mentions a broken pipe is not one.
        assert!(!crate::err!("Broken pipe").is_broken_pipe());
    }
}
