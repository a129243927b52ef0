//! Real files as people download them: headerless CSV/TSV, label maps, joined text columns, line
//! formats, encodings and per-split formats, each read to the same rows as the equivalent JSONL.

use std::path::{Path, PathBuf};

use modernft::data::read::{read_table_with, ReadOptions};
use modernft::data::{read_table, Columns, DataConfig, RawLabel, Table};

fn write(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

fn cols(text: &str, label: &str) -> Columns {
    Columns { text: text.into(), label: Some(label.into()), ..Default::default() }
}

fn rows(t: &Table) -> Vec<(String, RawLabel)> {
    t.texts.iter().cloned().zip(t.labels.clone().unwrap()).collect()
}

/// The JSONL file a user would have written by hand for these rows.
fn jsonl(dir: &Path, rows: &[(&str, serde_json::Value)]) -> PathBuf {
    let text: String = rows.iter().map(|(t, l)| format!("{}\n", serde_json::json!({"text": t, "label": l}))).collect();
    write(dir, "same.jsonl", text.as_bytes())
}

#[test]
fn headerless_csv_and_tsv_read_by_given_names_or_by_index() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // AG News's train.csv: no header, quoted, label first.
    let csv = write(d, "ag.csv", b"\"3\",\"Wall St. Bears Claw Back\",\"Short-sellers, Wall Street's dwindling band\"\n\"4\",\"Carlyle Looks Toward Commercial Aerospace\",\"Private investment firm\"\r\n");
    let want = read_table(&jsonl(d, &[("Short-sellers, Wall Street's dwindling band", 3.into()), ("Private investment firm", 4.into())]), None, &cols("text", "label")).unwrap();
    let named = ReadOptions { header: false, columns: Some(vec!["label".into(), "title".into(), "description".into()]), ..Default::default() };
    let t = read_table_with(&csv, &named, &cols("description", "label")).unwrap();
    assert_eq!(rows(&t), rows(&want));
    let by_index = ReadOptions { header: false, ..Default::default() };
    assert_eq!(rows(&read_table_with(&csv, &by_index, &cols("2", "0")).unwrap()), rows(&want));
    // A headerless TSV: description<TAB>class.
    let tsv = write(d, "d.tsv", b"Short-sellers, Wall Street's dwindling band\t3\nPrivate investment firm\t4\n");
    assert_eq!(rows(&read_table_with(&tsv, &by_index, &cols("0", "1")).unwrap()), rows(&want));

    // Read with a header (the default), the first line looks like data: the error says what to do.
    let e = read_table(&csv, None, &cols("text", "label")).unwrap_err().chain();
    assert!(e.contains("looks like data") && e.contains("header = false") && e.contains("no column `text`"), "{e}");
    // Names for a different number of fields, and names by index out of range.
    let two = ReadOptions { header: false, columns: Some(vec!["label".into(), "text".into()]), ..Default::default() };
    let e = read_table_with(&csv, &two, &cols("text", "label")).unwrap_err().chain();
    assert!(e.contains("ag.csv, line 1") && e.contains("names 2 column(s)") && e.contains("3 field(s)"), "{e}");
    let e = read_table_with(&csv, &by_index, &cols("5", "0")).unwrap_err().chain();
    assert!(e.contains("no column `5`") && e.contains("numbered: 0, 1, 2"), "{e}");
    // A data file that is a directory.
    let e = read_table(d, Some(modernft::data::Format::Csv), &cols("text", "label")).unwrap_err().chain();
    assert!(e.contains("is a directory"), "{e}");
}

#[test]
fn header_and_columns_keys_are_checked_before_any_work() {
    let parse = |extra: &str| toml::from_str::<DataConfig>(&format!("train = \"x.csv\"\n{extra}")).unwrap();
    let e = parse("columns = [\"label\", \"text\"]").validate().unwrap_err().chain();
    assert!(e.contains("header = false"), "{e}");
    let e = parse("header = false\ncolumns = [\"text\", \"text\"]").validate().unwrap_err().chain();
    assert!(e.contains("`text` twice"), "{e}");
    let e = parse("header = false\ncolumns = []").validate().unwrap_err().chain();
    assert!(e.contains("non-empty name"), "{e}");
    assert!(parse("header = false\ncolumns = [\"label\", \"text\"]").validate().is_ok());
}

