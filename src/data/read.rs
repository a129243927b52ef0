//! Readers: JSONL, CSV/TSV and Parquet (each optionally gzip-compressed, except Parquet, which
//! compresses internally) into the few columns a task needs.
//!
//! Every reader returns a [`Table`]: the text column, an optional text-pair column and an optional
//! label column, already checked for type. Errors name the file and the line (or row) and say what
//! to do: a missing column lists the columns that exist.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use serde_json::Value;

use crate::error::{Context, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jsonl,
    Csv,
    Tsv,
    Parquet,
    /// Token-per-line NER files: `token<TAB>tag`, blank lines between sentences.
    Conll,
    /// Plain text, one document per line (blank lines skipped): unlabelled text for `task = "mlm"`.
    Text,
    /// One row per line, its columns the named groups of a regular expression (`pattern`): TREC's
    /// `LABEL:fine text`, fastText's `__label__x text`.
    Lines,
}

impl Format {
    /// From the file name: `.jsonl`/`.json`/`.ndjson`, `.csv`, `.tsv`, `.parquet`, each optionally `.gz`.
    pub fn from_path(path: &Path) -> Result<Self> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_ascii_lowercase();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
        Ok(match ext {
            "jsonl" | "json" | "ndjson" => Format::Jsonl,
            "csv" => Format::Csv,
            "tsv" | "tab" => Format::Tsv,
            "parquet" | "pq" => Format::Parquet,
            "conll" | "conll2003" | "bio" | "iob" => Format::Conll,
            "txt" | "text" => Format::Text,
            _ => crate::bail!(
                "{}: cannot tell the format from the extension `.{ext}`; use .jsonl, .csv, .tsv, .parquet, .conll or .txt (optionally .gz), or set `format = \"jsonl\"|\"csv\"|\"tsv\"|\"parquet\"|\"conll\"|\"text\"|\"lines\"` (lines: with a `pattern`)",
                path.display()
            ),
        })
    }
}

/// A label cell as stored in the file.
#[derive(Clone, Debug, PartialEq)]
pub enum RawLabel {
    Str(String),
    Int(i64),
    Float(f64),
    /// Multi-label rows: a list of labels.
    List(Vec<RawLabel>),
}

impl RawLabel {
    pub fn kind(&self) -> &'static str {
        match self {
            RawLabel::Str(_) => "string",
            RawLabel::Int(_) => "integer",
            RawLabel::Float(_) => "number",
            RawLabel::List(_) => "list",
        }
    }

    /// The label as a name (for label maps): integers print as themselves.
    pub fn name(&self) -> String {
        match self {
            RawLabel::Str(s) => s.clone(),
            RawLabel::Int(i) => i.to_string(),
            RawLabel::Float(f) => f.to_string(),
            RawLabel::List(l) => format!("{:?}", l.iter().map(RawLabel::name).collect::<Vec<_>>()),
        }
    }
}

/// Which columns to read.
#[derive(Clone, Debug, Default)]
pub struct Columns {
    /// The text column (with `text_parts`: their names joined, for messages).
    pub text: String,
    /// `text_column = ["title", "description"]`: the text is these columns joined by `separator`.
    pub text_parts: Vec<String>,
    pub separator: String,
    pub text_pair: Option<String>,
    /// `None` when labels are not needed (embedding, prediction).
    pub label: Option<String>,
    /// Token classification: a column of pre-split words (then `label` holds one tag per word).
    pub words: Option<String>,
    /// Contrastive training: a hard-negative text column.
    pub negative: Option<String>,
    /// The names came from command-line flags (`--text-column`, ...), not a config's [data]
    /// section: a missing column's message then names the flag to pass.
    pub from_flags: bool,
}

impl Columns {
    /// The names the text is read from: `text`, or each of `text_parts`.
    pub fn text_sources(&self) -> Vec<&str> {
        if self.text_parts.is_empty() {
            vec![self.text.as_str()]
        } else {
            self.text_parts.iter().map(String::as_str).collect()
        }
    }

    /// A row's text from its cells (`get` fetches a column's): the text column, or the parts
    /// joined by the separator, as `x["title"] + " " + x["description"]` would be.
    pub fn joined_text(&self, mut get: impl FnMut(&str) -> Result<String>) -> Result<String> {
        let parts = self.text_sources().into_iter().map(&mut get).collect::<Result<Vec<_>>>()?;
        Ok(parts.join(&self.separator))
    }

    /// The error for a column `name` that `source` lacks (`have`: what it has), with the fix in the
    /// terms the user named the column: a config key or a command-line flag.
    pub fn missing(&self, name: &str, source: &str, have: &str) -> crate::Error {
        let role = if self.words.as_deref() == Some(name) {
            "tokens_column"
        } else if self.label.as_deref() == Some(name) && self.words.is_some() {
            "tags_column"
        } else if self.label.as_deref() == Some(name) {
            "label_column"
        } else if self.text_pair.as_deref() == Some(name) {
            "text_pair_column"
        } else if self.negative.as_deref() == Some(name) {
            "negative_column"
        } else if self.text_parts.iter().any(|p| p == name) {
            "text_column (a list: every name must be a column)"
        } else {
            "text_column"
        };
        let fix = if self.from_flags && role != "negative_column" {
            format!("pass --{} NAME", role.split(' ').next().unwrap_or(role).replace('_', "-"))
        } else {
            format!("set `{role}` in the [data] section")
        };
        crate::err!("{source}: no column `{name}` ({have}); {fix}").with_kind(crate::error::Kind::MissingColumn(name.to_string()))
    }
}

