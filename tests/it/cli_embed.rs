//! `modernft embed` end to end, through the binary, against vectors computed by transformers
//! (tests/fixtures/tiny-v4/embed.json, written by scripts/make_reference.py).

use crate::common;

use std::process::{Command, Output};

use common::{binary, fixtures, read_npy, stand_in_hub, Timed};
use serde_json::Value;

fn run(args: &[&str], stdin: &str, envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(binary());
    cmd.arg("embed").args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.timed_output_with_stdin(stdin.as_bytes())
}

fn reference() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("tiny-v4/embed.json")).unwrap()).unwrap()
}

fn texts_stdin(r: &Value) -> String {
    r["texts"].as_array().unwrap().iter().map(|t| format!("{}\n", t.as_str().unwrap())).collect()
}

fn vectors(out: &Output) -> Vec<Vec<f64>> {
    assert!(out.status.success(), "embed failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
        })
        .collect()
}

fn assert_close(got: &[Vec<f64>], want: &[Vec<f64>], tol: f64) {
    assert_eq!(got.len(), want.len(), "one vector per input");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len());
        let d = g.iter().zip(w).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(d <= tol, "vector {i} differs by {d}");
    }
}

fn want(r: &Value, pooling: &str, normalize: bool) -> Vec<Vec<f64>> {
    r[pooling]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let v: Vec<f64> = v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
            let n = if normalize { v.iter().map(|x| x * x).sum::<f64>().sqrt() } else { 1.0 };
            v.iter().map(|x| x / n).collect()
        })
        .collect()
}

