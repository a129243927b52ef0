//! Batch inference split among the tasks of a job array: `embed`/`predict --shard I/N` (or
//! `--shard auto`, read from the scheduler's environment) take a contiguous range of the input
//! rows, write their part atomically (`part-00003-of-00016.jsonl`), and `merge-parts` checks and
//! concatenates the parts into what one unsharded run writes.

use std::io::{BufRead, BufReader, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::error::{Context, Result};

/// Task `index` (0-based) of `count`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
    /// Where the numbers came from, for messages (`--shard 3/16`, `SLURM_ARRAY_TASK_ID=…`).
    pub origin: String,
}

/// The schedulers `--shard auto` knows, in the order it looks for them: (name, index variable,
/// count variable if the scheduler sets one).
const SCHEDULERS: [(&str, &str, Option<&str>); 5] = [
    ("Slurm job array", "SLURM_ARRAY_TASK_ID", Some("SLURM_ARRAY_TASK_COUNT")),
    ("Kubernetes Indexed Job", "JOB_COMPLETION_INDEX", None),
    ("AWS Batch array job", "AWS_BATCH_JOB_ARRAY_INDEX", None),
    ("Open MPI", "OMPI_COMM_WORLD_RANK", Some("OMPI_COMM_WORLD_SIZE")),
    ("MPI (PMI)", "PMI_RANK", Some("PMI_SIZE")),
];

fn number(value: &str, what: &str) -> Result<usize> {
    value.trim().parse::<usize>().map_err(|_| crate::err!("{what} is `{value}`, not a whole number"))
}

