//! `modernft serve` on a free loopback port: every route's shape and status codes, vectors equal
//! to `modernft embed`'s, concurrent clients, and the errors (always JSON). Every server is killed
//! when its test ends; every read and the start-up have deadlines.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{binary, fixtures, modernft, run_with_stdin, succeeded as ok, Timed};
use serde_json::{json, Value};

/// A running server, killed on drop.
pub struct Server {
    child: Child,
    pub addr: String,
}

impl Server {
    /// Waits (at most 60 s) for the server to exit, after a signal.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not stop within 60 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `modernft serve --model MODEL --port 0 EXTRA` and waits (at most 120 s) for its address.
pub fn start(model: &Path, extra: &[&str]) -> Server {
    let mut child = Command::new(binary())
        .current_dir(common::repo_root())
        .args(["serve", "--model", model.to_str().unwrap(), "--port", "0"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let pipe = child.stderr.take().unwrap();
    let log = stderr.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if let Some(addr) = line.split("listening on http://").nth(1) {
                let _ = tx.send(addr.trim().to_string());
            }
            log.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(addr) => Server { child, addr },
        Err(_) => {
            let _ = child.kill();
            panic!("the server did not start within 120 s: {}", stderr.lock().unwrap());
        }
    }
}

/// A response: status, headers (lower-case names), body.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request (Connection: close), read to the end within 60 s.
pub fn request(addr: &str, method: &str, path: &str, body: Option<&str>, content_type: Option<&str>) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.unwrap_or("");
    let ct = content_type.map(|c| format!("Content-Type: {c}\r\n")).unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{ct}Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP head in {text:?}"));
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_lowercase(), v.trim().to_string())).collect();
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(rest) } else { rest.to_string() };
    Reply { status, headers, body }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

pub fn post(addr: &str, path: &str, body: &Value) -> Reply {
    request(addr, "POST", path, Some(&body.to_string()), Some("application/json"))
}

fn vectors(v: &Value) -> Vec<Vec<f64>> {
    v.as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()).collect()
}

fn close(a: &[Vec<f64>], b: &[Vec<f64>], tol: f64) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.len() == y.len() && x.iter().zip(y).all(|(p, q)| (p - q).abs() <= tol))
}

fn unit(v: &[f64]) -> Vec<f64> {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.iter().map(|x| x / n).collect()
}

/// tiny-v4's encoder as a sentence-transformers folder (an embedding model).
fn embedding_model(dir: &Path) -> std::path::PathBuf {
    let out = dir.join("st");
    ok(modernft(&["save", fixtures().join("tiny-v4").to_str().unwrap(), "--out", out.to_str().unwrap(), "--format", "sentence-transformers"]).timed_output());
    out
}

const TEXTS: [&str; 4] = ["the movie was great", "a terrible , boring plot", "ok", "one of the best films of the year , with a cast that works"];

