//! The metadata table: CSV or TSV, delimiter sniffed, UTF-8 (BOM or not) or Latin-1, and the
//! image / label / split / group columns found by name or chosen by the user.
use std::collections::HashMap;
use std::path::Path;

use anyhow::Result;

use crate::bail_input;
use crate::config::ColumnRef;

/// Column names that hold the image reference, most specific first.
pub const IMAGE_COLUMN_NAMES: &[&str] = &[
    "image_path", "imagepath", "image_file", "filepath", "file_path", "image", "image_name",
    "filename", "file_name", "file", "path", "img", "image_id",
];
/// Column names that hold the class, most specific first.
pub const LABEL_COLUMN_NAMES: &[&str] =
    &["label", "labels", "dx", "class", "target", "diagnosis", "category", "y"];
/// The one column name taken as a split without being named (Ludwig's and GLEAM's convention).
pub const SPLIT_COLUMN_NAMES: &[&str] = &["split"];
/// Names that may hold a split but are used only when `--split-column` names them (a `fold`
/// column is as often a cross-validation fold); the log says they were passed over.
const SPLIT_LOOKALIKES: &[&str] = &["fold", "subset", "partition", "set"];

/// One data row of the table. `line` is the 1-based line number in the file (header = 1).
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub line: usize,
    pub image: String,
    pub label: String,
    pub split: Option<String>,
    pub group: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Metadata {
    pub file_name: String,
    pub delimiter: u8,
    pub encoding: &'static str,
    pub headers: Vec<String>,
    pub image_column: String,
    pub label_column: String,
    pub split_column: Option<String>,
    pub group_column: Option<String>,
    pub rows: Vec<Row>,
    pub warnings: Vec<String>,
}

/// Which columns to use; `None` means find it by name.
#[derive(Clone, Debug, Default)]
pub struct ColumnChoice {
    pub image: Option<ColumnRef>,
    pub label: Option<ColumnRef>,
    pub split: Option<ColumnRef>,
    pub group: Option<ColumnRef>,
    /// When true (prediction), a table without a label column is accepted; labels are then "".
    pub label_optional: bool,
    /// When true (regression, or a task still to be inferred), a row with an empty label is kept
    /// for `numeric_rows` or `require_labels` to judge.
    pub empty_labels: bool,
}

impl ColumnChoice {
    /// The columns a training run names (labels required).
    pub fn for_training(cfg: &crate::config::TrainConfig) -> ColumnChoice {
        ColumnChoice {
            image: cfg.columns.image_column.clone(),
            label: cfg.columns.label_column.clone(),
            split: cfg.split_column.clone(),
            group: cfg.group_column.clone(),
            label_optional: false,
            empty_labels: matches!(cfg.task, crate::config::TaskKind::Regression | crate::config::TaskKind::Auto),
        }
    }

    /// The columns `predict` names: image and label alone, labels optional.
    pub fn for_prediction(columns: &crate::config::Columns) -> ColumnChoice {
        let (image, label) = (columns.image_column.clone(), columns.label_column.clone());
        ColumnChoice { image, label, split: None, group: None, label_optional: true, empty_labels: true }
    }
}

/// The largest metadata table read: ten million rows of 100 bytes.
const MAX_TABLE_BYTES: u64 = 1 << 30;

pub fn read_metadata(path: &Path, choice: &ColumnChoice) -> Result<Metadata> {
    use std::io::Read;
    let mut bytes = Vec::new();
    super::open_input(path, "metadata file", MAX_TABLE_BYTES)?
        .take(MAX_TABLE_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| crate::error::input_error(format!("cannot read the metadata file {}: {e}", path.display())))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    parse_metadata(&bytes, &name, choice)
}