impl Shard {
    /// `I/N`, `auto` or `auto/N`; `env` reads the environment (a closure, so tests can fake it).
    pub fn parse(arg: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Shard> {
        let (head, count) = match arg.split_once('/') {
            Some((h, n)) => (h.trim(), Some(number(n, &format!("--shard {arg}: the count"))?)),
            None => (arg.trim(), None),
        };
        if count == Some(0) {
            crate::bail!("--shard {arg}: the count must be at least 1");
        }
        if head != "auto" {
            let Some(count) = count else {
                crate::bail!("--shard {arg}: give INDEX/COUNT (0-based, e.g. 3/16), or `auto` to read them from the scheduler");
            };
            let index = number(head, &format!("--shard {arg}: the index"))?;
            if index >= count {
                crate::bail!("--shard {arg}: the index runs from 0 to {} for {count} shards", count - 1);
            }
            return Ok(Shard { index, count, origin: format!("--shard {arg}") });
        }
        let found = SCHEDULERS.iter().find(|(_, var, _)| env(var).is_some());
        let Some(&(scheduler, var, count_var)) = found else {
            let names: Vec<&str> = SCHEDULERS.iter().map(|s| s.1).collect();
            crate::bail!("--shard {arg}: none of the schedulers' variables is set ({}); give --shard INDEX/COUNT", names.join(", "));
        };
        let raw = env(var).unwrap_or_default();
        let mut index = number(&raw, &format!("{var} ({scheduler})"))?;
        let mut origin = format!("{var}={raw}");
        if var == "SLURM_ARRAY_TASK_ID" {
            // Array indices run from SLURM_ARRAY_TASK_MIN in steps of SLURM_ARRAY_TASK_STEP.
            let min = match env("SLURM_ARRAY_TASK_MIN") {
                Some(v) => number(&v, "SLURM_ARRAY_TASK_MIN")?,
                None => crate::bail!("--shard {arg}: SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_MIN is not; give --shard INDEX/COUNT"),
            };
            let step = match env("SLURM_ARRAY_TASK_STEP") {
                Some(v) => number(&v, "SLURM_ARRAY_TASK_STEP")?.max(1),
                None => 1,
            };
            if index < min || (index - min) % step != 0 {
                crate::bail!("--shard {arg}: SLURM_ARRAY_TASK_ID={raw} is not SLURM_ARRAY_TASK_MIN={min} plus a multiple of the step {step}");
            }
            index = (index - min) / step;
            origin = format!("SLURM_ARRAY_TASK_ID={raw} (from SLURM_ARRAY_TASK_MIN={min})");
        }
        let from_env = match count_var {
            Some(cv) => match env(cv) {
                Some(v) => Some((number(&v, cv)?, cv)),
                None if count.is_none() => crate::bail!("--shard {arg}: {var} is set but {cv} is not; give --shard auto/COUNT"),
                None => None,
            },
            None => None,
        };
        let count = match (count, from_env) {
            (Some(n), Some((m, cv))) if n != m => crate::bail!("--shard {arg}: {cv} is {m}, not {n}"),
            (Some(n), _) | (None, Some((n, _))) => n,
            (None, None) => crate::bail!("--shard {arg}: a {scheduler} does not say how many tasks it has ({var} is set); give --shard auto/COUNT"),
        };
        if count == 0 {
            crate::bail!("--shard {arg}: {scheduler} reports 0 tasks");
        }
        if index >= count {
            crate::bail!("--shard {arg}: {origin} is task {index}, but there are {count} tasks");
        }
        Ok(Shard { index, count, origin })
    }

    /// The rows of `total` this shard takes: contiguous, in order, made of whole blocks of `block`
    /// rows (the shards' block counts differ by one at most). A command sorts its inputs by length
    /// inside such blocks, so a shard's batches are exactly the unsharded run's, and its outputs
    /// the same bits.
    pub fn rows(&self, total: usize, block: usize) -> Range<usize> {
        let block = block.max(1);
        let blocks = total.div_ceil(block);
        let at = |i: usize| ((i as u128 * blocks as u128 / self.count as u128) as usize * block).min(total);
        at(self.index)..at(self.index + 1)
    }

    /// `part-00003-of-00016.EXT`.
    pub fn part_name(&self, ext: &str) -> String {
        format!("part-{:05}-of-{:05}.{ext}", self.index, self.count)
    }
}

/// Where a command's output goes.
pub enum Output {
    Stdout,
    /// A file written atomically.
    File(AtomicFile),
    /// `--skip-existing` and the part is there already.
    Skip(PathBuf),
}

/// The output of a run: `--output` as given; for a shard, the part inside the folder it names, or
/// the shard's own part name given in full, or a name whose `{index}`/`{count}` are replaced by the
/// zero-padded numbers (any other name is refused: every shard would write it).
pub fn output(path: Option<&Path>, shard: Option<&Shard>, ext: &str, overwrite: bool, skip_existing: bool) -> Result<Output> {
    let Some(path) = path else {
        if skip_existing {
            crate::bail!("--skip-existing needs --output (a file to look for)");
        }
        return Ok(Output::Stdout);
    };
    let text = path.to_string_lossy();
    let target = match shard {
        Some(s) if text.contains("{index}") => PathBuf::from(text.replace("{index}", &format!("{:05}", s.index)).replace("{count}", &format!("{:05}", s.count))),
        Some(s) if path.is_dir() || text.ends_with('/') => path.join(s.part_name(ext)),
        Some(s) => match part_of(path) {
            Some(p) if (p.index, p.count) == (s.index, s.count) => path.to_path_buf(),
            Some(p) => crate::bail!("--output {}: names part {} of {}, but this is shard {} of {} ({})", path.display(), p.index, p.count, s.index, s.count, s.origin),
            None => crate::bail!(
            "--output {}: with --shard, --output names a folder (each shard writes part-IIIII-of-NNNNN.{ext} in it), the shard's own part (part-{:05}-of-{:05}.{ext}), or a file name holding {{index}}",
                path.display(),
                s.index,
                s.count
            ),
        },
        None => path.to_path_buf(),
    };
    if target.exists() {
        if skip_existing {
            return Ok(Output::Skip(target));
        }
        if !overwrite {
            crate::bail!("{} exists; --overwrite replaces it, --skip-existing leaves it", target.display());
        }
    }
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create the folder {}", dir.display()))?;
    }
    Ok(Output::File(AtomicFile::create(&target)?))
}

/// A file written under a temporary name beside it (`.NAME.tmp-PID`) and renamed into place by
/// `commit`: a run that stops early leaves no file under the final name (dropped uncommitted, the
/// temporary file is removed; a killed process leaves only the hidden temporary one).
pub struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
}

