//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

use candle_core::Tensor;

pub fn fixtures() -> PathBuf {
    repo_root().join("tests").join("fixtures")
}

/// `../shared` beside the checkout, when present (CI has it; a fresh clone may not).
pub fn shared() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("shared");
    if p.join("data").is_dir() {
        Some(p)
    } else {
        eprintln!("notice: ../shared is absent; skipping a test that needs its data");
        None
    }
}

/// The device the parity tests run on: `MODERNFT_TEST_DEVICE` (`cuda`, `cuda:1`, `metal`, as
/// `--device` takes them), else the CPU. Results are compared on the CPU.
pub fn device() -> candle_core::Device {
    match std::env::var("MODERNFT_TEST_DEVICE") {
        Ok(spec) if !spec.trim().is_empty() => modernft::device::parse_device(&spec)
            .unwrap_or_else(|e| panic!("MODERNFT_TEST_DEVICE={spec}: {e}")),
        _ => candle_core::Device::Cpu,
    }
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    let cpu = candle_core::Device::Cpu;
    let a = a.to_device(&cpu).unwrap().to_dtype(candle_core::DType::F64).unwrap();
    let b = b.to_device(&cpu).unwrap().to_dtype(candle_core::DType::F64).unwrap();
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap()
}

pub fn max_abs(a: &Tensor) -> f64 {
    a.to_device(&candle_core::Device::Cpu).unwrap().to_dtype(candle_core::DType::F64).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap()
}

/// The `modernft` binary cargo built with the tests, or the one `MODERNFT_BIN` names.
pub fn binary() -> PathBuf {
    match std::env::var_os("MODERNFT_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_modernft")),
    }
}

/// A stand-in for the Hugging Face hub: serves `files` (name → bytes) at
/// `/{repo}/resolve/{revision}/{name}` (and `/datasets/{repo}/...`) for any repo and revision, with the headers hf-hub needs
/// (etag, x-repo-commit, Content-Range for its ranged GETs). Returns the base URL and a handle that
/// counts requests. The server thread ends with the test process.
pub struct StandInHub {
    pub url: String,
    pub requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

pub fn stand_in_hub(files: Vec<(String, Vec<u8>)>) -> StandInHub {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut range_start = 0usize;
            let mut range_end: Option<usize> = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    let (a, b) = v.trim().split_once('-').unwrap_or(("0", ""));
                    range_start = a.parse().unwrap_or(0);
                    range_end = b.parse().ok();
                }
            }
            // /{repo}/resolve/{revision}/{name}, the revision URL-encoded (refs%2Fconvert%2Fparquet).
            let file = path.split_once("/resolve/").and_then(|(_, rest)| rest.split_once('/')).map(|(_, f)| f.to_string());
            let found = files.iter().find(|(name, _)| file.as_deref() == Some(name.as_str()));
            let response = match found {
                None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                Some((name, bytes)) => {
                    let end = range_end.unwrap_or(bytes.len() - 1).min(bytes.len() - 1);
                    let body = &bytes[range_start.min(bytes.len())..=end];
                    let mut r = format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {}-{}/{}\r\nETag: \"etag-{}-{}\"\r\nX-Repo-Commit: 0123456789abcdef0123456789abcdef01234567\r\nConnection: close\r\n\r\n",
                        body.len(), range_start, end, bytes.len(), name.replace('/', "_"), bytes.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(body);
                    r
                }
            };
            let _ = stream.write_all(&response);
        }
    });
    StandInHub { url, requests }
}

