//! Data augmentation for small training sets: EDA's word operations (Wei and Zou, 2019) applied on
//! the fly to copies of the training rows, new copies every epoch; never to validation or test rows.
//!
//! ```text
//! row ─ split on whitespace ─ synonym replacement ─ random insertion ─ random swap ─ random deletion ─ join
//! ```
//! Each operation has a per-word probability. A copy is a pure function of (seed, epoch, row, copy),
//! so a resumed run trains on exactly the copies an uninterrupted one would have.
//!
//! Token classification keeps one tag per word, so only label-preserving operations apply there:
//! synonym replacement with one-word synonyms. Pairs (and an embedding run's columns) are augmented
//! each side on its own.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::dataset::{tokenize_as, Dataset, TokenStore};
use crate::data::read::Table;
use crate::data::tokenize::TextEncoder;
use crate::error::{Context, Result};
use crate::rng::Rng;

fn one() -> usize {
    1
}

/// The `[data.augment]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentConfig {
    /// Per word: the chance it is replaced by one of its synonyms (from `synonyms`).
    #[serde(default)]
    pub synonym_replacement: f64,
    /// Per word: the chance that a synonym of a random word of the row (without `synonyms`, or when
    /// no word of the row has one: a copy of a random word) is inserted at a random position.
    #[serde(default)]
    pub random_insertion: f64,
    /// Per word: the chance that two random words of the row swap places.
    #[serde(default)]
    pub random_swap: f64,
    /// Per word: the chance it is deleted (one word always stays).
    #[serde(default)]
    pub random_deletion: f64,
    /// A synonyms file: TSV (`word<TAB>synonym<TAB>synonym…` per line) or JSON (`{"word": ["synonym", …]}`).
    #[serde(default)]
    pub synonyms: Option<PathBuf>,
    /// Augmented copies of each training row per epoch, trained on alongside the original rows.
    #[serde(default = "one")]
    pub copies: usize,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig { synonym_replacement: 0.0, random_insertion: 0.0, random_swap: 0.0, random_deletion: 0.0, synonyms: None, copies: 1 }
    }
}

impl AugmentConfig {
    /// The operations with their probabilities, in the order they apply.
    pub fn operations(&self) -> [(&'static str, f64); 4] {
        [
            ("synonym_replacement", self.synonym_replacement),
            ("random_insertion", self.random_insertion),
            ("random_swap", self.random_swap),
            ("random_deletion", self.random_deletion),
        ]
    }

    /// What the ranges (checked with the other numeric keys) cannot say: an operation is set, a
    /// synonyms file is there when an operation needs one and used when given, and token
    /// classification gets only label-preserving operations.
    pub fn validate(&self, token_classification: bool) -> Result<()> {
        if self.operations().iter().all(|(_, p)| *p == 0.0) {
            crate::bail!("[data.augment] sets no operation: set one of synonym_replacement, random_insertion, random_swap, random_deletion above 0 (or remove the section)");
        }
        if self.synonym_replacement > 0.0 && self.synonyms.is_none() {
            crate::bail!("[data.augment] synonym_replacement needs `synonyms = \"path/to/synonyms.tsv\"` (word<TAB>synonym<TAB>… per line, or a JSON object word → list)");
        }
        if self.synonyms.is_some() && self.synonym_replacement == 0.0 && self.random_insertion == 0.0 {
            crate::bail!("[data.augment] `synonyms` is set but unused: it feeds synonym_replacement and random_insertion, both 0");
        }
        if token_classification {
            if let Some((op, _)) = self.operations().into_iter().skip(1).find(|(_, p)| *p > 0.0) {
                crate::bail!(
                    "[data.augment] {op} would change which word carries which tag; token classification accepts only synonym_replacement (one-word synonyms, each keeping its word's tag)"
                );
            }
        }
        Ok(())
    }
}

/// Synonyms by lowercased word.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Synonyms {
    map: HashMap<String, Vec<String>>,
}

