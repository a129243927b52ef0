//! Fuzzing every reader of user files: valid inputs mutated (truncation, random bytes, invalid
//! UTF-8, byte-order marks, CRLF, huge numbers, NaN/inf, NUL bytes, duplicated and deleted lines,
//! bit flips) must give `Ok` or an `Err` whose message names the file, never a panic, a hang or an
//! abort. Mutations come from proptest with a fixed seed, so a failure is reproducible and shrunk.
//!
//! `cargo test --test it fuzz::` runs a bounded number of cases per reader (`MODERNFT_FUZZ_CASES`,
//! default 300; `MODERNFT_FUZZ_SEED`, default 1); `scripts/fuzz.sh` runs it for as long as asked.

use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use common::fixtures;
use modernft::data::read::{read_table_with, ReadOptions};
use modernft::data::{read_table, Columns, Format, TextEncoder};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

/// One change to a valid input.
#[derive(Clone, Debug)]
enum Mutation {
    Truncate(usize),
    Overwrite(usize, Vec<u8>),
    Insert(usize, Vec<u8>),
    FlipBit(usize, u8),
    Bom,
    Crlf,
    DuplicateLine(usize),
    DeleteLine(usize),
}

/// Byte strings real files contain when they go wrong.
fn nasty() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"\xF0".to_vec()),                  // latin-1 eth: invalid UTF-8 on its own
        Just(b"\xe9t\xe9".to_vec()),             // latin-1 "été"
        Just(b"\x00".to_vec()),
        Just(b"\xEF\xBB\xBF".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n\n".to_vec()),
        Just(b"NaN".to_vec()),
        Just(b"inf".to_vec()),
        Just(b"-1e309".to_vec()),
        Just(b"99999999999999999999999999".to_vec()),
        Just(b"18446744073709551616".to_vec()),
        Just(b"-9223372036854775809".to_vec()),
        Just(b"\"".to_vec()),
        Just(b",".to_vec()),
        Just(b"\t".to_vec()),
        Just(b"{".to_vec()),
        Just(b"]".to_vec()),
        Just(b"null".to_vec()),
        Just(b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[".to_vec()),
        proptest::collection::vec(any::<u8>(), 1..12),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), nasty()).prop_map(|(a, b)| Mutation::Overwrite(a, b)),
        (any::<usize>(), nasty()).prop_map(|(a, b)| Mutation::Insert(a, b)),
        (any::<usize>(), 0u8..8).prop_map(|(a, b)| Mutation::FlipBit(a, b)),
        Just(Mutation::Bom),
        Just(Mutation::Crlf),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        any::<usize>().prop_map(Mutation::DeleteLine),
    ]
}

fn lines(b: &[u8]) -> Vec<Vec<u8>> {
    b.split_inclusive(|&c| c == b'\n').map(<[u8]>::to_vec).collect()
}

fn apply(input: &[u8], m: &Mutation) -> Vec<u8> {
    let mut b = input.to_vec();
    let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
    match m {
        Mutation::Truncate(i) => b.truncate(at(*i, b.len())),
        Mutation::Overwrite(i, bytes) => {
            let start = at(*i, b.len());
            for (k, &v) in bytes.iter().enumerate() {
                match b.get_mut(start + k) {
                    Some(x) => *x = v,
                    None => b.push(v),
                }
            }
        }
        Mutation::Insert(i, bytes) => {
            let start = at(*i, b.len());
            b.splice(start..start, bytes.iter().copied());
        }
        Mutation::FlipBit(i, bit) => {
            if !b.is_empty() {
                let n = b.len();
                b[*i % n] ^= 1 << bit;
            }
        }
        Mutation::Bom => {
            b.splice(0..0, *b"\xEF\xBB\xBF");
        }
        Mutation::Crlf => b = b.iter().flat_map(|&c| if c == b'\n' { vec![b'\r', b'\n'] } else { vec![c] }).collect(),
        Mutation::DuplicateLine(i) => {
            let mut l = lines(&b);
            if !l.is_empty() {
                let k = i % l.len();
                let dup = l[k].clone();
                l.insert(k, dup);
            }
            b = l.concat();
        }
        Mutation::DeleteLine(i) => {
            let mut l = lines(&b);
            if !l.is_empty() {
                let k = i % l.len();
                l.remove(k);
            }
            b = l.concat();
        }
    }
    b
}

