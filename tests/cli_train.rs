//! `modernft train` through the binary: exact resume after SIGKILL, no silent overwrite, the NaN
//! guard, early stopping with the best model restored, config errors, and the quickstart config.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{binary, fixtures};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn modernft(args: &[&str]) -> Command {
    let mut c = Command::new(binary());
    c.current_dir(root()).args(args);
    c
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "failed:\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("run.toml");
    std::fs::write(&p, body).unwrap();
    p
}

/// The quickstart model and data, a fixed number of steps, checkpoints every 5 steps, dropout on.
fn resumable_config(dir: &Path, out: &Path) -> PathBuf {
    write_config(
        dir,
        &format!(
            r#"
[model]
config = "examples/quickstart/config.json"
tokenizer = "examples/quickstart/tokenizer.json"
classifier_dropout = 0.2
[data]
train = "examples/quickstart/train.jsonl"
max_length = 64
[training]
learning_rate = 5e-4
batch_size = 16
max_steps = 40
save_steps = 5
save_total_limit = 3
eval_strategy = "no"
weight_decay = 0.01
warmup_steps = 4
[output]
dir = "{}"
"#,
            out.display()
        ),
    )
}

#[test]
fn sigkill_then_resume_ends_with_bit_identical_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let full = tmp.path().join("full");
    let killed = tmp.path().join("killed");
    let cfg_full = resumable_config(&tmp.path().join("."), &full);
    ok(modernft(&["train", "--quiet", "--config", cfg_full.to_str().unwrap()]).output().unwrap());

    let sub = tmp.path().join("k");
    std::fs::create_dir_all(&sub).unwrap();
    let cfg_killed = resumable_config(&sub, &killed);
    let mut child = modernft(&["train", "--quiet", "--config", cfg_killed.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill as soon as the step-15 checkpoint is complete (mid-run: 40 steps in all).
    let start = Instant::now();
    while !killed.join("checkpoint-15/training_state.json").exists() {
        assert!(start.elapsed() < Duration::from_secs(300), "no checkpoint appeared");
        assert!(child.try_wait().unwrap().is_none(), "training ended before it could be killed");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!killed.join("model").exists(), "the run was killed before finishing");

    let out = ok(modernft(&["train", "--quiet", "--resume", killed.to_str().unwrap()]).output().unwrap());
    assert!(out.contains("steps              40"), "{out}");
    let a = std::fs::read(full.join("model/model.safetensors")).unwrap();
    let b = std::fs::read(killed.join("model/model.safetensors")).unwrap();
    assert!(a == b, "resumed weights differ from the uninterrupted run");
    // The resumed metrics log has each step once.
    let log = std::fs::read_to_string(killed.join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = log.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).filter(|v| v["type"] == "train").map(|v| v["step"].as_u64().unwrap()).collect();
    let mut sorted = steps.clone();
    sorted.dedup();
    assert_eq!(steps, sorted);
    // save_total_limit = 3: only the newest three step checkpoints remain.
    let cks: Vec<String> = std::fs::read_dir(&killed).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).filter(|n| n.starts_with("checkpoint-")).collect();
    assert_eq!(cks.len(), 3, "{cks:?}");
}

#[test]
fn existing_runs_are_not_overwritten_without_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let cfg = resumable_config(tmp.path(), &out);
    let cfg = cfg.to_str().unwrap();
    ok(modernft(&["train", "--quiet", "--config", cfg, "--set", "training.max_steps=2"]).output().unwrap());
    let before = std::fs::read(out.join("model/model.safetensors")).unwrap();
    let refused = modernft(&["train", "--quiet", "--config", cfg, "--set", "training.max_steps=3"]).output().unwrap();
    assert!(!refused.status.success());
    let e = String::from_utf8_lossy(&refused.stderr);
    assert!(e.contains("already exists") && e.contains("--overwrite") && e.contains("--resume"), "{e}");
    assert_eq!(std::fs::read(out.join("model/model.safetensors")).unwrap(), before, "nothing was touched");
    let replaced = ok(modernft(&["train", "--quiet", "--config", cfg, "--set", "training.max_steps=3", "--overwrite"]).output().unwrap());
    assert!(replaced.contains("steps              3"), "{replaced}");
}

#[test]
fn a_diverging_loss_stops_the_run_and_keeps_the_last_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let cfg = resumable_config(tmp.path(), &out);
    let res = modernft(&[
        "train", "--quiet", "--config", cfg.to_str().unwrap(),
        "--set", "training.learning_rate=1e30", "--set", "training.lr_scheduler=constant",
        "--set", "training.warmup_steps=0", "--set", "training.max_grad_norm=0", "--set", "training.save_steps=1",
    ])
    .output()
    .unwrap();
    assert!(!res.status.success());
    let e = String::from_utf8_lossy(&res.stderr);
    assert!(e.contains("training loss is") && e.contains("lower the learning rate"), "{e}");
    // The message names the last good checkpoint, which is complete and loadable.
    let named = e.split("checkpoint-").nth(1).and_then(|s| s.split(',').next()).unwrap_or("").to_string();
    assert!(e.contains("intact") && !named.is_empty(), "{e}");
    let ck = out.join(format!("checkpoint-{named}"));
    assert!(ck.join("model.safetensors").is_file() && ck.join("training_state.json").is_file(), "{}", ck.display());
    let files = modernft::model::ModelFiles::from_dir(&ck).unwrap();
    modernft::model::load_pretrained(&files, modernft::model::HeadKind::Sequence, &Default::default()).unwrap();
    assert!(!out.join("model").exists(), "no model is exported from a diverged run");
}

