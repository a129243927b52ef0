//! Labels: from raw cells to training targets.
//!
//! The label map is built from the training split, sorted and therefore stable across runs
//! (numerically when every label is an integer, so 2 < 10; otherwise by name), or given explicitly
//! with `labels = [...]`. It becomes the model's `id2label` / `label2id`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::data::read::{RawLabel, Table};
use crate::error::Result;

/// What a row's label means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    /// One class per row (cross-entropy).
    Classification,
    /// A list of classes per row (sigmoid + binary cross-entropy).
    MultiLabel,
    /// A number per row (`num_labels = 1`, mean squared error).
    Regression,
    /// One tag per word (token classification, e.g. BIO named-entity tags).
    Tags,
}

/// Targets of a split, row-aligned.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    Class(Vec<u32>),
    MultiLabel(Vec<Vec<u32>>),
    Regression(Vec<f32>),
    /// Tag ids per word.
    Tags(Vec<Vec<u32>>),
}

impl Targets {
    pub fn len(&self) -> usize {
        match self {
            Targets::Class(v) => v.len(),
            Targets::MultiLabel(v) => v.len(),
            Targets::Regression(v) => v.len(),
            Targets::Tags(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn select(&self, rows: &[usize]) -> Targets {
        match self {
            Targets::Class(v) => Targets::Class(rows.iter().map(|&i| v[i]).collect()),
            Targets::MultiLabel(v) => Targets::MultiLabel(rows.iter().map(|&i| v[i].clone()).collect()),
            Targets::Regression(v) => Targets::Regression(rows.iter().map(|&i| v[i]).collect()),
            Targets::Tags(v) => Targets::Tags(rows.iter().map(|&i| v[i].clone()).collect()),
        }
    }
}

/// `label_names`: names for the labels as a file stores them (AG News stores 1–4 and lists the
/// names in `classes.txt`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LabelNames {
    /// A UTF-8 file with one name per line, in label order.
    File(std::path::PathBuf),
    /// Stored label → name (`{ 1 = "World", 2 = "Sports" }`).
    Map(BTreeMap<String, String>),
}

/// [`LabelNames`] made concrete: every stored label's name, in label order.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelRenaming {
    /// (stored label, name), in label order (numerically when every stored label is an integer).
    pairs: Vec<(String, String)>,
    /// Where the names came from, for messages.
    source: String,
}

impl LabelNames {
    /// The names, with a names file's lines numbered from 1 when the stored labels run 1..=K (no 0
    /// among them, K = the number of lines, as AG News's) and from 0 otherwise; `stored` are the
    /// training split's labels.
    pub fn resolve(&self, stored: &[RawLabel]) -> Result<LabelRenaming> {
        let (pairs, source): (Vec<(String, String)>, String) = match self {
            LabelNames::Map(map) => {
                let mut pairs: Vec<(String, String)> = map.iter().map(|(k, v)| (k.trim().to_string(), v.clone())).collect();
                if pairs.iter().all(|(k, _)| k.parse::<i64>().is_ok()) {
                    pairs.sort_by_key(|(k, _)| k.parse::<i64>().unwrap_or(i64::MAX));
                }
                (pairs, "`label_names`".to_string())
            }
            LabelNames::File(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| crate::err!("cannot read `label_names` file {} ({e}); it lists one label name per line, in label order", path.display()))?;
                let names: Vec<String> = text.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
                if names.is_empty() {
                    crate::bail!("`label_names` file {} has no names; it lists one label name per line, in label order", path.display());
                }
                let ints: Vec<i64> = flatten(stored).filter_map(|l| if let RawLabel::Int(i) = l { Some(*i) } else { None }).collect();
                let from_one = !ints.is_empty() && !ints.contains(&0) && ints.contains(&(names.len() as i64));
                let first = usize::from(from_one);
                let pairs = names.into_iter().enumerate().map(|(i, n)| ((i + first).to_string(), n)).collect();
                (pairs, format!("`label_names` file {} (line 1 is label {first})", path.display()))
            }
        };
        let mut seen = BTreeSet::new();
        if let Some((_, n)) = pairs.iter().find(|(_, n)| !seen.insert(n.as_str())) {
            crate::bail!("{source} gives the name `{n}` to two labels; give each label its own name");
        }
        if let Some((k, _)) = pairs.iter().find(|(_, n)| n.trim().is_empty()) {
            crate::bail!("{source} gives label {k} an empty name");
        }
        Ok(LabelRenaming { pairs, source })
    }
}

fn flatten(labels: &[RawLabel]) -> impl Iterator<Item = &RawLabel> {
    labels.iter().flat_map(|l| match l {
        RawLabel::List(items) => items.iter().collect::<Vec<_>>(),
        other => vec![other],
    })
}

impl LabelRenaming {
    /// The names, in label order: the label set of a run that names its labels.
    pub fn names(&self) -> Vec<String> {
        self.pairs.iter().map(|(_, n)| n.clone()).collect()
    }