/// The columns of one file, row-aligned.
#[derive(Clone, Debug, Default)]
pub struct Table {
    pub source: String,
    /// Index of this table's first row in its file (tables can be chunks of a file).
    pub first_row: usize,
    pub texts: Vec<String>,
    pub pairs: Option<Vec<String>>,
    pub labels: Option<Vec<RawLabel>>,
    /// Pre-split words per row (token classification); `texts` then holds them joined by spaces.
    pub words: Option<Vec<Vec<String>>>,
    pub negatives: Option<Vec<String>>,
}

/// One row on its way into a table.
#[derive(Default)]
struct Row {
    text: String,
    pair: Option<String>,
    negative: Option<String>,
    words: Option<Vec<String>>,
    label: Option<RawLabel>,
}

impl Table {
    pub fn len(&self) -> usize {
        self.texts.len()
    }
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// These rows, in this order.
    pub fn select(&self, rows: &[usize]) -> Table {
        let pick = |v: &Vec<String>| rows.iter().map(|&i| v[i].clone()).collect::<Vec<_>>();
        Table {
            source: self.source.clone(),
            first_row: self.first_row,
            texts: pick(&self.texts),
            pairs: self.pairs.as_ref().map(pick),
            labels: self.labels.as_ref().map(|l| rows.iter().map(|&i| l[i].clone()).collect()),
            words: self.words.as_ref().map(|w| rows.iter().map(|&i| w[i].clone()).collect()),
            negatives: self.negatives.as_ref().map(pick),
        }
    }
}

/// How to read a file, beyond the columns a task needs: its format and the layout of text files.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadOptions {
    /// The format; `None`: the one the extension names.
    pub format: Option<Format>,
    /// CSV/TSV: the first line names the columns (`true`) or is data.
    pub header: bool,
    /// CSV/TSV without a header: the columns' names, in order. Without them a headerless file's
    /// columns are named by their index: "0", "1", ... (as pandas names them).
    pub columns: Option<Vec<String>>,
    /// Text files in another encoding than UTF-8 (decoded as they are read).
    pub encoding: Option<&'static encoding_rs::Encoding>,
    /// `format = "lines"`: a regular expression whose named groups are the columns.
    pub pattern: Option<String>,
    /// `format = "lines"`: skip (and count) lines the pattern does not match, instead of refusing.
    pub skip_unmatched: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions { format: None, header: true, columns: None, encoding: None, pattern: None, skip_unmatched: false }
    }
}

/// An encoding by any of the labels the WHATWG Encoding Standard knows (`latin-1`, `iso-8859-1`,
/// `cp1252`, `utf-16le`, `shift_jis`, `gb18030`, ...).
pub fn encoding(label: &str) -> Result<&'static encoding_rs::Encoding> {
    // Python's spellings too: `latin-1` (WHATWG: `latin1`), `utf_16`.
    let l = label.trim().to_ascii_lowercase();
    [l.clone(), l.replace('_', "-"), l.replace(['-', '_'], "")].iter().find_map(|c| encoding_rs::Encoding::for_label(c.as_bytes())).ok_or_else(|| {
        crate::err!("`encoding` = \"{label}\" is not an encoding this tool knows; use a name such as \"utf-8\", \"latin-1\" (iso-8859-1), \"windows-1252\", \"utf-16\", \"shift_jis\", \"gb18030\"")
    })
}

/// `pattern` compiled, with the columns its named groups give.
pub fn line_pattern(pattern: &str) -> Result<regex::Regex> {
    let re = regex::Regex::new(pattern).map_err(|e| crate::err!("`pattern` is not a valid regular expression: {e}"))?;
    if re.capture_names().flatten().next().is_none() {
        crate::bail!("`pattern` {pattern:?} has no named group; name the columns with groups, e.g. '^(?P<label>\\S+) (?P<text>.*)$'");
    }
    Ok(re)
}

impl From<Option<Format>> for ReadOptions {
    fn from(format: Option<Format>) -> Self {
        ReadOptions { format, ..Default::default() }
    }
}

/// Reads `path` in `format` (or the one its extension names).
pub fn read_table(path: &Path, format: Option<Format>, cols: &Columns) -> Result<Table> {
    read_table_with(path, &ReadOptions::from(format), cols)
}

/// Reads `path` as `opts` say.
pub fn read_table_with(path: &Path, opts: &ReadOptions, cols: &Columns) -> Result<Table> {
    let mut all: Option<Table> = None;
    read_table_chunks(path, opts, cols, usize::MAX, &mut |chunk| {
        all = Some(chunk);
        Ok(())
    })?;
    all.with_context(|| format!("{}: the file has no rows", path.display()))
}

