//! Datasets: the `[data]` section of a run config, split resolution (local files or a hub dataset's
//! Parquet conversion), labels, and tokenization into compact token storage.

use std::path::PathBuf;

use hf_hub::{Repo, RepoType};
use serde::{Deserialize, Serialize};

use crate::data::augment::AugmentConfig;
use crate::data::labels::{LabelMap, LabelNames, LabelRenaming, TargetKind, Targets};
use crate::data::read::{read_split, Columns, Format, ReadOptions, SplitFiles, Table};
use crate::data::tokenize::TextEncoder;
use crate::error::Result;
use crate::rng::Rng;

fn default_text() -> TextColumn {
    TextColumn::One("text".into())
}
fn default_separator() -> String {
    " ".into()
}

/// `text_column`: one column, or several joined into the text (`["title", "description"]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TextColumn {
    One(String),
    Joined(Vec<String>),
}

impl From<&str> for TextColumn {
    fn from(name: &str) -> Self {
        TextColumn::One(name.to_string())
    }
}

impl TextColumn {
    /// The column name for messages: `title + description` for joined columns.
    pub fn name(&self) -> String {
        match self {
            TextColumn::One(c) => c.clone(),
            TextColumn::Joined(parts) => parts.join(" + "),
        }
    }

    /// The joined columns (none for one column).
    pub fn parts(&self) -> Vec<String> {
        match self {
            TextColumn::Joined(parts) if parts.len() > 1 => parts.clone(),
            _ => Vec::new(),
        }
    }
}
fn default_label() -> String {
    "label".into()
}
fn default_tokens() -> String {
    "tokens".into()
}
fn default_tags() -> String {
    "tags".into()
}
fn default_train_split() -> String {
    "train".into()
}
fn default_seed() -> u64 {
    42
}
fn yes() -> bool {
    true
}
fn default_max_length() -> usize {
    512
}

