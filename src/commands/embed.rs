//! `modernft embed`: texts in, one vector per text out, in input order.
//!
//! Input: one text per line, or JSONL with a `text` field (and an optional `id`, copied to the
//! output). In plain-text mode every line is one input, an empty line included (it embeds the empty
//! string, so output line N always belongs to input line N); in JSONL mode blank lines are skipped.
//! Texts longer than `max_length` tokens are truncated (the count is reported on stderr).
//! Inputs are processed in chunks; inside a chunk they are sorted by length so each batch pads
//! little, and written back in input order. Each JSONL record carries `row`, the input's 0-based
//! index; `--shard I/N` embeds one contiguous range of the rows (`commands::shard`).

use std::io::{BufRead, Write};

use serde_json::Value;

use crate::error::{Context, Result};
pub use crate::inference::embedder::{Embedder, EmbedderOptions};
use crate::inference::Budget;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// One JSON object per line: `{"embedding": [...]}` (plus `"id"` when the input had one).
    Jsonl,
    /// A NumPy `.npy` array, float32, shape (inputs, hidden).
    Npy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputFormat {
    /// JSONL if the first non-blank line is a JSON object, plain text otherwise.
    Auto,
    Text,
    Jsonl,
}

pub struct EmbedOptions {
    /// The model and how it embeds (flags; what is not given comes from the model folder).
    pub embedder: EmbedderOptions,
    /// Rows (and optionally padded tokens) per forward pass.
    pub budget: Budget,
    pub format: OutputFormat,
    pub input_format: InputFormat,
    /// Only this shard's rows (`--shard`).
    pub shard: Option<crate::commands::shard::Shard>,
}

/// One input record.
#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    pub text: String,
    /// The second text of a pair (`text_pair` in JSONL input), for models trained on pairs.
    pub pair: Option<String>,
    pub id: Option<Value>,
    /// Read as a plain line (not JSONL, not a data file's row).
    pub plain: bool,
}

/// Reads inputs from `reader`; `source` names it in error messages.
pub fn read_inputs(reader: impl BufRead, format: InputFormat, source: &str) -> Result<Vec<Input>> {
    let lines: Vec<String> = reader
        .lines()
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("cannot read {source} (is it UTF-8 text?)"))?;
    let jsonl = match format {
        InputFormat::Jsonl => true,
        InputFormat::Text => false,
        InputFormat::Auto => lines
            .iter()
            .find(|l| !l.trim().is_empty())
            .is_some_and(|l| l.trim_start().starts_with('{') && serde_json::from_str::<Value>(l).is_ok_and(|v| v.is_object())),
    };
    if !jsonl {
        return Ok(lines.into_iter().map(|text| Input { text, pair: None, id: None, plain: true }).collect());
    }
    let mut inputs = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let lineno = i + 1;
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("{source}, line {lineno}: not valid JSON"))?;
        let text = match v.get("text") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => crate::bail!("{source}, line {lineno}: field `text` must be a string, found {other}"),
            None => crate::bail!("{source}, line {lineno}: no `text` field (JSONL input needs {{\"text\": ...}})"),
        };
        let pair = match v.get("text_pair") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => crate::bail!("{source}, line {lineno}: field `text_pair` must be a string, found {other}"),
        };
        inputs.push(Input { text, pair, id: v.get("id").cloned(), plain: false });
    }
    Ok(inputs)
}