/// Refuses files that are not a text table, saying what they are: an Excel workbook, a ZIP (the
/// image ZIP given as the table?), or any other binary file.
fn refuse_non_text(bytes: &[u8], file_name: &str) -> Result<()> {
    let head = &bytes[..bytes.len().min(4096)];
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        if head.windows(19).any(|w| w == b"[Content_Types].xml") || head.windows(3).any(|w| w == b"xl/") {
            bail_input!("{file_name} is an Excel workbook, not a CSV table: in Excel, save it as \"CSV UTF-8\" and upload that");
        }
        bail_input!("{file_name} is a ZIP archive, not a CSV table: did you swap the images (--images) and the metadata (--metadata)?");
    }
    if head.starts_with(b"\xD0\xCF\x11\xE0") {
        bail_input!("{file_name} is an old Excel (.xls) workbook, not a CSV table: in Excel, save it as \"CSV UTF-8\"");
    }
    if head.contains(&0) {
        bail_input!("{file_name} is a binary file, not a CSV or TSV text table (it holds NUL bytes)");
    }
    Ok(())
}

/// Text of the file: UTF-16 with a byte-order mark, UTF-8 (a BOM is dropped) or, failing that,
/// Latin-1 with a warning.
fn decode_text(bytes: &[u8], file_name: &str) -> Result<(String, &'static str)> {
    let utf16 = |b: &[u8], le: bool| -> Result<String> {
        let units = b.chunks(2).map(|c| {
            let pair = [c[0], *c.get(1).unwrap_or(&0)];
            if le { u16::from_le_bytes(pair) } else { u16::from_be_bytes(pair) }
        });
        char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .map_err(|_| crate::error::input_error(format!("{file_name} says it is UTF-16 but is not valid UTF-16; save it as UTF-8")))
    };
    if let Some(b) = bytes.strip_prefix(b"\xFF\xFE") {
        return Ok((utf16(b, true)?, "UTF-16"));
    }
    if let Some(b) = bytes.strip_prefix(b"\xFE\xFF") {
        return Ok((utf16(b, false)?, "UTF-16"));
    }
    refuse_non_text(bytes, file_name)?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    Ok(match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_string(), "UTF-8"),
        Err(_) => (bytes.iter().map(|&b| b as char).collect(), "Latin-1"),
    })
}

/// Excel's `sep=;` first line, which names the delimiter: the delimiter, and the text after it.
fn excel_separator_line(text: &str) -> Option<(u8, &str)> {
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    let d = first.trim_end_matches('\r').strip_prefix("sep=")?;
    match d.as_bytes() {
        [c] if c.is_ascii() && *c != b'"' => Some((*c, rest)),
        _ => None,
    }
}

/// The line where a quoted field opens and never closes, if one does (the csv reader would
/// otherwise swallow the rest of the file into it). Quotes open a field only at its start, and
/// `""` inside one is a quote, as the reader reads them.
fn unclosed_quote(text: &str, delimiter: u8) -> Option<usize> {
    let (mut quoted, mut at_field_start, mut line, mut opened) = (false, true, 1, 0);
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\n' {
            line += 1;
        }
        if quoted {
            if b == b'"' {
                if bytes.get(i + 1) == Some(&b'"') {
                    i += 1;
                } else {
                    quoted = false;
                }
            }
        } else if b == b'"' && at_field_start {
            quoted = true;
            opened = line;
        }
        at_field_start = !quoted && (b == delimiter || b == b'\n' || b == b'\r');
        i += 1;
    }
    quoted.then_some(opened)
}

/// Picks the delimiter that splits the header line into the most fields (outside quotes).
pub fn sniff_delimiter(text: &str) -> u8 {
    let header = first_record(text);
    let count = |d: char| {
        let mut quoted = false;
        header
            .chars()
            .filter(|&c| {
                if c == '"' {
                    quoted = !quoted;
                }
                !quoted && c == d
            })
            .count()
    };
    [b'\t', b',', b';', b'|']
        .into_iter()
        .max_by_key(|&d| (count(d as char), d == b','))
        .filter(|&d| count(d as char) > 0)
        .unwrap_or(b',')
}

/// 1-based line number of byte `offset` of `text`.
/// csv may place a record's start on the line break that ends the previous record.
fn line_of(text: &[u8], offset: usize) -> usize {
    let mut start = offset.min(text.len());
    while start < text.len() && matches!(text[start], b'\r' | b'\n') {
        start += 1;
    }
    1 + text[..start].iter().filter(|&&b| b == b'\n').count()
}

/// The header record, which may span lines when a quoted name holds a newline.
fn first_record(text: &str) -> &str {
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '\n' | '\r' if !quoted => return &text[..i],
            _ => {}
        }
    }
    text
}