/// A split's file: a path, read with `[data]`'s keys, or a section with its own reading keys
/// (`[data.test]` with `path = "emerging.test.annotated"` and `format = "conll"`); the keys a
/// section leaves out are `[data]`'s.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged, try_from = "toml::Value")]
pub enum SplitSource {
    Path(PathBuf),
    Section(SplitSection),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSection {
    pub path: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_unmatched: Option<bool>,
}

impl TryFrom<toml::Value> for SplitSource {
    type Error = String;
    fn try_from(v: toml::Value) -> std::result::Result<Self, String> {
        match v {
            toml::Value::String(s) => Ok(SplitSource::Path(s.into())),
            t @ toml::Value::Table(_) => t.try_into::<SplitSection>().map(SplitSource::Section).map_err(|e| {
                format!("{} (a split's section takes `path` and any of `format`, `header`, `columns`, `encoding`, `pattern`, `skip_unmatched`)", e.to_string().trim())
            }),
            other => Err(format!("expected a file path, or a section with `path`; found a {}", other.type_str())),
        }
    }
}

impl From<PathBuf> for SplitSource {
    fn from(p: PathBuf) -> Self {
        SplitSource::Path(p)
    }
}

impl SplitSource {
    pub fn path(&self) -> &std::path::Path {
        match self {
            SplitSource::Path(p) => p,
            SplitSource::Section(s) => &s.path,
        }
    }
}

/// The `[data]` section. Paths are relative to the current directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Training file (`.jsonl`, `.csv`, `.tsv`, `.parquet`, optionally `.gz`).
    #[serde(default)]
    pub train: Option<SplitSource>,
    #[serde(default)]
    pub validation: Option<SplitSource>,
    #[serde(default)]
    pub test: Option<SplitSource>,
    /// A hub dataset id (e.g. `stanfordnlp/imdb`), read from its Parquet conversion.
    #[serde(default)]
    pub hub: Option<String>,
    /// The hub dataset's config name (`plain_text` for imdb) [default: `default`].
    #[serde(default)]
    pub subset: Option<String>,
    /// Hub revision holding the Parquet files [default: `refs/convert/parquet`].
    #[serde(default)]
    pub revision: Option<String>,
    #[serde(default = "default_train_split")]
    pub train_split: String,
    #[serde(default)]
    pub validation_split: Option<String>,
    #[serde(default)]
    pub test_split: Option<String>,
    /// File format, when the extension does not say it.
    #[serde(default)]
    pub format: Option<Format>,
    /// CSV/TSV: whether the first line names the columns.
    #[serde(default = "yes")]
    pub header: bool,
    /// CSV/TSV without a header: the columns' names in order (without them: "0", "1", ...).
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Text files in another encoding than UTF-8 (`latin-1`, `utf-16`, ...).
    #[serde(default)]
    pub encoding: Option<String>,
    /// `format = "lines"`: a regular expression whose named groups are the columns.
    #[serde(default)]
    pub pattern: Option<String>,
    /// `format = "lines"`: skip (and count) lines the pattern does not match.
    #[serde(default)]
    pub skip_unmatched: bool,
    /// The text column, or a list of columns joined by `text_separator`.
    #[serde(default = "default_text")]
    pub text_column: TextColumn,
    #[serde(default = "default_separator")]
    pub text_separator: String,
    #[serde(default)]
    pub text_pair_column: Option<String>,
    #[serde(default = "default_label")]
    pub label_column: String,
    /// Token classification: the column of pre-split words (JSONL; CoNLL files need none).
    #[serde(default = "default_tokens")]
    pub tokens_column: String,
    /// Token classification: the column with one tag per word.
    #[serde(default = "default_tags")]
    pub tags_column: String,
    /// Embedding training: an optional hard-negative column (anchor = text_column, positive = text_pair_column).
    #[serde(default)]
    pub negative_column: Option<String>,
    /// Fixes the label set and its order (otherwise: sorted labels of the training split).
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    /// Names for the labels as the files store them: `{ 1 = "World", ... }` or a file with one
    /// name per line (AG News's classes.txt).
    #[serde(default)]
    pub label_names: Option<LabelNames>,
    /// Carve this fraction of the training rows out as validation (stratified by label).
    #[serde(default)]
    pub validation_fraction: Option<f64>,
    /// Seed for the validation split.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Truncate rows to this many tokens (special tokens included). Unset: the model's positions
    /// (or a sentence-transformers folder's `max_seq_length`); see `model::max_length_rule`.
    #[serde(default = "default_max_length")]
    pub max_length: usize,
    /// Cut rows longer than `max_length` (counted in a note), or refuse them (`false`).
    #[serde(default = "yes")]
    pub truncate: bool,
    /// Masked-LM: concatenate the tokenized documents (each with its [CLS] and [SEP]) and cut them
    /// into `max_length` blocks, as run_mlm.py's `group_texts` [default], or keep one row per
    /// document (`false`, cut at `max_length`).
    #[serde(default)]
    pub group_texts: Option<bool>,
    /// `[data.augment]`: augmented copies of the training rows, new every epoch.
    #[serde(default)]
    pub augment: Option<AugmentConfig>,
    /// The column names came from command-line flags, not this section (for error messages).
    #[serde(skip)]
    pub columns_from_flags: bool,
}

impl Default for DataConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

impl DataConfig {
    pub fn columns(&self, with_labels: bool) -> Columns {
        let text = match &self.text_column {
            TextColumn::Joined(parts) if parts.len() == 1 => parts[0].clone(),
            c => c.name(),
        };
        Columns {
            text,
            text_parts: self.text_column.parts(),
            separator: self.text_separator.clone(),
            text_pair: self.text_pair_column.clone(),
            label: with_labels.then(|| self.label_column.clone()),
            words: None,
            negative: None,
            from_flags: self.columns_from_flags,
        }
    }

    /// The columns a task reads.
    pub fn columns_for(&self, kind: Option<TargetKind>, separate_texts: bool) -> Columns {
        match kind {
            Some(TargetKind::Tags) => Columns {
                text: self.tokens_column.clone(),
                words: Some(self.tokens_column.clone()),
                label: Some(self.tags_column.clone()),
                from_flags: self.columns_from_flags,
                ..Default::default()
            },
            _ => Columns {
                negative: if separate_texts { self.negative_column.clone() } else { None },
                ..self.columns(kind.is_some())
            },
        }
    }