fn encoder() -> modernft::data::TextEncoder {
    modernft::data::TextEncoder::from_file(&crate::common::fixtures().join("tiny-v4/tokenizer.json"), 64).unwrap()
}

fn config(toml_text: &str, dir: &Path) -> DataConfig {
    // Paths in the config are relative to `dir`.
    let text = toml_text.replace("DIR/", &format!("{}/", dir.display()));
    toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn label_maps_name_integer_labels_in_every_split_from_a_table_or_a_names_file() {
    use modernft::data::{load_splits, TargetKind};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // AG News as published: headerless CSVs with labels 1-4, and classes.txt.
    write(d, "train.csv", b"\"3\",\"t\",\"stocks fell\"\n\"1\",\"t\",\"war in the north\"\n\"2\",\"t\",\"the team won\"\n\"4\",\"t\",\"a new chip\"\n\"3\",\"t\",\"banks rose\"\n");
    write(d, "test.csv", b"\"2\",\"t\",\"a late goal\"\n\"4\",\"t\",\"faster phones\"\n");
    write(d, "classes.txt", b"World\nSports\nBusiness\nSci/Tech\n");
    // The same rows as a user would convert them by hand.
    write(d, "train.jsonl", b"{\"text\": \"stocks fell\", \"label\": \"Business\"}\n{\"text\": \"war in the north\", \"label\": \"World\"}\n{\"text\": \"the team won\", \"label\": \"Sports\"}\n{\"text\": \"a new chip\", \"label\": \"Sci/Tech\"}\n{\"text\": \"banks rose\", \"label\": \"Business\"}\n");
    write(d, "test.jsonl", b"{\"text\": \"a late goal\", \"label\": \"Sports\"}\n{\"text\": \"faster phones\", \"label\": \"Sci/Tech\"}\n");
    let by_hand = config("train = \"DIR/train.jsonl\"\ntest = \"DIR/test.jsonl\"\nlabels = [\"World\", \"Sports\", \"Business\", \"Sci/Tech\"]\n", d);
    let want = load_splits(&by_hand, &encoder(), Some(TargetKind::Classification)).unwrap();
    let headerless = "train = \"DIR/train.csv\"\ntest = \"DIR/test.csv\"\nheader = false\ncolumns = [\"label\", \"title\", \"description\"]\ntext_column = \"description\"\n";
    for names in ["label_names = \"DIR/classes.txt\"", "label_names = { 1 = \"World\", 2 = \"Sports\", 3 = \"Business\", 4 = \"Sci/Tech\" }"] {
        let cfg = config(&format!("{headerless}{names}\n"), d);
        let got = load_splits(&cfg, &encoder(), Some(TargetKind::Classification)).unwrap_or_else(|e| panic!("{names}: {}", e.chain()));
        assert_eq!(got.labels.as_ref().unwrap().names(), want.labels.as_ref().unwrap().names(), "{names}");
        assert_eq!(got.train.targets, want.train.targets, "{names}");
        assert_eq!(got.train.tokens, want.train.tokens, "{names}");
        assert_eq!(got.test.as_ref().unwrap().targets, want.test.as_ref().unwrap().targets, "{names}");
        assert_eq!(got.renaming.as_ref().unwrap().map()["1"], "World");
    }
    // Labels 0..K-1 take a names file from line 1 = label 0.
    write(d, "zero.csv", b"0,war\n1,goal\n3,chip\n");
    let cfg = config("train = \"DIR/zero.csv\"\nheader = false\ncolumns = [\"label\", \"text\"]\nlabel_names = \"DIR/classes.txt\"\n", d);
    let got = load_splits(&cfg, &encoder(), Some(TargetKind::Classification)).unwrap();
    assert_eq!(got.train.targets, Some(modernft::data::Targets::Class(vec![0, 1, 3])));
    assert!(got.renaming.unwrap().describe().contains("line 1 is label 0"));
    // A stored label without a name, a name given twice, a regression task: clear errors.
    write(d, "five.csv", b"5,war\n1,goal\n");
    let cfg = config("train = \"DIR/five.csv\"\nheader = false\ncolumns = [\"label\", \"text\"]\nlabel_names = { 1 = \"World\" }\n", d);
    let e = load_splits(&cfg, &encoder(), Some(TargetKind::Classification)).err().unwrap().chain();
    assert!(e.contains("five.csv, row 1") && e.contains("label `5` has no name"), "{e}");
    let cfg = config("train = \"DIR/five.csv\"\nheader = false\ncolumns = [\"label\", \"text\"]\nlabel_names = { 1 = \"A\", 5 = \"A\" }\n", d);
    let e = load_splits(&cfg, &encoder(), Some(TargetKind::Classification)).err().unwrap().chain();
    assert!(e.contains("`A` to two labels"), "{e}");
    let e = load_splits(&cfg, &encoder(), Some(TargetKind::Regression)).err().unwrap().chain();
    assert!(e.contains("label_names") && e.contains("remove it"), "{e}");
}

fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_headerless_csv_with_a_names_file_trains_and_evaluates_from_config_keys_or_flags() {
    use crate::common::{fixtures, run_with_stdin};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let topics = [("war", "peace talks"), ("goal", "the match"), ("stocks", "the market"), ("chip", "new phones")];
    let rows = |n: usize| -> String {
        (0..n).map(|i| format!("\"{}\",\"headline {i}\",\"{} and {} again\"\n", i % 4 + 1, topics[i % 4].0, topics[i % 4].1)).collect()
    };
    let train = write(d, "train.csv", rows(48).as_bytes());
    let test = write(d, "test.csv", rows(12).as_bytes());
    let classes = write(d, "classes.txt", b"World\nSports\nBusiness\nSci/Tech\n");
    let run = d.join("run");
    let cfg = write(
        d,
        "ag.toml",
        format!(
            "task = \"classification\"\n[model]\nconfig = \"{tiny}/config.json\"\ntokenizer = \"{tiny}/tokenizer.json\"\n\
             [data]\ntrain = \"{train}\"\ntest = \"{test}\"\nheader = false\ncolumns = [\"label\", \"title\", \"description\"]\n\
             text_column = [\"title\", \"description\"]\nlabel_names = \"{classes}\"\nmax_length = 16\n\
             [training]\nepochs = 2\nbatch_size = 8\nlearning_rate = 1e-3\n[output]\ndir = \"{run}\"\n",
            tiny = fixtures().join("tiny-v4").display(),
            train = train.display(),
            test = test.display(),
            classes = classes.display(),
            run = run.display()
        )
        .as_bytes(),
    );
    let out = run_with_stdin(&["train", "--quiet", "--config", cfg.to_str().unwrap()], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 → World"), "{}", String::from_utf8_lossy(&out.stderr));
    let model: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("model/config.json")).unwrap()).unwrap();
    assert_eq!(model["id2label"], serde_json::json!({"0": "World", "1": "Sports", "2": "Business", "3": "Sci/Tech"}));
    // The run's config names the labels itself (the names file may move).
    let settled = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(settled.contains("Sci/Tech") && !settled.contains("classes.txt"), "{settled}");
    std::fs::rename(&classes, d.join("moved.txt")).unwrap();
    let from_config: serde_json::Value =
        serde_json::from_str(&ok(run_with_stdin(&["eval", "--model", run.to_str().unwrap(), "--config", run.join("config.toml").to_str().unwrap(), "--split", "test", "--json"], ""))).unwrap();
    let flags = [
        "eval", "--model", run.to_str().unwrap(), "--data", test.to_str().unwrap(), "--header", "false", "--columns", "label,title,description",
        "--text-column", "title", "--text-column", "description", "--label-names", "1=World,2=Sports,3=Business,4=Sci/Tech", "--json",
    ];
    let from_flags: serde_json::Value = serde_json::from_str(&ok(run_with_stdin(&flags, ""))).unwrap();
    assert_eq!(from_config["rows"], 12, "{from_config}");
    assert_eq!(from_config["accuracy"], from_flags["accuracy"], "{from_config}\n{from_flags}");
    // Without the header flag the first line reads as a header, and the error says what to do.
    let out = run_with_stdin(&["eval", "--model", run.to_str().unwrap(), "--data", test.to_str().unwrap(), "--text-column", "description"], "");
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("looks like data") && e.contains("--header false"), "{e}");
}