#[test]
fn embedding_routes_answer_as_tei_and_openai_with_embed_s_vectors() {
    let tmp = tempfile::tempdir().unwrap();
    let model = embedding_model(tmp.path());
    let server = start(&model, &[]);
    let a = server.addr.as_str();
    // `modernft embed` on the same texts: the reference.
    let out = run_with_stdin(&["embed", "--model", model.to_str().unwrap()], &(TEXTS.join("\n") + "\n"));
    let want: Vec<Vec<f64>> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()).collect();
    assert_eq!(want.len(), TEXTS.len());
    let raw = post(a, "/embed", &json!({"inputs": TEXTS, "normalize": false}));
    assert_eq!(raw.status, 200, "{}", raw.body);
    assert!(close(&vectors(&raw.json()), &want, 1e-5), "/embed differs from modernft embed");
    assert!(raw.header("x-compute-tokens").is_some() && raw.header("content-type") == Some("application/json"));
    // normalize defaults to true; a single string is a batch of one.
    let unit_want: Vec<Vec<f64>> = want.iter().map(|v| unit(v)).collect();
    assert!(close(&vectors(&post(a, "/embed", &json!({"inputs": TEXTS})).json()), &unit_want, 1e-5));
    assert!(close(&vectors(&post(a, "/embed", &json!({"inputs": TEXTS[1]})).json()), &unit_want[1..2], 1e-5));
    // POST / is /embed on an embedding model (what huggingface_hub's InferenceClient calls).
    assert!(close(&vectors(&post(a, "/", &json!({"inputs": TEXTS, "normalize": false})).json()), &want, 1e-5));
    // dimensions: the first 8 of each vector, then unit length.
    let cut: Vec<Vec<f64>> = want.iter().map(|v| unit(&v[..8])).collect();
    assert!(close(&vectors(&post(a, "/embed", &json!({"inputs": TEXTS, "dimensions": 8})).json()), &cut, 1e-5));
    // OpenAI: unit vectors with index and usage; base64 is the same floats, little-endian.
    let o = post(a, "/v1/embeddings", &json!({"input": TEXTS, "model": "mine"})).json();
    assert_eq!(o["object"], "list");
    assert_eq!(o["model"], "mine");
    let data = o["data"].as_array().unwrap();
    assert!(data.iter().enumerate().all(|(i, d)| d["index"] == i && d["object"] == "embedding"));
    let floats: Vec<Vec<f64>> = data.iter().map(|d| d["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()).collect();
    assert!(close(&floats, &unit_want, 1e-5));
    let b = post(a, "/v1/embeddings", &json!({"input": TEXTS[0], "encoding_format": "base64"})).json();
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b["data"][0]["embedding"].as_str().unwrap()).unwrap();
    let decoded: Vec<f64> = bytes.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect();
    assert!(close(&[decoded], &unit_want[..1], 1e-5));
    // usage counts the tokens /tokenize shows.
    let tokens = post(a, "/tokenize", &json!({"inputs": TEXTS})).json();
    let counted: usize = tokens.as_array().unwrap().iter().map(|t| t.as_array().unwrap().len()).sum();
    assert_eq!(o["usage"]["prompt_tokens"], counted);
    assert_eq!(o["usage"]["total_tokens"], counted);
    let first = &tokens[0];
    assert_eq!(first[0]["special"], true);
    assert_eq!(first[0]["start"], Value::Null);
    let word = &first[1];
    let (s, e) = (word["start"].as_u64().unwrap() as usize, word["stop"].as_u64().unwrap() as usize);
    assert_eq!(word["text"], TEXTS[0][s..e]);
    let plain = post(a, "/tokenize", &json!({"inputs": "ok", "add_special_tokens": false})).json();
    assert!(plain[0].as_array().unwrap().iter().all(|t| t["special"] == false));
    // /info and /health.
    let info = request(a, "GET", "/info", None, None).json();
    assert_eq!(info["model_type"]["embedding"]["pooling"], "cls");
    assert_eq!(info["max_input_length"], 128);
    assert_eq!(info["max_client_batch_size"], 32);
    assert_eq!(info["max_batch_tokens"], 16384);
    assert_eq!(info["task"], "embedding");
    let h = request(a, "GET", "/health", None, None);
    assert_eq!(h.status, 200);
}