    pub fn validate(&self) -> Result<()> {
        match (&self.train, &self.hub) {
            (None, None) => crate::bail!("[data] needs `train = \"path/to/train.jsonl\"` or `hub = \"org/dataset\"`"),
            (Some(_), Some(_)) => crate::bail!("[data] has both `train` and `hub`; use one"),
            _ => {}
        }
        if let Some(f) = self.validation_fraction {
            if !(f > 0.0 && f < 1.0) {
                crate::bail!("[data] validation_fraction must be between 0 and 1 (exclusive), got {f}");
            }
            if self.validation.is_some() || self.validation_split.is_some() {
                crate::bail!("[data] has both a validation set and `validation_fraction`; use one");
            }
        }
        if let TextColumn::Joined(parts) = &self.text_column {
            if parts.is_empty() || parts.iter().any(|p| p.trim().is_empty()) {
                crate::bail!("[data] `text_column` = {parts:?}: name one column, or the columns to join (none empty)");
            }
        }
        self.read_options()?;
        for (name, split) in [("train", &self.train), ("validation", &self.validation), ("test", &self.test)] {
            if let Some(SplitSource::Section(section)) = split {
                self.with_section(section).read_options().map_err(|e| e.wrap(format!("[data.{name}] ({})", section.path.display())))?;
            }
        }
        if self.max_length < 2 {
            crate::bail!("`data.max_length` = {} is out of range: it must be at least 2 (room for [CLS] and [SEP])", self.max_length);
        }
        Ok(())
    }

    /// How to read this section's files (checked: the encoding exists, the pattern compiles and
    /// goes with `format = "lines"`).
    pub fn read_options(&self) -> Result<ReadOptions> {
        if let Some(names) = &self.columns {
            if self.header {
                crate::bail!("[data] `columns` (--columns) names the columns of a file without a header line; add `header = false` (--header false): a file with a header names its own columns");
            }
            if names.is_empty() || names.iter().any(|n| n.trim().is_empty()) {
                crate::bail!("[data] `columns` = {names:?}: give every column a non-empty name");
            }
            if let Some(n) = names.iter().enumerate().find_map(|(i, n)| names[..i].contains(n).then_some(n)) {
                crate::bail!("[data] `columns` names `{n}` twice; give each column its own name");
            }
        }
        let encoding = self.encoding.as_deref().map(crate::data::read::encoding).transpose().map_err(|e| e.wrap("[data] encoding"))?;
        match (&self.pattern, self.format) {
            (Some(p), Some(Format::Lines)) => {
                crate::data::read::line_pattern(p).map_err(|e| e.wrap("[data] pattern"))?;
            }
            (Some(_), _) => crate::bail!("[data] `pattern` reads files with `format = \"lines\"`; add that, or remove `pattern`"),
            (None, Some(Format::Lines)) => crate::bail!(
                "[data] format = \"lines\" needs `pattern`, a regular expression whose named groups are the columns, e.g. '^(?P<label>[A-Z]+):\\S+ (?P<text>.*)$' (TREC) or '^__label__(?P<label>\\S+) (?P<text>.*)$' (fastText)"
            ),
            (None, _) => {}
        }
        if self.skip_unmatched && self.pattern.is_none() {
            crate::bail!("[data] `skip_unmatched` applies to `format = \"lines\"` with a `pattern`; remove it");
        }
        Ok(ReadOptions {
            format: self.format,
            header: self.header,
            columns: self.columns.clone(),
            encoding,
            pattern: self.pattern.clone(),
            skip_unmatched: self.skip_unmatched,
        })
    }

    /// This section with a split section's reading keys over its own.
    fn with_section(&self, s: &SplitSection) -> DataConfig {
        let mut c = self.clone();
        if s.format.is_some() {
            c.format = s.format;
        }
        if let Some(h) = s.header {
            c.header = h;
            if h {
                // A file with a header names its own columns: [data]'s `columns` are not for it.
                c.columns = None;
            }
        }
        if s.columns.is_some() {
            c.columns = s.columns.clone();
        }
        if s.encoding.is_some() {
            c.encoding = s.encoding.clone();
        }
        if s.pattern.is_some() {
            c.pattern = s.pattern.clone();
        }
        if let Some(k) = s.skip_unmatched {
            c.skip_unmatched = k;
        }
        c
    }