#[test]
fn trec_lines_in_latin1_and_fasttext_lines_read_as_the_same_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // TREC's train file: `COARSE:fine question`, ISO-8859-1 (0xE9 = é), CRLF.
    let trec = write(d, "trec.label", b"DESC:manner How did serfdom develop in and then leave Russia ?\r\nENTY:cremat What films featured the caf\xe9 scene ?\r\n\r\nHUM:ind Who was Pel\xe9 ?\r\n");
    let want = read_table(
        &jsonl(d, &[("How did serfdom develop in and then leave Russia ?", "DESC".into()), ("What films featured the café scene ?", "ENTY".into()), ("Who was Pelé ?", "HUM".into())]),
        None,
        &cols("text", "label"),
    )
    .unwrap();
    let lines = ReadOptions {
        format: Some(modernft::data::Format::Lines),
        encoding: Some(modernft::data::read::encoding("latin-1").unwrap()),
        pattern: Some(r"^(?P<label>[A-Z]+):\S+ (?P<text>.*)$".into()),
        ..Default::default()
    };
    assert_eq!(rows(&read_table_with(&trec, &lines, &cols("text", "label")).unwrap()), rows(&want));
    // Read as UTF-8 (no encoding), the error says which key fixes it.
    let utf8 = ReadOptions { encoding: None, ..lines.clone() };
    let e = read_table_with(&trec, &utf8, &cols("text", "label")).unwrap_err().chain();
    assert!(e.contains("trec.label, line 2") && e.contains("encoding = \"latin-1\""), "{e}");
    // A CSV in latin-1 too, and a UTF-16 file (with its byte-order mark).
    let csv = write(d, "l1.csv", b"text,label\nWho was Pel\xe9 ?,HUM\n");
    let latin1 = ReadOptions { encoding: lines.encoding, ..Default::default() };
    assert_eq!(read_table_with(&csv, &latin1, &cols("text", "label")).unwrap().texts, vec!["Who was Pelé ?"]);
    let mut utf16 = vec![0xFF, 0xFE];
    "text,label\nWho was Pelé ?,HUM\n".encode_utf16().for_each(|u| utf16.extend(u.to_le_bytes()));
    let csv16 = write(d, "u16.csv", &utf16);
    let as16 = ReadOptions { encoding: Some(modernft::data::read::encoding("utf-16").unwrap()), ..Default::default() };
    assert_eq!(read_table_with(&csv16, &as16, &cols("text", "label")).unwrap().texts, vec!["Who was Pelé ?"]);
    assert!(modernft::data::read::encoding("klingon").unwrap_err().chain().contains("latin-1"));

    // fastText: `__label__x text`; a line that does not match is an error with its number, or
    // skipped and counted.
    let ft = write(d, "ft.txt", "__label__DESC How did serfdom develop in and then leave Russia ?\n__label__ENTY What films featured the café scene ?\nnot a labelled line\n__label__HUM Who was Pelé ?\n".as_bytes());
    let fasttext = ReadOptions { format: Some(modernft::data::Format::Lines), pattern: Some(r"^__label__(?P<label>\S+) (?P<text>.*)$".into()), ..Default::default() };
    let e = read_table_with(&ft, &fasttext, &cols("text", "label")).unwrap_err().chain();
    assert!(e.contains("ft.txt, line 3") && e.contains("skip_unmatched"), "{e}");
    let skipping = ReadOptions { skip_unmatched: true, ..fasttext.clone() };
    assert_eq!(rows(&read_table_with(&ft, &skipping, &cols("text", "label")).unwrap()), rows(&want));
    // A column the pattern does not name.
    let e = read_table_with(&ft, &skipping, &cols("sentence", "label")).unwrap_err().chain();
    assert!(e.contains("no column `sentence`") && e.contains("named groups are: label, text"), "{e}");
}