#[test]
fn every_error_is_json_with_tei_s_status() {
    let tmp = tempfile::tempdir().unwrap();
    let model = embedding_model(tmp.path());
    let server = start(&model, &["--max-client-batch-size", "3"]);
    let a = server.addr.as_str();
    let expect = |r: Reply, status: u16, kind: &str, words: &[&str]| {
        assert_eq!(r.status, status, "{}", r.body);
        let v = r.json();
        assert_eq!(v["error_type"], kind, "{v}");
        let msg = v["error"].as_str().unwrap();
        assert!(words.iter().all(|w| msg.contains(w)), "{msg:?} lacks {words:?}");
    };
    expect(post(a, "/embed", &json!({"inputs": []})), 400, "Empty", &["cannot be empty"]);
    expect(post(a, "/embed", &json!({"inputs": ["a", "b", "c", "d"]})), 413, "Validation", &["batch size 4", "3"]);
    let long = "word ".repeat(400);
    expect(post(a, "/embed", &json!({"inputs": ["fine", long]})), 413, "Validation", &["input 1", "128", "truncate"]);
    let cut = post(a, "/embed", &json!({"inputs": long, "truncate": true}));
    assert_eq!(cut.status, 200, "{}", cut.body);
    let left = post(a, "/embed", &json!({"inputs": long, "truncate": true, "truncation_direction": "Left"}));
    assert_eq!(left.status, 200, "{}", left.body);
    expect(request(a, "POST", "/embed", Some("{\"inputs\": [\"a\""), Some("application/json")), 400, "Empty", &["JSON"]);
    expect(post(a, "/embed", &json!({"inputs": 5})), 422, "Tokenizer", &["inputs"]);
    expect(post(a, "/embed", &json!({"input": "a"})), 422, "Tokenizer", &["input"]);
    expect(post(a, "/embed", &json!({"inputs": "a", "normalize": "yes"})), 422, "Tokenizer", &["normalize"]);
    expect(post(a, "/embed", &json!({"inputs": "a", "dimensions": 0})), 422, "Tokenizer", &["dimensions"]);
    expect(post(a, "/embed", &json!({"inputs": "a", "prompt_name": "query"})), 413, "Validation", &["query", "no prompts"]);
    expect(request(a, "POST", "/embed", Some("{\"inputs\": \"a\"}"), None), 415, "Empty", &["Content-Type"]);
    expect(request(a, "GET", "/nowhere", None, None), 404, "Empty", &["/nowhere", "/embed"]);
    expect(request(a, "GET", "/embed", None, None), 405, "Empty", &["GET", "/embed"]);
    // The OpenAI route answers in OpenAI's error shape.
    let r = post(a, "/v1/embeddings", &json!({"input": []}));
    assert_eq!(r.status, 400);
    let v = r.json();
    assert!(v["message"].as_str().unwrap().contains("cannot be empty") && v["code"] == 400 && v["type"] == "Empty", "{v}");
    let r = request(a, "POST", "/v1/embeddings", Some("nonsense"), Some("application/json"));
    assert!(r.status == 400 && r.json()["code"] == 400, "{}", r.body);
    // The server is still healthy after all that.
    assert_eq!(request(a, "GET", "/health", None, None).status, 200);
    drop(server);
    // A classifier is not an embedding model (TEI's 424); a masked-LM is refused at start.
    let clf = start(&fixtures().join("tiny-v4"), &[]);
    expect(post(&clf.addr, "/embed", &json!({"inputs": "a"})), 424, "Backend", &["classifier", "/predict"]);
    let e = modernft(&["serve", "--model", fixtures().join("tiny-mlm").to_str().unwrap(), "--port", "0"]).timed_output();
    let stderr = String::from_utf8_lossy(&e.stderr);
    assert!(!e.status.success() && stderr.contains("masked-LM"), "{stderr}");
}

#[test]
fn concurrent_clients_are_batched_together_and_each_gets_its_own_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let model = embedding_model(tmp.path());
    let server = start(&model, &[]);
    let addr = server.addr.clone();
    // Each client's texts, and the vectors one request at a time gives them.
    let text = |c: usize, r: usize| format!("client {c} asks question {r} about {}", ["films", "plots", "actors", "music"][(c + r) % 4]);
    let alone: std::collections::HashMap<String, Vec<f64>> = (0..16)
        .flat_map(|c| (0..3).map(move |r| text(c, r)))
        .map(|t| {
            let v = vectors(&post(&addr, "/embed", &json!({"inputs": [t.clone()], "normalize": false})).json()).remove(0);
            (t, v)
        })
        .collect();
    let started = Instant::now();
    let clients: Vec<_> = (0..16)
        .map(|c| {
            let (addr, alone) = (addr.clone(), alone.clone());
            std::thread::spawn(move || {
                let mut batched_with_others = 0;
                for i in 0..50 {
                    let texts: Vec<String> = (0..1 + i % 3).map(|r| text(c, r)).collect();
                    let r = post(&addr, "/embed", &json!({"inputs": texts, "normalize": false}));
                    assert_eq!(r.status, 200, "client {c} request {i}: {}", r.body);
                    let want: Vec<Vec<f64>> = texts.iter().map(|t| alone[t].clone()).collect();
                    assert!(close(&vectors(&r.json()), &want, 1e-4), "client {c} request {i}: another request's vectors");
                    if r.header("x-batch-rows").unwrap().parse::<usize>().unwrap() > texts.len() {
                        batched_with_others += 1;
                    }
                }
                batched_with_others
            })
        })
        .collect();
    let together: usize = clients.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(started.elapsed() < Duration::from_secs(240), "800 requests took {:?}", started.elapsed());
    assert!(together > 0, "no request ever shared a forward pass with another");
    assert_eq!(request(&addr, "GET", "/health", None, None).status, 200);
}