/// Reads `path` and hands it to `f` in tables of at most `chunk_rows` rows, so that callers that
/// stream (evaluation) hold one chunk at a time.
pub fn read_table_chunks(
    path: &Path,
    opts: &ReadOptions,
    cols: &Columns,
    chunk_rows: usize,
    f: &mut dyn FnMut(Table) -> Result<()>,
) -> Result<()> {
    if !path.exists() {
        crate::bail!("data file {} does not exist", path.display());
    }
    if path.is_dir() {
        crate::bail!("data file {} is a directory; give a file (.jsonl, .csv, .tsv, .parquet, .conll, .txt)", path.display());
    }
    let format = match opts.format {
        Some(f) => f,
        None => Format::from_path(path)?,
    };
    let mut sink = Sink::new(path.display().to_string(), cols, chunk_rows.max(1), f);
    match format {
        Format::Jsonl => read_jsonl(path, opts, cols, &mut sink)?,
        Format::Csv => read_delimited(path, b',', opts, cols, &mut sink)?,
        Format::Tsv => read_delimited(path, b'\t', opts, cols, &mut sink)?,
        Format::Parquet => read_parquet(path, cols, &mut sink)?,
        Format::Conll => read_conll(path, opts, cols, &mut sink)?,
        Format::Text => read_text(path, opts, cols, &mut sink)?,
        Format::Lines => read_lines(path, opts, cols, &mut sink)?,
    }
    sink.finish()
}

/// Collects rows into chunk tables and hands each full chunk on.
struct Sink<'a> {
    table: Table,
    chunk_rows: usize,
    rows_seen: usize,
    /// Kind of the first label of the file: a label column must hold one kind.
    label_kind: Option<(&'static str, String)>,
    f: &'a mut dyn FnMut(Table) -> Result<()>,
}

impl<'a> Sink<'a> {
    fn new(source: String, cols: &Columns, chunk_rows: usize, f: &'a mut dyn FnMut(Table) -> Result<()>) -> Self {
        let table = Table {
            source,
            first_row: 0,
            texts: Vec::new(),
            pairs: cols.text_pair.as_ref().map(|_| Vec::new()),
            labels: cols.label.as_ref().map(|_| Vec::new()),
            words: cols.words.as_ref().map(|_| Vec::new()),
            negatives: cols.negative.as_ref().map(|_| Vec::new()),
        };
        Sink { table, chunk_rows, rows_seen: 0, label_kind: None, f }
    }

    fn source(&self) -> &str {
        &self.table.source
    }

    fn push(&mut self, text: String, pair: Option<String>, label: Option<RawLabel>) -> Result<()> {
        self.push_row(Row { text, pair, label, ..Default::default() })
    }

    fn push_row(&mut self, row: Row) -> Result<()> {
        let Row { text, pair, negative, words, label } = row;
        if let Some(l) = &label {
            let family = label_family(l);
            match &self.label_kind {
                None => self.label_kind = Some((family, l.kind().to_string())),
                Some((first, first_kind)) if *first != family => crate::bail!(
                    "{}: the label column mixes types: row 1 has a {first_kind}, row {} has a {} ({}); make every label the same type",
                    self.table.source,
                    self.rows_seen + 1,
                    l.kind(),
                    l.name()
                ),
                _ => {}
            }
        }
        self.table.texts.push(text);
        if let (Some(p), Some(pairs)) = (pair, self.table.pairs.as_mut()) {
            pairs.push(p);
        }
        if let (Some(l), Some(labels)) = (label, self.table.labels.as_mut()) {
            labels.push(l);
        }
        if let (Some(w), Some(words)) = (words, self.table.words.as_mut()) {
            words.push(w);
        }
        if let (Some(n), Some(negatives)) = (negative, self.table.negatives.as_mut()) {
            negatives.push(n);
        }
        self.rows_seen += 1;
        if self.table.len() >= self.chunk_rows {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.table.is_empty() {
            return Ok(());
        }
        let next = Table {
            source: self.table.source.clone(),
            first_row: self.rows_seen,
            texts: Vec::new(),
            pairs: self.table.pairs.as_ref().map(|_| Vec::new()),
            labels: self.table.labels.as_ref().map(|_| Vec::new()),
            words: self.table.words.as_ref().map(|_| Vec::new()),
            negatives: self.table.negatives.as_ref().map(|_| Vec::new()),
        };
        let full = std::mem::replace(&mut self.table, next);
        (self.f)(full)
    }

    fn finish(mut self) -> Result<()> {
        if self.rows_seen == 0 {
            crate::bail!("{}: the file has no rows", self.table.source);
        }
        self.flush()
    }
}

fn label_family(l: &RawLabel) -> &'static str {
    match l {
        RawLabel::Int(_) | RawLabel::Float(_) => "number",
        other => other.kind(),
    }
}

fn open_maybe_gz(path: &Path) -> Result<Box<dyn BufRead>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let gz = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    Ok(if gz {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(BufReader::new(file))))
    } else {
        Box::new(BufReader::new(file))
    })
}