#[test]
fn encoding_and_pattern_keys_are_checked_before_any_work() {
    let parse = |extra: &str| toml::from_str::<DataConfig>(&format!("train = \"x.txt\"\n{extra}")).unwrap();
    let e = parse("encoding = \"klingon\"").validate().unwrap_err().chain();
    assert!(e.contains("[data] encoding") && e.contains("klingon"), "{e}");
    let e = parse("format = \"lines\"").validate().unwrap_err().chain();
    assert!(e.contains("needs `pattern`"), "{e}");
    let e = parse("format = \"lines\"\npattern = \"(?P<text>.*\"").validate().unwrap_err().chain();
    assert!(e.contains("[data] pattern") && e.contains("regular expression"), "{e}");
    let e = parse("format = \"lines\"\npattern = \"^(.*)$\"").validate().unwrap_err().chain();
    assert!(e.contains("no named group"), "{e}");
    let e = parse("pattern = \"^(?P<text>.*)$\"").validate().unwrap_err().chain();
    assert!(e.contains("reads files with `format = \"lines\"`"), "{e}");
    let e = parse("skip_unmatched = true").validate().unwrap_err().chain();
    assert!(e.contains("skip_unmatched"), "{e}");
    assert!(parse("format = \"lines\"\npattern = \"^(?P<label>\\\\S+) (?P<text>.*)$\"\nencoding = \"latin-1\"").validate().is_ok());
}