impl Synonyms {
    /// Reads a TSV (`word<TAB>synonym<TAB>…`, `#` comments and blank lines skipped; lines of one word
    /// merge) or, for `.json`, an object mapping each word to a list of synonyms (or one string).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("[data.augment] cannot read the synonyms file {}", path.display()))?;
        let json = path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let s = if json { Self::from_json(&text) } else { Self::from_tsv(&text) };
        let s = s.with_context(|| format!("[data.augment] synonyms file {}", path.display()))?;
        if s.map.is_empty() {
            crate::bail!("[data.augment] synonyms file {} lists no synonyms", path.display());
        }
        Ok(s)
    }

    pub fn from_tsv(text: &str) -> Result<Self> {
        let mut s = Synonyms::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split('\t').map(str::trim).filter(|f| !f.is_empty()).collect();
            if fields.len() < 2 {
                crate::bail!("line {}: {line:?} has no synonym; write `word<TAB>synonym<TAB>…` (tab-separated)", i + 1);
            }
            s.add(fields[0], &fields[1..]);
        }
        Ok(s)
    }

    pub fn from_json(text: &str) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(text).context("not valid JSON")?;
        let object = value.as_object().context("expected a JSON object mapping each word to a list of synonyms")?;
        let mut s = Synonyms::default();
        for (word, syns) in object {
            let list: Vec<&str> = match syns {
                serde_json::Value::String(one) => vec![one.as_str()],
                serde_json::Value::Array(items) => items
                    .iter()
                    .map(|v| v.as_str().with_context(|| format!("\"{word}\": every synonym must be a string, got {v}")))
                    .collect::<Result<_>>()?,
                other => crate::bail!("\"{word}\": expected a list of synonyms, got {other}"),
            };
            s.add(word, &list);
        }
        Ok(s)
    }

    fn add(&mut self, word: &str, synonyms: &[&str]) {
        let key = word.to_lowercase();
        let list = self.map.entry(key.clone()).or_default();
        for syn in synonyms {
            let syn = syn.split_whitespace().collect::<Vec<_>>().join(" ");
            if !syn.is_empty() && syn.to_lowercase() != key && !list.contains(&syn) {
                list.push(syn);
            }
        }
        if list.is_empty() {
            self.map.remove(&key);
        }
    }

    /// The synonyms of `word` (its core, without surrounding punctuation, matched lowercased).
    fn of(&self, core: &str) -> &[String] {
        self.map.get(&core.to_lowercase()).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// `word` split into leading punctuation, its core and trailing punctuation (`"(good),"` →
/// `("(", "good", "),")`).
fn core_of(word: &str) -> (&str, &str, &str) {
    let start = word.find(|c: char| c.is_alphanumeric()).unwrap_or(word.len());
    let end = word.rfind(|c: char| c.is_alphanumeric()).map(|i| i + word[i..].chars().next().map_or(1, char::len_utf8)).unwrap_or(start);
    (&word[..start], &word[start..end.max(start)], &word[end.max(start)..])
}

/// `synonym` in the case of `like` (all capitals, a capital first letter, or as written).
fn match_case(synonym: &str, like: &str) -> String {
    let letters: Vec<char> = like.chars().filter(|c| c.is_alphabetic()).collect();
    if letters.len() > 1 && letters.iter().all(|c| c.is_uppercase()) {
        return synonym.to_uppercase();
    }
    match like.chars().next() {
        Some(c) if c.is_uppercase() => {
            let mut chars = synonym.chars();
            chars.next().map(|f| f.to_uppercase().chain(chars).collect()).unwrap_or_default()
        }
        _ => synonym.to_string(),
    }
}

/// The configured operations, ready to apply.
#[derive(Clone, Debug)]
pub struct Augmenter {
    pub config: AugmentConfig,
    synonyms: Synonyms,
    seed: u64,
}

impl Augmenter {
    /// Reads the synonyms file (if any); `seed` is the run's seed.
    pub fn new(config: &AugmentConfig, seed: u64) -> Result<Self> {
        let synonyms = match &config.synonyms {
            Some(path) => Synonyms::from_file(path)?,
            None => Synonyms::default(),
        };
        Ok(Augmenter { config: config.clone(), synonyms, seed })
    }

    pub fn with_synonyms(config: &AugmentConfig, synonyms: Synonyms, seed: u64) -> Self {
        Augmenter { config: config.clone(), synonyms, seed }
    }

    /// The generator of one copy: a pure function of (seed, epoch, row, copy).
    fn rng(&self, epoch: usize, row: usize, copy: usize) -> Rng {
        let mut h = self.seed ^ 0xA06_u64.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for part in [epoch, row, copy] {
            h = Rng::new(h ^ part as u64).next_u64();
        }
        Rng::new(h)
    }

    /// `words` with synonyms replaced (only one-word synonyms when `one_word`).
    fn replace(&self, words: &mut [String], rng: &mut Rng, one_word: bool) {
        let p = self.config.synonym_replacement;
        if p == 0.0 {
            return;
        }
        for w in words.iter_mut() {
            let (pre, core, post) = core_of(w);
            let options: Vec<&String> = self.synonyms.of(core).iter().filter(|s| !one_word || !s.contains(' ')).collect();
            // One draw per word, whether or not it has synonyms: a word's fate does not depend on
            // the words before it.
            let hit = rng.uniform() < p;
            if hit && !options.is_empty() {
                let pick = options[rng.below(options.len())];
                *w = format!("{pre}{}{post}", match_case(pick, core));
            }
        }
    }

    fn insert(&self, words: &mut Vec<String>, rng: &mut Rng) {
        let p = self.config.random_insertion;
        let n = (0..words.len()).filter(|_| p > 0.0 && rng.uniform() < p).count();
        for _ in 0..n {
            let with: Vec<&str> = words.iter().map(|w| core_of(w).1).filter(|c| !self.synonyms.of(c).is_empty()).collect();
            let new = if with.is_empty() {
                core_of(&words[rng.below(words.len())]).1.to_string()
            } else {
                let options = self.synonyms.of(with[rng.below(with.len())]);
                options[rng.below(options.len())].clone()
            };
            if !new.is_empty() {
                let at = rng.below(words.len() + 1);
                words.insert(at, new);
            }
        }
    }

    fn swap(&self, words: &mut [String], rng: &mut Rng) {
        let p = self.config.random_swap;
        let n = (0..words.len()).filter(|_| p > 0.0 && rng.uniform() < p).count();
        if words.len() < 2 {
            return;
        }
        for _ in 0..n {
            let i = rng.below(words.len());
            let j = (i + 1 + rng.below(words.len() - 1)) % words.len();
            words.swap(i, j);
        }
    }

    fn delete(&self, words: &mut Vec<String>, rng: &mut Rng) {
        let p = self.config.random_deletion;
        if p == 0.0 || words.len() < 2 {
            return;
        }
        let keep: Vec<bool> = words.iter().map(|_| rng.uniform() >= p).collect();
        if !keep.contains(&true) {
            let one = words.swap_remove(rng.below(words.len()));
            *words = vec![one];
            return;
        }
        let mut k = keep.into_iter();
        words.retain(|_| k.next().unwrap_or(true));
    }

    /// One augmented copy of a text: every operation in turn over its whitespace-separated words.
    pub fn text(&self, text: &str, rng: &mut Rng) -> String {
        let mut words: Vec<String> = text.split_whitespace().map(str::to_string).collect();
        if words.is_empty() {
            return text.to_string();
        }
        self.replace(&mut words, rng, false);
        self.insert(&mut words, rng);
        self.swap(&mut words, rng);
        self.delete(&mut words, rng);
        words.join(" ")
    }

    /// One augmented copy of a token-classification row: the same number of words (one-word
    /// synonyms only), so every tag stays with its word.
    pub fn words(&self, words: &[String], rng: &mut Rng) -> Vec<String> {
        let mut out = words.to_vec();
        self.replace(&mut out, rng, true);
        out
    }

    /// Copy `copy` of every row of `table` in `epoch`: texts, pairs and negatives each on their own
    /// (in that order, from one generator per row), or the words of a token-classification row.
    pub fn table(&self, table: &Table, epoch: usize, copy: usize) -> Table {
        let mut out = Table { source: format!("{} (augmented copy {})", table.source, copy + 1), labels: table.labels.clone(), ..Default::default() };
        let mut pairs = table.pairs.as_ref().map(|_| Vec::with_capacity(table.len()));
        let mut negatives = table.negatives.as_ref().map(|_| Vec::with_capacity(table.len()));
        let mut words = table.words.as_ref().map(|_| Vec::with_capacity(table.len()));
        for row in 0..table.len() {
            let mut rng = self.rng(epoch, row, copy);
            if let (Some(all), Some(w)) = (&table.words, words.as_mut()) {
                let new = self.words(&all[row], &mut rng);
                out.texts.push(new.join(" "));
                w.push(new);
                continue;
            }
            out.texts.push(self.text(&table.texts[row], &mut rng));
            for (column, into) in [(&table.pairs, pairs.as_mut()), (&table.negatives, negatives.as_mut())] {
                if let (Some(all), Some(into)) = (column, into) {
                    into.push(self.text(&all[row], &mut rng));
                }
            }
        }
        out.pairs = pairs;
        out.negatives = negatives;
        out.words = words;
        out
    }

    /// The training rows of `epoch`: `original` (the split as read and tokenized, rows `0..n`),
    /// then each copy's rows (`n·(c+1) + i` is copy `c` of row `i`) tokenized with `encoder`
    /// (which truncates: a copy grown by insertions is cut, never refused). `table` holds
    /// `original`'s rows as read.
    pub fn epoch_rows(&self, original: &Dataset, table: &Table, encoder: &TextEncoder, separate_texts: bool, epoch: usize) -> Result<Dataset> {
        let n = original.len();
        if table.len() != n {
            crate::bail!("internal: {} rows read but {n} tokenized for augmentation", table.len());
        }
        let copies = self.config.copies;
        let sources: Vec<usize> = (0..=copies).flat_map(|_| 0..n).collect();
        let mut ds = original.select(&sources, &original.name);
        ds.truncated = original.truncated;
        let mut tokens = original.tokens.clone();
        let mut extra = original.extra.clone();
        let mut word_starts = original.word_starts.clone();
        let mut words = original.words.clone();
        for c in 0..copies {
            let copy = tokenize_as(&self.table(table, epoch, c), encoder, &original.name, None, separate_texts)?;
            append(&mut tokens, &copy.tokens);
            for (into, from) in extra.iter_mut().zip(&copy.extra) {
                append(into, from);
            }
            if let (Some(into), Some(from)) = (word_starts.as_mut(), copy.word_starts) {
                into.extend(from);
            }
            if let (Some(into), Some(from)) = (words.as_mut(), copy.words) {
                into.extend(from);
            }
        }
        ds.tokens = tokens;
        ds.extra = extra;
        ds.word_starts = word_starts;
        ds.words = words;
        Ok(ds)
    }

    /// The row of the original split that row `row` of [`Self::epoch_rows`] was made from.
    pub fn source_row(row: usize, original_rows: usize) -> usize {
        row % original_rows.max(1)
    }
}

impl Augmenter {
    /// `data --augment-preview N`: the first `n` training rows next to their copies of the first
    /// epoch, as text (pairs as `text ‖ pair`) or as JSON lines
    /// (`{"row", "original": {"text", "text_pair", "negative" | "tokens"}, "copies": [...]}`).
    pub fn preview(&self, table: &Table, n: usize, json: bool) -> String {
        let head = table.select(&(0..n.min(table.len())).collect::<Vec<_>>());
        let copies: Vec<Table> = (0..self.config.copies).map(|c| self.table(&head, 0, c)).collect();
        let fields = |t: &Table, r: usize| -> serde_json::Value {
            let mut v = serde_json::Map::new();
            match &t.words {
                Some(w) => {
                    v.insert("tokens".into(), serde_json::json!(w[r]));
                }
                None => {
                    v.insert("text".into(), serde_json::json!(t.texts[r]));
                    for (key, column) in [("text_pair", &t.pairs), ("negative", &t.negatives)] {
                        if let Some(c) = column {
                            v.insert(key.into(), serde_json::json!(c[r]));
                        }
                    }
                }
            }
            serde_json::Value::Object(v)
        };
        let line = |t: &Table, r: usize| -> String {
            if t.words.is_some() {
                return t.texts[r].clone();
            }
            [Some(&t.texts), t.pairs.as_ref(), t.negatives.as_ref()].into_iter().flatten().map(|c| c[r].as_str()).collect::<Vec<_>>().join(" ‖ ")
        };
        let mut out = String::new();
        if !json {
            let on: Vec<String> = self.config.operations().iter().filter(|(_, p)| *p > 0.0).map(|(op, p)| format!("{op} {p}")).collect();
            out.push_str(&format!(
                "augmentation preview: the first {} training rows and their copies in the first epoch (seed {}; {}; {} cop{} per row, new every epoch)\n",
                head.len(),
                self.seed,
                on.join(", "),
                self.config.copies,
                if self.config.copies == 1 { "y" } else { "ies" }
            ));
        }
        for r in 0..head.len() {
            if json {
                let v = serde_json::json!({"row": r + 1, "original": fields(&head, r), "copies": copies.iter().map(|c| fields(c, r)).collect::<Vec<_>>()});
                out.push_str(&format!("{v}\n"));
            } else {
                out.push_str(&format!("\nrow {}\n  original  {}\n", r + 1, line(&head, r)));
                for (c, t) in copies.iter().enumerate() {
                    out.push_str(&format!("  {:<8}  {}\n", format!("copy {}", c + 1), line(t, r)));
                }
            }
        }
        out
    }
}

fn append(into: &mut TokenStore, from: &TokenStore) {
    for r in 0..from.len() {
        into.push(from.row(r));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn augmenter(cfg: AugmentConfig, tsv: &str) -> Augmenter {
        Augmenter::with_synonyms(&cfg, Synonyms::from_tsv(tsv).unwrap(), 7)
    }

    #[test]
    fn synonyms_read_from_tsv_and_json_alike_with_line_numbers_in_errors() {
        let tsv = Synonyms::from_tsv("# comment\ngood\tfine\tgreat\n\nGood\tnice\nfilm\tmovie\r\n").unwrap();
        let json = Synonyms::from_json(r#"{"good": ["fine", "great", "nice"], "film": "movie"}"#).unwrap();
        assert_eq!(tsv, json);
        assert_eq!(tsv.of("GOOD"), ["fine", "great", "nice"]);
        let e = Synonyms::from_tsv("good\tfine\nbad\n").unwrap_err().chain();
        assert!(e.contains("line 2") && e.contains("bad"), "{e}");
        let e = Synonyms::from_json(r#"{"good": [1]}"#).unwrap_err().chain();
        assert!(e.contains("good") && e.contains("string"), "{e}");
        assert!(Synonyms::from_json("[1]").is_err());
    }

    #[test]
    fn punctuation_and_case_are_kept_around_a_replaced_word() {
        assert_eq!(core_of("(good),"), ("(", "good", "),"));
        assert_eq!(core_of("..."), ("...", "", ""));
        assert_eq!(core_of("naïve"), ("", "naïve", ""));
        let a = augmenter(AugmentConfig { synonym_replacement: 1.0, ..Default::default() }, "good\tfine\n");
        let mut rng = Rng::new(1);
        assert_eq!(a.text("Good movie, GOOD (good).", &mut rng), "Fine movie, FINE (fine).");
    }

    #[test]
    fn each_operation_does_what_it_says_and_only_that() {
        let text = "one two three four five six seven eight nine ten";
        let words: Vec<&str> = text.split(' ').collect();
        let mut rng = Rng::new(3);
        let del = augmenter(AugmentConfig { random_deletion: 0.5, ..Default::default() }, "");
        let out = del.text(text, &mut rng);
        let kept: Vec<&str> = out.split(' ').collect();
        assert!(kept.len() < words.len() && !kept.is_empty(), "{out}");
        // Deletion keeps the order of the words it keeps.
        let mut at = words.iter();
        assert!(kept.iter().all(|k| at.any(|w| w == k)), "{out}");
        let everything = augmenter(AugmentConfig { random_deletion: 1.0, ..Default::default() }, "");
        assert_eq!(everything.text(text, &mut rng).split(' ').count(), 1);
        let swap = augmenter(AugmentConfig { random_swap: 0.5, ..Default::default() }, "");
        let out = swap.text(text, &mut rng);
        let mut a: Vec<&str> = out.split(' ').collect();
        assert_ne!(out, text);
        a.sort();
        let mut b = words.clone();
        b.sort();
        assert_eq!(a, b, "a swap keeps every word");
        let ins = augmenter(AugmentConfig { random_insertion: 0.5, ..Default::default() }, "three\ttrio\n");
        let out = ins.text(text, &mut rng);
        let grown: Vec<&str> = out.split(' ').collect();
        assert!(grown.len() > words.len(), "{out}");
        assert!(grown.iter().filter(|w| **w != "trio").count() == words.len(), "only synonyms of the row's words are inserted: {out}");
        // Without synonyms, insertion copies words of the row.
        let copy = augmenter(AugmentConfig { random_insertion: 0.5, ..Default::default() }, "");
        assert!(copy.text(text, &mut rng).split(' ').all(|w| words.contains(&w)));
    }

    #[test]
    fn copies_are_a_function_of_seed_epoch_row_and_copy() {
        let a = augmenter(AugmentConfig { random_swap: 0.3, random_deletion: 0.2, copies: 2, ..Default::default() }, "");
        let table = Table {
            source: "t.jsonl".into(),
            texts: (0..20).map(|i| format!("row {i} has a few words in it to move around")).collect(),
            pairs: Some((0..20).map(|i| format!("the pair of row {i} is here")).collect()),
            ..Default::default()
        };
        let e0 = a.table(&table, 0, 0);
        assert_eq!(e0.texts, a.table(&table, 0, 0).texts);
        assert_eq!(e0.pairs, a.table(&table, 0, 0).pairs);
        assert_ne!(e0.texts, a.table(&table, 1, 0).texts, "every epoch its own copies");
        assert_ne!(e0.texts, a.table(&table, 0, 1).texts, "every copy its own");
        assert_ne!(e0.texts, Augmenter::with_synonyms(&a.config, Synonyms::default(), 8).table(&table, 0, 0).texts, "the seed decides");
        // A row's copy does not depend on the rows around it.
        let first = Table { texts: table.texts[..5].to_vec(), pairs: table.pairs.as_ref().map(|p| p[..5].to_vec()), ..table.clone() };
        assert_eq!(a.table(&first, 0, 0).texts, e0.texts[..5]);
        // Pairs: each side on its own.
        for (row, (p, t)) in e0.pairs.as_ref().unwrap().iter().zip(&e0.texts).enumerate() {
            let (tp, pp) = (&table.texts[row], &table.pairs.as_ref().unwrap()[row]);
            assert!(p.split(' ').all(|w| pp.split(' ').any(|x| x == w)) && t.split(' ').all(|w| tp.split(' ').any(|x| x == w)), "{t} / {p}");
        }
    }

    #[test]
    fn token_rows_keep_their_length_and_take_one_word_synonyms_only() {
        let a = augmenter(AugmentConfig { synonym_replacement: 1.0, ..Default::default() }, "Paris\tthe French capital\tLutetia\nwent\ttravelled\n");
        let words: Vec<String> = ["Anna", "went", "to", "Paris", "."].map(String::from).to_vec();
        let out = a.words(&words, &mut Rng::new(5));
        assert_eq!(out, ["Anna", "travelled", "to", "Lutetia", "."]);
        let e = AugmentConfig { random_swap: 0.1, ..Default::default() }.validate(true).unwrap_err().chain();
        assert!(e.contains("random_swap") && e.contains("synonym_replacement"), "{e}");
        assert!(AugmentConfig { synonym_replacement: 0.1, synonyms: Some("s.tsv".into()), ..Default::default() }.validate(true).is_ok());
    }

    #[test]
    fn a_section_that_does_nothing_or_misses_its_file_is_refused() {
        let e = AugmentConfig::default().validate(false).unwrap_err().chain();
        assert!(e.contains("no operation"), "{e}");
        let e = AugmentConfig { synonym_replacement: 0.1, ..Default::default() }.validate(false).unwrap_err().chain();
        assert!(e.contains("synonyms"), "{e}");
        let e = AugmentConfig { random_swap: 0.1, synonyms: Some("s.tsv".into()), ..Default::default() }.validate(false).unwrap_err().chain();
        assert!(e.contains("unused"), "{e}");
    }
}