#[test]
fn cls_and_mean_pooling_match_transformers_in_input_order() {
    let r = reference();
    let model = fixtures().join("tiny-v4");
    let model = model.to_str().unwrap();
    // Batch size 2 with texts of very different lengths: batches are formed by length, output is not.
    let cls = vectors(&run(&["--model", model, "--pooling", "cls", "--batch-size", "2"], &texts_stdin(&r), &[]));
    assert_close(&cls, &want(&r, "cls", false), 1e-5);
    let mean = vectors(&run(&["--model", model, "--pooling", "mean", "--normalize"], &texts_stdin(&r), &[]));
    assert_close(&mean, &want(&r, "mean", true), 1e-5);
    for v in &mean {
        assert!((v.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-5);
    }
    // Without --pooling, the model config's classifier_pooling (cls for tiny-v4) applies. Same
    // batches as the cls run: other batch shapes may round differently in the last bits.
    let default = vectors(&run(&["--model", model, "--batch-size", "2"], &texts_stdin(&r), &[]));
    assert_close(&default, &cls, 1e-6);
}

#[test]
fn npy_output_has_a_valid_header_and_the_same_vectors() {
    let r = reference();
    let model = fixtures().join("tiny-v4");
    let out = run(&["--model", model.to_str().unwrap(), "--format", "npy", "--pooling", "cls"], &texts_stdin(&r), &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ((rows, cols), data) = read_npy(&out.stdout);
    assert_eq!((rows, cols), (3, 32));
    let got: Vec<Vec<f64>> = data.chunks(cols).map(|c| c.iter().map(|&x| x as f64).collect()).collect();
    assert_close(&got, &want(&r, "cls", false), 1e-5);
}

#[test]
fn jsonl_input_keeps_ids_and_file_input_works() {
    let model = fixtures().join("tiny-v4");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"id\": \"a\", \"text\": \"loved it\"}\n\n{\"id\": 2, \"text\": \"a boring film\"}\n").unwrap();
    let out = run(&["--model", model.to_str().unwrap(), "--input", input.to_str().unwrap()], "", &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["id"], "a");
    assert_eq!(lines[1]["id"], 2);

    // The same texts through stdin as plain text (the same batch) give the same vectors.
    let plain = vectors(&run(&["--model", model.to_str().unwrap()], "loved it\na boring film\n", &[]));
    let from_jsonl: Vec<Vec<f64>> =
        lines.iter().map(|l| l["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()).collect();
    assert_close(&plain, &from_jsonl, 1e-6);
}

#[test]
fn prefix_truncation_and_errors() {
    let model = fixtures().join("tiny-v4");
    let m = model.to_str().unwrap();
    // --prefix is the same as writing the prefix into the text.
    let a = vectors(&run(&["--model", m, "--prefix", "search_query: "], "loved it\n", &[]));
    let b = vectors(&run(&["--model", m], "search_query: loved it\n", &[]));
    assert_close(&a, &b, 0.0);

    // Over-long inputs are truncated, reported on stderr, and still produce a vector.
    let out = run(&["--model", m, "--max-length", "4"], "the movie was really wonderful\nit\n", &[]);
    let v = vectors(&out);
    assert_eq!(v.len(), 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 of 2 inputs") && stderr.contains("truncated"), "{stderr}");
    // No --device: auto, its choice said once (this test binary's build has no GPU backend).
    assert_eq!(stderr.matches("(--device auto").count(), 1, "{stderr}");
    if !cfg!(any(feature = "cuda", feature = "metal")) {
        assert!(stderr.contains("device: cpu (--device auto; this build has neither CUDA nor Metal)"), "{stderr}");
    }

    // A missing model folder: a clear error, non-zero exit, nothing on stdout.
    let out = run(&["--model", "./no/such/model"], "x\n", &[]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no model folder at ./no/such/model"), "{stderr}");

    // A malformed JSONL line names its line.
    let out = run(&["--model", m, "--input-format", "jsonl"], "{\"text\": \"ok\"}\n{\"text\": 3}\n", &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("stdin, line 2"));

    // --max-length beyond the model's positions is refused up front.
    let out = run(&["--model", m, "--max-length", "100000"], "x\n", &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_position_embeddings"));
}

#[test]
fn hub_ids_download_through_hf_hub_then_work_offline_from_the_cache() {
    let r = reference();
    let dir = fixtures().join("tiny-v4");
    let files = ["config.json", "model.safetensors", "tokenizer.json"]
        .iter()
        .map(|f| (f.to_string(), std::fs::read(dir.join(f)).unwrap()))
        .collect();
    let hub = stand_in_hub(files);
    let home = tempfile::tempdir().unwrap();
    let home_s = home.path().to_str().unwrap();
    let envs = [("HF_ENDPOINT", hub.url.as_str()), ("HF_HOME", home_s)];
    let online = vectors(&run(&["--model", "tiny-org/tiny-modernbert", "--pooling", "cls"], &texts_stdin(&r), &envs));
    assert_close(&online, &want(&r, "cls", false), 1e-5);
    assert!(hub.requests.load(std::sync::atomic::Ordering::SeqCst) >= 3);
    assert!(home.path().join("hub/models--tiny-org--tiny-modernbert").is_dir(), "files land in the hf-hub cache");

    // Offline: served from the cache, no request reaches the hub.
    let before = hub.requests.load(std::sync::atomic::Ordering::SeqCst);
    let offline_envs = [("HF_ENDPOINT", hub.url.as_str()), ("HF_HOME", home_s), ("HF_HUB_OFFLINE", "1")];
    let offline = vectors(&run(&["--model", "tiny-org/tiny-modernbert", "--pooling", "cls"], &texts_stdin(&r), &offline_envs));
    assert_close(&offline, &online, 0.0);
    assert_eq!(hub.requests.load(std::sync::atomic::Ordering::SeqCst), before);

    // An id the hub does not have, offline and uncached: a clear error.
    let out = run(&["--model", "tiny-org/absent"], "x\n", &offline_envs);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tiny-org/absent") && stderr.contains("HF_HUB_OFFLINE"), "{stderr}");
}

fn cpu_has_avx512_bf16() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").map(|s| s.contains("avx512_bf16")).unwrap_or(false)
}

#[test]
fn bf16_precision_stays_within_cosine_0999_of_transformers_f32_vectors() {
    let r = reference();
    let model = fixtures().join("tiny-v4");
    let out = run(&["--model", model.to_str().unwrap(), "--pooling", "mean", "--precision", "bf16"], &texts_stdin(&r), &[]);
    if !cpu_has_avx512_bf16() {
        // Refused with a message that says what to do instead.
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("--precision f32"));
        eprintln!("skipped the bf16 accuracy check: this CPU has no AVX-512 BF16");
        return;
    }
    let got = vectors(&out);
    let want = want(&r, "mean", false);
    assert_eq!(got.len(), want.len());
    let mut worst = 1.0f64;
    for (g, w) in got.iter().zip(&want) {
        let dot: f64 = g.iter().zip(w).map(|(a, b)| a * b).sum();
        let cos = dot / (g.iter().map(|a| a * a).sum::<f64>().sqrt() * w.iter().map(|b| b * b).sum::<f64>().sqrt());
        worst = worst.min(cos);
    }
    assert!(worst >= 0.999, "worst cosine to f32 {worst}");
    // bf16 rounding does change the numbers: the flag is not a no-op.
    let d = got.iter().zip(&want).flat_map(|(g, w)| g.iter().zip(w).map(|(a, b)| (a - b).abs())).fold(0.0, f64::max);
    assert!(d > 1e-6, "bf16 vectors identical to f32 ({d})");
}

/// A sentence-transformers repository on the hub reads as its local folder does: pooling,
/// Normalize, max_seq_length and the default prompt come from its modules, with no flag.
#[test]
fn a_sentence_transformers_hub_repository_reads_as_its_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let st = tmp.path().join("st");
    let save = Command::new(binary())
        .args(["save", fixtures().join("tiny-v4").to_str().unwrap(), "--out", st.to_str().unwrap(), "--format", "sentence-transformers", "--pooling", "mean", "--normalize"])
        .timed_output();
    assert!(save.status.success(), "{}", String::from_utf8_lossy(&save.stderr));
    std::fs::write(st.join("sentence_bert_config.json"), r#"{"max_seq_length": 6, "do_lower_case": false}"#).unwrap();
    std::fs::write(st.join("config_sentence_transformers.json"), r#"{"prompts": {"q": "query: "}, "default_prompt_name": "q"}"#).unwrap();
    let mut files = Vec::new();
    for name in ["config.json", "model.safetensors", "tokenizer.json", "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json", "1_Pooling/config.json", "2_Normalize/config.json"] {
        files.push((name.to_string(), std::fs::read(st.join(name)).unwrap()));
    }
    let hub = stand_in_hub(files);
    let home = tempfile::tempdir().unwrap();
    let envs = [("HF_ENDPOINT", hub.url.as_str()), ("HF_HOME", home.path().to_str().unwrap())];
    let texts = "a long enough sentence to be cut at six tokens\nshort\n";
    let from_hub = vectors(&run(&["--model", "tiny-org/tiny-st"], texts, &envs));
    let local = vectors(&run(&["--model", st.to_str().unwrap()], texts, &[]));
    assert_close(&from_hub, &local, 0.0);
    // And what the folder says is what was applied: the same as every flag given by hand.
    let by_hand = vectors(&run(
        &["--model", fixtures().join("tiny-v4").to_str().unwrap(), "--pooling", "mean", "--normalize", "--max-length", "6", "--prefix", "query: "],
        texts,
        &[],
    ));
    assert_close(&from_hub, &by_hand, 1e-6);
}
