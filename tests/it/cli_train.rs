//! `modernft train` through the binary: exact resume after SIGKILL, no silent overwrite, the NaN
//! guard, early stopping with the best model restored, config errors, and the quickstart config.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{binary, fixtures, rewind, Timed};

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
    ok(modernft(&["train", "--quiet", "--config", cfg_full.to_str().unwrap()]).timed_output());

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

    let out = ok(modernft(&["train", "--quiet", "--resume", killed.to_str().unwrap()]).timed_output());
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
    ok(modernft(&["train", "--quiet", "--config", cfg, "--set", "training.max_steps=2"]).timed_output());
    let before = std::fs::read(out.join("model/model.safetensors")).unwrap();
    let refused = modernft(&["train", "--quiet", "--config", cfg, "--set", "training.max_steps=3"]).timed_output();
    assert!(!refused.status.success());
    let e = String::from_utf8_lossy(&refused.stderr);
    assert!(e.contains("already exists") && e.contains("--overwrite") && e.contains("--resume"), "{e}");
    assert_eq!(std::fs::read(out.join("model/model.safetensors")).unwrap(), before, "nothing was touched");
    let replaced = ok(modernft(&["train", "--quiet", "--config", cfg, "--set", "training.max_steps=3", "--overwrite"]).timed_output());
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
    .timed_output();
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
    let summary = ok(modernft(&["train", "--quiet", "--config", cfg.to_str().unwrap()]).timed_output());
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
    let res = modernft(&["train", "--config", cfg.to_str().unwrap()]).timed_output();
    let e = String::from_utf8_lossy(&res.stderr);
    assert!(!res.status.success() && e.contains("training.batch_sise") && e.contains("did you mean `batch_size`"), "{e}");
    let res = modernft(&["train", "--config", cfg.to_str().unwrap(), "--set", "training.batch_sise=1"]).timed_output();
    assert!(!res.status.success());

    let template = tmp.path().join("new.toml");
    ok(modernft(&["init", template.to_str().unwrap()]).timed_output());
    assert!(std::fs::read_to_string(&template).unwrap().contains("[training]"));
    let again = modernft(&["init", template.to_str().unwrap()]).timed_output();
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
    .timed_output());
    assert!(summary.contains("validation") && summary.contains("accuracy"), "{summary}");
    assert!(out.join("loss.svg").is_file() && out.join("confusion_matrix.svg").is_file());
}

/// Ctrl-C (SIGINT), SIGTERM (docker stop, Kubernetes, Slurm's time limit, `mpirun` on Ctrl-C) and
/// SIGUSR1 (Slurm's `--signal`): a checkpoint at the end of the step, and the resumed run ends with
/// the uninterrupted run's bytes.
#[test]
fn a_stop_signal_writes_a_checkpoint_and_the_run_resumes_to_the_same_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let full = tmp.path().join("full");
    let a = tmp.path().join("a");
    std::fs::create_dir_all(&a).unwrap();
    // No periodic checkpoints: the only one before the end is the requested one.
    let set = ["--set", "training.save_steps=0"];
    let cfg_full = resumable_config(&a, &full);
    ok(modernft(&["train", "--quiet", "--config", cfg_full.to_str().unwrap(), set[0], set[1]]).timed_output());
    for signal in ["INT", "TERM", "USR1"] {
        let stopped = tmp.path().join(format!("stopped-{signal}"));
        let b = tmp.path().join(format!("b-{signal}"));
        std::fs::create_dir_all(&b).unwrap();
        let cfg = resumable_config(&b, &stopped);
        let child = modernft(&["train", "--quiet", "--config", cfg.to_str().unwrap(), set[0], set[1]])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until training has started (the first logged step), then send the signal.
        let start = Instant::now();
        while std::fs::read_to_string(stopped.join("metrics.jsonl")).map(|s| s.is_empty()).unwrap_or(true) {
            assert!(start.elapsed() < Duration::from_secs(300), "training never started");
            std::thread::sleep(Duration::from_millis(2));
        }
        let status = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let out = common::wait_child_timed(child, &format!("train after SIG{signal}"));
        let e = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "SIG{signal}: {e}");
        assert!(e.contains(&format!("interrupted by SIG{signal} at step")) && e.contains("--resume"), "{e}");
        assert!(!stopped.join("model").exists());
        let cks: Vec<String> = std::fs::read_dir(&stopped).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).filter(|n| n.starts_with("checkpoint-")).collect();
        assert_eq!(cks.len(), 1, "{cks:?}");
        ok(modernft(&["train", "--quiet", "--resume", stopped.to_str().unwrap()]).timed_output());
        assert!(std::fs::read(full.join("model/model.safetensors")).unwrap() == std::fs::read(stopped.join("model/model.safetensors")).unwrap(), "SIG{signal}: resumed weights differ");
    }
}

