//! TensorBoard event files (`[output] report_to = ["tensorboard"]`): what `metrics.jsonl` says,
//! mirrored as scalars into `RUN/tensorboard/events.out.tfevents.*`, so that
//! `tensorboard --logdir runs` shows a run while it trains.
//!
//! The format is TensorFlow's: a file of TFRecords (length, masked CRC32C of the length, an `Event`
//! protocol buffer, masked CRC32C of it), the first event naming the file version. Events are
//! written here by hand (a few fields of `Event`, `Summary` and `Summary.Value`); the CRC is tested
//! against the vectors of TensorBoard's own implementation. A resumed run drops the events after
//! its checkpoint's step (keeping their wall times), so its curves continue without duplicated steps.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Context, Result};

/// The folder in a run that holds the event files.
pub const DIR: &str = "tensorboard";

/// CRC-32C (Castagnoli), bitwise over a table.
pub fn crc32c(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { 0x82F6_3B78 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    !data.iter().fold(!0u32, |c, &b| TABLE[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8))
}

/// TFRecord's masked CRC: rotated right by 15 bits, plus a constant.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    crc32c(data).rotate_right(15).wrapping_add(0xA282_EAD8)
}

/// One TFRecord around `data`.
fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

/// The records of a TFRecord file's bytes, up to the first whose framing or CRC is wrong (a torn
/// last record, say).
fn records(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 12 <= bytes.len() {
        let len = u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes")) as usize;
        let len_crc = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().expect("4 bytes"));
        let Some(end) = (at + 12).checked_add(len).filter(|e| e + 4 <= bytes.len()) else { break };
        let data = &bytes[at + 12..end];
        let crc = u32::from_le_bytes(bytes[end..end + 4].try_into().expect("4 bytes"));
        if len_crc != masked_crc32c(&bytes[at..at + 8]) || crc != masked_crc32c(data) {
            break;
        }
        out.push(data);
        at = end + 4;
    }
    out
}

// Protocol-buffer encoding of the few fields written.
fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn bytes_field(out: &mut Vec<u8>, field: u32, data: &[u8]) {
    varint(out, ((field as u64) << 3) | 2);
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// `Event { wall_time = 1, step = 2, file_version = 3 | summary = 5 }`.
fn event(wall_time: f64, step: u64, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut e = Vec::new();
    varint(&mut e, (1 << 3) | 1);
    e.extend_from_slice(&wall_time.to_le_bytes());
    varint(&mut e, 2 << 3);
    varint(&mut e, step);
    body(&mut e);
    e
}

/// `Summary { value = 1: Value { tag = 1, simple_value = 2 } }` for each scalar.
fn scalars(out: &mut Vec<u8>, values: &[(String, f32)]) {
    let mut summary = Vec::new();
    for (tag, v) in values {
        let mut value = Vec::new();
        bytes_field(&mut value, 1, tag.as_bytes());
        varint(&mut value, (2 << 3) | 5);
        value.extend_from_slice(&v.to_le_bytes());
        bytes_field(&mut summary, 1, &value);
    }
    bytes_field(out, 5, &summary);
}

/// A text summary (TensorBoard's text plugin): `Value { tag = 1, tensor = 8: TensorProto { dtype =
/// 1: DT_STRING, tensor_shape = 2: {}, string_val = 8 }, metadata = 9: { plugin_data = 1: {
/// plugin_name = 1: "text" } } }`.
fn text(out: &mut Vec<u8>, tag: &str, body: &str) {
    let mut tensor = Vec::new();
    varint(&mut tensor, 1 << 3);
    varint(&mut tensor, 7);
    bytes_field(&mut tensor, 2, &[]);
    bytes_field(&mut tensor, 8, body.as_bytes());
    let mut plugin = Vec::new();
    bytes_field(&mut plugin, 1, b"text");
    let mut metadata = Vec::new();
    bytes_field(&mut metadata, 1, &plugin);
    let mut value = Vec::new();
    bytes_field(&mut value, 1, tag.as_bytes());
    bytes_field(&mut value, 8, &tensor);
    bytes_field(&mut value, 9, &metadata);
    let mut summary = Vec::new();
    bytes_field(&mut summary, 1, &value);
    bytes_field(out, 5, &summary);
}

/// A decoded protocol-buffer field: number and value (varint, fixed64/fixed32 bits, or bytes).
enum Field<'a> {
    Varint(u64),
    Fixed(u64),
    Bytes(&'a [u8]),
}

/// The fields of an encoded message; `None` if it is malformed.
fn fields(msg: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut at = 0;
    let varint = |at: &mut usize| -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *msg.get(*at)?;
            *at += 1;
            v |= ((b & 0x7F) as u64) << shift;
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    };
    let mut out = Vec::new();
    while at < msg.len() {
        let key = varint(&mut at)?;
        let field = match key & 7 {
            0 => Field::Varint(varint(&mut at)?),
            1 => {
                let v = u64::from_le_bytes(msg.get(at..at + 8)?.try_into().ok()?);
                at += 8;
                Field::Fixed(v)
            }
            5 => {
                let v = u32::from_le_bytes(msg.get(at..at + 4)?.try_into().ok()?) as u64;
                at += 4;
                Field::Fixed(v)
            }
            2 => {
                let n = varint(&mut at)? as usize;
                let v = msg.get(at..at.checked_add(n)?)?;
                at += n;
                Field::Bytes(v)
            }
            _ => return None,
        };
        out.push((key >> 3, field));
    }
    Some(out)
}

/// The `step` field of an encoded `Event` (0 when absent); `None` if the event is malformed.
fn step_of(event: &[u8]) -> Option<u64> {
    Some(fields(event)?.iter().find_map(|(n, f)| match (n, f) {
        (2, Field::Varint(s)) => Some(*s),
        _ => None,
    }).unwrap_or(0))
}