/// A text file as UTF-8: decompressed, then decoded from `opts.encoding` when it is not UTF-8.
fn open_text(path: &Path, opts: &ReadOptions) -> Result<Box<dyn BufRead>> {
    let raw = open_maybe_gz(path)?;
    Ok(match opts.encoding {
        Some(enc) if enc != encoding_rs::UTF_8 => {
            Box::new(BufReader::new(encoding_rs_io::DecodeReaderBytesBuilder::new().encoding(Some(enc)).build(raw)))
        }
        _ => raw,
    })
}

/// Bytes that are not UTF-8: the error names the file, the line, the byte (in the line and in the
/// file) and the usual fix.
fn not_utf8(source: &str, line: usize, line_start: Option<u64>, at: usize) -> crate::Error {
    let file_offset = line_start.map(|s| format!(", file offset {}", s + at as u64)).unwrap_or_default();
    crate::err!(
        "{source}, line {line}: invalid UTF-8 at byte {} of the line{file_offset}; the file is in another encoding (latin-1?): set `encoding = \"latin-1\"` in [data] (`--encoding latin-1`), or convert it with `iconv -f latin1 -t utf8 IN > OUT`",
        at + 1
    )
}

/// A line's text without its line ending (LF or CRLF) and, on line 1, a UTF-8 byte-order mark.
fn line_text<'a>(buf: &'a [u8], lineno: usize, source: &str, line_start: u64) -> Result<&'a str> {
    let mut bytes = buf.strip_suffix(b"\n").unwrap_or(buf);
    bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    let skip = if lineno == 1 && bytes.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
    std::str::from_utf8(&bytes[skip..]).map_err(|e| not_utf8(source, lineno, Some(line_start), skip + e.valid_up_to()))
}

fn check_text(text: &str, source: &str, row: &str, column: &str) -> Result<()> {
    if text.trim().is_empty() {
        crate::bail!("{source}, {row}: column `{column}` is empty; remove the row or give it text");
    }
    Ok(())
}

/// Calls `f` with (line number, text) for every line of `reader` (LF or CRLF ended, a leading BOM
/// dropped, invalid UTF-8 refused with its line and byte offset).
fn each_line(mut reader: impl BufRead, source: &str, mut f: impl FnMut(usize, &str) -> Result<()>) -> Result<()> {
    let (mut buf, mut lineno, mut offset) = (Vec::new(), 0usize, 0u64);
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).with_context(|| format!("cannot read {source}"))?;
        if n == 0 {
            return Ok(());
        }
        lineno += 1;
        let line = line_text(&buf, lineno, source, offset)?;
        offset += n as u64;
        f(lineno, line)?;
    }
}

fn read_jsonl(path: &Path, opts: &ReadOptions, cols: &Columns, sink: &mut Sink) -> Result<()> {
    let source = sink.source().to_string();
    each_line(open_text(path, opts)?, &source, |lineno, line| {
        if line.trim().is_empty() {
            return Ok(());
        }
        let v: Value = serde_json::from_str(line).map_err(|e| crate::err!("{source}, line {lineno}: malformed JSON ({e})"))?;
        let obj = v.as_object().with_context(|| format!("{source}, line {lineno}: expected a JSON object per line"))?;
        let field = |name: &str| -> Result<&Value> {
            obj.get(name).ok_or_else(|| {
                let have: Vec<&str> = obj.keys().map(String::as_str).collect();
                cols.missing(name, &format!("{source}, line {lineno}"), &format!("this row has: {}", have.join(", ")))
            })
        };
        let string = |name: &str| -> Result<String> {
            match field(name)? {
                Value::String(s) => Ok(s.clone()),
                other => crate::bail!("{source}, line {lineno}: column `{name}` must be a string, found {other}"),
            }
        };
        let text_of = |name: &str| -> Result<String> {
            let s = string(name)?;
            check_text(&s, &source, &format!("line {lineno}"), name)?;
            Ok(s)
        };
        let label = match &cols.label {
            Some(name) => Some(json_label(field(name)?).with_context(|| format!("{source}, line {lineno}: column `{name}`"))?),
            None => None,
        };
        if let Some(name) = &cols.words {
            let words: Vec<String> = match field(name)? {
                Value::Array(items) => items
                    .iter()
                    .map(|w| w.as_str().map(str::to_string))
                    .collect::<Option<_>>()
                    .with_context(|| format!("{source}, line {lineno}: column `{name}` must be a list of strings"))?,
                other => crate::bail!("{source}, line {lineno}: column `{name}` must be a list of words, found {other}"),
            };
            let row = words_row(words, label, &source, &format!("line {lineno}"))?;
            return sink.push_row(row);
        }
        let text = cols.joined_text(string)?;
        check_text(&text, &source, &format!("line {lineno}"), &cols.text)?;
        let pair = cols.text_pair.as_deref().map(text_of).transpose()?;
        let negative = cols.negative.as_deref().map(text_of).transpose()?;
        sink.push_row(Row { text, pair, negative, words: None, label })
    })
}

