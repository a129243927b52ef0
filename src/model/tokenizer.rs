//! The model's `tokenizer.json`, read safely.

use std::path::Path;

use crate::error::{Context, Result};

/// Reads a `tokenizer.json`. The tokenizers crate panics on some malformed files, when reading them
/// (a decoder entry of the wrong shape) or at the first encoding (a post-processor template naming a
/// special token it does not define): the file is read and then tried on a text and a pair, and such
/// a panic becomes an error naming the file.
pub fn load_tokenizer(path: &Path) -> Result<tokenizers::Tokenizer> {
    let what = format!("tokenizer {}", path.display());
    crate::error::contained(&what, || {
        let tokenizer = tokenizers::Tokenizer::from_file(path).with_context(|| format!("cannot load {what}"))?;
        tokenizer.encode("a", true).with_context(|| format!("{what} cannot encode a text"))?;
        tokenizer.encode(("a", "b"), true).with_context(|| format!("{what} cannot encode a pair of texts"))?;
        Ok(tokenizer)
    })
}