/// `modernft predict` on JSONL inputs: one JSON value per input.
fn predicted(model: &Path, inputs: &[Value], flags: &[&str]) -> Vec<Value> {
    let mut args = vec!["predict", "--model", model.to_str().unwrap(), "--input-format", "jsonl"];
    args.extend(flags);
    let stdin: String = inputs.iter().map(|v| format!("{v}\n")).collect();
    let out = run_with_stdin(&args, &stdin);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// A one-output pair model (a cross-encoder): tiny-v4 fine-tuned for a few steps as a regression
/// on (text, text_pair, score) rows.
fn cross_encoder(dir: &Path) -> std::path::PathBuf {
    let rows: String = (0..32)
        .map(|i| format!("{}\n", json!({"text": TEXTS[i % 4], "text_pair": TEXTS[(i / 4) % 4], "label": ((i % 4 == (i / 4) % 4) as u8) as f64 * 5.0})))
        .collect();
    let data = common::write_file(dir, "pairs.jsonl", &rows);
    let cfg = common::write_file(
        dir,
        "ce.toml",
        &format!(
            "task = \"regression\"\n[model]\nname = \"{}\"\n[data]\ntrain = \"{}\"\ntext_pair_column = \"text_pair\"\nmax_length = 64\n[training]\nbatch_size = 8\nmax_steps = 4\nlearning_rate = 1e-3\neval_strategy = \"no\"\n[output]\ndir = \"{}\"\n",
            fixtures().join("tiny-v4").display(),
            data.display(),
            dir.join("ce").display()
        ),
    );
    ok(modernft(&["train", "--quiet", "--config", cfg.to_str().unwrap()]).timed_output());
    dir.join("ce/model")
}

#[test]
fn classifiers_predict_rerank_and_tag_as_modernft_predict_does() {
    let tmp = tempfile::tempdir().unwrap();
    let near = |a: f64, b: &Value| (a - b.as_f64().unwrap()).abs() < 1e-5;
    // A sequence classifier: every label's probability, best first; raw_scores are the logits.
    let clf = fixtures().join("tiny-v4");
    let server = start(&clf, &[]);
    let a = server.addr.as_str();
    let want = predicted(&clf, &TEXTS.iter().map(|t| json!({"text": t})).collect::<Vec<_>>(), &["--all-scores", "--logits"]);
    let one = post(a, "/predict", &json!({"inputs": TEXTS[0]})).json();
    let preds = one.as_array().unwrap();
    assert_eq!(preds.len(), 2);
    assert!(preds[0]["score"].as_f64() >= preds[1]["score"].as_f64(), "{one}");
    for p in preds {
        assert!(near(p["score"].as_f64().unwrap(), &want[0]["scores"][p["label"].as_str().unwrap()]), "{one} vs {}", want[0]);
    }
    assert_eq!(preds[0]["label"], want[0]["label"]);
    // POST / is /predict on a classifier.
    let root = post(a, "/", &json!({"inputs": TEXTS[0]})).json();
    assert_eq!(root[0]["label"], preds[0]["label"]);
    assert!(near(root[0]["score"].as_f64().unwrap(), &preds[0]["score"]));
    let raw = post(a, "/predict", &json!({"inputs": [TEXTS[1]], "raw_scores": true})).json();
    let names = ["negative", "positive"];
    for p in raw.as_array().unwrap() {
        let i = names.iter().position(|n| *n == p["label"]).unwrap();
        assert!(near(p["score"].as_f64().unwrap(), &want[1]["logits"][i]), "{raw}");
    }
    // A batch mixing single texts and a pair; the pair scores as predict scores text + text_pair.
    let batch = post(a, "/predict", &json!({"inputs": [[TEXTS[2]], [TEXTS[0], TEXTS[3]]]})).json();
    let pair_want = predicted(&clf, &[json!({"text": TEXTS[0], "text_pair": TEXTS[3]})], &["--all-scores"]);
    assert_eq!(batch.as_array().unwrap().len(), 2);
    assert_eq!(batch[0][0]["label"], want[2]["label"]);
    assert!(batch[1].as_array().unwrap().iter().all(|p| near(p["score"].as_f64().unwrap(), &pair_want[0]["scores"][p["label"].as_str().unwrap()])), "{batch}");
    let info = request(a, "GET", "/info", None, None).json();
    assert_eq!(info["model_type"]["classifier"]["id2label"]["1"], "positive");
    for (route, body) in [("/similarity", json!({"inputs": {"source_sentence": "a", "sentences": ["b"]}})), ("/rerank", json!({"query": "a", "texts": ["b"]}))] {
        let r = post(a, route, &body);
        assert_eq!((r.status, r.json()["error_type"].clone()), (424, json!("Backend")), "{route}: {}", r.body);
    }
    let r = post(a, "/predict", &json!({"inputs": ["a", "b", "c"]}));
    assert!(r.status == 422 && r.json()["error"].as_str().unwrap().contains("pair"), "{}", r.body);
    drop(server);

    // A token classifier: each text's entities with character offsets, as predict finds them.
    let tagger = fixtures().join("tiny-token");
    let server = start(&tagger, &[]);
    let texts = ["John Smith visited the Empire State Building yesterday", "Mary loved it in Paris !"];
    let want = predicted(&tagger, &texts.iter().map(|t| json!({"text": t})).collect::<Vec<_>>(), &[]);
    let got = post(&server.addr, "/predict", &json!({"inputs": [[texts[0]], [texts[1]]]})).json();
    // The same spans and tags; scores to float precision (the batch differs).
    let same = |a: &Value, b: &Value| {
        let (a, b) = (a.as_array().unwrap(), b.as_array().unwrap());
        a.len() == b.len()
            && !a.is_empty()
            && a.iter().zip(b).all(|(x, y)| ["entity", "start", "end", "text"].iter().all(|k| x[k] == y[k]) && near(x["score"].as_f64().unwrap(), &y["score"]))
    };
    assert!(same(&got[0], &want[0]["entities"]) && same(&got[1], &want[1]["entities"]), "{got} vs {want:?}");
    assert!(same(&post(&server.addr, "/predict", &json!({"inputs": texts[0]})).json(), &want[0]["entities"]));
    assert_eq!(post(&server.addr, "/predict", &json!({"inputs": [texts[0], texts[1]]})).status, 422, "a pair to a tagger");
    drop(server);

    // A cross-encoder: /rerank scores each (query, text) as predict scores the pair, best first.
    let ce = cross_encoder(tmp.path());
    let server = start(&ce, &[]);
    let query = TEXTS[0];
    let ranks = post(&server.addr, "/rerank", &json!({"query": query, "texts": TEXTS, "return_text": true})).json();
    let want = predicted(&ce, &TEXTS.iter().map(|t| json!({"text": query, "text_pair": t})).collect::<Vec<_>>(), &[]);
    let ranks = ranks.as_array().unwrap();
    assert_eq!(ranks.len(), TEXTS.len());
    assert!(ranks.windows(2).all(|w| w[0]["score"].as_f64() >= w[1]["score"].as_f64()), "{ranks:?}");
    for r in ranks {
        let i = r["index"].as_u64().unwrap() as usize;
        assert!(near(r["score"].as_f64().unwrap(), &want[i]["score"]) && r["text"] == TEXTS[i], "{r} vs {}", want[i]);
    }
    let plain = post(&server.addr, "/rerank", &json!({"query": query, "texts": [TEXTS[1]]})).json();
    assert!(plain[0].get("text").is_none(), "{plain}");
    assert_eq!(post(&server.addr, "/rerank", &json!({"query": query, "texts": []})).status, 400);
    assert_eq!(request(&server.addr, "GET", "/info", None, None).json()["model_type"]["reranker"]["id2label"]["0"], "LABEL_0");
}

#[test]
fn similarity_is_the_cosine_of_embed_s_vectors() {
    let tmp = tempfile::tempdir().unwrap();
    let model = embedding_model(tmp.path());
    let server = start(&model, &[]);
    let a = server.addr.as_str();
    let v = vectors(&post(a, "/embed", &json!({"inputs": TEXTS})).json());
    let sims = post(a, "/similarity", &json!({"inputs": {"source_sentence": TEXTS[0], "sentences": &TEXTS[1..]}})).json();
    let want: Vec<f64> = v[1..].iter().map(|x| x.iter().zip(&v[0]).map(|(p, q)| p * q).sum()).collect();
    assert!(close(&[sims.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()], &[want], 1e-5), "{sims}");
    let r = post(a, "/similarity", &json!({"inputs": {"source_sentence": "a", "sentences": []}}));
    assert_eq!((r.status, r.json()["error_type"].clone()), (400, json!("Empty")));
    let r = post(a, "/predict", &json!({"inputs": "a"}));
    assert_eq!((r.status, r.json()["error_type"].clone()), (424, json!("Backend")), "{}", r.body);
}

#[test]
fn a_request_past_max_concurrent_requests_is_answered_429_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let model = embedding_model(tmp.path());
    let server = start(&model, &["--max-concurrent-requests", "1"]);
    let a = server.addr.as_str();
    // The one permit held by a request whose body is still arriving.
    let (slow, body) = holding_the_permit(a);
    let overloaded = post(a, "/embed", &json!({"inputs": "another"}));
    assert_eq!(overloaded.status, 429, "{}", overloaded.body);
    let v = overloaded.json();
    assert!(v["error_type"] == "Overloaded" && v["error"].as_str().unwrap().contains("--max-concurrent-requests"), "{v}");
    let o = post(a, "/v1/embeddings", &json!({"input": "x"}));
    assert!(o.status == 429 && o.json()["type"] == "Overloaded" && o.json()["code"] == 429, "{}", o.body);
    // /health and /info are not limited.
    assert_eq!(request(a, "GET", "/health", None, None).status, 200);
    // The held request completes, and its permit comes back.
    let answer = finish(slow, &body);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(post(a, "/embed", &json!({"inputs": "after"})).status, 200);
}