/// A token-classification row: words and one tag per word.
fn words_row(words: Vec<String>, label: Option<RawLabel>, source: &str, at: &str) -> Result<Row> {
    if words.is_empty() {
        crate::bail!("{source}, {at}: the row has no words");
    }
    if let Some(w) = words.iter().find(|w| w.trim().is_empty() || w.chars().any(char::is_whitespace)) {
        crate::bail!("{source}, {at}: word {w:?} is empty or contains whitespace; words must be pre-split");
    }
    if let Some(l) = &label {
        match l {
            RawLabel::List(tags) if tags.len() == words.len() => {}
            RawLabel::List(tags) => crate::bail!("{source}, {at}: {} words but {} tags; give one tag per word", words.len(), tags.len()),
            other => crate::bail!("{source}, {at}: tags must be a list (one per word), found the {} `{}`", other.kind(), other.name()),
        }
    }
    Ok(Row { text: words.join(" "), words: Some(words), label, ..Default::default() })
}

/// CoNLL: one `token ... tag` per line (tag last), a blank line between sentences, `-DOCSTART-` skipped.
/// Plain text: every non-blank line is one document.
fn read_text(path: &Path, opts: &ReadOptions, cols: &Columns, sink: &mut Sink) -> Result<()> {
    let source = sink.source().to_string();
    if cols.label.is_some() || cols.text_pair.is_some() || cols.words.is_some() || !cols.text_parts.is_empty() {
        crate::bail!("{source}: a plain text file holds one document per line and no labels; it is for task = \"mlm\" (or give a .jsonl, .csv, .tsv or .parquet file with columns)");
    }
    each_line(open_text(path, opts)?, &source, |_, line| {
        let line = line.trim_start_matches('\u{feff}').trim_end_matches('\r');
        if line.trim().is_empty() {
            return Ok(());
        }
        sink.push(line.to_string(), None, None)
    })
}

fn read_conll(path: &Path, opts: &ReadOptions, cols: &Columns, sink: &mut Sink) -> Result<()> {
    let source = sink.source().to_string();
    if cols.words.is_none() {
        crate::bail!("{source}: CoNLL files hold one token and tag per line; they are for task = \"token-classification\"");
    }
    let reader = open_text(path, opts)?;
    let (mut words, mut tags) = (Vec::new(), Vec::new());
    let mut start_line = 1;
    let mut flush = |words: &mut Vec<String>, tags: &mut Vec<RawLabel>, at: usize| -> Result<()> {
        if words.is_empty() {
            return Ok(());
        }
        let label = cols.label.as_ref().map(|_| RawLabel::List(std::mem::take(tags)));
        let row = words_row(std::mem::take(words), label, &source, &format!("sentence at line {at}"))?;
        tags.clear();
        sink.push_row(row)
    };
    each_line(reader, &source, |lineno, line| {
        // A line holding only a byte-order mark (WNUT17's dev file ends with one) is blank.
        let line = line.trim_start_matches('\u{feff}');
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            flush(&mut words, &mut tags, start_line)?;
            start_line = lineno + 1;
            return Ok(());
        }
        if fields[0] == "-DOCSTART-" {
            return Ok(());
        }
        if fields.len() < 2 {
            crate::bail!("{source}, line {lineno}: expected `token tag`, found {line:?}");
        }
        if words.is_empty() {
            start_line = lineno;
        }
        words.push(fields[0].to_string());
        tags.push(RawLabel::Str(fields[fields.len() - 1].to_string()));
        Ok(())
    })?;
    flush(&mut words, &mut tags, start_line)
}

/// `format = "lines"`: each non-blank line matched against `pattern`; its named groups are the
/// columns (a label group's text is typed as a CSV cell's).
fn read_lines(path: &Path, opts: &ReadOptions, cols: &Columns, sink: &mut Sink) -> Result<()> {
    let source = sink.source().to_string();
    let Some(pattern) = &opts.pattern else {
        crate::bail!("{source}: format = \"lines\" needs `pattern`, a regular expression whose named groups are the columns, e.g. '^(?P<label>[A-Z]+):\\S+ (?P<text>.*)$' for TREC");
    };
    let re = line_pattern(pattern)?;
    let groups: Vec<&str> = re.capture_names().flatten().collect();
    if cols.words.is_some() || cols.negative.is_some() {
        crate::bail!("{source}: word-list and negative columns are read from JSONL (and CoNLL) files");
    }
    for name in cols.text_sources().into_iter().chain(cols.text_pair.as_deref()).chain(cols.label.as_deref()) {
        if !groups.contains(&name) {
            return Err(cols.missing(name, &source, &format!("`pattern`'s named groups are: {}", groups.join(", "))));
        }
    }
    let (mut skipped, mut first_skipped) = (0usize, 0usize);
    each_line(open_text(path, opts)?, &source, |lineno, line| {
        if line.trim().is_empty() {
            return Ok(());
        }
        let Some(caps) = re.captures(line) else {
            if opts.skip_unmatched {
                skipped += 1;
                if first_skipped == 0 {
                    first_skipped = lineno;
                }
                return Ok(());
            }
            let shown: String = line.chars().take(80).collect();
            crate::bail!("{source}, line {lineno}: {shown:?} does not match `pattern` {pattern:?}; fix the line, or set `skip_unmatched = true` to skip such lines (they are counted)");
        };
        let group = |name: &str| caps.name(name).map_or("", |m| m.as_str()).to_string();
        let at = format!("line {lineno}");
        let text = cols.joined_text(|name| Ok(group(name)))?;
        check_text(&text, &source, &at, &cols.text)?;
        let pair = match &cols.text_pair {
            Some(name) => {
                let p = group(name);
                check_text(&p, &source, &at, name)?;
                Some(p)
            }
            None => None,
        };
        let label = match &cols.label {
            Some(name) => {
                let l = group(name);
                if l.trim().is_empty() {
                    crate::bail!("{source}, {at}: group `{name}` is empty; every row needs a label");
                }
                Some(csv_label(l.trim()))
            }
            None => None,
        };
        sink.push(text, pair, label)
    })?;
    if skipped > 0 {
        crate::say!("note: {source}: skipped {skipped} line(s) that `pattern` does not match (skip_unmatched = true); the first is line {first_skipped}");
    }
    Ok(())
}