pub fn parse_metadata(bytes: &[u8], file_name: &str, choice: &ColumnChoice) -> Result<Metadata> {
    let (whole, encoding) = decode_text(bytes, file_name)?;
    let mut warnings = Vec::new();
    if encoding == "Latin-1" {
        warnings.push(format!(
            "{file_name} is not UTF-8; it was read as Latin-1. Save it as UTF-8 if names look wrong."
        ));
    }
    if whole.trim().is_empty() {
        bail_input!("{file_name} is empty: it needs a header line and one row per image");
    }
    // After Excel's `sep=` line, lines count from 2.
    let (delimiter, text, skipped_lines) = match excel_separator_line(&whole) {
        Some((d, rest)) => (d, rest, 1),
        None => (sniff_delimiter(&whole), whole.as_str(), 0),
    };
    if text.trim().is_empty() {
        bail_input!("{file_name} has no header line after its 'sep=' line");
    }
    if let Some(line) = unclosed_quote(text, delimiter) {
        bail_input!(
            "{file_name} line {}: a quoted field opens here (\") and is never closed; close the quote or remove it",
            line + skipped_lines
        );
    }
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| crate::error::input_error(format!("cannot read the header line of {file_name}: {e}")))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let mut seen = HashMap::new();
    for (i, h) in headers.iter().enumerate() {
        if h.is_empty() {
            bail_input!("{file_name}: column {} has no name in the header line", i + 1);
        }
        if let Some(first) = seen.insert(h.to_lowercase(), i) {
            bail_input!(
                "{file_name}: the column name '{h}' appears twice (columns {} and {}); rename one",
                first + 1,
                i + 1
            );
        }
    }
    let cols = Columns::resolve(&headers, choice, file_name)?;

    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| line_of(text.as_bytes(), p.byte() as usize) + skipped_lines);
            crate::error::input_error(match e.kind() {
                csv::ErrorKind::UnequalLengths { expected_len, len, .. } => format!(
                    "{file_name} line {line}: {len} fields where the header has {expected_len}; \
                     quote fields that contain the delimiter '{}'",
                    delimiter as char
                ),
                _ => format!("{file_name} line {line}: {e}"),
            })
        })?;
        // The file's own line number (csv counts records, not the newlines inside quotes).
        let line = record.position().map_or(0, |p| line_of(text.as_bytes(), p.byte() as usize) + skipped_lines);
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let field = |i: usize| record.get(i).unwrap_or("").trim().to_string();
        let image = field(cols.image);
        let label = cols.label.map(field).unwrap_or_default();
        if image.is_empty() {
            bail_input!(
                "{file_name} line {line}: the image column '{}' is empty; every row must name an image",
                headers[cols.image]
            );
        }
        if label.is_empty() && cols.label.is_some() && !choice.label_optional && !choice.empty_labels {
            bail_input!("{}", empty_label_message(file_name, line, &headers[cols.label.unwrap_or(0)], &image));
        }
        let opt = |c: Option<usize>| c.map(field).filter(|s| !s.is_empty());
        rows.push(Row { line, image, label, split: opt(cols.split), group: opt(cols.group) });
    }
    if rows.is_empty() {
        bail_input!("{file_name} has a header line but no rows: add one row per image");
    }
    warnings.extend(unify_labels(&mut rows, file_name));
    if cols.split.is_none() && choice.split.is_none() && !choice.label_optional {
        if let Some(h) = headers.iter().find(|h| SPLIT_LOOKALIKES.iter().any(|n| h.eq_ignore_ascii_case(n))) {
            warnings.push(format!(
                "{file_name}: the column '{h}' is not used as a split (only a column named 'split' is, or one \
                 that --split-column names); the split is made from --split"
            ));
        }
    }
    let mut first_line: HashMap<(&str, &str), usize> = HashMap::new();
    let mut duplicates = 0;
    for r in &rows {
        if first_line.insert((&r.image, &r.label), r.line).is_some() {
            duplicates += 1;
        }
    }
    if duplicates > 0 {
        warnings.push(format!(
            "{file_name}: {duplicates} rows repeat an earlier row's image and label; the repeats are ignored"
        ));
        let mut kept = std::collections::HashSet::new();
        rows.retain(|r| kept.insert((r.image.clone(), r.label.clone())));
    }
    Ok(Metadata {
        file_name: file_name.to_string(),
        delimiter,
        encoding,
        image_column: headers[cols.image].clone(),
        label_column: cols.label.map(|i| headers[i].clone()).unwrap_or_default(),
        split_column: cols.split.map(|i| headers[i].clone()),
        group_column: cols.group.map(|i| headers[i].clone()),
        headers,
        rows,
        warnings,
    })
}

