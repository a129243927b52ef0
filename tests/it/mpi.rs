//! Data-parallel training over MPI (`cargo test --features mpi --test it mpi::`, with Open MPI's
//! `mpirun`: `bash scripts/mpi_deps.sh`). Without the feature, a process that a launcher started as
//! one of several ranks refuses to train.

use std::path::{Path, PathBuf};

use crate::common::{modernft, write_file, Timed};

/// A quickstart classifier on 52 rows: with 8 rows per global batch an epoch is 6 full batches
/// and one of 4, so 20 steps cross two epoch boundaries, shuffled anew each epoch.
fn config(dir: &Path, out: &Path, batch: usize, extra: &str) -> PathBuf {
    let rows: String = std::fs::read_to_string(crate::common::repo_root().join("examples/quickstart/train.jsonl")).unwrap().lines().take(52).map(|l| format!("{l}\n")).collect();
    let train = write_file(dir, "train.jsonl", &rows);
    write_file(
        dir,
        &format!("run-{batch}.toml"),
        &format!(
            r#"
[model]
config = "examples/quickstart/config.json"
tokenizer = "examples/quickstart/tokenizer.json"
[data]
train = "{train}"
max_length = 48
[training]
learning_rate = 1e-3
batch_size = {batch}
max_steps = 20
save_steps = 5
save_total_limit = 10
eval_strategy = "no"
weight_decay = 0.01
warmup_steps = 3
logging_steps = 1
{extra}
[output]
dir = "{out}"
"#,
            train = train.display(),
            out = out.display()
        ),
    )
}

#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
fn weights(path: &Path) -> std::collections::HashMap<String, candle_core::Tensor> {
    candle_core::safetensors::load(path, &candle_core::Device::Cpu).unwrap()
}

#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
/// The largest difference between two sets of weights: (‖a − b‖ / ‖b‖ per tensor, its tensor, the
/// largest |a − b| of any element). The two sums round differently (1e-7 relative); where a
/// gradient is itself rounding noise (≈ 1e-9, e.g. a token seen once whose contributions cancel),
/// AdamW's ε (1e-8) dominates √v and the update is lr · m / ε: there that noise moves a weight by up
/// to ≈ 1e-6, so single elements are compared absolutely.
fn max_relative_difference(a: &Path, b: &Path) -> (f64, String, f64) {
    let (a, b) = (weights(a), weights(b));
    assert_eq!(a.len(), b.len());
    let norm = |t: &candle_core::Tensor| t.to_dtype(candle_core::DType::F64).unwrap().sqr().unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap().sqrt();
    let mut worst = (0f64, String::new(), 0f64);
    for (name, x) in &a {
        let y = &b[name];
        let d = norm(&(x - y).unwrap()) / norm(y).max(1e-12);
        worst.2 = worst.2.max(crate::common::max_abs_diff(x, y));
        if d > worst.0 {
            (worst.0, worst.1) = (d, name.clone());
        }
    }
    worst
}

#[cfg(feature = "mpi")]
mod with_mpi {
    use super::*;

    /// `mpirun -np N modernft ARGS`, one thread per rank, as root where the tests run as root.
    fn mpirun(ranks: &[(usize, &[&str])]) -> std::process::Command {
        let mut c = std::process::Command::new("mpirun");
        c.current_dir(crate::common::repo_root()).args(["--oversubscribe", "--bind-to", "none"]);
        // Open MPI's multi-process colon syntax: a group of ranks per (count, arguments).
        for (i, (n, args)) in ranks.iter().enumerate() {
            if i > 0 {
                c.arg(":");
            }
            c.args(["-np", &n.to_string()]).arg(crate::common::binary()).args(*args);
        }
        c.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            // Containers often forbid the cross-memory attach Open MPI's shared memory tries first.
            .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
            .env("RAYON_NUM_THREADS", "1");
        c
    }