    /// Stored label → name, as a config records it.
    pub fn map(&self) -> BTreeMap<String, String> {
        self.pairs.iter().cloned().collect()
    }

    /// A one-line account for stderr: `label_names: 1 → World, 2 → Sports, …`.
    pub fn describe(&self) -> String {
        let shown: Vec<String> = self.pairs.iter().take(8).map(|(k, n)| format!("{k} → {n}")).collect();
        let more = if self.pairs.len() > 8 { format!(", … ({} in all)", self.pairs.len()) } else { String::new() };
        format!("labels named by {}: {}{more}", self.source, shown.join(", "))
    }

    /// Replaces every stored label of `table` by its name; a label without one is an error naming
    /// the file, the row and the labels that have names.
    pub fn apply(&self, table: &mut Table) -> Result<()> {
        let Some(labels) = table.labels.as_mut() else { return Ok(()) };
        let rename = |l: &RawLabel, row: usize| -> Result<RawLabel> {
            let stored = l.name();
            match self.pairs.iter().find(|(k, _)| *k == stored) {
                Some((_, n)) => Ok(RawLabel::Str(n.clone())),
                None => crate::bail!(
                    "{}, row {}: label `{stored}` has no name in {} (it names {}); fix the row or name the label",
                    table.source,
                    table.first_row + row + 1,
                    self.source,
                    self.pairs.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(", ")
                ),
            }
        };
        for (row, l) in labels.iter_mut().enumerate() {
            let named = match &*l {
                RawLabel::List(items) => RawLabel::List(items.iter().map(|i| rename(i, row)).collect::<Result<_>>()?),
                other => rename(other, row)?,
            };
            *l = named;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelMap {
    names: Vec<String>,
    /// Whether the user fixed the label set (then it is not re-derived from data).
    pub explicit: bool,
}

impl LabelMap {
    pub fn new(names: Vec<String>, explicit: bool) -> Result<Self> {
        let unique: BTreeSet<&String> = names.iter().collect();
        if unique.len() != names.len() {
            crate::bail!("`labels` lists a label twice: {names:?}");
        }
        if names.is_empty() {
            crate::bail!("the label set is empty");
        }
        Ok(LabelMap { names, explicit })
    }

    /// The sorted set of labels in `table` (lists are flattened for multi-label data).
    pub fn from_table(table: &Table) -> Result<Self> {
        let labels = table.labels.as_ref().ok_or_else(|| crate::err!("{}: no label column was read", table.source))?;
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut all_int = true;
        let mut visit = |l: &RawLabel| {
            all_int &= matches!(l, RawLabel::Int(_));
            seen.insert(l.name());
        };
        for l in labels {
            match l {
                RawLabel::List(items) => items.iter().for_each(&mut visit),
                other => visit(other),
            }
        }
        let mut names: Vec<String> = seen.into_iter().collect();
        if all_int {
            names.sort_by_key(|n| n.parse::<i64>().unwrap_or(i64::MAX));
        }
        Self::new(names, false)
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn id(&self, name: &str) -> Option<u32> {
        self.names.iter().position(|n| n == name).map(|i| i as u32)
    }

    /// The labels of `table` outside this set, each once, with the row it first appears in (from
    /// 0), in order of appearance (lists are looked into).
    pub fn unknown_in(&self, table: &Table) -> Vec<(usize, String)> {
        let mut out: Vec<(usize, String)> = Vec::new();
        for (row, l) in table.labels.iter().flatten().enumerate() {
            for item in flatten(std::slice::from_ref(l)) {
                let name = item.name();
                if self.id(&name).is_none() && !out.iter().any(|(_, n)| *n == name) {
                    out.push((row, name));
                }
            }
        }
        out
    }

    /// Rows of `table` with a label (or a list item) outside this set.
    pub fn unknown_rows(&self, table: &Table) -> usize {
        table.labels.iter().flatten().filter(|l| flatten(std::slice::from_ref(*l)).any(|i| self.id(&i.name()).is_none())).count()
    }

    /// This set and `extra` after it (ids K, K + 1, ...).
    pub fn extended(&self, extra: &[String]) -> Result<LabelMap> {
        LabelMap::new(self.names.iter().chain(extra).cloned().collect(), self.explicit)
    }

    fn id_of(&self, label: &RawLabel, table: &Table, row: usize) -> Result<u32> {
        let name = label.name();
        self.id(&name).ok_or_else(|| {
            crate::err!(
                "{}, row {}: label `{name}` is not among the training labels ({}); fix the row, or list every label with `labels = [...]` in the [data] section",
                table.source,
                table.first_row + row + 1,
                self.names.join(", ")
            )
        })
    }

    /// Converts a table's label column into targets.
    pub fn encode(&self, table: &Table, kind: TargetKind) -> Result<Targets> {
        let labels = table.labels.as_ref().ok_or_else(|| crate::err!("{}: no label column was read", table.source))?;
        match kind {
            TargetKind::Classification => labels
                .iter()
                .enumerate()
                .map(|(row, l)| match l {
                    RawLabel::List(_) => crate::bail!(
                        "{}, row {}: the label is a list; for several labels per row set `multi_label = true`",
                        table.source,
                        table.first_row + row + 1
                    ),
                    l => self.id_of(l, table, row),
                })
                .collect::<Result<_>>()
                .map(Targets::Class),
            TargetKind::Tags => labels
                .iter()
                .enumerate()
                .map(|(row, l)| match l {
                    RawLabel::List(items) => items.iter().map(|i| self.id_of(i, table, row)).collect::<Result<Vec<_>>>(),
                    other => crate::bail!("{}, row {}: tags must be a list, found `{}`", table.source, table.first_row + row + 1, other.name()),
                })
                .collect::<Result<_>>()
                .map(Targets::Tags),
            TargetKind::MultiLabel => labels
                .iter()
                .enumerate()
                .map(|(row, l)| {
                    let items = match l {
                        RawLabel::List(items) => items.as_slice(),
                        single => std::slice::from_ref(single),
                    };
                    let mut ids = items.iter().map(|i| self.id_of(i, table, row)).collect::<Result<Vec<_>>>()?;
                    ids.sort_unstable();
                    ids.dedup();
                    Ok(ids)
                })
                .collect::<Result<_>>()
                .map(Targets::MultiLabel),
            TargetKind::Regression => regression_targets(table, labels).map(Targets::Regression),
        }
    }
}

fn regression_targets(table: &Table, labels: &[RawLabel]) -> Result<Vec<f32>> {
    labels
        .iter()
        .enumerate()
        .map(|(row, l)| {
            let v = match l {
                RawLabel::Int(i) => *i as f64,
                RawLabel::Float(f) => *f,
                other => crate::bail!(
                    "{}, row {}: regression needs a number, found the {} `{}`",
                    table.source,
                    table.first_row + row + 1,
                    other.kind(),
                    other.name()
                ),
            };
            if !v.is_finite() {
                crate::bail!("{}, row {}: the target is {v}; regression targets must be finite numbers", table.source, table.first_row + row + 1);
            }
            Ok(v as f32)
        })
        .collect()
}

/// Count of rows per label id (multi-label rows count once per label).
pub fn distribution(targets: &Targets, num_labels: usize) -> BTreeMap<usize, usize> {
    let mut counts: BTreeMap<usize, usize> = (0..num_labels).map(|i| (i, 0)).collect();
    match targets {
        Targets::Class(v) => v.iter().for_each(|&c| *counts.entry(c as usize).or_default() += 1),
        Targets::MultiLabel(v) | Targets::Tags(v) => v.iter().flatten().for_each(|&c| *counts.entry(c as usize).or_default() += 1),
        Targets::Regression(_) => {}
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(labels: Vec<RawLabel>) -> Table {
        Table { source: "t.jsonl".into(), first_row: 0, texts: vec!["x".into(); labels.len()], pairs: None, labels: Some(labels), words: None, negatives: None }
    }

    #[test]
    fn integer_labels_sort_numerically_and_names_lexically() {
        let t = table(vec![RawLabel::Int(10), RawLabel::Int(2), RawLabel::Int(2)]);
        assert_eq!(LabelMap::from_table(&t).unwrap().names(), &["2", "10"]);
        let t = table(vec![RawLabel::Str("pos".into()), RawLabel::Str("neg".into())]);
        let m = LabelMap::from_table(&t).unwrap();
        assert_eq!(m.names(), &["neg", "pos"]);
        assert_eq!(m.encode(&t, TargetKind::Classification).unwrap(), Targets::Class(vec![1, 0]));
    }

    #[test]
    fn unseen_labels_name_label_and_row() {
        let m = LabelMap::new(vec!["neg".into(), "pos".into()], false).unwrap();
        let t = table(vec![RawLabel::Str("pos".into()), RawLabel::Str("neutral".into())]);
        let e = m.encode(&t, TargetKind::Classification).unwrap_err().chain();
        assert!(e.contains("t.jsonl, row 2") && e.contains("`neutral`") && e.contains("labels = [...]"), "{e}");
    }

    #[test]
    fn regression_rejects_non_finite_and_multilabel_takes_lists() {
        let t = table(vec![RawLabel::Float(1.5), RawLabel::Float(f64::NAN)]);
        let e = LabelMap::new(vec!["x".into()], false).unwrap().encode(&t, TargetKind::Regression).unwrap_err().chain();
        assert!(e.contains("row 2") && e.contains("finite"), "{e}");
        let t = table(vec![
            RawLabel::List(vec![RawLabel::Str("b".into()), RawLabel::Str("a".into())]),
            RawLabel::List(vec![]),
        ]);
        let m = LabelMap::from_table(&t).unwrap();
        assert_eq!(m.encode(&t, TargetKind::MultiLabel).unwrap(), Targets::MultiLabel(vec![vec![0, 1], vec![]]));
    }
}