fn empty_label_message(file_name: &str, line: usize, column: &str, image: &str) -> String {
    format!(
        "{file_name} line {line}: the label column '{column}' is empty for image '{}'; give every row a class or remove the row",
        crate::error::short(image)
    )
}

/// Classification: every row needs a label (for a task inferred after reading, whose rows were
/// read with empty labels allowed).
pub fn require_labels(meta: &Metadata) -> Result<()> {
    match meta.rows.iter().find(|r| r.label.is_empty()) {
        Some(r) => bail_input!("{}", empty_label_message(&meta.file_name, r.line, &meta.label_column, &r.image)),
        None => Ok(()),
    }
}

/// Spellings of a missing value, read as an empty cell (pandas' defaults, in any case).
const MISSING: [&str; 7] = ["na", "n/a", "nan", "null", "none", "?", "-"];

/// Whether a target value is missing: empty, or one of the usual spellings of a missing value.
/// Only numbers are read so: a class label is missing only when empty, so that "None" (as in
/// None / Mild / Severe) or "NA" is a class wherever classes are counted.
pub fn is_missing(label: &str) -> bool {
    label.is_empty() || MISSING.contains(&label.to_ascii_lowercase().as_str())
}

/// A regression target: a finite number (a decimal comma is not a number here).
pub fn parse_value(label: &str) -> Option<f64> {
    label.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Regression: leaves out the rows whose target is missing or not a number, with one warning
/// that names their lines. Stops when no row is left, or when every target is the same.
pub fn numeric_rows(meta: &mut Metadata) -> Result<Vec<String>> {
    let (mut missing, mut text) = (Vec::new(), Vec::new());
    meta.rows.retain(|r| {
        if is_missing(&r.label) {
            missing.push(r.line);
            false
        } else if parse_value(&r.label).is_none() {
            text.push((r.line, crate::error::short(&r.label)));
            false
        } else {
            true
        }
    });
    let column = &meta.label_column;
    let mut warnings = Vec::new();
    if !missing.is_empty() {
        warnings.push(format!(
            "{} rows of {} have no value in the target column '{column}' (lines {}); they are left out",
            missing.len(),
            meta.file_name,
            line_list(&missing)
        ));
    }
    if !text.is_empty() {
        let first = &text[0];
        warnings.push(format!(
            "{} rows of {} have a target that is not a number (line {}: '{}'; lines {}); they are left out",
            text.len(),
            meta.file_name,
            first.0,
            first.1,
            line_list(&text.iter().map(|t| t.0).collect::<Vec<_>>())
        ));
    }
    if meta.rows.is_empty() {
        let example = text.first().map_or(String::new(), |t| format!(" (line {}: '{}')", t.0, t.1));
        bail_input!(
            "{}: no row has a number in the target column '{column}'{example}; a regression needs numeric targets. \
             Check --label-column, or use --task classification for class names",
            meta.file_name
        );
    }
    let first = parse_value(&meta.rows[0].label);
    if meta.rows.iter().all(|r| parse_value(&r.label) == first) {
        bail_input!(
            "{}: every target in the column '{column}' is {}; a regression needs targets that vary",
            meta.file_name,
            meta.rows[0].label
        );
    }
    Ok(warnings)
}

/// Line numbers for a message: the first five, then "...".
pub fn line_list(lines: &[usize]) -> String {
    let shown: Vec<String> = lines.iter().take(5).map(usize::to_string).collect();
    format!("{}{}", shown.join(", "), if lines.len() > 5 { ", ..." } else { "" })
}

/// The class a label stands for, as far as spelling goes: its number when it is one ("1", "1.0"
/// and "01" are one class), else its lower case ("NV" and "nv" are one class). Labels are
/// trimmed when read.
pub fn label_key(label: &str) -> String {
    match label.parse::<f64>() {
        Ok(v) if v.is_finite() => format!("number {v}"),
        _ => label.to_lowercase(),
    }
}

/// Labels that differ only in case or in how a number is written become one class, spelled as
/// most rows spell it (ties: the first seen). Returns a warning for each class so merged.
fn unify_labels(rows: &mut [Row], file_name: &str) -> Vec<String> {
    // For each key, its spellings in first-seen order, with their counts.
    let mut spellings: HashMap<String, Vec<(String, usize)>> = HashMap::new();
    let mut order = Vec::new();
    for r in rows.iter().filter(|r| !r.label.is_empty()) {
        let key = label_key(&r.label);
        let list = spellings.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            Vec::new()
        });
        match list.iter_mut().find(|(s, _)| *s == r.label) {
            Some((_, n)) => *n += 1,
            None => list.push((r.label.clone(), 1)),
        }
    }
    let mut chosen: HashMap<String, String> = HashMap::new();
    let mut warnings = Vec::new();
    for key in order {
        let list = &spellings[&key];
        if list.len() < 2 {
            continue;
        }
        let best = list.iter().enumerate().max_by_key(|(i, (_, n))| (*n, std::cmp::Reverse(*i))).map(|(_, (s, _))| s.clone()).unwrap_or_default();
        let all: Vec<String> = list.iter().map(|(s, n)| format!("'{}' ({n} rows)", crate::error::short(s))).collect();
        let how = if key.starts_with("number ") { "are the same number" } else { "differ only in case" };
        warnings.push(format!(
            "{file_name}: the labels {} {how}; they are one class, '{}'. If they are different classes, rename one",
            all.join(", "),
            crate::error::short(&best)
        ));
        for (s, _) in list {
            chosen.insert(s.clone(), best.clone());
        }
    }
    if !chosen.is_empty() {
        for r in rows.iter_mut() {
            if let Some(best) = chosen.get(&r.label) {
                r.label = best.clone();
            }
        }
    }
    warnings
}

