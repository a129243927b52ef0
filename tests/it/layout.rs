//! The repository's own layout: fixtures are stored once (a second copy is a symlink to the first).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::common::fixtures;

fn regular_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let kind = e.file_type().unwrap();
        if kind.is_dir() {
            regular_files(&e.path(), out);
        } else if kind.is_file() {
            out.push(e.path());
        }
    }
}

#[test]
fn fixtures_are_stored_once() {
    let mut files = Vec::new();
    regular_files(&fixtures(), &mut files);
    assert!(files.len() > 10, "the fixtures were not found");
    let mut seen: HashMap<Vec<u8>, PathBuf> = HashMap::new();
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        if let Some(first) = seen.get(&bytes) {
            panic!("{} repeats {}: store it once and link to it (ln -s)", f.display(), first.display());
        }
        seen.insert(bytes, f);
    }
}