/// A reader under test: where the mutated bytes go, and how they are read.
struct Target {
    name: &'static str,
    /// The valid input the mutations start from.
    seed: Vec<u8>,
    /// Builds the case's files in `dir` from the mutated bytes; returns the file the error must name.
    place: Box<dyn Fn(&Path, &[u8]) -> PathBuf>,
    read: Box<dyn Fn(&Path) -> modernft::Result<()>>,
}

fn file(name: &'static str) -> Box<dyn Fn(&Path, &[u8]) -> PathBuf> {
    Box::new(move |dir, bytes| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    })
}

fn parquet_bytes() -> Vec<u8> {
    let batch = RecordBatch::try_from_iter(vec![
        ("text", Arc::new(StringArray::from(vec!["a good film", "bad", "fine, \"quoted\" text", "ünïcödé"])) as ArrayRef),
        ("label", Arc::new(Int64Array::from(vec![1, 0, 1, 0])) as ArrayRef),
    ])
    .unwrap();
    let mut out = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn text_cols() -> Columns {
    Columns { text: "text".into(), label: Some("label".into()), ..Default::default() }
}

fn table(path: &Path, format: Option<Format>, cols: Columns) -> modernft::Result<()> {
    read_table(path, format, &cols).map(|_| ())
}

/// A model folder whose `name` file is the mutated bytes (the rest from tiny-v4).
fn model_folder(name: &'static str) -> Box<dyn Fn(&Path, &[u8]) -> PathBuf> {
    Box::new(move |dir, bytes| {
        for f in ["config.json", "model.safetensors", "tokenizer.json"] {
            std::fs::copy(fixtures().join("tiny-v4").join(f), dir.join(f)).unwrap();
        }
        std::fs::write(dir.join(name), bytes).unwrap();
        dir.join(name)
    })
}

fn load_model(dir: &Path) -> modernft::Result<()> {
    let files = modernft::model::ModelFiles::from_dir(dir)?;
    let (_, loaded) = modernft::model::load_pretrained(&files, modernft::model::HeadKind::Sequence, &Default::default())?;
    let enc = TextEncoder::from_file(files.tokenizer()?, 32)?;
    let ids = enc.encode_batch(&["a test sentence"])?;
    let input = candle_core::Tensor::new(ids[0].ids.as_slice(), &candle_core::Device::Cpu)?.unsqueeze(0)?;
    loaded.model.forward(&input, None, &modernft::model::Mode::eval())?;
    Ok(())
}

fn targets() -> Vec<Target> {
    let fx = fixtures();
    let jsonl = b"{\"text\": \"a good film\", \"label\": \"pos\"}\n{\"text\": \"bad, \\\"awful\\\"\", \"label\": \"neg\"}\n{\"text\": \"\\u00e9t\\u00e9 1e5\", \"label\": \"pos\"}\n".to_vec();
    let csv = b"text,label\na good film,pos\n\"bad, \"\"awful\"\"\",neg\n\xc3\xa9t\xc3\xa9,pos\n".to_vec();
    let tsv = b"text\tlabel\na good film\t1\nbad \"awful\"\t0\nfine\t2.5\n".to_vec();
    let conll = b"-DOCSTART- O\n\nEU B-ORG\nrejects O\nGerman B-MISC\n\nPeter B-PER\nBlackburn I-PER\n".to_vec();
    let ner_jsonl = b"{\"tokens\": [\"EU\", \"rejects\"], \"tags\": [\"B-ORG\", \"O\"]}\n{\"tokens\": [\"Peter\"], \"tags\": [\"B-PER\"]}\n".to_vec();
    let words = || Columns { text: "tokens".into(), words: Some("tokens".into()), label: Some("tags".into()), ..Default::default() };
    let toml = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/quickstart.toml")).unwrap();
    let st = fx.join("roundtrip/st");
    let mut npy = Vec::new();
    modernft::commands::embed::write_npy(&mut npy, &[0.5, -1.0, 2.0, 0.25, 1e-3, 7.0], 2, 3).unwrap();
    let merge = |p: &Path| modernft::commands::shard::merge(&[p.to_path_buf()], &mut Vec::new()).map(|_| ());
    vec![
        // The parts `merge-parts` reads (#38).
        Target { name: "npy-part", seed: npy, place: file("part-00000-of-00001.npy"), read: Box::new(merge) },
        Target { name: "jsonl-part", seed: b"{\"row\": 0, \"embedding\": [0.5, -1.0]}\n{\"row\": 1, \"id\": \"x\", \"embedding\": [2.0, 1e-3]}\n".to_vec(), place: file("part-00000-of-00001.jsonl"), read: Box::new(merge) },
        Target { name: "jsonl", seed: jsonl.clone(), place: file("a.jsonl"), read: Box::new(|p| table(p, None, text_cols())) },
        Target { name: "csv", seed: csv, place: file("a.csv"), read: Box::new(|p| table(p, None, text_cols())) },
        Target { name: "tsv", seed: tsv, place: file("a.tsv"), read: Box::new(|p| table(p, None, text_cols())) },
        Target { name: "conll", seed: conll, place: file("a.conll"), read: Box::new(move |p| table(p, None, words())) },
        Target { name: "ner-jsonl", seed: ner_jsonl, place: file("b.jsonl"), read: Box::new(move |p| table(p, None, words())) },
        Target { name: "parquet", seed: parquet_bytes(), place: file("a.parquet"), read: Box::new(|p| table(p, None, text_cols())) },
        // Files as published (#33): a headerless latin-1 CSV read by names with joined text columns,
        // TREC-style lines through a pattern, a UTF-16 CSV.
        Target {
            name: "headerless-latin1-csv",
            seed: b"\"3\",\"Wall St.\",\"caf\xe9 au lait\"\n\"4\",\"Carlyle\",\"\"\r\n".to_vec(),
            place: file("ag.csv"),
            read: Box::new(|p| {
                let opts = ReadOptions { header: false, columns: Some(vec!["label".into(), "title".into(), "description".into()]), encoding: Some(modernft::data::read::encoding("latin-1")?), ..Default::default() };
                let cols = Columns { text: "title + description".into(), text_parts: vec!["title".into(), "description".into()], separator: " ".into(), label: Some("label".into()), ..Default::default() };
                read_table_with(p, &opts, &cols).map(|_| ())
            }),
        },
        Target {
            name: "trec-lines",
            seed: b"DESC:manner How did serfdom develop ?\r\nHUM:ind Who was Pel\xe9 ?\r\n".to_vec(),
            place: file("trec.label"),
            read: Box::new(|p| {
                let opts = ReadOptions { format: Some(Format::Lines), pattern: Some(r"^(?P<label>[A-Z]+):\S+ (?P<text>.*)$".into()), skip_unmatched: true, encoding: Some(modernft::data::read::encoding("latin-1")?), ..Default::default() };
                read_table_with(p, &opts, &text_cols()).map(|_| ())
            }),
        },
        Target {
            name: "utf16-csv",
            seed: [vec![0xFF, 0xFE], "text,label\nété,pos\n".encode_utf16().flat_map(|u| u.to_le_bytes()).collect()].concat(),
            place: file("u16.csv"),
            read: Box::new(|p| {
                let opts = ReadOptions { encoding: Some(modernft::data::read::encoding("utf-16")?), ..Default::default() };
                read_table_with(p, &opts, &text_cols()).map(|_| ())
            }),
        },
        // gzip: the compressed bytes mutated, and (next) the content mutated then compressed.
        Target { name: "gzip", seed: gzip(&jsonl), place: file("a.jsonl.gz"), read: Box::new(|p| table(p, None, text_cols())) },
        Target {
            name: "gzip-content",
            seed: jsonl,
            place: Box::new(|dir, bytes| {
                let p = dir.join("c.jsonl.gz");
                std::fs::write(&p, gzip(bytes)).unwrap();
                p
            }),
            read: Box::new(|p| table(p, None, text_cols())),
        },
        Target {
            name: "run-config",
            seed: toml,
            place: file("run.toml"),
            read: Box::new(|p| modernft::config::RunConfig::from_file(p).map(|_| ())),
        },
        Target {
            name: "config.json",
            seed: std::fs::read(fx.join("tiny-v4/config.json")).unwrap(),
            place: model_folder("config.json"),
            read: Box::new(|p| load_model(p.parent().unwrap())),
        },
        Target {
            name: "tokenizer.json",
            seed: std::fs::read(fx.join("tiny-v4/tokenizer.json")).unwrap(),
            place: model_folder("tokenizer.json"),
            read: Box::new(|p| load_model(p.parent().unwrap())),
        },
        Target {
            name: "safetensors",
            seed: std::fs::read(fx.join("tiny-v4/model.safetensors")).unwrap(),
            place: model_folder("model.safetensors"),
            read: Box::new(|p| load_model(p.parent().unwrap())),
        },
        Target {
            name: "modules.json",
            seed: std::fs::read(st.join("modules.json")).unwrap(),
            place: Box::new(move |dir, bytes| {
                let copy = |from: &Path, to: &Path| {
                    std::fs::create_dir_all(to).unwrap();
                    for e in std::fs::read_dir(from).unwrap() {
                        let e = e.unwrap();
                        if e.path().is_file() {
                            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
                        }
                    }
                };
                copy(&st, dir);
                copy(&st.join("1_Pooling"), &dir.join("1_Pooling"));
                std::fs::write(dir.join("modules.json"), bytes).unwrap();
                dir.join("modules.json")
            }),
            read: Box::new(|p| {
                let files = modernft::model::ModelFiles::from_dir(p.parent().unwrap())?;
                modernft::model::load_pretrained(&files, modernft::model::HeadKind::None, &Default::default()).map(|_| ())
            }),
        },
    ]
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn every_reader_survives_mutated_input() {
    let cases = env_number("MODERNFT_FUZZ_CASES", 300) as u32;
    let seed = env_number("MODERNFT_FUZZ_SEED", 1);
    // A case that runs longer than this is a hang: say which, and stop the whole test.
    let started = Arc::new(AtomicU64::new(u64::MAX));
    let epoch = Instant::now();
    {
        let started = started.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(500));
            let s = started.load(Ordering::SeqCst);
            if s != u64::MAX && epoch.elapsed().as_millis() as u64 - s > 30_000 {
                eprintln!("fuzz: a case ran for more than 30 s (a hang); rerun with MODERNFT_FUZZ_SEED={seed}");
                std::process::abort();
            }
        });
    }
    let mut total = 0u64;
    let mut errors = 0u64;
    for target in targets() {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..8 + target.name.len().min(24)].copy_from_slice(&target.name.as_bytes()[..target.name.len().min(24)]);
        let config = Config { cases, failure_persistence: None, max_shrink_iters: 200, ..Config::default() };
        let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &key));
        let counts = std::cell::Cell::new((0u64, 0u64));
        let strategy = proptest::collection::vec(mutation(), 1..4);
        let result = runner.run(&strategy, |muts| {
            let bytes = muts.iter().fold(target.seed.clone(), |b, m| apply(&b, m));
            let dir = tempfile::tempdir().unwrap();
            let path = (target.place)(dir.path(), &bytes);
            started.store(epoch.elapsed().as_millis() as u64, Ordering::SeqCst);
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (target.read)(&path)));
            started.store(u64::MAX, Ordering::SeqCst);
            let (n, e) = counts.get();
            match outcome {
                Err(_) => Err(TestCaseError::fail(format!("{}: the reader panicked", target.name))),
                Ok(Ok(())) => {
                    counts.set((n + 1, e));
                    Ok(())
                }
                Ok(Err(err)) => {
                    counts.set((n + 1, e + 1));
                    let msg = err.chain();
                    let name = path.file_name().unwrap().to_string_lossy().to_string();
                    if msg.trim().is_empty() || !msg.contains(&name) {
                        return Err(TestCaseError::fail(format!("{}: the error does not name {name}: {msg}", target.name)));
                    }
                    Ok(())
                }
            }
        });
        if let Err(e) = result {
            panic!("fuzz target {} (seed {seed}): {e}", target.name);
        }
        let (n, e) = counts.get();
        eprintln!("fuzz {:<15} {n:>5} cases, {e:>5} refused with a message, 0 panics", target.name);
        total += n;
        errors += e;
    }
    eprintln!("fuzz: {total} cases, {errors} errors, no panic, no hang (seed {seed})");
    assert!(total >= cases as u64 * 13);
}
