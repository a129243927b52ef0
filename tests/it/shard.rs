//! `embed`/`predict --shard`: the parts of a sharded run (whole blocks of 32 × batch-size rows),
//! merged by `merge-parts`, are byte for byte what one unsharded run writes; `--shard auto` reads the schedulers' variables; an interrupted
//! shard leaves no part; the errors.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{binary, fixtures, Timed};

/// Every variable `--shard auto` reads, removed so the host's environment cannot leak in.
const SCHEDULER_VARS: [&str; 10] = [
    "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_STEP", "JOB_COMPLETION_INDEX",
    "AWS_BATCH_JOB_ARRAY_INDEX", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "PMI_RANK", "PMI_SIZE",
];

fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(binary());
    c.current_dir(common::repo_root()).args(args);
    for v in SCHEDULER_VARS {
        c.env_remove(v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    command(args, env).timed_output()
}

fn ok(out: Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "failed: {stderr}");
    stderr
}

fn err(out: Output) -> String {
    assert!(!out.status.success(), "expected a failure, got: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// `n` texts of varied lengths (so that batches sort and pad differently in every shard).
fn input(dir: &Path, n: usize) -> PathBuf {
    let words = ["the", "film", "was", "a", "quiet", "wonder", "and", "nobody", "left", "early", "rain", "on", "glass"];
    let text: String = (0..n).map(|i| (0..1 + (i * 7) % 23).map(|j| words[(i + j * 3) % words.len()]).collect::<Vec<_>>().join(" ") + "\n").collect();
    common::write_file(dir, "in.txt", &text)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn sharded_equals_unsharded(dir: &Path, base: &[&str], ext: &str) {
    let full = dir.join(format!("full.{ext}"));
    ok(run(&[base, &["--output", s(&full)]].concat(), &[]));
    let parts = dir.join(format!("parts-{ext}/"));
    for i in 0..3 {
        let shard = format!("{i}/3");
        let note = ok(run(&[base, &["--shard", &shard, "--output", s(&parts)]].concat(), &[]));
        assert!(note.contains(&format!("part-{i:05}-of-00003.{ext}")), "{note}");
    }
    let merged = dir.join(format!("merged.{ext}"));
    let note = ok(run(&["merge-parts", s(&parts), "--output", s(&merged)], &[]));
    assert!(note.contains("merged 3 parts, 300 rows"), "{note}");
    let (a, b) = (std::fs::read(&full).unwrap(), std::fs::read(&merged).unwrap());
    assert!(a == b, "{ext}: the merged parts differ from the unsharded output ({} vs {} bytes)", b.len(), a.len());
    if ext == "jsonl" {
        let rows: Vec<u64> = String::from_utf8(a).unwrap().lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["row"].as_u64().unwrap()).collect();
        assert_eq!(rows, (0..300).collect::<Vec<u64>>(), "every record carries its input row");
        // Whole blocks of 32 × batch-size rows (64 here: 5 blocks of 300 rows, split 1 / 2 / 2).
        let sizes: Vec<usize> = (0..3).map(|i| std::fs::read_to_string(parts.join(format!("part-{i:05}-of-00003.jsonl"))).unwrap().lines().count()).collect();
        assert_eq!(sizes, vec![64, 128, 108]);
    }
}

#[test]
fn three_shards_merged_equal_the_unsharded_run_byte_for_byte() {
    let d = tempfile::tempdir().unwrap();
    let inp = input(d.path(), 300);
    let model = fixtures().join("tiny-v4");
    for ext in ["jsonl", "npy"] {
        sharded_equals_unsharded(d.path(), &["embed", "--model", s(&model), "--input", s(&inp), "--format", ext, "--batch-size", "2"], ext);
    }
    let tagger = fixtures().join("tiny-token");
    let d2 = tempfile::tempdir().unwrap();
    sharded_equals_unsharded(d2.path(), &["predict", "--model", s(&tagger), "--input", s(&inp), "--batch-size", "2"], "jsonl");
}

#[test]
fn shard_auto_reads_each_scheduler_s_variables() {
    let d = tempfile::tempdir().unwrap();
    let inp = input(d.path(), 100);
    let model = fixtures().join("tiny-v4");
    let base = ["embed", "--model", s(&model), "--input", s(&inp), "--batch-size", "1"];
    let explicit = d.path().join("explicit/");
    ok(run(&[&base[..], &["--shard", "1/3", "--output", s(&explicit)]].concat(), &[]));
    let want = std::fs::read(explicit.join("part-00001-of-00003.jsonl")).unwrap();
    assert_eq!(String::from_utf8_lossy(&want).lines().count(), 32);
    let cases: [(&str, &[(&str, &str)]); 5] = [
        ("auto", &[("SLURM_ARRAY_TASK_ID", "4"), ("SLURM_ARRAY_TASK_MIN", "3"), ("SLURM_ARRAY_TASK_COUNT", "3")]),
        ("auto/3", &[("JOB_COMPLETION_INDEX", "1")]),
        ("auto/3", &[("AWS_BATCH_JOB_ARRAY_INDEX", "1")]),
        ("auto", &[("OMPI_COMM_WORLD_RANK", "1"), ("OMPI_COMM_WORLD_SIZE", "3")]),
        ("auto", &[("PMI_RANK", "1"), ("PMI_SIZE", "3")]),
    ];
    for (k, (arg, env)) in cases.iter().enumerate() {
        let out = d.path().join(format!("auto-{k}/"));
        let note = ok(run(&[&base[..], &["--shard", arg, "--output", s(&out)]].concat(), env));
        assert!(note.contains(env[0].0), "the note names where the shard came from: {note}");
        assert!(std::fs::read(out.join("part-00001-of-00003.jsonl")).unwrap() == want, "{env:?}");
    }
    // Missing and inconsistent variables, named.
    let e = err(run(&[&base[..], &["--shard", "auto"]].concat(), &[]));
    assert!(e.contains("SLURM_ARRAY_TASK_ID") && e.contains("JOB_COMPLETION_INDEX"), "{e}");
    let e = err(run(&[&base[..], &["--shard", "auto"]].concat(), &[("JOB_COMPLETION_INDEX", "0")]));
    assert!(e.contains("auto/COUNT"), "{e}");
    let e = err(run(&[&base[..], &["--shard", "auto/4"]].concat(), &[("OMPI_COMM_WORLD_RANK", "0"), ("OMPI_COMM_WORLD_SIZE", "2")]));
    assert!(e.contains("OMPI_COMM_WORLD_SIZE is 2, not 4"), "{e}");
    let e = err(run(&[&base[..], &["--shard", "3/3"]].concat(), &[]));
    assert!(e.contains("from 0 to 2"), "{e}");
}

#[test]
fn an_interrupted_shard_leaves_no_part_and_skip_existing_keeps_a_finished_one() {
    let d = tempfile::tempdir().unwrap();
    let inp = input(d.path(), 60_000);
    let model = fixtures().join("tiny-v4");
    let parts = d.path().join("parts");
    std::fs::create_dir_all(&parts).unwrap();
    let args = ["embed", "--model", s(&model), "--input", s(&inp), "--shard", "0/2", "--output", s(&parts)];
    // Kill -9 once the part is being written (its temporary file has data).
    let mut child = command(&args, &[]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let start = std::time::Instant::now();
    let writing = loop {
        let busy = std::fs::read_dir(&parts).unwrap().flatten().any(|e| e.file_name().to_string_lossy().contains(".tmp-") && e.metadata().is_ok_and(|m| m.len() > 0));
        if busy || child.try_wait().unwrap().is_some() || start.elapsed() > common::PROCESS_TIMEOUT {
            break busy;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(writing, "the shard finished (or hung) before it could be interrupted");
    let part = parts.join("part-00000-of-00002.jsonl");
    assert!(!part.exists(), "an interrupted shard left {}", part.display());
    // The rerun writes it; with --skip-existing a finished part is left alone; otherwise refused.
    let small = input(&d.path().join("small"), 100);
    let args = ["embed", "--model", s(&model), "--input", s(&small), "--batch-size", "1", "--shard", "0/2", "--output", s(&parts), "--skip-existing"];
    ok(run(&args, &[]));
    let first = std::fs::read(&part).unwrap();
    assert_eq!(String::from_utf8_lossy(&first).lines().count(), 64);
    std::fs::write(&part, b"finished earlier\n").unwrap();
    let note = ok(run(&args, &[]));
    assert!(note.contains("left as it is"), "{note}");
    assert_eq!(std::fs::read(&part).unwrap(), b"finished earlier\n");
    let e = err(run(&args[..args.len() - 1], &[]));
    assert!(e.contains("exists") && e.contains("--overwrite") && e.contains("--skip-existing"), "{e}");
    ok(run(&[&args[..args.len() - 1], &["--overwrite"]].concat(), &[]));
    assert!(std::fs::read(&part).unwrap() == first);
}

#[test]
fn merge_parts_refuses_missing_mixed_and_foreign_parts() {
    let d = tempfile::tempdir().unwrap();
    let inp = input(d.path(), 100);
    let model = fixtures().join("tiny-v4");
    let parts = d.path().join("parts/");
    for i in [0, 2] {
        ok(run(&["embed", "--model", s(&model), "--input", s(&inp), "--batch-size", "1", "--shard", &format!("{i}/3"), "--output", s(&parts)], &[]));
    }
    let merged = d.path().join("merged.jsonl");
    let e = err(run(&["merge-parts", s(&parts), "--output", s(&merged)], &[]));
    assert!(e.contains("1 of 3 parts missing: 00001"), "{e}");
    assert!(!merged.exists());
    // A part of another input (a longer file): its size gives it away.
    let other = input(&d.path().join("other"), 200);
    ok(run(&["embed", "--model", s(&model), "--input", s(&other), "--batch-size", "1", "--shard", "1/3", "--output", s(&parts)], &[]));
    let e = err(run(&["merge-parts", s(&parts), "--output", s(&merged)], &[]));
    assert!(e.contains("row 64 where row 32 comes next"), "{e}");
    // Parts of two runs with different counts.
    ok(run(&["embed", "--model", s(&model), "--input", s(&inp), "--shard", "0/2", "--output", s(&parts)], &[]));
    let e = err(run(&["merge-parts", s(&parts), "--output", s(&merged)], &[]));
    assert!(e.contains("different runs"), "{e}");
    // Output rules.
    let e = err(run(&["embed", "--model", s(&model), "--input", s(&inp), "--shard", "0/3", "--output", s(&d.path().join("plain.jsonl"))], &[]));
    assert!(e.contains("names a folder") && e.contains("{index}"), "{e}");
    let e = err(run(&["embed", "--model", s(&model), "--input", s(&inp), "--skip-existing"], &[]));
    assert!(e.contains("--skip-existing needs --output"), "{e}");
    let own = d.path().join("own/part-00001-of-00003.jsonl");
    ok(run(&["embed", "--model", s(&model), "--input", s(&inp), "--shard", "1/3", "--output", s(&own)], &[]));
    assert!(own.is_file());
    let e = err(run(&["embed", "--model", s(&model), "--input", s(&inp), "--shard", "2/3", "--output", s(&own)], &[]));
    assert!(e.contains("names part 1 of 3, but this is shard 2 of 3"), "{e}");
    let named = d.path().join("named/emb-{index}-of-{count}.npy");
    ok(run(&["embed", "--model", s(&model), "--input", s(&inp), "--format", "npy", "--shard", "2/3", "--output", s(&named)], &[]));
    assert!(d.path().join("named/emb-00002-of-00003.npy").is_file());
}