fn json_label(v: &Value) -> Result<RawLabel> {
    Ok(match v {
        Value::String(s) => RawLabel::Str(s.clone()),
        Value::Bool(b) => RawLabel::Int(*b as i64),
        Value::Number(n) => match n.as_i64() {
            Some(i) => RawLabel::Int(i),
            None => RawLabel::Float(n.as_f64().context("number out of range")?),
        },
        Value::Array(items) => RawLabel::List(items.iter().map(json_label).collect::<Result<_>>()?),
        Value::Null => crate::bail!("the label is null; every row needs a label"),
        Value::Object(_) => crate::bail!("a label must be a string, number or list, found an object"),
    })
}

fn read_delimited(path: &Path, delimiter: u8, opts: &ReadOptions, cols: &Columns, sink: &mut Sink) -> Result<()> {
    let source = sink.source().to_string();
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        // The first line is read as the header either way; without one it is the first record.
        .has_headers(true)
        // GLUE-style TSVs contain bare quotes inside sentences; they are not CSV quoting.
        .quoting(delimiter != b'\t')
        .from_reader(open_text(path, opts)?);
    let first = rdr
        .byte_headers()
        .map_err(|e| crate::err!("{source}: cannot read the first line ({e})"))?
        .clone();
    let first: Vec<String> = first.iter().map(|h| String::from_utf8_lossy(h).trim().to_string()).collect();
    let headers: Vec<String> = match (opts.header, &opts.columns) {
        (true, _) => first.clone(),
        (false, Some(names)) if names.len() != first.len() => crate::bail!(
            "{source}, line 1: `columns` names {} column(s) ({}) but the line has {} field(s); name every column",
            names.len(),
            names.join(", "),
            first.len()
        ),
        (false, Some(names)) => names.clone(),
        (false, None) => (0..first.len()).map(|i| i.to_string()).collect(),
    };
    let index = |name: &str| -> Result<usize> {
        headers.iter().position(|h| h == name).ok_or_else(|| {
            let have = if opts.header { "the header has" } else if opts.columns.is_some() { "`columns` names" } else { "the columns are numbered" };
            let e = cols.missing(name, &source, &format!("{have}: {}", headers.join(", ")));
            if opts.header && looks_like_data(&headers) {
                let fix = if cols.from_flags { "pass `--header false` (and `--columns a,b,c` to name them)" } else { "set `header = false` (and `columns = [...]` to name them)" };
                e.wrap(format!("the first line of {source} looks like data, not column names: {fix}"))
            } else {
                e
            }
        })
    };
    let tis = cols.text_sources().into_iter().map(index).collect::<Result<Vec<_>>>()?;
    let pi = cols.text_pair.as_deref().map(index).transpose()?;
    let li = cols.label.as_deref().map(index).transpose()?;
    let mut record = csv::ByteRecord::new();
    let mut first_line_is_data = !opts.header;
    loop {
        let more = if std::mem::take(&mut first_line_is_data) {
            record = rdr.byte_headers().map_err(|e| crate::err!("{source}: {e}"))?.clone();
            true
        } else {
            rdr.read_byte_record(&mut record).map_err(|e| match e.kind() {
            csv::ErrorKind::UnequalLengths { pos, expected_len, len } => crate::err!(
                "{source}, line {}: expected {expected_len} fields like the header, found {len}",
                pos.as_ref().map_or(0, |p| p.line())
            ),
            _ => crate::err!("{source}: {e}"),
            })?
        };
        if !more {
            break;
        }
        let line = record.position().map_or(0, |p| p.line());
        let start = record.position().map(|p| p.byte());
        let cell = |i: usize| -> Result<String> {
            String::from_utf8(record[i].to_vec()).map_err(|e| {
                // The bad byte's place: the cell's start in the record plus its place in the cell.
                let before: usize = (0..i).map(|j| record[j].len() + 1).sum();
                not_utf8(&source, line as usize, start, before + e.utf8_error().valid_up_to())
            })
        };
        let parts = tis.iter().map(|&i| cell(i)).collect::<Result<Vec<_>>>()?;
        let text = parts.join(&cols.separator);
        check_text(&text, &source, &format!("line {line}"), &cols.text)?;
        let pair = match pi {
            Some(i) => {
                let pair = cell(i)?;
                check_text(&pair, &source, &format!("line {line}"), cols.text_pair.as_deref().unwrap_or(""))?;
                Some(pair)
            }
            None => None,
        };
        let label = li.map(|i| cell(i).map(|c| csv_label(c.trim()))).transpose()?;
        sink.push(text, pair, label)?;
    }
    Ok(())
}