#[test]
fn joined_text_columns_read_alike_from_every_format() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let want = read_table(&jsonl(d, &[("Wall St. Bears | Short-sellers are back", 3.into()), ("Carlyle | ", 4.into())]), None, &cols("text", "label")).unwrap();
    let joined = Columns { text: "title + description".into(), text_parts: vec!["title".into(), "description".into()], separator: " | ".into(), label: Some("label".into()), ..Default::default() };
    let json = write(d, "j.jsonl", b"{\"label\": 3, \"title\": \"Wall St. Bears\", \"description\": \"Short-sellers are back\"}\n{\"label\": 4, \"title\": \"Carlyle\", \"description\": \"\"}\n");
    let csv = write(d, "c.csv", b"\"3\",\"Wall St. Bears\",\"Short-sellers are back\"\n\"4\",\"Carlyle\",\"\"\n");
    let lines = write(d, "l.txt", b"3\tWall St. Bears\tShort-sellers are back\n4\tCarlyle\t\n");
    let pq = d.join("p.parquet");
    let batch = arrow_array::RecordBatch::try_from_iter(vec![
        ("label", Arc::new(arrow_array::Int64Array::from(vec![3, 4])) as arrow_array::ArrayRef),
        ("title", Arc::new(arrow_array::StringArray::from(vec!["Wall St. Bears", "Carlyle"])) as arrow_array::ArrayRef),
        ("description", Arc::new(arrow_array::StringArray::from(vec!["Short-sellers are back", ""])) as arrow_array::ArrayRef),
    ])
    .unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&pq).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let headerless = ReadOptions { header: false, columns: Some(vec!["label".into(), "title".into(), "description".into()]), ..Default::default() };
    let pattern = ReadOptions { format: Some(modernft::data::Format::Lines), pattern: Some(r"^(?P<label>\d+)\t(?P<title>[^\t]*)\t(?P<description>.*)$".into()), ..Default::default() };
    for (file, opts) in [(&json, ReadOptions::default()), (&csv, headerless), (&pq, ReadOptions::default()), (&lines, pattern)] {
        let t = read_table_with(file, &opts, &joined).unwrap_or_else(|e| panic!("{}: {}", file.display(), e.chain()));
        assert_eq!(rows(&t), rows(&want), "{}", file.display());
    }
    // Every part must exist; the joined text must not be empty.
    let missing = Columns { text_parts: vec!["title".into(), "body".into()], ..joined.clone() };
    let e = read_table(&json, None, &missing).unwrap_err().chain();
    assert!(e.contains("no column `body`") && e.contains("text_column (a list"), "{e}");
    let empty = write(d, "e.jsonl", b"{\"label\": 1, \"title\": \"\", \"description\": \"\"}\n");
    let nothing = Columns { separator: String::new(), ..joined.clone() };
    let e = read_table(&empty, None, &nothing).unwrap_err().chain();
    assert!(e.contains("e.jsonl, line 1") && e.contains("title + description") && e.contains("empty"), "{e}");
    // The config key: a list of columns, checked.
    let cfg: DataConfig = toml::from_str("train = \"x.jsonl\"\ntext_column = [\"title\", \"description\"]\ntext_separator = \" | \"").unwrap();
    let c = cfg.columns(true);
    assert_eq!((c.text_parts, c.separator.as_str()), (vec!["title".to_string(), "description".to_string()], " | "));
    let cfg: DataConfig = toml::from_str("train = \"x.jsonl\"\ntext_column = []").unwrap();
    assert!(cfg.validate().unwrap_err().chain().contains("text_column"));
}