// ---------------------------------------------------------------------------------------------
// Exact resume across epochs, kills, faults and threads.

/// 160 quickstart rows (10 steps per epoch at batch 16), 64 validation rows, 2.5 epochs, dropout
/// and shuffling on, checkpoints every 4 steps and at every evaluation, all of them kept.
fn epochs_config(dir: &Path, out: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let head = |src: &str, n: usize| {
        let text = std::fs::read_to_string(root().join(src)).unwrap();
        text.lines().take(n).map(|l| format!("{l}\n")).collect::<String>()
    };
    std::fs::write(dir.join("train.jsonl"), head("examples/quickstart/train.jsonl", 160)).unwrap();
    std::fs::write(dir.join("dev.jsonl"), head("examples/quickstart/dev.jsonl", 64)).unwrap();
    write_config(
        dir,
        &format!(
            r#"
[model]
config = "examples/quickstart/config.json"
tokenizer = "examples/quickstart/tokenizer.json"
classifier_dropout = 0.1
[data]
train = "{train}"
validation = "{dev}"
max_length = 48
[training]
learning_rate = 5e-4
batch_size = 16
epochs = 2.5
save_steps = 4
save_total_limit = 100
metric_for_best_model = "accuracy"
weight_decay = 0.01
warmup_steps = 3
logging_steps = 1
[output]
dir = "{out}"
"#,
            train = dir.join("train.jsonl").display(),
            dev = dir.join("dev.jsonl").display(),
            out = out.display()
        ),
    )
}

fn batch_log(path: &Path) -> Vec<(u64, u64, Vec<u64>)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let rows = v["rows"].as_array().unwrap().iter().flat_map(|b| b.as_array().unwrap().iter().map(|r| r.as_u64().unwrap())).collect();
            (v["step"].as_u64().unwrap(), v["epoch"].as_u64().unwrap(), rows)
        })
        .collect()
}

fn model_bytes(run: &Path) -> Vec<u8> {
    std::fs::read(run.join("model/model.safetensors")).unwrap()
}