/// Every scalar in an event file: (tag, step, value), in file order (what a reader sees).
pub fn read_scalars(path: &Path) -> Result<Vec<(String, u64, f32)>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for e in records(&bytes) {
        let f = fields(e).with_context(|| format!("{}: a malformed event", path.display()))?;
        let step = step_of(e).unwrap_or(0);
        for (_, summary) in f.iter().filter(|(n, _)| *n == 5) {
            let Field::Bytes(summary) = summary else { continue };
            for (_, value) in fields(summary).into_iter().flatten().filter(|(n, _)| *n == 1) {
                let Field::Bytes(value) = value else { continue };
                let vf = fields(value).unwrap_or_default();
                let tag = vf.iter().find_map(|(n, f)| match (n, f) {
                    (1, Field::Bytes(t)) => Some(String::from_utf8_lossy(t).to_string()),
                    _ => None,
                });
                let v = vf.iter().find_map(|(n, f)| match (n, f) {
                    (2, Field::Fixed(bits)) => Some(f32::from_bits(*bits as u32)),
                    _ => None,
                });
                if let (Some(tag), Some(v)) = (tag, v) {
                    out.push((tag, step, v));
                }
            }
        }
    }
    Ok(out)
}

/// The run's event files.
pub fn event_files(run: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(run.join(DIR))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("events.out.tfevents.")))
        .collect();
    files.sort();
    files
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// The run's event file (the one file in `RUN/tensorboard/`, created on first use).
fn event_file(run: &Path) -> Result<PathBuf> {
    if let Some(path) = event_files(run).pop() {
        return Ok(path);
    }
    let dir = run.join(DIR);
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')).unwrap_or_else(|| "localhost".into());
    let path = dir.join(format!("events.out.tfevents.{}.{host}.modernft", now() as u64));
    let first = event(now(), 0, |e| bytes_field(e, 3, b"brain.Event:2"));
    std::fs::write(&path, record(&first)).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn append(run: &Path, events: &[Vec<u8>]) -> Result<()> {
    let path = event_file(run)?;
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    for e in events {
        f.write_all(&record(e))?;
    }
    Ok(())
}

/// Whether the run in `run` reports to TensorBoard (its folder exists).
pub fn enabled(run: &Path) -> bool {
    run.join(DIR).is_dir()
}

/// Starts TensorBoard logging for a new run: the folder, the file, and the hyperparameters (the run's
/// config) as text at step 0.
pub fn start(run: &Path, config_toml: &str) -> Result<()> {
    std::fs::create_dir_all(run.join(DIR)).with_context(|| format!("cannot create {}", run.join(DIR).display()))?;
    let body = format!("```toml\n{config_toml}\n```");
    append(run, &[event(now(), 0, |e| text(e, "hyperparameters", &body))])
}

/// Mirrors one `metrics.jsonl` line: `train` lines as `train/loss`, `train/learning_rate`,
/// `train/grad_norm`, `train/tokens_per_second`, `train/epoch`; `eval` lines as `eval/<metric>`;
/// `final` lines as `final_<split>/<metric>`; each at the line's step.
pub fn mirror(run: &Path, line: &Value) -> Result<()> {
    let Some(kind) = line["type"].as_str() else { return Ok(()) };
    let step = line["step"].as_u64().unwrap_or(0);
    let prefix = match kind {
        "train" => "train".to_string(),
        "eval" => "eval".to_string(),
        "final" => format!("final_{}", line["split"].as_str().unwrap_or("split")),
        _ => return Ok(()),
    };
    let values: Vec<(String, f32)> = line
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !matches!(k.as_str(), "type" | "step" | "split") && !(kind == "eval" && k.as_str() == "epoch"))
        .filter_map(|(k, v)| v.as_f64().map(|v| (format!("{prefix}/{}", k.strip_prefix("eval_").unwrap_or(k)), v as f32)))
        .collect();
    if values.is_empty() {
        return Ok(());
    }
    append(run, &[event(now(), step, |e| scalars(e, &values))])
}

/// On resume from the checkpoint at `step`: drops every event after it from the run's event files
/// (the resumed run writes them again), keeping the rest as they were.
pub fn truncate_after(run: &Path, step: u64) -> Result<()> {
    for path in event_files(run) {
        let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let kept: Vec<u8> = records(&bytes).into_iter().filter(|e| step_of(e).is_some_and(|s| s <= step)).flat_map(record).collect();
        crate::model::save::write_atomic(&path, &kept)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from TensorBoard's own implementation
    /// (`tensorboard.compat.tensorflow_stub.pywrap_tensorflow.crc32c` / `masked_crc32c`, 2.20.0).
    #[test]
    fn crc32c_and_its_mask_match_tensorboard() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(masked_crc32c(b"123456789"), 0xC78A_B0E5);
        assert_eq!(masked_crc32c(b""), 0xA282_EAD8);
        assert_eq!(masked_crc32c(&[0u8; 8]), 0x0798_0329);
    }

    #[test]
    fn records_round_trip_and_steps_are_read_back() {
        let a = event(1.5, 7, |e| scalars(e, &[("train/loss".into(), 0.25)]));
        let b = event(2.5, 300, |e| text(e, "hyperparameters", "x"));
        let mut file = record(&a);
        file.extend(record(&b));
        assert_eq!(records(&file), vec![a.as_slice(), b.as_slice()]);
        assert_eq!((step_of(&a), step_of(&b)), (Some(7), Some(300)));
        // A torn last record is left out; a damaged one ends the read.
        assert_eq!(records(&file[..file.len() - 3]), vec![a.as_slice()]);
        file[20] ^= 1;
        assert!(records(&file).is_empty());
    }
}