    fn ok(out: std::process::Output) -> (String, String) {
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string());
        assert!(out.status.success(), "failed ({:?}):\n{stdout}\n{stderr}", out.status);
        (stdout, stderr)
    }

    #[test]
    fn two_ranks_of_batch_4_train_as_one_process_of_batch_8_and_resume_on_any_count() {
        let tmp = tempfile::tempdir().unwrap();
        let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
        let single = config(&tmp.path().join("cfg1"), &one, 8, "");
        let double = config(&tmp.path().join("cfg2"), &two, 4, "");
        ok(modernft(&["train", "--quiet", "--config", single.to_str().unwrap()]).env("RAYON_NUM_THREADS", "1").timed_output());
        let (stdout, stderr) = ok(mpirun(&[(2, &["train", "--quiet", "--config", double.to_str().unwrap()])]).timed_output());
        // Rank 0 alone reports, says its notes and writes.
        assert_eq!(stdout.matches("model ").count(), 1, "one summary:\n{stdout}");
        assert_eq!(stderr.matches("device: cpu").count(), 1, "one device note:\n{stderr}");
        assert_eq!(stderr.matches("note: training from scratch").count(), 1, "one note:\n{stderr}");
        let train_lines = |run: &Path| std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().filter(|l| l.contains("\"train\"")).count();
        assert_eq!(train_lines(&two), 20);
        let last: serde_json::Value = serde_json::from_str(std::fs::read_to_string(two.join("metrics.jsonl")).unwrap().lines().filter(|l| l.contains("\"train\"")).last().unwrap()).unwrap();
        assert_eq!(last["processes"], 2);
        assert!(last["allreduce_seconds"].as_f64().unwrap() > 0.0 && last["allreduce_seconds"].as_f64() < last["session_seconds"].as_f64(), "{last}");
        let (d, name, most) = max_relative_difference(&one.join("model/model.safetensors"), &two.join("model/model.safetensors"));
        assert!(d <= 1e-5 && most <= 1e-5, "after 20 steps {name} differs by {d:e} (relative), some weight by {most:e}");
        // Every step's loss equal too (the global batch's mean, not one rank's).
        let losses = |run: &Path| -> Vec<f64> {
            std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).filter(|v| v["type"] == "train").map(|v| v["loss"].as_f64().unwrap()).collect()
        };
        for (s, (a, b)) in losses(&one).iter().zip(losses(&two)).enumerate() {
            assert!((a - b).abs() <= 1e-5 * a.abs(), "step {}: loss {a} vs {b}", s + 1);
        }

        // Resume under MPI from step 10: the same bytes as the uninterrupted 2-rank run.
        let again = tmp.path().join("again");
        crate::common::rewind(&two, &again, 10);
        ok(mpirun(&[(2, &["train", "--quiet", "--resume", again.to_str().unwrap()])]).timed_output());
        assert!(
            std::fs::read(again.join("model/model.safetensors")).unwrap() == std::fs::read(two.join("model/model.safetensors")).unwrap(),
            "the resumed 2-rank run ends with other weights than the uninterrupted one"
        );
        // ... and on one process: the global batch stays 8 rows.
        let alone = tmp.path().join("alone");
        crate::common::rewind(&two, &alone, 10);
        let out = modernft(&["train", "--quiet", "--resume", alone.to_str().unwrap()]).env("RAYON_NUM_THREADS", "1").timed_output();
        let (_, stderr) = ok(out);
        assert!(stderr.contains("started on 2 processes and resumes on 1"), "{stderr}");
        let (d, name, most) = max_relative_difference(&alone.join("model/model.safetensors"), &two.join("model/model.safetensors"));
        assert!(d <= 1e-5 && most <= 1e-5, "resumed on one process: {name} differs by {d:e}, some weight by {most:e}");
        // ... and on three ranks (8 rows as 3 + 3 + 2).
        let three = tmp.path().join("three");
        crate::common::rewind(&two, &three, 15);
        ok(mpirun(&[(3, &["train", "--quiet", "--resume", three.to_str().unwrap()])]).timed_output());
        let (d, name, most) = max_relative_difference(&three.join("model/model.safetensors"), &two.join("model/model.safetensors"));
        assert!(d <= 1e-5 && most <= 1e-5, "resumed on three ranks: {name} differs by {d:e}, some weight by {most:e}");
    }

    #[test]
    fn evaluation_and_early_stopping_agree_with_one_process() {
        let tmp = tempfile::tempdir().unwrap();
        let dev: String = std::fs::read_to_string(crate::common::repo_root().join("examples/quickstart/dev.jsonl")).unwrap().lines().take(24).map(|l| format!("{l}\n")).collect();
        let dev = write_file(tmp.path(), "dev.jsonl", &dev);
        // Evaluate every 4 steps on 24 rows; stop after 2 evaluations without a lower loss.
        let fix = |p: PathBuf| {
            let text = std::fs::read_to_string(&p)
                .unwrap()
                .replace("max_length = 48", &format!("max_length = 48\nvalidation = \"{}\"", dev.display()))
                .replace("max_steps = 20", "max_steps = 60\neval_steps = 4\nearly_stopping_patience = 2\nmetric_for_best_model = \"loss\"")
                .replace("eval_strategy = \"no\"", "eval_strategy = \"steps\"");
            std::fs::write(&p, text).unwrap();
            p
        };
        let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
        let single = fix(config(&tmp.path().join("cfg1"), &one, 8, ""));
        let double = fix(config(&tmp.path().join("cfg2"), &two, 4, ""));
        ok(modernft(&["train", "--quiet", "--config", single.to_str().unwrap()]).env("RAYON_NUM_THREADS", "1").timed_output());
        ok(mpirun(&[(2, &["train", "--quiet", "--config", double.to_str().unwrap()])]).timed_output());
        let evals = |run: &Path| -> Vec<(u64, f64)> {
            std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).filter(|v| v["type"] == "eval").map(|v| (v["step"].as_u64().unwrap(), v["eval_loss"].as_f64().unwrap())).collect()
        };
        let (a, b) = (evals(&one), evals(&two));
        assert!(a.len() >= 2 && a.last().unwrap().0 < 60, "one process did not stop early: {a:?}");
        assert_eq!(a.iter().map(|e| e.0).collect::<Vec<_>>(), b.iter().map(|e| e.0).collect::<Vec<_>>(), "evaluations (once each) and the stop differ");
        for ((step, x), (_, y)) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-5 * x.abs(), "step {step}: eval loss {x} vs {y}");
        }
        let state = |run: &Path| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(run.join("trainer_state.json")).unwrap()).unwrap() };
        assert_eq!(state(&one)["best_model_checkpoint"], state(&two)["best_model_checkpoint"]);
        assert_eq!(state(&two)["stopped_early"], true);
    }

    /// Trains `config` (the tiny fixture model, 6 steps, evaluated at 3 and 6 and at the end on a
    /// split of 25 rows, 5 at a time) as one process with batch 8 and as 2 ranks with batch 4;
    /// returns both runs' evaluation lines.
    fn evaluations(tmp: &Path, name: &str, config: &str, sets: &[String]) -> [Vec<serde_json::Value>; 2] {
        let root = crate::common::repo_root();
        [(1, 8), (2, 4)].map(|(ranks, batch)| {
            let out = tmp.join(format!("{name}-{ranks}"));
            let mut args: Vec<String> = ["train", "--quiet", "--config", root.join(config).to_str().unwrap()].map(String::from).to_vec();
            for kv in [
                format!("model.config={}", root.join("tests/fixtures/tiny-v4/config.json").display()),
                format!("model.tokenizer={}", root.join("tests/fixtures/tiny-v4/tokenizer.json").display()),
                format!("output.dir={}", out.display()),
                format!("training.batch_size={batch}"),
                "training.max_steps=6".into(),
                "training.eval_strategy=steps".into(),
                "training.eval_steps=3".into(),
                "training.eval_batch_size=5".into(),
                "training.logging_steps=1".into(),
                "data.max_length=32".into(),
            ]
            .into_iter()
            .chain(sets.iter().cloned())
            {
                args.extend(["--set".to_string(), kv]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            match ranks {
                1 => ok(modernft(&args).env("RAYON_NUM_THREADS", "1").timed_output()),
                _ => ok(mpirun(&[(ranks, &args)]).timed_output()),
            };
            std::fs::read_to_string(out.join("metrics.jsonl"))
                .unwrap()
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|v| v["type"] == "eval" || v["type"] == "final")
                .collect()
        })
    }

    fn assert_same_scores(task: &str, [one, two]: &[Vec<serde_json::Value>; 2]) {
        assert_eq!(one.len(), 3, "{task}: evaluations at steps 3 and 6 and the final one: {one:?}");
        assert_eq!(one.len(), two.len(), "{task}: {one:?}\n{two:?}");
        for (a, b) in one.iter().zip(two) {
            let keys: Vec<&String> = a.as_object().unwrap().keys().collect();
            assert_eq!(keys, b.as_object().unwrap().keys().collect::<Vec<_>>(), "{task}");
            for k in keys {
                match (a[k].as_f64(), b[k].as_f64()) {
                    (Some(x), Some(y)) => assert!((x - y).abs() <= 1e-4 * x.abs().max(1e-2), "{task} step {}: {k} {x} vs {y}", a["step"]),
                    _ => assert_eq!(a[k], b[k], "{task}: {k}"),
                }
            }
        }
    }

    #[test]
    fn sharded_evaluation_scores_every_task_as_one_process() {
        let tmp = tempfile::tempdir().unwrap();
        let texts: Vec<String> = std::fs::read_to_string(crate::common::repo_root().join("examples/quickstart/train.jsonl"))
            .unwrap()
            .lines()
            .take(91)
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["text"].as_str().unwrap().to_string())
            .collect();
        // Token classification: per-token logits of rows of different lengths, entity F1.
        let ner_train = write_file(tmp.path(), "ner-train.jsonl", &crate::common::ner_rows(48));
        let ner_dev: String = (0..25)
            .map(|i| {
                let words: Vec<&str> = texts[i].split_whitespace().take(3 + i % 7).collect();
                let tags: Vec<&str> = (0..words.len()).map(|j| ["O", "B-per", "I-per", "B-loc"][(i + j) % 4]).collect();
                format!("{}\n", serde_json::json!({"tokens": words, "tags": tags}))
            })
            .collect();
        let ner_dev = write_file(tmp.path(), "ner-dev.jsonl", &ner_dev);
        let ner = evaluations(tmp.path(), "ner", "configs/wnut17-ner.toml", &[format!("data.train={}", ner_train.display()), format!("data.validation={}", ner_dev.display()), "training.learning_rate=3e-3".into()]);
        assert!(ner[0][2]["f1"].is_number(), "{:?}", ner[0][2]);
        assert_same_scores("token classification", &ner);
        // Masked LM: loss, accuracy and perplexity summed over the ranks' masked tokens.
        let mlm_train = write_file(tmp.path(), "mlm-train.txt", &(texts[..64].join("\n") + "\n"));
        let mlm_dev = write_file(tmp.path(), "mlm-dev.txt", &(texts[64..89].join("\n") + "\n"));
        let mlm = evaluations(tmp.path(), "mlm", "configs/mlm.toml", &[format!("data.train={}", mlm_train.display()), format!("data.validation={}", mlm_dev.display()), "data.group_texts=false".into(), "training.learning_rate=2e-3".into()]);
        assert!(mlm[0][2]["perplexity"].is_number(), "{:?}", mlm[0][2]);
        assert_same_scores("masked LM", &mlm);
        // Embeddings (STS): both texts of every pair embedded in shards. CoSENT compares the pairs
        // of a rank's own batch, so the weights barely move (lr 1e-9): only the evaluation differs.
        let pairs: String = (0..25).map(|i| format!("{}\n", serde_json::json!({"text_a": texts[i], "text_b": texts[i + 1], "score": (i % 6) as f64}))).collect();
        let pairs = write_file(tmp.path(), "pairs.jsonl", &pairs);
        let sts = evaluations(tmp.path(), "sts", "configs/stsb-embedding.toml", &[format!("data.train={}", pairs.display()), format!("data.validation={}", pairs.display()), "training.matryoshka_dims=[32, 16]".into(), "training.learning_rate=1e-9".into()]);
        assert!(sts[0][2]["spearman"].is_number(), "{:?}", sts[0][2]);
        assert_same_scores("embedding", &sts);
    }

    #[test]
    fn a_launcher_whose_mpi_is_not_ours_is_refused() {
        // MPICH's Hydra sets PMI_*; an Open MPI build started by it initialises as a world of one.
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        let cfg = config(&tmp.path().join("cfg"), &out, 4, "");
        let result = modernft(&["train", "--config", cfg.to_str().unwrap()]).env("PMI_RANK", "0").env("PMI_SIZE", "2").env("OMPI_ALLOW_RUN_AS_ROOT", "1").env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1").timed_output();
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(!result.status.success() && stderr.contains("rank 0 of 2 (PMI_SIZE) but MPI says rank 0 of 1"), "{stderr}");
        assert!(!out.exists());
    }

    /// The ways a job is asked to stop: `kill -USR1 <mpirun>` (forwarded to every rank, nothing
    /// killed), Ctrl-C on `mpirun` (SIGCONT, then SIGTERM to every rank `odls_base_sigkill_timeout`
    /// seconds later, SIGKILL as many seconds after that), and a signal that reaches one rank only.
    /// Every rank stops at the same step after rank 0's checkpoint, MPI ends cleanly with one message
    /// (rank 0's; on Ctrl-C `mpirun` no longer passes the ranks' output on), and the job resumed on 2
    /// ranks ends with the uninterrupted job's bytes.
    #[test]
    fn a_stop_signal_checkpoints_every_rank_at_one_step_and_the_job_resumes_exactly() {
        let tmp = tempfile::tempdir().unwrap();
        let steps = 800;
        let long = |name: &str| {
            let cfg = config(&tmp.path().join(format!("cfg-{name}")), &tmp.path().join(name), 4, "");
            let text = std::fs::read_to_string(&cfg).unwrap().replace("max_steps = 20", &format!("max_steps = {steps}")).replace("save_steps = 5", "save_steps = 0");
            std::fs::write(&cfg, text).unwrap();
            (cfg, tmp.path().join(name))
        };
        let (cfg, whole) = long("whole");
        ok(mpirun(&[(2, &["train", "--quiet", "--config", cfg.to_str().unwrap()])]).timed_output());
        let binary = crate::common::binary();
        for how in ["USR1 to mpirun", "Ctrl-C on mpirun", "USR1 to rank 1"] {
            let (cfg, run) = long(&how.replace(' ', "-"));
            let args = ["train", "--config", cfg.to_str().unwrap()];
            let mut job = match how {
                "USR1 to rank 1" => {
                    // Rank 1 signals itself once training has begun (`exec` keeps the shell's pid).
                    let mut job = mpirun(&[(1, &args)]);
                    job.args([":", "-np", "1", "sh", "-c", &format!("(while [ ! -s '{}' ]; do sleep 0.01; done; kill -USR1 $$) & exec '{}' train --config '{}'", run.join("metrics.jsonl").display(), binary.display(), cfg.display())]);
                    job
                }
                _ => mpirun(&[(2, &args)]),
            };
            // SIGTERM 2 s after Ctrl-C, SIGKILL 2 s later: time enough for a step and a checkpoint here.
            job.env("OMPI_MCA_odls_base_sigkill_timeout", "2").stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
            let child = job.spawn().unwrap();
            if how != "USR1 to rank 1" {
                let start = std::time::Instant::now();
                while std::fs::read_to_string(run.join("metrics.jsonl")).map(|s| s.is_empty()).unwrap_or(true) {
                    assert!(start.elapsed() < std::time::Duration::from_secs(300), "training never started");
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                let signal = if how.starts_with("Ctrl-C") { "-INT" } else { "-USR1" };
                assert!(std::process::Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap().success());
            }
            let out = crate::common::wait_child_timed(child, how);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{how}: the job did not stop:\n{stderr}");
            let by = match how {
                "USR1 to mpirun" => "SIGUSR1",
                "Ctrl-C on mpirun" => "SIGTERM",
                _ => "a signal to another rank",
            };
            if how.starts_with("Ctrl-C") {
                assert_eq!(stderr.matches("SIGTERM: saving a checkpoint").count(), 1, "{how}: rank 0's notice:\n{stderr}");
            } else {
                assert_eq!(stderr.matches("interrupted by").count(), 1, "{how}: one message, rank 0's:\n{stderr}");
                assert!(stderr.contains(&format!("interrupted by {by} at step")), "{how}:\n{stderr}");
            }
            assert!(!stderr.contains("MPI_ABORT") && !stderr.contains("error (rank"), "{how}: a clean end, not an abort:\n{stderr}");
            // The checkpoint of the step it stopped at (the others are the epochs' ends: 7 steps each).
            let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("trainer_state.json")).unwrap()).unwrap();
            let at = state["global_step"].as_u64().unwrap() as usize;
            let train_lines = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().filter(|l| l.contains("\"train\"")).count();
            assert!(at < steps && at == train_lines && state["last_checkpoint"] == format!("checkpoint-{at}").as_str(), "{how}: stopped at step {at} of {steps}, {train_lines} steps logged: {state}");
            ok(mpirun(&[(2, &["train", "--quiet", "--resume", run.to_str().unwrap()])]).timed_output());
            assert!(
                std::fs::read(run.join("model/model.safetensors")).unwrap() == std::fs::read(whole.join("model/model.safetensors")).unwrap(),
                "{how}: stopped at step {at} and resumed, the job ends with other weights than the uninterrupted one"
            );
        }
    }

    #[test]
    fn a_rank_that_fails_stops_every_rank_with_its_message() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        let good = config(&tmp.path().join("good"), &out, 4, "");
        // Rank 1 reads a config whose training file is missing (a node without the data).
        let bad_dir = tmp.path().join("bad");
        let bad = config(&bad_dir, &out, 4, "");
        std::fs::remove_file(bad_dir.join("train.jsonl")).unwrap();
        let started = std::time::Instant::now();
        let result = mpirun(&[(1, &["train", "--quiet", "--config", good.to_str().unwrap()]), (1, &["train", "--quiet", "--config", bad.to_str().unwrap()])]).timed_output();
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(!result.status.success(), "the job succeeded:\n{stderr}");
        assert!(stderr.contains("error (rank 1 of 2)") && stderr.contains("train.jsonl"), "the failing rank's message:\n{stderr}");
        assert!(started.elapsed() < std::time::Duration::from_secs(120), "the job took {:?} to stop", started.elapsed());
    }

    #[test]
    fn a_rank_killed_mid_training_ends_the_job() {
        // What Linux's OOM killer does to a rank out of memory: SIGKILL, no message, mid-step. The
        // other rank, waiting in an all-reduce, must not wait forever.
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(&tmp.path().join("cfg"), &tmp.path().join("run"), 4, "");
        let text = std::fs::read_to_string(&cfg).unwrap().replace("max_steps = 20", "max_steps = 1000000").replace("save_steps = 5", "save_steps = 1000000");
        std::fs::write(&cfg, text).unwrap();
        let binary = crate::common::binary();
        let started = std::time::Instant::now();
        let mut job = mpirun(&[(1, &["train", "--quiet", "--config", cfg.to_str().unwrap()])]);
        // Rank 1: the same training, killed 4 s in (`exec` keeps the shell's pid, which `kill` names).
        job.args([":", "-np", "1", "sh", "-c", &format!("(sleep 4; kill -9 $$) & exec '{}' train --quiet --config '{}'", binary.display(), cfg.display())]);
        let result = job.timed_output();
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(!result.status.success(), "the job succeeded:\n{stderr}");
        assert!(stderr.contains("signal 9"), "the launcher names the killed rank's signal:\n{stderr}");
        assert!(started.elapsed() < std::time::Duration::from_secs(120), "the job took {:?} to stop", started.elapsed());
    }
}

#[cfg(not(feature = "mpi"))]
#[test]
fn a_build_without_mpi_refuses_to_run_as_one_of_several_ranks() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let cfg = config(&tmp.path().join("cfg"), &out, 4, "");
    for (rank, size) in [("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"), ("PMI_RANK", "PMI_SIZE"), ("PMIX_RANK", "SLURM_NTASKS")] {
        let result = modernft(&["train", "--config", cfg.to_str().unwrap()]).env(rank, "1").env(size, "2").timed_output();
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(!result.status.success());
        assert!(stderr.contains(&format!("rank 1 of 2 ({size}=2)")) && stderr.contains("--features mpi"), "{stderr}");
        assert!(!out.exists(), "nothing is written");
    }
    // One rank of one is just a process.
    let result = modernft(&["train", "--quiet", "--config", cfg.to_str().unwrap(), "--set", "training.max_steps=2"]).env("OMPI_COMM_WORLD_RANK", "0").env("OMPI_COMM_WORLD_SIZE", "1").timed_output();
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
}