#[test]
fn every_epoch_reshuffles_and_resume_from_any_epoch_is_byte_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let full = tmp.path().join("full");
    let cfg = epochs_config(&tmp.path().join("cfg"), &full);
    let log = tmp.path().join("full-batches.jsonl");
    let summary = ok(modernft(&["train", "--quiet", "--config", cfg.to_str().unwrap()]).env("MODERNFT_BATCH_LOG", &log).timed_output());
    assert!(summary.contains("steps              25 (2.50 epochs)"), "{summary}");
    let steps = batch_log(&log);
    assert_eq!(steps.len(), 25);
    // Each full epoch is a permutation of the 160 rows, and the epochs' orders differ.
    let epoch = |e: u64| steps.iter().filter(|s| s.1 == e).flat_map(|s| s.2.clone()).collect::<Vec<u64>>();
    for e in 0..2 {
        let mut rows = epoch(e);
        rows.sort_unstable();
        assert_eq!(rows, (0..160).collect::<Vec<u64>>(), "epoch {e} sees every row once");
    }
    assert_ne!(epoch(0), epoch(1), "epoch 1 replays epoch 0's order");
    assert_ne!(epoch(1)[..80], epoch(2)[..], "epoch 2 replays an earlier order");
    assert_ne!(epoch(0)[..80], epoch(2)[..], "epoch 2 replays an earlier order");
    // The fractional last epoch ends with an evaluation: at steps 10, 20 and the last, 25.
    let metrics = std::fs::read_to_string(full.join("metrics.jsonl")).unwrap();
    let evals: Vec<u64> = metrics.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).filter(|v| v["type"] == "eval").map(|v| v["step"].as_u64().unwrap()).collect();
    assert_eq!(evals, vec![10, 20, 25]);
    // Resumed from a checkpoint in epoch 1 (mid-epoch), at the boundary into epoch 2, and in
    // epoch 2: the same batches from there on, and byte-identical final weights.
    let want = model_bytes(&full);
    for step in [12usize, 20, 24] {
        let run = tmp.path().join(format!("from-{step}"));
        rewind(&full, &run, step);
        let log2 = tmp.path().join(format!("batches-{step}.jsonl"));
        ok(modernft(&["train", "--quiet", "--resume", run.to_str().unwrap()]).env("MODERNFT_BATCH_LOG", &log2).timed_output());
        let resumed = batch_log(&log2);
        assert_eq!(resumed[..], steps[step..], "resumed from checkpoint-{step}: other batches");
        assert!(model_bytes(&run) == want, "resumed from checkpoint-{step}: other weights");
        // A second --resume of the finished run changes nothing and says so.
        let before = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
        let again = modernft(&["train", "--quiet", "--resume", run.to_str().unwrap()]).timed_output();
        let e = String::from_utf8_lossy(&again.stderr);
        assert!(again.status.success() && e.contains("is complete") && e.contains("nothing to resume"), "{e}");
        assert_eq!(std::fs::read_to_string(run.join("metrics.jsonl")).unwrap(), before, "a finished run's log was changed");
    }
    // Grouped by length, each epoch's groups and their order change too.
    let grouped = tmp.path().join("grouped");
    let cfg_g = epochs_config(&tmp.path().join("cfg-g"), &grouped);
    let log_g = tmp.path().join("grouped-batches.jsonl");
    let args = ["train", "--quiet", "--config", cfg_g.to_str().unwrap(), "--set", "training.group_by_length=true", "--set", "training.max_steps=20"];
    ok(modernft(&args).env("MODERNFT_BATCH_LOG", &log_g).timed_output());
    let g = batch_log(&log_g);
    let epoch_g = |e: u64| g.iter().filter(|s| s.1 == e).flat_map(|s| s.2.clone()).collect::<Vec<u64>>();
    let mut rows = epoch_g(1);
    rows.sort_unstable();
    assert_eq!(rows, (0..160).collect::<Vec<u64>>(), "grouped epoch 1 sees every row once");
    assert_ne!(epoch_g(0), epoch_g(1), "grouped by length, epoch 1 replays epoch 0's order");
    // Two more runs of the same config with two threads: the same bytes (no reduction whose
    // order depends on scheduling).
    for i in 0..2 {
        let again = tmp.path().join(format!("again-{i}"));
        let cfg = epochs_config(&tmp.path().join(format!("cfg-{i}")), &again);
        ok(modernft(&["train", "--quiet", "--config", cfg.to_str().unwrap()]).env("RAYON_NUM_THREADS", "2").timed_output());
        assert!(model_bytes(&again) == want, "a rerun with 2 threads ended with other weights");
    }
}

/// Waits until `ready` holds for the run folder (or the child ends), then SIGKILLs the child.
fn kill_when(child: &mut std::process::Child, run: &Path, ready: impl Fn(&Path) -> bool) -> bool {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if ready(run) {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            return true;
        }
        assert!(start.elapsed() < Duration::from_secs(300), "the run never reached the kill point");
        std::thread::sleep(Duration::from_micros(300));
    }
}