/// Runs `embed` from `reader` to `out`; notices go to `notes`.
pub fn run(opts: &EmbedOptions, reader: impl BufRead, source: &str, out: &mut dyn Write, notes: &mut dyn Write) -> Result<()> {
    if opts.budget.rows == 0 {
        crate::bail!("--batch-size must be at least 1");
    }
    let embedder = Embedder::load(&opts.embedder)?;
    let all = read_inputs(reader, opts.input_format, source)?;
    // Chunks bound memory for long inputs while still letting each chunk sort by length; a shard
    // is whole chunks, so its batches are the unsharded run's.
    let chunk_size = opts.budget.rows * 32;
    let (first, inputs) = shard_rows(&all, opts.shard.as_ref(), chunk_size);
    let mut truncated = 0;
    let mut npy_rows: Vec<f32> = Vec::new();
    for (c, chunk) in inputs.chunks(chunk_size).enumerate() {
        let refs: Vec<&str> = chunk.iter().map(|i| i.text.as_str()).collect();
        let row0 = first + c * chunk_size;
        let (vectors, cut) = embedder.embed(&refs, opts.budget, &|i| format!("{source}, input {}", row0 + i + 1))?;
        truncated += cut;
        for (i, (input, v)) in chunk.iter().zip(vectors).enumerate() {
            match opts.format {
                OutputFormat::Jsonl => {
                    let mut obj = serde_json::Map::new();
                    obj.insert("row".into(), serde_json::json!(row0 + i));
                    if let Some(id) = &input.id {
                        obj.insert("id".into(), id.clone());
                    }
                    obj.insert("embedding".into(), serde_json::json!(v));
                    writeln!(out, "{}", Value::Object(obj))?;
                }
                OutputFormat::Npy => npy_rows.extend_from_slice(&v),
            }
        }
    }
    if opts.format == OutputFormat::Npy {
        write_npy(out, &npy_rows, inputs.len(), embedder.hidden_size())?;
    }
    out.flush()?;
    if let Some(note) = embedder.truncation_note(truncated, inputs.len(), "inputs") {
        writeln!(notes, "{note}")?;
    }
    Ok(())
}

/// The rows a run takes (all, or its shard's range of whole `block`s) and the index of the first.
pub fn shard_rows<'a>(inputs: &'a [Input], shard: Option<&crate::commands::shard::Shard>, block: usize) -> (usize, &'a [Input]) {
    match shard {
        Some(s) => {
            let r = s.rows(inputs.len(), block);
            (r.start, &inputs[r])
        }
        None => (0, inputs),
    }
}

/// Writes a float32 C-order `.npy` (format version 1.0) of shape (rows, cols).
pub fn write_npy(out: &mut dyn Write, data: &[f32], rows: usize, cols: usize) -> Result<()> {
    write_npy_header(out, rows, cols)?;
    let mut bytes = Vec::with_capacity(data.len() * 4);
    for x in data {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    out.write_all(&bytes)?;
    Ok(())
}

/// The header of a float32 C-order `.npy` (format version 1.0) of shape (rows, cols); the data,
/// rows × cols little-endian f32, follows it.
pub fn write_npy_header(out: &mut dyn Write, rows: usize, cols: usize) -> Result<()> {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // magic(6) + version(2) + length(2) + header, padded with spaces to a multiple of 64, ending in \n.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    out.write_all(b"\x93NUMPY\x01\x00")?;
    out.write_all(&(header.len() as u16).to_le_bytes())?;
    out.write_all(header.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_text_and_jsonl_with_line_numbers_in_errors() {
        let text = read_inputs("a\n\nb\n".as_bytes(), InputFormat::Auto, "stdin").unwrap();
        assert_eq!(text.iter().map(|i| i.text.as_str()).collect::<Vec<_>>(), vec!["a", "", "b"]);
        let j = read_inputs("{\"text\": \"x\", \"id\": 7}\n\n{\"text\": \"y\"}\n".as_bytes(), InputFormat::Auto, "in")
            .unwrap();
        assert_eq!(j.len(), 2);
        assert_eq!(j[0].id, Some(serde_json::json!(7)));
        let e = read_inputs("{\"text\": \"x\"}\n{\"txt\": 1}\n".as_bytes(), InputFormat::Auto, "in.jsonl").unwrap_err();
        assert!(e.chain().contains("in.jsonl, line 2"), "{}", e.chain());
        let e = read_inputs("{\"text\": \"x\"}\n{oops\n".as_bytes(), InputFormat::Jsonl, "f").unwrap_err();
        assert!(e.chain().contains("line 2"), "{}", e.chain());
    }

    #[test]
    fn npy_header_is_aligned_and_parsable() {
        let mut buf = Vec::new();
        write_npy(&mut buf, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3).unwrap();
        assert_eq!(&buf[..8], b"\x93NUMPY\x01\x00");
        let hlen = u16::from_le_bytes([buf[8], buf[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        let header = std::str::from_utf8(&buf[10..10 + hlen]).unwrap();
        assert!(header.contains("'shape': (2, 3)") && header.ends_with('\n'));
        assert_eq!(buf.len(), 10 + hlen + 24);
        assert_eq!(f32::from_le_bytes(buf[10 + hlen..14 + hlen].try_into().unwrap()), 1.0);
    }
}