    /// A split's file and how to read it.
    fn split(&self, source: &SplitSource, name: &str) -> Result<SplitFiles> {
        let read = match source {
            SplitSource::Path(_) => self.read_options()?,
            SplitSource::Section(s) => self.with_section(s).read_options().map_err(|e| e.wrap(format!("[data.{name}] ({})", s.path.display())))?,
        };
        Ok(SplitFiles { files: vec![source.path().to_path_buf()], read })
    }

    /// The files of each split: (train, validation, test).
    pub fn split_files(&self) -> Result<(SplitFiles, Option<SplitFiles>, Option<SplitFiles>)> {
        self.validate()?;
        if let Some(train) = &self.train {
            let local = |s: &Option<SplitSource>, name: &str| s.as_ref().map(|s| self.split(s, name)).transpose();
            return Ok((self.split(train, "train")?, local(&self.validation, "validation")?, local(&self.test, "test")?));
        }
        let id = self.hub.as_deref().expect("validated");
        let subset = self.subset.as_deref().unwrap_or("default");
        let revision = self.revision.as_deref().unwrap_or("refs/convert/parquet");
        let fetch = |split: &str| hub_parquet_split(id, subset, split, revision);
        let validation = match &self.validation_split {
            Some(s) => Some(fetch(s)?),
            None => None,
        };
        let test = match &self.test_split {
            Some(s) => Some(fetch(s)?),
            None => None,
        };
        Ok((fetch(&self.train_split)?, validation, test))
    }
}

/// The Parquet shards `{subset}/{split}/0000.parquet`, `0001`, ... of a hub dataset's Parquet
/// conversion, downloaded into (or read from) the hub cache.
pub fn hub_parquet_split(id: &str, subset: &str, split: &str, revision: &str) -> Result<SplitFiles> {
    let repo = Repo::with_revision(id.to_string(), RepoType::Dataset, revision.to_string());
    let fetch = crate::model::source::hub_fetcher(repo)?;
    let mut files = Vec::new();
    for shard in 0.. {
        let name = format!("{subset}/{split}/{shard:04}.parquet");
        match fetch(&name) {
            Ok(p) => files.push(p),
            Err(e) if shard == 0 => {
                return Err(e.wrap(format!(
                    "cannot get split `{split}` of hub dataset {id} (subset `{subset}`, revision `{revision}`); check `hub`, `subset` and the split names"
                )))
            }
            Err(_) => break,
        }
    }
    Ok(SplitFiles { files, read: ReadOptions::from(Some(Format::Parquet)) })
}

/// Token ids of many rows in one buffer: row i is `ids[offsets[i]..offsets[i + 1]]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TokenStore {
    ids: Vec<u32>,
    offsets: Vec<usize>,
}

impl TokenStore {
    pub fn new() -> Self {
        TokenStore { ids: Vec::new(), offsets: vec![0] }
    }
    pub fn push(&mut self, row: &[u32]) {
        self.ids.extend_from_slice(row);
        self.offsets.push(self.ids.len());
    }
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn row(&self, i: usize) -> &[u32] {
        &self.ids[self.offsets[i]..self.offsets[i + 1]]
    }
    pub fn row_len(&self, i: usize) -> usize {
        self.offsets[i + 1] - self.offsets[i]
    }
    pub fn lengths(&self) -> Vec<usize> {
        self.offsets.windows(2).map(|w| w[1] - w[0]).collect()
    }
    pub fn total_tokens(&self) -> usize {
        self.ids.len()
    }
    /// All rows end to end, cut into rows of `block` tokens (the last one may be shorter; run_mlm.py
    /// drops it, here no text is lost).
    pub fn grouped(&self, block: usize) -> TokenStore {
        let mut out = TokenStore::new();
        for chunk in self.ids.chunks(block.max(1)) {
            out.push(chunk);
        }
        out
    }

    pub fn select(&self, rows: &[usize]) -> TokenStore {
        let mut out = TokenStore::new();
        rows.iter().for_each(|&i| out.push(self.row(i)));
        out
    }
}