#[test]
fn each_split_reads_with_its_own_format_header_columns_and_encoding() {
    use modernft::data::{load_splits, TargetKind};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Token classification: JSONL training rows beside WNUT17's CoNLL test file (no extension the
    // format could be told from).
    write(d, "train.jsonl", b"{\"tokens\": [\"john\", \"flew\", \"to\", \"rome\"], \"tags\": [\"B-per\", \"O\", \"O\", \"B-loc\"]}\n{\"tokens\": [\"mary\", \"stayed\"], \"tags\": [\"B-per\", \"O\"]}\n");
    write(d, "emerging.test.annotated", b"ann\tB-per\nsaw\tO\nparis\tB-loc\n\nrome\tB-loc\nwon\tO\n");
    write(d, "test.jsonl", b"{\"tokens\": [\"ann\", \"saw\", \"paris\"], \"tags\": [\"B-per\", \"O\", \"B-loc\"]}\n{\"tokens\": [\"rome\", \"won\"], \"tags\": [\"B-loc\", \"O\"]}\n");
    let want = load_splits(&config("train = \"DIR/train.jsonl\"\ntest = \"DIR/test.jsonl\"\n", d), &encoder(), Some(TargetKind::Tags)).unwrap();
    let cfg = config("train = \"DIR/train.jsonl\"\n[test]\npath = \"DIR/emerging.test.annotated\"\nformat = \"conll\"\n", d);
    let got = load_splits(&cfg, &encoder(), Some(TargetKind::Tags)).unwrap_or_else(|e| panic!("{}", e.chain()));
    let (g, w) = (got.test.as_ref().unwrap(), want.test.as_ref().unwrap());
    assert_eq!((&g.tokens, &g.targets, &g.words), (&w.tokens, &w.targets, &w.words));
    // Without the section's format, the extension says nothing: the error says what to set.
    let e = load_splits(&config("train = \"DIR/train.jsonl\"\ntest = \"DIR/emerging.test.annotated\"\n", d), &encoder(), Some(TargetKind::Tags)).err().unwrap().chain();
    assert!(e.contains("cannot tell the format") && e.contains("format"), "{e}");

    // Classification: a headerless latin-1 CSV for training beside a JSONL validation file; the
    // top-level keys are the defaults a section overrides.
    write(d, "train.csv", b"pos,caf\xe9 au lait\nneg,cold soup\n");
    write(d, "val.jsonl", "{\"text\": \"café crème\", \"label\": \"pos\"}\n".as_bytes());
    write(d, "train-utf8.jsonl", "{\"text\": \"café au lait\", \"label\": \"pos\"}\n{\"text\": \"cold soup\", \"label\": \"neg\"}\n".as_bytes());
    let want = load_splits(&config("train = \"DIR/train-utf8.jsonl\"\nvalidation = \"DIR/val.jsonl\"\n", d), &encoder(), Some(TargetKind::Classification)).unwrap();
    let cfg = config("validation = \"DIR/val.jsonl\"\n[train]\npath = \"DIR/train.csv\"\nheader = false\ncolumns = [\"label\", \"text\"]\nencoding = \"latin-1\"\n", d);
    let got = load_splits(&cfg, &encoder(), Some(TargetKind::Classification)).unwrap_or_else(|e| panic!("{}", e.chain()));
    assert_eq!((&got.train.tokens, &got.train.targets), (&want.train.tokens, &want.train.targets));
    assert_eq!(got.validation.as_ref().unwrap().tokens, want.validation.as_ref().unwrap().tokens);
    // A section's keys are checked, naming the section; an unknown key is refused.
    let bad = config("[train]\npath = \"DIR/train.csv\"\ncolumns = [\"label\", \"text\"]\n", d);
    let e = bad.validate().unwrap_err().chain();
    assert!(e.contains("[data.train]") && e.contains("header = false"), "{e}");
    let e = toml::from_str::<DataConfig>("[train]\npath = \"x.csv\"\nformt = \"csv\"\n").unwrap_err().to_string();
    assert!(e.contains("formt") && e.contains("a split's section takes"), "{e}");
}