struct Columns {
    image: usize,
    label: Option<usize>,
    split: Option<usize>,
    group: Option<usize>,
}

impl Columns {
    fn resolve(headers: &[String], choice: &ColumnChoice, file_name: &str) -> Result<Columns> {
        let listing = || {
            headers
                .iter()
                .enumerate()
                .map(|(i, h)| format!("{}={h}", i + 1))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let pick = |r: &ColumnRef, flag: &str| -> Result<usize> {
            match r {
                ColumnRef::Number(n) if *n <= headers.len() => Ok(n - 1),
                ColumnRef::Name(name) => {
                    if let Some(i) = headers.iter().position(|h| h.eq_ignore_ascii_case(name)) {
                        Ok(i)
                    } else {
                        bail_input!("{flag} {r}: {file_name} has no such column; its columns are {}", listing())
                    }
                }
                ColumnRef::Number(_) => {
                    bail_input!("{flag} {r}: {file_name} has only {} columns ({})", headers.len(), listing())
                }
            }
        };
        let find = |names: &[&str]| {
            names.iter().find_map(|n| headers.iter().position(|h| h.eq_ignore_ascii_case(n)))
        };
        let image = match &choice.image {
            Some(r) => pick(r, "--image-column")?,
            None => match find(IMAGE_COLUMN_NAMES) {
                Some(i) => i,
                None => bail_input!(
                    "{file_name}: no image column found (looked for {}); its columns are {}. \
                     Name it with --image-column",
                    IMAGE_COLUMN_NAMES[..6].join(", "),
                    listing()
                ),
            },
        };
        let label = match &choice.label {
            Some(r) => Some(pick(r, "--label-column")?),
            None => match find(LABEL_COLUMN_NAMES) {
                Some(i) => Some(i),
                None if choice.label_optional => None,
                None => bail_input!(
                    "{file_name}: no label column found (looked for {}); its columns are {}. \
                     Name it with --label-column",
                    LABEL_COLUMN_NAMES.join(", "),
                    listing()
                ),
            },
        };
        if Some(image) == label {
            bail_input!(
                "{file_name}: the image and label columns are both '{}'; choose two different columns",
                headers[image]
            );
        }
        let split = match &choice.split {
            Some(r) => Some(pick(r, "--split-column")?),
            None => find(SPLIT_COLUMN_NAMES),
        };
        let group = match &choice.group {
            Some(r) => Some(pick(r, "--group-column")?),
            None => None,
        };
        for (what, c) in [("split", split), ("group", group)] {
            if let Some(c) = c {
                if c == image || Some(c) == label {
                    bail_input!(
                        "{file_name}: the {what} column '{}' is also the image or label column",
                        headers[c]
                    );
                }
            }
        }
        Ok(Columns { image, label, split, group })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Metadata> {
        parse_metadata(text.as_bytes(), "meta.csv", &ColumnChoice::default())
    }

    fn err(text: &str, choice: &ColumnChoice) -> String {
        format!("{:#}", parse_metadata(text.as_bytes(), "meta.csv", choice).unwrap_err())
    }

    #[test]
    fn files_that_are_not_text_tables_are_named_for_what_they_are() {
        let bytes_err = |b: &[u8]| format!("{:#}", parse_metadata(b, "meta.csv", &ColumnChoice::default()).unwrap_err());
        let mut xlsx = b"PK\x03\x04\x14\x00\x06\x00".to_vec();
        xlsx.extend_from_slice(b"\x00\x00[Content_Types].xml\x00\x00");
        assert!(bytes_err(&xlsx).contains("is an Excel workbook"));
        assert!(bytes_err(b"PK\x03\x04\x14\x00\x00\x00images/a.png").contains("did you swap the images (--images) and the metadata"));
        assert!(bytes_err(b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1").contains("old Excel (.xls)"));
        assert!(bytes_err(b"image,label\na.png\x00\x01,x\n").contains("is a binary file"));
        // UTF-16 with a byte-order mark, as Excel's "Unicode text" writes it: read.
        let text = "image_path\tlabel\nca\u{fe}.png\tnv\nb.png\tmel\n";
        for le in [true, false] {
            let mut b = if le { vec![0xFF, 0xFE] } else { vec![0xFE, 0xFF] };
            for u in text.encode_utf16() {
                b.extend_from_slice(&if le { u.to_le_bytes() } else { u.to_be_bytes() });
            }
            let m = parse_metadata(&b, "meta.csv", &ColumnChoice::default()).unwrap();
            assert_eq!((m.encoding, m.rows[0].image.as_str(), m.rows[1].label.as_str()), ("UTF-16", "ca\u{fe}.png", "mel"));
        }
    }

    #[test]
    fn excels_sep_line_names_the_delimiter_and_lines_still_count_from_the_file() {
        let m = parse("sep=;\nimage_path;label\na.png;x,1\nb.png;y\n").unwrap();
        assert_eq!((m.delimiter, m.headers.len(), m.rows[0].line), (b';', 2, 3));
        assert_eq!(m.rows[0].label, "x,1");
        let e = err("sep=;\nimage_path;label\na.png;x;extra\n", &ColumnChoice::default());
        assert!(e.contains("line 3: 3 fields where the header has 2"), "{e}");
    }

    #[test]
    fn an_unclosed_quote_is_pointed_at_where_it_opens() {
        let mut text = String::from("image_path,label\na.png,x\n\"b.png,y\n");
        for i in 0..16 {
            text.push_str(&format!("c{i}.png,z\n"));
        }
        let e = err(&text, &ColumnChoice::default());
        assert!(e.contains("meta.csv line 3: a quoted field opens here"), "{e}");
        // Closed quotes, doubled quotes and quotes inside a field are not errors.
        parse("image_path,label\n\"a \"\"q\"\".png\",x\nb\"c.png,y\n").unwrap();
        assert_eq!(unclosed_quote("a,\"x\ny\",b\n\"open", b','), Some(3));
    }

    #[test]
    fn labels_differing_only_in_case_or_number_format_are_one_class() {
        let m = parse("image_path,label\na.png,nv\nb.png,NV \nc.png,nv\nd.png,1\ne.png,1.0\nf.png,mel\ng.png,NaN\nh.png,nan\n").unwrap();
        let labels: Vec<_> = m.rows.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels, ["nv", "nv", "nv", "1", "1", "mel", "NaN", "NaN"]);
        assert!(m.warnings.iter().any(|w| w.contains("'nv' (2 rows), 'NV' (1 rows) differ only in case; they are one class, 'nv'")), "{:?}", m.warnings);
        assert!(m.warnings.iter().any(|w| w.contains("'1' (1 rows), '1.0' (1 rows) are the same number; they are one class, '1'")), "{:?}", m.warnings);
        assert_eq!(label_key("01"), label_key("1e0"));
        assert_ne!(label_key("inf"), label_key("infinity"));
    }

    #[test]
    fn only_a_column_named_split_is_taken_without_being_named() {
        let m = parse("image_path,label,fold\na.png,x,0\nb.png,y,2\n").unwrap();
        assert_eq!(m.split_column, None);
        assert!(m.warnings.iter().any(|w| w.contains("the column 'fold' is not used as a split")), "{:?}", m.warnings);
        let named = ColumnChoice { split: Some(ColumnRef::Name("fold".into())), ..Default::default() };
        let m = parse_metadata(b"image_path,label,fold\na.png,x,0\n", "meta.csv", &named).unwrap();
        assert_eq!(m.split_column.as_deref(), Some("fold"));
        assert!(m.warnings.is_empty());
    }

    #[test]
    fn a_name_of_a_megabyte_is_shortened_in_the_message() {
        let e = err(&format!("image_path,label\n{}.png,\n", "n".repeat(1 << 20)), &ColumnChoice::default());
        assert!(e.contains("is empty for image 'nnn") && e.contains("(1048580 characters)"), "{}", &e[..100]);
        assert!(e.len() < 400, "{} characters", e.len());
    }

    #[test]
    fn only_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let e = |p: &Path| format!("{:#}", read_metadata(p, &ColumnChoice::default()).unwrap_err());
        assert!(e(&dir.path().join("none.csv")).contains("cannot open the metadata file") && e(&dir.path().join("none.csv")).contains("no such file"));
        assert!(e(dir.path()).contains("is a folder; give the file itself"));
        let fifo = dir.path().join("pipe.csv");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo on a path in a fresh temporary folder.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(e(&fifo).contains("is not a regular file"), "a FIFO is refused at once instead of blocking");
        assert!(e(Path::new("/dev/zero")).contains("is not a regular file"));
        let kind = crate::error::kind_of(&read_metadata(dir.path(), &ColumnChoice::default()).unwrap_err());
        assert_eq!(kind, crate::error::ErrorKind::BadInput);
    }

    #[test]
    fn sniffs_comma_tab_semicolon() {
        for (d, text) in [(b',', "image,label\na.png,x\n"), (b'\t', "image\tlabel\na.png\tx\n"), (b';', "image;label\na.png;x\n")] {
            let m = parse(text).unwrap();
            assert_eq!(m.delimiter, d);
            assert_eq!(m.rows[0].image, "a.png");
            assert_eq!(m.rows[0].label, "x");
        }
    }

    #[test]
    fn bom_crlf_and_quotes() {
        let text = "\u{feff}image_path,label\r\n\"dir/a,1.png\",\"multi\nline\"\r\nb.png,y\r\n";
        let m = parse(text).unwrap();
        assert_eq!(m.image_column, "image_path");
        assert_eq!(m.rows.len(), 2);
        assert_eq!(m.rows[0].image, "dir/a,1.png");
        assert_eq!(m.rows[0].label, "multi\nline");
        assert_eq!(m.rows[1].line, 4);
    }

    #[test]
    fn latin1_is_read_with_warning() {
        let bytes = b"image,label\ncaf\xe9.png,na\xefve\n";
        let m = parse_metadata(bytes, "m.csv", &ColumnChoice::default()).unwrap();
        assert_eq!(m.encoding, "Latin-1");
        assert_eq!(m.rows[0].image, "café.png");
        assert_eq!(m.rows[0].label, "naïve");
        assert!(m.warnings[0].contains("Latin-1"));
    }

    #[test]
    fn a_regression_keeps_the_numeric_rows_and_names_the_others() {
        let choice = ColumnChoice { empty_labels: true, ..Default::default() };
        let mut m = parse_metadata(b"image,label\na.png,45\nb.png,\nc.png,NA\nd.png,forty\ne.png,50.5\n", "m.csv", &choice).unwrap();
        let w = numeric_rows(&mut m).unwrap();
        assert_eq!(m.rows.iter().map(|r| r.image.as_str()).collect::<Vec<_>>(), ["a.png", "e.png"]);
        assert!(w[0].contains("2 rows of m.csv have no value") && w[0].contains("lines 3, 4"), "{w:?}");
        assert!(w[1].contains("line 5: 'forty'"), "{w:?}");
        let err = |text: &[u8]| {
            let mut m = parse_metadata(text, "m.csv", &choice).unwrap();
            format!("{:#}", numeric_rows(&mut m).unwrap_err())
        };
        assert!(err(b"image,label\na.png,nv\nb.png,mel\n").contains("no row has a number in the target column 'label' (line 2: 'nv')"));
        assert!(err(b"image,label\na.png,3\nb.png,3.0\n").contains("every target in the column 'label' is 3"));
        let strict = parse_metadata(b"image,label\na.png,nv\nb.png,\n", "m.csv", &choice).unwrap();
        assert!(format!("{:#}", require_labels(&strict).unwrap_err()).contains("line 3: the label column 'label' is empty for image 'b.png'"));
    }

    #[test]
    fn detects_ham_columns_and_overrides() {
        let text = "lesion_id,image_id,dx,image_path\nL1,ISIC_1,mel,ISIC_1.jpg\n";
        let m = parse(text).unwrap();
        assert_eq!((m.image_column.as_str(), m.label_column.as_str()), ("image_path", "dx"));
        let choice = ColumnChoice {
            image: Some(ColumnRef::Number(2)),
            label: Some(ColumnRef::Name("DX".into())),
            group: Some(ColumnRef::Name("lesion_id".into())),
            split: None,
            label_optional: false,
            empty_labels: false,
        };
        let m = parse_metadata(text.as_bytes(), "m.csv", &choice).unwrap();
        assert_eq!(m.rows[0].image, "ISIC_1");
        assert_eq!(m.rows[0].group.as_deref(), Some("L1"));
    }

    #[test]
    fn bad_tables_name_the_problem() {
        let none = ColumnChoice::default();
        assert!(err("", &none).contains("is empty"));
        assert!(err("image,label\n", &none).contains("no rows"));
        assert!(err("picture,kind\na.png,x\n", &none).contains("no image column found"));
        assert!(err("picture,kind\na.png,x\n", &none).contains("1=picture, 2=kind"));
        assert!(err("image,foo\na.png,x\n", &none).contains("--label-column"));
        assert!(err("image,label,Label\na,b,c\n", &none).contains("appears twice"));
        assert!(err("image,label\na.png,  \n", &none).contains("line 2"));
        assert!(err("image,label\na.png,x,extra\n", &none).contains("3 fields"));
        let choice = ColumnChoice { image: Some(ColumnRef::Number(5)), ..Default::default() };
        assert!(err("image,label\na.png,x\n", &choice).contains("only 2 columns"));
        let choice = ColumnChoice { label: Some(ColumnRef::Name("nope".into())), ..Default::default() };
        assert!(err("image,label\na.png,x\n", &choice).contains("no such column"));
    }

    #[test]
    fn duplicate_rows_are_dropped_with_warning() {
        let m = parse("image,label\na.png,x\na.png,x\nb.png,y\n").unwrap();
        assert_eq!(m.rows.len(), 2);
        assert!(m.warnings.iter().any(|w| w.contains("1 rows repeat")));
    }

    #[test]
    fn labels_optional_for_prediction() {
        let choice = ColumnChoice { label_optional: true, ..Default::default() };
        let m = parse_metadata(b"image\na.png\n", "m.csv", &choice).unwrap();
        assert_eq!((m.rows[0].label.as_str(), m.label_column.as_str()), ("", ""));
    }

    #[test]
    fn split_column_found_by_name() {
        let m = parse("image_path,label,split\na.png,x,train\n").unwrap();
        assert_eq!(m.split_column.as_deref(), Some("split"));
        assert_eq!(m.rows[0].split.as_deref(), Some("train"));
    }
}