/// One tokenized split.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// `train`, `validation` or `test`.
    pub name: String,
    pub source: String,
    pub tokens: TokenStore,
    pub targets: Option<Targets>,
    /// Rows cut to `max_length`.
    pub truncated: usize,
    /// Token classification: per row, the token index of each (kept) word's first subword.
    pub word_starts: Option<Vec<Vec<u32>>>,
    /// Embedding training: the other text columns (positive, then negative), encoded separately.
    pub extra: Vec<TokenStore>,
    /// Token classification: the words of each row (for predictions and reports).
    pub words: Option<Vec<Vec<String>>>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.tokens.len()
    }
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn select(&self, rows: &[usize], name: &str) -> Dataset {
        Dataset {
            name: name.to_string(),
            source: self.source.clone(),
            tokens: self.tokens.select(rows),
            targets: self.targets.as_ref().map(|t| t.select(rows)),
            truncated: 0,
            word_starts: self.word_starts.as_ref().map(|w| rows.iter().map(|&i| w[i].clone()).collect()),
            extra: self.extra.iter().map(|s| s.select(rows)).collect(),
            words: self.words.as_ref().map(|w| rows.iter().map(|&i| w[i].clone()).collect()),
        }
    }
}

/// Tokenizes a table (texts, with pairs when present) in parallel chunks.
pub fn tokenize(table: &Table, encoder: &TextEncoder, name: &str, targets: Option<Targets>) -> Result<Dataset> {
    tokenize_as(table, encoder, name, targets, false)
}

/// Like [`tokenize`]; with `separate_texts`, pair and negative columns are encoded on their own
/// (embedding training) instead of as one `[CLS] a [SEP] b [SEP]` sequence.
pub fn tokenize_as(table: &Table, encoder: &TextEncoder, name: &str, targets: Option<Targets>, separate_texts: bool) -> Result<Dataset> {
    if let Some(words) = &table.words {
        return tokenize_words(table, words, encoder, name, targets);
    }
    if separate_texts {
        let encode = |texts: &[String]| -> Result<(TokenStore, usize)> {
            let mut store = TokenStore::new();
            let mut cut = 0;
            for (c, chunk) in texts.chunks(4096).enumerate() {
                let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
                let encoded = encoder.encode_batch(&refs)?;
                cut += encoder.count_truncated(encoded.iter().map(|e| e.truncated), |i| format!("{}, row {}", table.source, c * 4096 + i + 1))?;
                for e in encoded {
                    store.push(&e.ids);
                }
            }
            Ok((store, cut))
        };
        let (tokens, truncated) = encode(&table.texts)?;
        let mut extra = Vec::new();
        for column in [&table.pairs, &table.negatives].into_iter().flatten() {
            extra.push(encode(column)?.0);
        }
        return Ok(Dataset { name: name.into(), source: table.source.clone(), tokens, targets, truncated, word_starts: None, extra, words: None });
    }
    let mut tokens = TokenStore::new();
    let mut truncated = 0;
    const CHUNK: usize = 4096;
    for start in (0..table.len()).step_by(CHUNK) {
        let end = (start + CHUNK).min(table.len());
        let texts: Vec<&str> = table.texts[start..end].iter().map(String::as_str).collect();
        let encoded = match &table.pairs {
            None => encoder.encode_batch(&texts)?,
            Some(pairs) => {
                let pairs: Vec<&str> = pairs[start..end].iter().map(String::as_str).collect();
                encoder.encode_pair_batch(&texts, &pairs)?
            }
        };
        truncated += encoder.count_truncated(encoded.iter().map(|e| e.truncated), |i| format!("{}, row {}", table.source, start + i + 1))?;
        for e in encoded {
            tokens.push(&e.ids);
        }
    }
    Ok(Dataset { name: name.to_string(), source: table.source.clone(), tokens, targets, truncated, word_starts: None, extra: Vec::new(), words: None })
}