fn has_checkpoint(run: &Path, step: usize) -> bool {
    run.join(format!("checkpoint-{step}/training_state.json")).is_file()
}

fn writing_a_checkpoint(run: &Path) -> bool {
    std::fs::read_dir(run).map(|d| d.filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().starts_with(".checkpoint-"))).unwrap_or(false)
}

#[test]
fn kill_9_at_several_points_over_two_epochs_then_resume_is_byte_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let full = tmp.path().join("full");
    let cfg = epochs_config(&tmp.path().join("a"), &full);
    ok(modernft(&["train", "--quiet", "--config", cfg.to_str().unwrap()]).timed_output());
    let run = tmp.path().join("killed");
    let cfg = epochs_config(&tmp.path().join("b"), &run);
    let quiet = |mut c: Command| {
        c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        c
    };
    // Kill points: just after a checkpoint in epoch 0; in the middle of writing checkpoint-8 (the
    // writer pauses there, MODERNFT_PAUSE_CHECKPOINT, once its model file is written); after a
    // checkpoint in epoch 1; after one in epoch 2. Each resumed run is killed again at the next point.
    let points: Vec<(Box<dyn Fn(&Path) -> bool>, Option<&str>)> = vec![
        (Box::new(|r: &Path| has_checkpoint(r, 4)), None),
        (Box::new(|r: &Path| has_checkpoint(r, 4) && writing_a_checkpoint(r)), Some("8")),
        (Box::new(|r: &Path| has_checkpoint(r, 16)), None),
        (Box::new(|r: &Path| has_checkpoint(r, 21) || has_checkpoint(r, 24)), None),
    ];
    let mut killed = 0;
    let mut first = true;
    for (ready, pause) in points {
        let mut cmd = if first {
            quiet(modernft(&["train", "--quiet", "--config", cfg.to_str().unwrap()]))
        } else {
            quiet(modernft(&["train", "--quiet", "--resume", run.to_str().unwrap()]))
        };
        if let Some(step) = pause {
            cmd.env("MODERNFT_PAUSE_CHECKPOINT", step);
        }
        let mut child = cmd.spawn().unwrap();
        first = false;
        if kill_when(&mut child, &run, ready) {
            killed += 1;
            assert!(!run.join("model").exists() || !modernft::train::trainer::is_complete(&run));
            if pause.is_some() {
                // Killed mid-write: the half-written folder is there, checkpoint-8 is not.
                assert!(writing_a_checkpoint(&run) && !run.join("checkpoint-8").exists());
            }
        } else {
            assert!(pause.is_none(), "the run paused in its checkpoint write was not killed there");
        }
    }
    assert!(killed >= 3, "only {killed} of the kill points were reached before the run ended");
    if !modernft::train::trainer::is_complete(&run) {
        ok(modernft(&["train", "--quiet", "--resume", run.to_str().unwrap()]).timed_output());
    }
    assert!(model_bytes(&run) == model_bytes(&full), "killed and resumed {killed} times: other weights");
    // Each step was logged once, in order.
    let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = log.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).filter(|v| v["type"] == "train").map(|v| v["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, (1..=25).collect::<Vec<u64>>());
}

#[test]
fn a_failed_checkpoint_write_keeps_the_previous_one_and_damaged_checkpoints_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let full = tmp.path().join("full");
    let cfg = epochs_config(&tmp.path().join("a"), &full);
    ok(modernft(&["train", "--quiet", "--config", cfg.to_str().unwrap()]).timed_output());
    // An I/O error injected half way through writing checkpoint-8 (after its model file).
    let run = tmp.path().join("faulty");
    let cfg = epochs_config(&tmp.path().join("b"), &run);
    let res = modernft(&["train", "--quiet", "--config", cfg.to_str().unwrap()]).env("MODERNFT_FAULT_CHECKPOINT", "8").timed_output();
    let e = String::from_utf8_lossy(&res.stderr);
    assert!(!res.status.success() && e.contains("checkpoint-8") && e.contains("injected"), "{e}");
    assert!(has_checkpoint(&run, 4) && !run.join("checkpoint-8").exists(), "the previous checkpoint must stay, the failed one must not appear");
    let leftovers: Vec<String> = std::fs::read_dir(&run).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).filter(|n| n.starts_with('.')).collect();
    assert!(leftovers.is_empty(), "half-written folders left behind: {leftovers:?}");
    ok(modernft(&["train", "--quiet", "--resume", run.to_str().unwrap()]).timed_output());
    assert!(model_bytes(&run) == model_bytes(&full), "resumed after a failed write: other weights");

    // A truncated checkpoint is refused with its name, and the next-older one is offered.
    let damaged = tmp.path().join("damaged");
    rewind(&full, &damaged, 16);
    for (file, keep) in [("model.safetensors", 100usize), ("optimizer.safetensors", 40), ("training_state.json", 10)] {
        let target = damaged.join("checkpoint-16").join(file);
        let good = std::fs::read(&target).unwrap();
        std::fs::write(&target, &good[..keep]).unwrap();
        let res = modernft(&["train", "--quiet", "--resume", damaged.to_str().unwrap()]).timed_output();
        let e = String::from_utf8_lossy(&res.stderr);
        assert!(!res.status.success(), "resumed from a damaged {file}");
        assert!(e.contains("checkpoint-16") && e.contains("damaged") && e.contains("checkpoint-12"), "{file}: {e}");
        std::fs::write(&target, good).unwrap();
    }
    // The advice works: `--resume RUN/checkpoint-12` trains on from step 12 to the same end, and
    // the damaged checkpoint-16 is kept in superseded/, not overwritten.
    std::fs::write(damaged.join("checkpoint-16/training_state.json"), b"{").unwrap();
    let missing = modernft(&["train", "--quiet", "--resume", damaged.join("checkpoint-13").to_str().unwrap()]).timed_output();
    let e = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success() && e.contains("no complete checkpoint-13") && e.contains("checkpoint-12, checkpoint-16"), "{e}");
    let from12 = damaged.join("checkpoint-12");
    let res = modernft(&["train", "--quiet", "--resume", from12.to_str().unwrap()]).timed_output();
    let e = String::from_utf8_lossy(&res.stderr).to_string();
    ok(res);
    assert!(e.contains("resuming") && e.contains("(step 12)") && e.contains("superseded"), "{e}");
    assert!(model_bytes(&damaged) == model_bytes(&full), "resumed from checkpoint-12: other weights");
    assert_eq!(std::fs::read(damaged.join("superseded/checkpoint-16/training_state.json")).unwrap(), b"{");
    // A chosen checkpoint of a finished run is refused (training again would replace its model).
    let res = modernft(&["train", "--quiet", "--resume", damaged.join("checkpoint-20").to_str().unwrap()]).timed_output();
    let e = String::from_utf8_lossy(&res.stderr);
    assert!(!res.status.success() && e.contains("is complete") && e.contains("copy the run folder"), "{e}");
}