impl AtomicFile {
    pub fn create(path: &Path) -> Result<AtomicFile> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        let file = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        Ok(AtomicFile { path: path.to_path_buf(), tmp, file: Some(std::io::BufWriter::new(file)) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes, syncs and renames the file into place.
    pub fn commit(mut self) -> Result<()> {
        if let Some(w) = self.file.take() {
            let file = w.into_inner().map_err(|e| crate::err!("cannot write {}: {}", self.tmp.display(), e.error()))?;
            file.sync_all().with_context(|| format!("cannot write {}", self.tmp.display()))?;
        }
        std::fs::rename(&self.tmp, &self.path).with_context(|| format!("cannot move {} into place", self.path.display()))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut self.file {
            Some(f) => f.write(buf),
            None => Err(std::io::Error::other("the file is closed")),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// One part named `part-IIIII-of-NNNNN.EXT`.
struct Part {
    path: PathBuf,
    index: usize,
    count: usize,
    ext: String,
}

fn part_of(path: &Path) -> Option<Part> {
    let name = path.file_name()?.to_str()?;
    let rest = name.strip_prefix("part-")?;
    let (index, rest) = rest.split_once("-of-")?;
    let (count, ext) = rest.split_once('.')?;
    let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !ok(index) || !ok(count) {
        return None;
    }
    Some(Part { path: path.to_path_buf(), index: index.parse().ok()?, count: count.parse().ok()?, ext: ext.to_string() })
}

/// The parts named by `inputs` (files, or folders whose `part-*` files are taken), checked: one
/// count N, one extension, each index 0..N-1 exactly once.
fn collect_parts(inputs: &[PathBuf]) -> Result<Vec<Part>> {
    let mut parts = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let entries = std::fs::read_dir(p).with_context(|| format!("cannot list {}", p.display()))?;
            for e in entries {
                let path = e.with_context(|| format!("cannot list {}", p.display()))?.path();
                if let Some(part) = part_of(&path) {
                    parts.push(part);
                }
            }
        } else {
            match part_of(p) {
                Some(part) if p.is_file() => parts.push(part),
                Some(_) => crate::bail!("{}: no such file", p.display()),
                None => crate::bail!("{}: not a part (parts are named part-IIIII-of-NNNNN.jsonl or .npy)", p.display()),
            }
        }
    }
    let Some(first) = parts.first() else {
        crate::bail!("no part-IIIII-of-NNNNN files in {}", inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "));
    };
    let (count, ext) = (first.count, first.ext.clone());
    if let Some(other) = parts.iter().find(|p| p.count != count || p.ext != ext) {
        crate::bail!("{} and {} belong to different runs (another count or format); merge one run's parts", first.path.display(), other.path.display());
    }
    parts.sort_by_key(|p| p.index);
    for w in parts.windows(2) {
        if w[0].index == w[1].index {
            crate::bail!("part {} is named twice: {} and {}", w[0].index, w[0].path.display(), w[1].path.display());
        }
    }
    let missing: Vec<String> = (0..count).filter(|i| parts.binary_search_by_key(i, |p| p.index).is_err()).map(|i| format!("{i:05}")).collect();
    if !missing.is_empty() {
        crate::bail!("{} of {count} parts missing: {} (a shard still running or failed; rerun it with --skip-existing to leave the finished ones)", missing.len(), missing.join(", "));
    }
    if let Some(p) = parts.iter().find(|p| p.index >= count) {
        crate::bail!("{}: index {} is out of 0..{count}", p.path.display(), p.index);
    }
    Ok(parts)
}

/// `modernft merge-parts`: the parts of one sharded run, checked and concatenated into `out`.
/// Returns (parts, rows).
pub fn merge(inputs: &[PathBuf], out: &mut dyn Write) -> Result<(usize, usize)> {
    let parts = collect_parts(inputs)?;
    match parts[0].ext.as_str() {
        "jsonl" => merge_jsonl(&parts, out),
        "npy" => merge_npy(&parts, out),
        other => crate::bail!("{}: parts are .jsonl or .npy, not .{other}", parts[0].path.display()),
    }
}

/// JSONL parts: every line a JSON object whose `row` continues the previous line's (a part of
/// another input or run breaks the sequence).
fn merge_jsonl(parts: &[Part], out: &mut dyn Write) -> Result<(usize, usize)> {
    let mut next = 0usize;
    for p in parts {
        let file = std::fs::File::open(&p.path).with_context(|| format!("cannot open {}", p.path.display()))?;
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("cannot read {}", p.path.display()))?;
            let v: serde_json::Value = serde_json::from_str(&line).with_context(|| format!("{}, line {}: not a JSON record (a damaged part: rerun its shard)", p.path.display(), i + 1))?;
            match v.get("row").and_then(|r| r.as_u64()) {
                Some(r) if r as usize == next => {}
                Some(r) => crate::bail!("{}, line {}: row {r} where row {next} comes next (a part of another run, or damaged)", p.path.display(), i + 1),
                None => crate::bail!("{}, line {}: no `row` field (not written by a sharded modernft run)", p.path.display(), i + 1),
            }
            writeln!(out, "{line}")?;
            next += 1;
        }
    }
    Ok((parts.len(), next))
}

/// `.npy` parts: float32 (rows, cols) arrays with one `cols`, each exactly as long as its header
/// says, rewritten as one array.
fn merge_npy(parts: &[Part], out: &mut dyn Write) -> Result<(usize, usize)> {
    let mut headers = Vec::with_capacity(parts.len());
    for p in parts {
        headers.push(npy_shape(&p.path)?);
    }
    let cols = headers[0].1;
    if let Some((p, h)) = parts.iter().zip(&headers).find(|(_, h)| h.1 != cols) {
        crate::bail!("{} holds vectors of {} values, {} of {cols}", p.path.display(), h.1, parts[0].path.display());
    }
    let rows = headers.iter().try_fold(0usize, |n, h| n.checked_add(h.0)).ok_or_else(|| crate::err!("{}: the parts hold more rows than can be counted", parts[0].path.display()))?;
    crate::commands::embed::write_npy_header(out, rows, cols)?;
    for (p, &(r, c, offset)) in parts.iter().zip(&headers) {
        let mut file = std::fs::File::open(&p.path).with_context(|| format!("cannot open {}", p.path.display()))?;
        std::io::copy(&mut (&mut file).take(offset as u64), &mut std::io::sink())?;
        let copied = std::io::copy(&mut file.take((r * c * 4) as u64), out)?;
        if copied != (r * c * 4) as u64 {
            crate::bail!("{}: {copied} bytes of data where its header promises {} (a damaged part: rerun its shard)", p.path.display(), r * c * 4);
        }
    }
    Ok((parts.len(), rows))
}

/// (rows, cols, data offset) of a float32 C-order `.npy` file.
fn npy_shape(path: &Path) -> Result<(usize, usize, usize)> {
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut head = [0u8; 10];
    file.read_exact(&mut head).with_context(|| format!("{}: too short for a .npy file", path.display()))?;
    if &head[..6] != b"\x93NUMPY" || head[6] != 1 {
        crate::bail!("{}: not a version 1.0 .npy file", path.display());
    }
    let len = u16::from_le_bytes([head[8], head[9]]) as usize;
    let mut header = vec![0u8; len];
    file.read_exact(&mut header).with_context(|| format!("{}: its header is cut short", path.display()))?;
    let header = String::from_utf8_lossy(&header);
    if !header.contains("'descr': '<f4'") || !header.contains("'fortran_order': False") {
        crate::bail!("{}: not a float32 C-order array ({})", path.display(), header.trim());
    }
    let shape = header.split("'shape': (").nth(1).and_then(|s| s.split(')').next()).unwrap_or("");
    let dims: Vec<usize> = shape.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| s.parse().ok()).collect::<Option<_>>().unwrap_or_default();
    let [rows, cols] = dims[..] else {
        crate::bail!("{}: not a 2-D array (shape ({shape}))", path.display());
    };
    let size = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?.len();
    let want = rows.checked_mul(cols).and_then(|n| n.checked_mul(4)).and_then(|n| n.checked_add(10 + len)).map(|n| n as u64);
    if want != Some(size) {
        crate::bail!("{}: {size} bytes, not what a ({rows}, {cols}) float32 array takes (a damaged part: rerun its shard)", path.display());
    }
    Ok((rows, cols, 10 + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    fn err(arg: &str, vars: &[(&str, &str)]) -> String {
        Shard::parse(arg, &env(vars)).unwrap_err().to_string()
    }

    #[test]
    fn explicit_shards_and_their_errors() {
        let s = Shard::parse("3/16", &env(&[])).unwrap();
        assert_eq!((s.index, s.count), (3, 16));
        assert!(err("16/16", &[]).contains("from 0 to 15"));
        assert!(err("1/0", &[]).contains("at least 1"));
        assert!(err("a/2", &[]).contains("not a whole number"));
        assert!(err("3", &[]).contains("INDEX/COUNT"));
    }

    #[test]
    fn auto_reads_each_scheduler() {
        let slurm = [("SLURM_ARRAY_TASK_ID", "7"), ("SLURM_ARRAY_TASK_MIN", "5"), ("SLURM_ARRAY_TASK_COUNT", "4")];
        let s = Shard::parse("auto", &env(&slurm)).unwrap();
        assert_eq!((s.index, s.count), (2, 4));
        let stepped = [("SLURM_ARRAY_TASK_ID", "10"), ("SLURM_ARRAY_TASK_MIN", "0"), ("SLURM_ARRAY_TASK_STEP", "5"), ("SLURM_ARRAY_TASK_COUNT", "3")];
        assert_eq!(Shard::parse("auto", &env(&stepped)).unwrap().index, 2);
        let k8s = [("JOB_COMPLETION_INDEX", "3")];
        assert_eq!(Shard::parse("auto/8", &env(&k8s)).unwrap(), Shard { index: 3, count: 8, origin: "JOB_COMPLETION_INDEX=3".into() });
        let aws = [("AWS_BATCH_JOB_ARRAY_INDEX", "0")];
        assert_eq!(Shard::parse("auto/2", &env(&aws)).unwrap().index, 0);
        let ompi = [("OMPI_COMM_WORLD_RANK", "1"), ("OMPI_COMM_WORLD_SIZE", "2")];
        assert_eq!(Shard::parse("auto", &env(&ompi)).unwrap().count, 2);
        let pmi = [("PMI_RANK", "5"), ("PMI_SIZE", "6")];
        assert_eq!((Shard::parse("auto", &env(&pmi)).unwrap().index, Shard::parse("auto/6", &env(&pmi)).unwrap().count), (5, 6));
    }

    #[test]
    fn auto_names_the_missing_or_inconsistent_variable() {
        assert!(err("auto", &[]).contains("SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX"));
        assert!(err("auto", &[("JOB_COMPLETION_INDEX", "1")]).contains("auto/COUNT"));
        assert!(err("auto", &[("SLURM_ARRAY_TASK_ID", "1"), ("SLURM_ARRAY_TASK_COUNT", "2")]).contains("SLURM_ARRAY_TASK_MIN is not"));
        assert!(err("auto", &[("SLURM_ARRAY_TASK_ID", "1"), ("SLURM_ARRAY_TASK_MIN", "0")]).contains("SLURM_ARRAY_TASK_COUNT is not"));
        assert!(err("auto/3", &[("OMPI_COMM_WORLD_RANK", "0"), ("OMPI_COMM_WORLD_SIZE", "2")]).contains("OMPI_COMM_WORLD_SIZE is 2, not 3"));
        assert!(err("auto/2", &[("JOB_COMPLETION_INDEX", "2")]).contains("there are 2 tasks"));
        assert!(err("auto", &[("PMI_RANK", "x"), ("PMI_SIZE", "2")]).contains("PMI_RANK"));
    }

    #[test]
    fn rows_are_contiguous_ranges_of_whole_blocks_that_cover_the_input_once() {
        for total in [0usize, 1, 2, 99, 100, 101, 1000] {
            for block in [1, 7, 32] {
                for count in [1, 2, 3, 7, 16] {
                    let mut next = 0;
                    let blocks = total.div_ceil(block);
                    for index in 0..count {
                        let r = Shard { index, count, origin: String::new() }.rows(total, block);
                        assert_eq!(r.start, next);
                        assert!(r.start % block == 0 && (r.end % block == 0 || r.end == total));
                        let n = r.len().div_ceil(block);
                        assert!(n == blocks / count || n == blocks / count + 1, "{total} {block} {count}: {r:?}");
                        next = r.end;
                    }
                    assert_eq!(next, total);
                }
            }
        }
    }
}