/// Token classification: encode each row's words joined by spaces (so they split into subwords as
/// running text does) and find each word's first subword, the one that carries its tag.
fn tokenize_words(table: &Table, words: &[Vec<String>], encoder: &TextEncoder, name: &str, targets: Option<Targets>) -> Result<Dataset> {
    let mut tokens = TokenStore::new();
    let mut starts = Vec::with_capacity(words.len());
    let mut truncated = 0;
    for (c, (chunk_texts, chunk_words)) in table.texts.chunks(4096).zip(words.chunks(4096)).enumerate() {
        let refs: Vec<&str> = chunk_texts.iter().map(String::as_str).collect();
        let encoded = encoder.encode_with_offsets(&refs)?;
        let firsts: Vec<Vec<u32>> = encoded.iter().zip(chunk_words).map(|(enc, w)| crate::data::tokenize::first_subwords(w, enc)).collect();
        // A row counts as truncated when words were cut off (they have no first subword).
        let cut = firsts.iter().zip(chunk_words).map(|(f, w)| f.len() < w.len());
        truncated += encoder.count_truncated(cut, |i| format!("{}, row {}", table.source, c * 4096 + i + 1))?;
        for (enc, f) in encoded.iter().zip(firsts) {
            tokens.push(&enc.ids);
            starts.push(f);
        }
    }
    Ok(Dataset {
        name: name.to_string(),
        source: table.source.clone(),
        tokens,
        targets,
        truncated,
        word_starts: Some(starts),
        extra: Vec::new(),
        words: Some(words.to_vec()),
    })
}

/// Train / validation / test, tokenized, with the label map.
pub struct Splits {
    pub train: Dataset,
    pub validation: Option<Dataset>,
    pub test: Option<Dataset>,
    /// For classification and multi-label tasks.
    pub labels: Option<LabelMap>,
    /// With `[data.augment]`: the training rows as read (row-aligned with `train`), which the
    /// augmented copies are made from.
    pub train_table: Option<Table>,
    /// `label_names`, resolved against the training labels (and applied to every split).
    pub renaming: Option<LabelRenaming>,
}

impl Splits {
    pub fn all(&self) -> Vec<&Dataset> {
        [Some(&self.train), self.validation.as_ref(), self.test.as_ref()].into_iter().flatten().collect()
    }
}

/// Reads, labels, splits and tokenizes the data of `config`. `kind = None` reads no labels.
pub fn load_splits(config: &DataConfig, encoder: &TextEncoder, kind: Option<TargetKind>) -> Result<Splits> {
    load_splits_as(config, encoder, kind, false)
}

/// [`load_splits`], with text columns encoded separately when `separate_texts` (embedding training).
pub fn load_splits_as(config: &DataConfig, encoder: &TextEncoder, kind: Option<TargetKind>, separate_texts: bool) -> Result<Splits> {
    let (train_files, val_files, test_files) = config.split_files()?;
    let cols = config.columns_for(kind, separate_texts);
    let mut train = read_split(&train_files, &cols)?;
    let renaming = match (&config.label_names, kind) {
        (None, _) => None,
        (Some(_), None | Some(TargetKind::Regression)) => {
            crate::bail!("[data] `label_names` names the classes of a classification or token-classification task; this task has none: remove it")
        }
        (Some(names), Some(_)) => Some(names.resolve(train.labels.as_deref().unwrap_or(&[]))?),
    };
    if let Some(r) = &renaming {
        r.apply(&mut train)?;
    }
    let labels = match (kind, &config.labels, &renaming) {
        (None | Some(TargetKind::Regression), _, _) => None,
        (Some(_), Some(names), _) => Some(LabelMap::new(names.clone(), true)?),
        (Some(_), None, Some(r)) => Some(LabelMap::new(r.names(), true)?),
        (Some(_), None, None) => Some(LabelMap::from_table(&train)?),
    };
    let targets_of = |t: &Table| -> Result<Option<Targets>> {
        match kind {
            None => Ok(None),
            Some(TargetKind::Regression) => {
                let any = LabelMap::new(vec!["score".into()], true)?;
                Ok(Some(any.encode(t, TargetKind::Regression)?))
            }
            Some(k) => Ok(Some(labels.as_ref().expect("label map").encode(t, k)?)),
        }
    };
    let read_optional = |files: Option<SplitFiles>, name: &str| -> Result<Option<Dataset>> {
        match files {
            None => Ok(None),
            Some(f) => {
                let mut t = read_split(&f, &cols)?;
                if let Some(r) = &renaming {
                    r.apply(&mut t)?;
                }
                let targets = targets_of(&t)?;
                Ok(Some(tokenize_as(&t, encoder, name, targets, separate_texts)?))
            }
        }
    };
    let train_targets = targets_of(&train)?;
    let mut train_table = config.augment.is_some().then(|| train.clone());
    let mut train = tokenize_as(&train, encoder, "train", train_targets, separate_texts)?;
    let mut validation = read_optional(val_files, "validation")?;
    if let Some(fraction) = config.validation_fraction {
        let (keep, held) = split_rows(train.len(), fraction, config.seed, train.targets.as_ref());
        if held.is_empty() || keep.is_empty() {
            crate::bail!("validation_fraction {fraction} of {} rows leaves an empty split", train.len());
        }
        let truncated = train.truncated;
        validation = Some(train.select(&held, "validation"));
        train = train.select(&keep, "train");
        train.truncated = truncated;
        train_table = train_table.map(|t| t.select(&keep));
    }
    let test = read_optional(test_files, "test")?;
    Ok(Splits { train, validation, test, labels, train_table, renaming })
}