/// A header with a number in it, or with a cell of several words, is more likely a first row of
/// data (AG News's `"3","Wall St. Bears Claw Back Into the Black (Reuters)",...`).
fn looks_like_data(header: &[String]) -> bool {
    header.iter().any(|h| h.parse::<f64>().is_ok() || h.split_whitespace().count() > 3)
}

/// CSV cells are untyped: integers and numbers are recognised as such, the rest are names.
fn csv_label(cell: &str) -> RawLabel {
    if let Ok(i) = cell.parse::<i64>() {
        RawLabel::Int(i)
    } else if let Ok(f) = cell.parse::<f64>() {
        RawLabel::Float(f)
    } else {
        RawLabel::Str(cell.to_string())
    }
}

/// The parquet crate can panic on corrupted pages (seen in its RLE decoder): such a panic is
/// contained and reported as an error naming the file.
fn read_parquet(path: &Path, cols: &Columns, sink: &mut Sink) -> Result<()> {
    let source = sink.source().to_string();
    crate::error::contained(&source, || read_parquet_unguarded(path, cols, sink))
}

fn read_parquet_unguarded(path: &Path, cols: &Columns, sink: &mut Sink) -> Result<()> {
    let source = sink.source().to_string();
    let file = File::open(path).with_context(|| format!("cannot open {source}"))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| crate::err!("{source}: not a readable Parquet file ({e})"))?;
    let schema = builder.schema().clone();
    let names: Vec<&str> = cols.text_sources().into_iter().chain(cols.text_pair.as_deref()).chain(cols.label.as_deref()).collect();
    let mut roots = Vec::new();
    for name in &names {
        let i = schema.index_of(name).map_err(|_| {
            let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            cols.missing(name, &source, &format!("the file has: {}", have.join(", ")))
        })?;
        roots.push(i);
    }
    // Read only the columns we need, in record batches.
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder.with_projection(mask).with_batch_size(8192).build().map_err(|e| crate::err!("{source}: {e}"))?;
    let mut row0 = 0usize;
    for batch in reader {
        let batch: RecordBatch = batch.map_err(|e| crate::err!("{source}: {e}"))?;
        let col = |name: &str| batch.column_by_name(name).cloned().expect("projected column");
        let texts = if cols.text_parts.is_empty() {
            string_column(&col(&cols.text), &source, &cols.text, row0, true)?
        } else {
            let parts = cols.text_parts.iter().map(|n| string_column(&col(n), &source, n, row0, false)).collect::<Result<Vec<_>>>()?;
            let joined: Vec<String> = (0..batch.num_rows()).map(|i| parts.iter().map(|p| p[i].as_str()).collect::<Vec<_>>().join(&cols.separator)).collect();
            for (i, t) in joined.iter().enumerate() {
                check_text(t, &source, &format!("row {}", row0 + i + 1), &cols.text)?;
            }
            joined
        };
        let mut pairs = match &cols.text_pair {
            Some(name) => Some(string_column(&col(name), &source, name, row0, true)?.into_iter()),
            None => None,
        };
        let labels = cols.label.as_deref().map(col);
        for (i, text) in texts.into_iter().enumerate() {
            let label = match (&labels, &cols.label) {
                (Some(arr), Some(name)) => {
                    Some(arrow_label(arr, i).with_context(|| format!("{source}, row {}: column `{name}`", row0 + i + 1))?)
                }
                _ => None,
            };
            sink.push(text, pairs.as_mut().and_then(Iterator::next), label)?;
            if cols.words.is_some() || cols.negative.is_some() {
                crate::bail!("{source}: word-list and negative columns are read from JSONL (and CoNLL) files");
            }
        }
        row0 += batch.num_rows();
    }
    Ok(())
}