#[test]
fn a_run_that_fails_on_its_data_creates_nothing_and_the_fixed_rerun_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let cfg = epochs_config(&tmp.path().join("a"), &run);
    let cfg = cfg.to_str().unwrap();
    for (set, says) in [
        ("data.label_column=\"sentiment\"", "no column `sentiment`"),
        ("training.metric_for_best_model=\"accuracyy\"", "metric_for_best_model"),
        ("training.adam_beta2=1.0", "adam_beta2"),
    ] {
        let res = modernft(&["train", "--quiet", "--config", cfg, "--set", set]).timed_output();
        let e = String::from_utf8_lossy(&res.stderr);
        assert!(!res.status.success() && e.contains(says), "{set}: {e}");
        assert!(!run.exists(), "{set}: the failed run left {}", run.display());
    }
    // An invalid metric is reported at once, not after the first evaluation.
    let res = modernft(&["train", "--quiet", "--config", cfg, "--set", "training.metric_for_best_model=\"mse\""]).timed_output();
    assert!(String::from_utf8_lossy(&res.stderr).contains("accuracy, f1"), "the valid metrics are listed");
    ok(modernft(&["train", "--quiet", "--config", cfg, "--set", "training.epochs=0.2"]).timed_output());
    // --overwrite with a config that fails keeps the run that was there.
    let before = model_bytes(&run);
    let res = modernft(&["train", "--quiet", "--config", cfg, "--overwrite", "--set", "data.label_column=\"nope\""]).timed_output();
    assert!(!res.status.success());
    assert!(model_bytes(&run) == before, "a failed --overwrite lost the previous run");
}