#[test]
fn split_sections_and_new_keys_survive_the_run_config_round_trip() {
    use modernft::config::RunConfig;
    let text = "task = \"classification\"\n[model]\nconfig = \"c.json\"\ntokenizer = \"t.json\"\n\
        [data]\nheader = false\ncolumns = [\"label\", \"title\", \"description\"]\ntext_column = [\"title\", \"description\"]\n\
        label_names = { 1 = \"World\", 2 = \"Sports\" }\nencoding = \"latin-1\"\n\
        [data.train]\npath = \"train.csv\"\n[data.test]\npath = \"test.tsv\"\nformat = \"tsv\"\nheader = true\ncolumns = []\n";
    // `columns = []` under a header is refused, naming the section.
    let e = RunConfig::from_toml(text, "x.toml", &[]).err().unwrap().chain();
    assert!(e.contains("[data.test]"), "{e}");
    let text = text.replace("columns = []\n", "");
    let cfg = RunConfig::from_toml(&text, "x.toml", &[]).unwrap_or_else(|e| panic!("{}", e.chain()));
    let again = RunConfig::from_toml(&cfg.to_toml().unwrap(), "again.toml", &[]).unwrap_or_else(|e| panic!("{}", e.chain()));
    assert_eq!(again.data, cfg.data);
    // --set reaches a section's key.
    let set = RunConfig::from_toml(&text, "x.toml", &["data.test.path=other.tsv".into()]).unwrap();
    assert_eq!(set.data.test.unwrap().path(), Path::new("other.tsv"));
}

#[test]
fn eval_scores_unknown_gold_labels_as_errors_when_allowed_and_says_how_otherwise() {
    use crate::common::run_with_stdin;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = tiny_classifier(d);
    // The test data has a label the model never saw ("neutral", twice) and a second unknown one.
    let gold = ["pos", "neg", "neutral", "pos", "neutral", "neg", "mixed"];
    let texts = ["a great film", "an awful plot", "a film", "great acting", "a plot", "awful", "great but awful"];
    let test: String = texts.iter().zip(gold).map(|(t, l)| format!("{}\n", serde_json::json!({"text": t, "label": l}))).collect();
    let test = write(d, "test.jsonl", test.as_bytes());
    let out = run_with_stdin(&["eval", "--model", run.to_str().unwrap(), "--data", test.to_str().unwrap()], "");
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("test.jsonl, row 3") && e.contains("`neutral`") && e.contains("--allow-unknown-labels"), "{e}");
    let out = run_with_stdin(&["eval", "--model", run.to_str().unwrap(), "--data", test.to_str().unwrap(), "--allow-unknown-labels", "--json"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("3 row(s) have gold labels the model does not know (neutral, mixed)"));
    let ev: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // What scikit-learn computes with labels = the model's and the unknown ones: the predictions
    // from `predict`, every unknown row an error, each unknown label a class of its own.
    let predicted: Vec<String> = ok(run_with_stdin(&["predict", "--model", run.to_str().unwrap()], &texts.join("\n")))
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["label"].as_str().unwrap().to_string())
        .collect();
    let classes = ["neg", "pos", "neutral", "mixed"];
    assert_eq!(ev["labels"], serde_json::json!(classes));
    let correct = gold.iter().zip(&predicted).filter(|&(g, p)| *g == p.as_str()).count();
    assert_eq!(ev["rows"], 7);
    assert!((ev["accuracy"].as_f64().unwrap() - correct as f64 / 7.0).abs() < 1e-9, "{ev}");
    let f1: f64 = classes
        .iter()
        .map(|c| {
            let tp = gold.iter().zip(&predicted).filter(|(g, p)| *g == c && p.as_str() == *c).count() as f64;
            let pred = predicted.iter().filter(|p| p.as_str() == *c).count() as f64;
            let support = gold.iter().filter(|g| *g == c).count() as f64;
            let (p, r) = (if pred > 0.0 { tp / pred } else { 0.0 }, if support > 0.0 { tp / support } else { 0.0 });
            if p + r > 0.0 { 2.0 * p * r / (p + r) } else { 0.0 }
        })
        .sum::<f64>()
        / classes.len() as f64;
    assert!((ev["f1_macro"].as_f64().unwrap() - f1).abs() < 1e-9, "{ev} vs {f1}");
    assert_eq!(ev["per_class"]["neutral"]["support"], 2);
}