/// Opens a POST /embed whose body stops after 5 bytes: the request holds its permit until
/// [`finish`] sends the rest.
fn held_open(a: &str) -> (TcpStream, String) {
    let body = json!({"inputs": ["held open"]}).to_string();
    let mut slow = TcpStream::connect(a).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(slow, "POST /embed HTTP/1.1\r\nHost: {a}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}", body.len(), &body[..5]).unwrap();
    slow.flush().unwrap();
    (slow, body)
}

/// Whether the server has answered (or closed) a held request already: a request that found the
/// permit taken by another was refused with 429 at once.
fn answered(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    let r = s.peek(&mut b);
    s.set_nonblocking(false).unwrap();
    r.is_ok()
}

/// A held request that owns the one permit of a `--max-concurrent-requests 1` server: proved by a
/// second request's 429. (The held request may itself lose the race to a probe and be refused;
/// then another is opened.) At most 30 s.
fn holding_the_permit(a: &str) -> (TcpStream, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (slow, body) = held_open(a);
        std::thread::sleep(Duration::from_millis(50));
        while !answered(&slow) {
            if post(a, "/embed", &json!({"inputs": "probe"})).status == 429 {
                return (slow, body);
            }
            assert!(Instant::now() < deadline, "a held request never took the permit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn finish(mut slow: TcpStream, body: &str) -> String {
    slow.write_all(body[5..].as_bytes()).unwrap();
    let mut answer = String::new();
    slow.read_to_string(&mut answer).unwrap();
    answer
}

/// Polls `check` every 50 ms for at most 20 s until it holds.
fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn sigterm_drains_requests_in_flight_and_refuses_new_ones_with_503() {
    let tmp = tempfile::tempdir().unwrap();
    let model = embedding_model(tmp.path());
    // One permit: a 429 proves the held request is in flight before the signal.
    let mut server = start(&model, &["--max-concurrent-requests", "1"]);
    let a = server.addr.clone();
    let (slow, body) = holding_the_permit(&a);
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    // New requests: 503 while the held one is unfinished; /health says so too.
    assert!(eventually(|| post(&a, "/embed", &json!({"inputs": "new"})).status == 503), "no 503 after SIGTERM");
    let r = post(&a, "/embed", &json!({"inputs": "new"}));
    assert_eq!((r.status, r.json()["error_type"].clone()), (503, json!("Unhealthy")), "{}", r.body);
    assert_eq!(request(&a, "GET", "/health", None, None).status, 503);
    // The held request still gets its answer, then the server exits 0.
    let answer = finish(slow, &body);
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("[["), "{answer}");
    let status = server.wait_exit();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn an_api_key_guards_every_route_but_health_and_bodies_have_a_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let model = embedding_model(tmp.path());
    let server = start(&model, &["--api-key", "s3cret", "--payload-limit", "2000"]);
    let a = server.addr.as_str();
    let with_key = |path: &str, body: &Value, key: Option<&str>| {
        let text = body.to_string();
        let auth = key.map(|k| format!("Authorization: Bearer {k}\r\n")).unwrap_or_default();
        let mut s = TcpStream::connect(a).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(s, "POST {path} HTTP/1.1\r\nHost: {a}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{text}", text.len()).unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let status: u16 = raw.split(' ').nth(1).unwrap().parse().unwrap();
        (status, raw.split_once("\r\n\r\n").unwrap().1.to_string())
    };
    let body = json!({"inputs": "a"});
    let (status, text) = with_key("/embed", &body, None);
    assert!(status == 401 && text.contains("\"error_type\":\"Unauthorized\"") && text.contains("Authorization: Bearer"), "{status} {text}");
    assert_eq!(with_key("/embed", &body, Some("wrong")).0, 401);
    assert_eq!(with_key("/embed", &body, Some("s3cret")).0, 200);
    let (status, text) = with_key("/v1/embeddings", &json!({"input": "a"}), None);
    assert!(status == 401 && text.contains("\"code\":401"), "{text}");
    assert_eq!(request(a, "GET", "/info", None, None).status, 401);
    assert_eq!(request(a, "GET", "/metrics", None, None).status, 401);
    assert_eq!(request(a, "GET", "/health", None, None).status, 200, "probes need no key");
    // A body over --payload-limit: 413, as JSON.
    let (status, text) = with_key("/embed", &json!({"inputs": "word ".repeat(1000)}), Some("s3cret"));
    assert!(status == 413 && text.contains("\"error_type\":\"Validation\"") && text.contains("too large"), "{status} {text}");
}

#[test]
fn bf16_precision_serves_vectors_close_to_f32_or_is_refused_with_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let model = embedding_model(tmp.path());
    let has_bf16 = std::fs::read_to_string("/proc/cpuinfo").map(|s| s.contains("avx512_bf16")).unwrap_or(false);
    if !has_bf16 {
        let e = modernft(&["serve", "--model", model.to_str().unwrap(), "--port", "0", "--precision", "bf16"]).timed_output();
        let stderr = String::from_utf8_lossy(&e.stderr);
        assert!(!e.status.success() && stderr.contains("AVX-512 BF16") && stderr.contains("--precision f32"), "{stderr}");
        eprintln!("skipped the bf16 serving check: this CPU has no AVX-512 BF16");
        return;
    }
    let f32_server = start(&model, &[]);
    let want = vectors(&post(&f32_server.addr, "/embed", &json!({"inputs": TEXTS})).json());
    drop(f32_server);
    let server = start(&model, &["--precision", "bf16"]);
    assert_eq!(request(&server.addr, "GET", "/info", None, None).json()["model_dtype"], "bfloat16");
    let got = vectors(&post(&server.addr, "/embed", &json!({"inputs": TEXTS})).json());
    for (g, w) in got.iter().zip(&want) {
        let cos: f64 = g.iter().zip(w).map(|(a, b)| a * b).sum();
        assert!(cos > 0.999, "cosine {cos} between bf16 and f32 vectors");
    }
}