#[test]
fn exported_files_respect_the_umask_and_the_card_says_what_ran() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let cfg = epochs_config(&tmp.path().join("a"), &run);
    // A validation split carved out of the training file, a fractional number of epochs.
    let cfg_text = std::fs::read_to_string(&cfg).unwrap();
    let cfg_text = cfg_text.replace(&format!("validation = \"{}\"\n", tmp.path().join("a/dev.jsonl").display()), "validation_fraction = 0.2\n");
    std::fs::write(&cfg, cfg_text).unwrap();
    ok(modernft(&["train", "--quiet", "--config", cfg.to_str().unwrap(), "--set", "training.epochs=1.5"]).timed_output());
    // The test process's umask is the default 022 (CI and here): files are 0644.
    for f in ["model/model.safetensors", "model/config.json", "checkpoint-4/optimizer.safetensors", "checkpoint-4/model.safetensors", "metrics.jsonl"] {
        let mode = std::fs::metadata(run.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{f} has mode {mode:o}");
    }
    let out = tmp.path().join("export");
    ok(modernft(&["save", run.to_str().unwrap(), "--out", out.to_str().unwrap()]).timed_output());
    assert_eq!(std::fs::metadata(out.join("model.safetensors")).unwrap().permissions().mode() & 0o777, 0o644);
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    // 128 training rows after the carve-out: 8 steps per epoch, 1.5 epochs = 12 steps.
    assert!(card.contains("trained 12 optimizer steps (1.50 epochs)"), "{card}");
    assert!(card.contains("128 training") && card.contains("32 validation (carved out of the training file: 20%"), "{card}");
    assert!(!card.contains("3 epochs") && !card.contains("2.5 epochs"), "{card}");
}

/// Impossible values are refused where the user types them, by name, before any work: flags by
/// clap, config keys (also through --set) by the range check, and sizes against the model.
#[test]
fn impossible_values_are_refused_by_name_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let refused = |args: &[&str], needles: &[&str]| {
        let res = modernft(args).timed_output();
        let e = String::from_utf8_lossy(&res.stderr).to_string();
        assert!(!res.status.success(), "{args:?} was accepted");
        for n in needles {
            assert!(e.contains(n), "{args:?}: {n:?} missing from: {e}");
        }
    };
    let model = fixtures().join("tiny-v4");
    let model = model.to_str().unwrap();
    refused(&["embed", "--model", model, "--batch-size", "0"], &["--batch-size", "at least 1"]);
    refused(&["predict", "--model", model, "--batch-size", "0"], &["--batch-size", "at least 1"]);
    refused(&["predict", "--model", model, "--threshold", "1.5"], &["--threshold", "between 0 and 1"]);
    refused(&["embed", "--model", model, "--max-length", "1"], &["--max-length", "at least 2"]);
    let out = tmp.path().join("run");
    let out_set = format!("output.dir={}", out.display());
    for (set, needle) in [
        ("model.classifier_dropout=1", "model.classifier_dropout"),
        ("training.adam_beta1=1", "training.adam_beta1"),
        ("training.adam_beta2=1.5", "training.adam_beta2"),
        ("training.learning_rate=-1e-3", "training.learning_rate"),
        ("training.batch_size=0", "training.batch_size"),
        ("training.lr_scheduler=\"cosin\"", "training.lr_scheduler"),
    ] {
        refused(&["train", "--config", "configs/quickstart.toml", "--set", &out_set, "--set", set], &[needle]);
        assert!(!out.exists(), "{set}: a refused run left {}", out.display());
    }
    // matryoshka sizes beyond the model's hidden size (128 in the quickstart model).
    let cfg = write_config(
        tmp.path(),
        &format!(
            "task = \"embedding\"\n[model]\nconfig = \"{root}/examples/quickstart/config.json\"\ntokenizer = \"{root}/examples/quickstart/tokenizer.json\"\n\
             [data]\ntrain = \"{root}/examples/quickstart/train.jsonl\"\ntext_pair_column = \"text\"\n[training]\nembedding_loss = \"mnrl\"\nmatryoshka_dims = [256, 64]\n\
             [output]\ndir = \"{out}\"\n",
            root = root().display(),
            out = out.display()
        ),
    );
    refused(&["train", "--config", cfg.to_str().unwrap()], &["matryoshka_dims", "256", "128"]);
    assert!(!out.exists());
}