/// A text column's strings; `non_empty`: an empty one is an error naming its row (the parts of a
/// joined text may be empty, as long as the text is not).
fn string_column(arr: &ArrayRef, source: &str, name: &str, row0: usize, non_empty: bool) -> Result<Vec<String>> {
    let get = |i: usize| -> Option<String> {
        match arr.data_type() {
            DataType::Utf8 => arr.as_any().downcast_ref::<arrow_array::StringArray>().map(|a| a.value(i).to_string()),
            DataType::LargeUtf8 => arr.as_any().downcast_ref::<arrow_array::LargeStringArray>().map(|a| a.value(i).to_string()),
            DataType::Utf8View => arr.as_any().downcast_ref::<arrow_array::StringViewArray>().map(|a| a.value(i).to_string()),
            _ => None,
        }
    };
    if !matches!(arr.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
        crate::bail!("{source}: column `{name}` has type {}, but text must be a string column", arr.data_type());
    }
    (0..arr.len())
        .map(|i| {
            if arr.is_null(i) {
                crate::bail!("{source}, row {}: column `{name}` is null", row0 + i + 1);
            }
            let s = get(i).expect("string column");
            if non_empty {
                check_text(&s, source, &format!("row {}", row0 + i + 1), name)?;
            }
            Ok(s)
        })
        .collect()
}

fn arrow_label(arr: &ArrayRef, i: usize) -> Result<RawLabel> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    if arr.is_null(i) {
        crate::bail!("the label is null; every row needs a label");
    }
    Ok(match arr.data_type() {
        DataType::Int8 => RawLabel::Int(arr.as_primitive::<Int8Type>().value(i) as i64),
        DataType::Int16 => RawLabel::Int(arr.as_primitive::<Int16Type>().value(i) as i64),
        DataType::Int32 => RawLabel::Int(arr.as_primitive::<Int32Type>().value(i) as i64),
        DataType::Int64 => RawLabel::Int(arr.as_primitive::<Int64Type>().value(i)),
        DataType::UInt8 => RawLabel::Int(arr.as_primitive::<UInt8Type>().value(i) as i64),
        DataType::UInt16 => RawLabel::Int(arr.as_primitive::<UInt16Type>().value(i) as i64),
        DataType::UInt32 => RawLabel::Int(arr.as_primitive::<UInt32Type>().value(i) as i64),
        DataType::UInt64 => RawLabel::Int(arr.as_primitive::<UInt64Type>().value(i) as i64),
        DataType::Float32 => RawLabel::Float(arr.as_primitive::<Float32Type>().value(i) as f64),
        DataType::Float64 => RawLabel::Float(arr.as_primitive::<Float64Type>().value(i)),
        DataType::Boolean => RawLabel::Int(arr.as_boolean().value(i) as i64),
        DataType::Utf8 => RawLabel::Str(arr.as_string::<i32>().value(i).to_string()),
        DataType::LargeUtf8 => RawLabel::Str(arr.as_string::<i64>().value(i).to_string()),
        DataType::Utf8View => RawLabel::Str(arr.as_string_view().value(i).to_string()),
        DataType::List(_) => {
            let values = arr.as_list::<i32>().value(i);
            RawLabel::List((0..values.len()).map(|j| arrow_label(&values, j)).collect::<Result<_>>()?)
        }
        DataType::LargeList(_) => {
            let values = arr.as_list::<i64>().value(i);
            RawLabel::List((0..values.len()).map(|j| arrow_label(&values, j)).collect::<Result<_>>()?)
        }
        other => crate::bail!("labels of type {other} are not supported (use integers, strings, floats or lists)"),
    })
}

/// A label column must hold one kind of value (integers and floats count as numbers together).
fn check_label_types(table: &Table) -> Result<()> {
    let Some(labels) = &table.labels else { return Ok(()) };
    let first = label_family(&labels[0]);
    if let Some((i, l)) = labels.iter().enumerate().find(|(_, l)| label_family(l) != first) {
        crate::bail!(
            "{}: the label column mixes types: row 1 has a {first}, row {} has a {} ({}); make every label the same type",
            table.source,
            i + 1,
            l.kind(),
            l.name()
        );
    }
    Ok(())
}

/// Where a dataset split's files are.
#[derive(Clone, Debug)]
pub struct SplitFiles {
    pub files: Vec<PathBuf>,
    pub read: ReadOptions,
}

/// Reads and concatenates several files of one split (e.g. Parquet shards).
pub fn read_split(split: &SplitFiles, cols: &Columns) -> Result<Table> {
    let mut out: Option<Table> = None;
    for f in &split.files {
        let t = read_table_with(f, &split.read, cols)?;
        match out.as_mut() {
            None => out = Some(t),
            Some(acc) => {
                acc.texts.extend(t.texts);
                if let (Some(a), Some(b)) = (acc.pairs.as_mut(), t.pairs) {
                    a.extend(b);
                }
                if let (Some(a), Some(b)) = (acc.labels.as_mut(), t.labels) {
                    a.extend(b);
                }
                if let (Some(a), Some(b)) = (acc.words.as_mut(), t.words) {
                    a.extend(b);
                }
                if let (Some(a), Some(b)) = (acc.negatives.as_mut(), t.negatives) {
                    a.extend(b);
                }
            }
        }
    }
    let mut table = out.context("a split with no files")?;
    if split.files.len() > 1 {
        table.source = format!("{} (+{} more)", split.files[0].display(), split.files.len() - 1);
        check_label_types(&table)?;
    }
    Ok(table)
}