/// Prometheus' text exposition format, parsed strictly: every sample `name{labels} value` keyed by
/// its name and its labels in order; every sample's metric has `# HELP` and `# TYPE` lines before it.
fn prometheus_samples(text: &str) -> std::collections::HashMap<String, f64> {
    let mut typed = std::collections::HashMap::new();
    let mut helped = std::collections::HashSet::new();
    let mut samples = std::collections::HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split(' ').next().unwrap().to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("bad TYPE line {line:?}"));
            assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind), "{line:?}");
            typed.insert(name.to_string(), kind.to_string());
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment {line:?}");
        let (key, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value in {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let name = key.split('{').next().unwrap();
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'), "bad name in {line:?}");
        if let Some(labels) = key.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "bad labels in {line:?}");
                for pair in labels[1..labels.len() - 1].split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("bad label {pair:?} in {line:?}"));
                    assert!(!k.is_empty() && v.starts_with('"'), "bad label {pair:?} in {line:?}");
                }
            }
        }
        let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s).filter(|f| typed.get(*f).is_some_and(|k| k == "histogram"))).unwrap_or(name);
        assert!(typed.contains_key(family) && helped.contains(family), "{line:?} before its # HELP/# TYPE");
        assert!(samples.insert(key.to_string(), value).is_none(), "{key} twice");
    }
    samples
}