/// `--report-to tensorboard`: every number of metrics.jsonl is a scalar at its step in the run's
/// event file (nothing else, nothing twice), and a run stopped by a failed checkpoint and resumed
/// ends with the same scalars as an uninterrupted one (timing aside).
#[test]
fn tensorboard_mirrors_the_metrics_and_a_resumed_run_continues_the_same_curves() {
    use modernft::train::tensorboard::{event_files, read_scalars};
    let tmp = tempfile::tempdir().unwrap();
    let full = tmp.path().join("full");
    let cfg = epochs_config(&tmp.path().join("a"), &full);
    ok(modernft(&["train", "--quiet", "--config", cfg.to_str().unwrap(), "--report-to", "tensorboard"]).timed_output());
    let files = event_files(&full);
    assert_eq!(files.len(), 1, "{files:?}");
    let scalars = read_scalars(&files[0]).unwrap();
    let mut expected = Vec::new();
    for line in std::fs::read_to_string(full.join("metrics.jsonl")).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let kind = v["type"].as_str().unwrap();
        let prefix = if kind == "final" { format!("final_{}", v["split"].as_str().unwrap()) } else { kind.to_string() };
        for (k, x) in v.as_object().unwrap() {
            if ["type", "step", "split"].contains(&k.as_str()) || (kind == "eval" && k == "epoch") || !x.is_number() {
                continue;
            }
            expected.push((format!("{prefix}/{}", k.trim_start_matches("eval_")), v["step"].as_u64().unwrap(), x.as_f64().unwrap() as f32));
        }
    }
    assert!(expected.iter().any(|(t, s, _)| t == "eval/accuracy" && *s == 10) && expected.iter().any(|(t, _, _)| t == "final_validation/accuracy"));
    assert_eq!(scalars, expected);
    let bytes = std::fs::read(&files[0]).unwrap();
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"brain.Event:2") && has(b"hyperparameters") && has(b"learning_rate = 0.0005"));

    let run = tmp.path().join("faulty");
    let cfg = epochs_config(&tmp.path().join("b"), &run);
    let res = modernft(&["train", "--quiet", "--config", cfg.to_str().unwrap(), "--report-to", "tensorboard"]).env("MODERNFT_FAULT_CHECKPOINT", "8").timed_output();
    assert!(!res.status.success());
    assert!(read_scalars(&event_files(&run)[0]).unwrap().iter().any(|(_, s, _)| *s > 4), "the failed run logged past checkpoint-4");
    ok(modernft(&["train", "--quiet", "--resume", run.to_str().unwrap()]).timed_output());
    let files = event_files(&run);
    assert_eq!(files.len(), 1, "{files:?}");
    let timing = |v: &[(String, u64, f32)]| v.iter().filter(|(t, _, _)| t != "train/tokens_per_second").cloned().collect::<Vec<_>>();
    assert_eq!(timing(&read_scalars(&files[0]).unwrap()), timing(&scalars));
}