/// Deterministic train/validation split of `n` rows: round(n · fraction) rows go to validation.
/// Classification targets are stratified: each class gives its share (largest-remainder rounding,
/// so the total is exact).
pub fn split_rows(n: usize, fraction: f64, seed: u64, targets: Option<&Targets>) -> (Vec<usize>, Vec<usize>) {
    let mut rng = Rng::new(seed);
    let groups: Vec<Vec<usize>> = match targets {
        Some(Targets::Class(classes)) => {
            let k = classes.iter().max().map_or(0, |&m| m as usize + 1);
            let mut g = vec![Vec::new(); k];
            classes.iter().enumerate().for_each(|(i, &c)| g[c as usize].push(i));
            g
        }
        _ => vec![(0..n).collect()],
    };
    let total = ((n as f64) * fraction).round() as usize;
    let exact: Vec<f64> = groups.iter().map(|g| g.len() as f64 * fraction).collect();
    let mut quota: Vec<usize> = exact.iter().map(|x| x.floor() as usize).collect();
    let mut by_remainder: Vec<usize> = (0..groups.len()).collect();
    by_remainder.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
    let missing = total.saturating_sub(quota.iter().sum());
    for &g in by_remainder.iter().take(missing) {
        quota[g] += 1;
    }
    let (mut keep, mut held) = (Vec::new(), Vec::new());
    for (mut g, h) in groups.into_iter().zip(quota) {
        rng.shuffle(&mut g);
        held.extend_from_slice(&g[..h.min(g.len())]);
        keep.extend_from_slice(&g[h.min(g.len())..]);
    }
    keep.sort_unstable();
    held.sort_unstable();
    (keep, held)
}

/// The data source of a config, for messages.
pub fn describe(config: &DataConfig) -> String {
    match (&config.train, &config.hub) {
        (Some(p), _) => p.path().display().to_string(),
        (_, Some(h)) => format!("hub:{h}"),
        _ => "<no data>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stratified_split_is_deterministic_and_keeps_class_ratios() {
        let classes: Vec<u32> = (0..100).map(|i| if i < 80 { 0 } else { 1 }).collect();
        let t = Targets::Class(classes.clone());
        let (keep, held) = split_rows(100, 0.1, 7, Some(&t));
        assert_eq!(held.len(), 10);
        assert_eq!(held.iter().filter(|&&i| classes[i] == 1).count(), 2);
        assert_eq!(keep.len() + held.len(), 100);
        assert_eq!(split_rows(100, 0.1, 7, Some(&t)), (keep.clone(), held.clone()));
        assert_ne!(split_rows(100, 0.1, 8, Some(&t)).1, held);
    }

    #[test]
    fn token_store_is_compact_and_selectable() {
        let mut s = TokenStore::new();
        s.push(&[1, 2, 3]);
        s.push(&[4]);
        s.push(&[5, 6]);
        assert_eq!(s.len(), 3);
        assert_eq!(s.row(1), &[4]);
        assert_eq!(s.lengths(), vec![3, 1, 2]);
        let sel = s.select(&[2, 0]);
        assert_eq!(sel.row(0), &[5, 6]);
        assert_eq!(sel.total_tokens(), 5);
    }
}