#[test]
fn predict_reads_data_files_with_the_data_flags_and_notes_tabs_in_plain_lines() {
    use crate::common::run_with_stdin;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = tiny_classifier(d);
    let m = run.to_str().unwrap();
    let texts = ["a great café", "an awful plot, really", "great"];
    let want = ok(run_with_stdin(&["predict", "--model", m, "--all-scores"], &texts.join("\n")));
    // A headerless latin-1 CSV with the text in its second column.
    let csv: Vec<u8> = texts.iter().enumerate().flat_map(|(i, t)| format!("{i},\"{t}\"\n").chars().map(|c| c as u32 as u8).collect::<Vec<u8>>()).collect();
    let csv = write(d, "in.csv", &csv);
    let got = ok(run_with_stdin(&["predict", "--model", m, "--all-scores", "--input", csv.to_str().unwrap(), "--header", "false", "--columns", "id,text", "--encoding", "latin-1"], ""));
    assert_eq!(got, want);
    // A .tsv file is read as a data file by its extension (header and text column).
    let tsv = write(d, "in.tsv", format!("n\tsentence\n{}", texts.iter().enumerate().map(|(i, t)| format!("{i}\t{t}\n")).collect::<String>()).as_bytes());
    assert_eq!(ok(run_with_stdin(&["predict", "--model", m, "--all-scores", "--input", tsv.to_str().unwrap(), "--text-column", "sentence"], "")), want);
    // Data flags without a file, and a plain line holding a TAB.
    let out = run_with_stdin(&["predict", "--model", m, "--header", "false"], "x\n");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("pass it with --input"));
    let out = run_with_stdin(&["predict", "--model", m], "a premise\ta hypothesis\nplain\n");
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && e.contains("1 input line(s) hold a TAB (the first: line 1)") && e.contains("text_pair"), "{e}");
}

#[test]
fn set_messages_name_the_section_and_the_type_and_data_takes_set() {
    use modernft::config::RunConfig;
    let base = "[model]\nconfig = \"c.json\"\ntokenizer = \"t.json\"\n[data]\ntrain = \"x.jsonl\"\n";
    let e = RunConfig::from_toml(base, "x.toml", &["learning_rate=1e-4".into()]).err().unwrap().chain();
    assert!(e.contains("--set learning_rate=1e-4: `learning_rate` is a key of [training]; write --set training.learning_rate=1e-4"), "{e}");
    let e = RunConfig::from_toml(base, "x.toml", &["training.batch_size=eight".into()]).err().unwrap().chain();
    assert!(e.contains("--set training.batch_size=eight") && e.contains("expected a whole number"), "{e}");
    let e = RunConfig::from_toml(base, "x.toml", &["data.learning_rate=3".into()]).err().unwrap().chain();
    assert!(e.starts_with("--set: unknown key `data.learning_rate`: `learning_rate` is a key of [training]"), "{e}");
    let e = RunConfig::from_toml(&format!("{base}epochs = 3\n"), "x.toml", &[]).err().unwrap().chain();
    assert!(e.contains("x.toml: unknown key `data.epochs`: `epochs` is a key of [training]"), "{e}");
    // `data --set` applies to the config it reads.
    let dir = tempfile::tempdir().unwrap();
    let rows: String = (0..8).map(|i| format!("{}\n", serde_json::json!({"text": format!("row {i} text"), "label": (i % 2)}))).collect();
    let train = write(dir.path(), "t.jsonl", rows.as_bytes());
    let cfg = write(dir.path(), "c.toml", format!("[model]\ntokenizer = \"{}\"\nconfig = \"c.json\"\n[data]\ntrain = \"nowhere.jsonl\"\n", crate::common::fixtures().join("tiny-v4/tokenizer.json").display()).as_bytes());
    let out = crate::common::run_with_stdin(&["data", "--config", cfg.to_str().unwrap(), "--set", &format!("data.train={}", train.display()), "--json"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"rows\":8"), "{}", String::from_utf8_lossy(&out.stdout));
}

/// A tiny classifier (pos/neg) trained in a moment under `d`: its run folder.
fn tiny_classifier(d: &Path) -> PathBuf {
    use crate::common::{fixtures, run_with_stdin};
    let rows: String = (0..32).map(|i| format!("{}\n", serde_json::json!({"text": (["a great film", "an awful plot"][i % 2]), "label": (["pos", "neg"][i % 2])}))).collect();
    let train = write(d, "train.jsonl", rows.as_bytes());
    let run = d.join("run");
    let cfg = write(
        d,
        "c.toml",
        format!(
            "[model]\nconfig = \"{tiny}/config.json\"\ntokenizer = \"{tiny}/tokenizer.json\"\n[data]\ntrain = \"{train}\"\nmax_length = 16\n[training]\nepochs = 1\nbatch_size = 8\n[output]\ndir = \"{run}\"\n",
            tiny = fixtures().join("tiny-v4").display(),
            train = train.display(),
            run = run.display()
        )
        .as_bytes(),
    );
    ok(run_with_stdin(&["train", "--quiet", "--config", cfg.to_str().unwrap()], ""));
    run
}