/// A histogram's buckets never decrease and end at `+Inf` = its count.
fn check_histogram(samples: &std::collections::HashMap<String, f64>, name: &str, labels: &str) -> f64 {
    let prefix = format!("{name}_bucket{{{labels}{}le=\"", if labels.is_empty() { "" } else { "," });
    let mut buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|le| (le.trim_end_matches("\"}").parse::<f64>().unwrap_or(f64::INFINITY), *v)))
        .collect();
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    assert!(buckets.len() > 5 && buckets.last().unwrap().0.is_infinite(), "{name}: buckets {buckets:?}");
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{name}: buckets decrease {buckets:?}");
    let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
    let count = samples[&format!("{name}_count{braces}")];
    assert_eq!(buckets.last().unwrap().1, count, "{name}: +Inf bucket ≠ count");
    count
}

#[test]
fn metrics_count_requests_by_route_and_status_and_time_queue_and_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let model = embedding_model(tmp.path());
    let server = start(&model, &["--max-client-batch-size", "4"]);
    let a = server.addr.as_str();
    let tokens = |r: &Reply| r.header("x-compute-tokens").unwrap().parse::<f64>().unwrap();
    let mut sent = 0.0;
    let mut rows = 0.0;
    for inputs in [json!(TEXTS[0]), json!(TEXTS[1..3]), json!(TEXTS)] {
        let r = post(a, "/embed", &json!({ "inputs": inputs }));
        assert_eq!(r.status, 200, "{}", r.body);
        sent += tokens(&r);
        rows += r.json().as_array().unwrap().len() as f64;
    }
    let r = post(a, "/v1/embeddings", &json!({"input": TEXTS[3]}));
    assert_eq!(r.status, 200, "{}", r.body);
    sent += r.json()["usage"]["prompt_tokens"].as_f64().unwrap();
    rows += 1.0;
    assert_eq!(post(a, "/embed", &json!({"inputs": ["a", "b", "c", "d", "e"]})).status, 413);
    assert_eq!(request(a, "GET", "/nowhere", None, None).status, 404);
    assert_eq!(request(a, "GET", "/health", None, None).status, 200);

    let r = request(a, "GET", "/metrics", None, None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"), "{:?}", r.header("content-type"));
    let m = prometheus_samples(&r.body);
    let count = |route: &str, status: u16| m.get(&format!("modernft_requests_total{{route=\"{route}\",status=\"{status}\"}}")).copied().unwrap_or(0.0);
    assert_eq!(count("/embed", 200), 3.0, "{}", r.body);
    assert_eq!(count("/embed", 413), 1.0, "{}", r.body);
    assert_eq!(count("/v1/embeddings", 200), 1.0, "{}", r.body);
    assert_eq!(count("unmatched", 404), 1.0, "{}", r.body);
    assert_eq!(count("/health", 200), 1.0, "{}", r.body);
    assert_eq!(count("/metrics", 200), 0.0, "a scrape counts once answered");
    assert_eq!(check_histogram(&m, "modernft_request_duration_seconds", "route=\"/embed\""), 4.0);
    // Every request that reached the model: its queue wait and its tokens.
    assert_eq!(check_histogram(&m, "modernft_queue_duration_seconds", ""), 4.0);
    assert_eq!(check_histogram(&m, "modernft_request_tokens", ""), 4.0);
    assert_eq!(m["modernft_request_tokens_sum"], sent);
    assert_eq!(m["modernft_input_tokens_total"], sent);
    // Batches: each request ran in one (these came one at a time); rows and tokens add up.
    let batches = check_histogram(&m, "modernft_batch_rows", "");
    assert_eq!(batches, 4.0);
    assert_eq!(check_histogram(&m, "modernft_batch_tokens", ""), batches);
    assert_eq!(check_histogram(&m, "modernft_inference_duration_seconds", ""), batches);
    assert_eq!(m["modernft_batch_rows_sum"], rows);
    assert_eq!(m["modernft_batch_tokens_sum"], sent);
    assert!(m["modernft_inference_duration_seconds_sum"] > 0.0);
    assert_eq!(m["modernft_queue_requests"], 0.0);
    assert_eq!(m["modernft_requests_in_flight"], 0.0);
    let again = prometheus_samples(&request(a, "GET", "/metrics", None, None).body);
    assert_eq!(again["modernft_requests_total{route=\"/metrics\",status=\"200\"}"], 1.0);
}