/// Reads a float32 .npy written by modernft: (shape, data).
pub fn read_npy(bytes: &[u8]) -> ((usize, usize), Vec<f32>) {
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
    assert!(header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"), "{header}");
    let shape = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let dims: Vec<usize> = shape.split(',').filter(|s| !s.trim().is_empty()).map(|s| s.trim().parse().unwrap()).collect();
    let data: Vec<f32> = bytes[10 + hlen..].chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    ((dims[0], dims[1]), data)
}

/// Runs the modernft binary from the repository root with `stdin` as its standard input.
pub fn run_with_stdin(args: &[&str], stdin: &str) -> std::process::Output {
    std::process::Command::new(binary()).current_dir(env!("CARGO_MANIFEST_DIR")).args(args).timed_output_with_stdin(stdin.as_bytes())
}

/// How long any process a test spawns may run before the test fails (a hang is a failure).
pub const PROCESS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// `Command::output` with a deadline: past [`PROCESS_TIMEOUT`] the child is killed and the test
/// fails naming the command.
pub trait Timed {
    fn timed_output(&mut self) -> std::process::Output;
    fn timed_output_with_stdin(&mut self, stdin: &[u8]) -> std::process::Output;
}

impl Timed for std::process::Command {
    fn timed_output(&mut self) -> std::process::Output {
        self.stdin(std::process::Stdio::null());
        wait_timed(self, None)
    }
    fn timed_output_with_stdin(&mut self, stdin: &[u8]) -> std::process::Output {
        self.stdin(std::process::Stdio::piped());
        wait_timed(self, Some(stdin.to_vec()))
    }
}

fn wait_timed(cmd: &mut std::process::Command, stdin: Option<Vec<u8>>) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let feeder = stdin.map(|bytes| {
        let mut pipe = child.stdin.take().unwrap();
        // The child may exit before reading (an expected error): a broken pipe here is fine.
        std::thread::spawn(move || drop(pipe.write_all(&bytes)))
    });
    let output = wait_child_timed(child, &format!("{cmd:?}"));
    if let Some(f) = feeder {
        let _ = f.join();
    }
    output
}

/// Waits for a spawned child (stdout and stderr piped, or not) for at most [`PROCESS_TIMEOUT`],
/// collecting its output; past it the child is killed and the test fails naming `what`.
pub fn wait_child_timed(mut child: std::process::Child, what: &str) -> std::process::Output {
    use std::io::Read;
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = child.stdout.take().map(|p| drain(Box::new(p)));
    let err = child.stderr.take().map(|p| drain(Box::new(p)));
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > PROCESS_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} ran past {PROCESS_TIMEOUT:?} and was killed");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let collect = |h: Option<std::thread::JoinHandle<Vec<u8>>>| h.map(|h| h.join().unwrap()).unwrap_or_default();
    std::process::Output { status, stdout: collect(out), stderr: collect(err) }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// The run folder as it stood right after checkpoint-`step` was written: later checkpoints, the
/// exported model and the finished flag removed.
pub fn rewind(full: &Path, to: &Path, step: usize) {
    copy_dir(full, to);
    for e in std::fs::read_dir(to).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let later = name.strip_prefix("checkpoint-").and_then(|s| s.parse::<usize>().ok()).is_some_and(|s| s > step);
        if later || name == "model" {
            std::fs::remove_dir_all(&p).unwrap();
        }
    }
    std::fs::remove_file(to.join("trainer_state.json")).unwrap();
}

/// Token-classification rows (`tokens`, `tags`): people and places in one sentence shape.
pub fn ner_rows(n: usize) -> String {
    let people = [("john", "smith"), ("mary", "jones"), ("ann", "lee")];
    let places = ["paris", "london", "rome"];
    (0..n)
        .map(|i| {
            let (f, l) = people[i % 3];
            let p = places[(i / 3) % 3];
            let tokens = ["yesterday", f, l, "flew", "to", p];
            let tags = ["O", "B-per", "I-per", "O", "O", "B-loc"];
            format!("{}\n", serde_json::json!({"tokens": tokens, "tags": tags}))
        })
        .collect()
}

/// The repository root (where `cargo test` runs the binary from); `MODERNFT_REPO` names another
/// checkout, for a test binary built on one machine and run on another (scripts/device_check.sh).
pub fn repo_root() -> PathBuf {
    match std::env::var_os("MODERNFT_REPO") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")),
    }
}

/// `modernft ARGS` run from the repository root.
pub fn modernft(args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(binary());
    c.current_dir(repo_root()).args(args);
    c
}

/// (stdout, stderr) of a run that must have succeeded (both shown when it did not).
pub fn succeeded(out: std::process::Output) -> (String, String) {
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string());
    assert!(out.status.success(), "failed:\n{stdout}\n{stderr}");
    (stdout, stderr)
}

/// Writes `dir/name` (creating `dir`) and returns its path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// `MODERNFT_BATCH_LOG` lines as (step, epoch, rows, `field` per row: `lengths`, `masked`, ...).
pub fn batch_log_with(path: &Path, field: &str) -> Vec<(u64, u64, Vec<u64>, Vec<u64>)> {
    let flat = |v: &serde_json::Value| v.as_array().unwrap().iter().flat_map(|b| b.as_array().unwrap().iter().map(|r| r.as_u64().unwrap())).collect::<Vec<u64>>();
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| (v["step"].as_u64().unwrap(), v["epoch"].as_u64().unwrap(), flat(&v["rows"]), flat(&v[field])))
        .collect()
}