#[test]
fn early_stopping_on_a_plateau_restores_the_best_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let fx = fixtures();
    let cfg = write_config(
        tmp.path(),
        &format!(
            r#"
[model]
name = "{model}"
[data]
train = "{train}"
validation = "{eval}"
[training]
learning_rate = 1e-6
batch_size = 8
epochs = 20
metric_for_best_model = "accuracy"
early_stopping_patience = 2
save_total_limit = 1
[output]
dir = "{out}"
"#,
            model = fx.join("tiny-v4").display(),
            train = fx.join("trainer/train.jsonl").display(),
            eval = fx.join("trainer/eval.jsonl").display(),
            out = out.display()
        ),
    );
    let summary = ok(modernft(&["train", "--quiet", "--config", cfg.to_str().unwrap()]).output().unwrap());
    // 5 steps per epoch; accuracy on a plateau: best at the first evaluation, stop after two more.
    assert!(summary.contains("steps              15") && summary.contains("stopped early"), "{summary}");
    assert!(summary.contains("checkpoint-5, restored"), "{summary}");
    let best = std::fs::read(out.join("checkpoint-5/model.safetensors")).unwrap();
    let last = std::fs::read(out.join("checkpoint-15/model.safetensors")).unwrap();
    let exported = std::fs::read(out.join("model/model.safetensors")).unwrap();
    assert!(exported == best && exported != last, "the exported model is the best checkpoint's");
    // The run folder has what a user looks at.
    for f in ["config.toml", "metrics.jsonl", "loss.svg", "confusion_matrix.svg", "trainer_state.json", "model/config.json", "model/tokenizer.json", "model/tokenizer_config.json"] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("model/config.json")).unwrap()).unwrap();
    assert_eq!(config["id2label"], serde_json::json!({"0": "0", "1": "1"}));
    assert_eq!(config["problem_type"], "single_label_classification");
    assert_eq!(config["architectures"], serde_json::json!(["ModernBertForSequenceClassification"]));
    let log = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(log.lines().filter(|l| l.contains("\"type\":\"eval\"")).count(), 3);
}

#[test]
fn config_errors_and_init() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "[model]\nname = \"x\"\n[data]\ntrain = \"a.jsonl\"\n[training]\nbatch_sise = 8\n");
    let res = modernft(&["train", "--config", cfg.to_str().unwrap()]).output().unwrap();
    let e = String::from_utf8_lossy(&res.stderr);
    assert!(!res.status.success() && e.contains("training.batch_sise") && e.contains("did you mean `batch_size`"), "{e}");
    let res = modernft(&["train", "--config", cfg.to_str().unwrap(), "--set", "training.batch_sise=1"]).output().unwrap();
    assert!(!res.status.success());

    let template = tmp.path().join("new.toml");
    ok(modernft(&["init", template.to_str().unwrap()]).output().unwrap());
    assert!(std::fs::read_to_string(&template).unwrap().contains("[training]"));
    let again = modernft(&["init", template.to_str().unwrap()]).output().unwrap();
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("--overwrite"));
}

#[test]
fn quickstart_config_runs_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("qs");
    let summary = ok(modernft(&[
        "train", "--config", "configs/quickstart.toml", "--set", "training.max_steps=12",
        "--set", "training.eval_strategy=steps", "--set", "training.eval_steps=6",
        "--set", &format!("output.dir={}", out.display()),
    ])
    .output()
    .unwrap());
    assert!(summary.contains("validation") && summary.contains("accuracy"), "{summary}");
    assert!(out.join("loss.svg").is_file() && out.join("confusion_matrix.svg").is_file());
}

#[test]
fn ctrl_c_writes_a_checkpoint_and_the_run_resumes_to_the_same_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let full = tmp.path().join("full");
    let stopped = tmp.path().join("stopped");
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    // No periodic checkpoints: the only one before the end is the Ctrl-C one.
    let set = ["--set", "training.save_steps=0"];
    let cfg_full = resumable_config(&a, &full);
    ok(modernft(&["train", "--quiet", "--config", cfg_full.to_str().unwrap(), set[0], set[1]]).output().unwrap());
    let cfg = resumable_config(&b, &stopped);
    let child = modernft(&["train", "--quiet", "--config", cfg.to_str().unwrap(), set[0], set[1]])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until training has started (the first logged step), then send SIGINT.
    let start = Instant::now();
    while std::fs::read_to_string(stopped.join("metrics.jsonl")).map(|s| s.is_empty()).unwrap_or(true) {
        assert!(start.elapsed() < Duration::from_secs(300), "training never started");
        std::thread::sleep(Duration::from_millis(2));
    }
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("interrupted at step") && e.contains("--resume"), "{e}");
    assert!(!stopped.join("model").exists());
    let cks: Vec<String> = std::fs::read_dir(&stopped).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).filter(|n| n.starts_with("checkpoint-")).collect();
    assert_eq!(cks.len(), 1, "{cks:?}");
    ok(modernft(&["train", "--quiet", "--resume", stopped.to_str().unwrap()]).output().unwrap());
    assert!(std::fs::read(full.join("model/model.safetensors")).unwrap() == std::fs::read(stopped.join("model/model.safetensors")).unwrap());
}
