//! The metadata table: CSV or TSV, delimiter sniffed, UTF-8 (BOM or not) or Latin-1, and the
//! image / label / split / group columns found by name or chosen by the user.
use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};

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
pub const SPLIT_COLUMN_NAMES: &[&str] = &["split", "fold", "subset", "partition"];

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
}

impl ColumnChoice {
    /// The columns a training run names (labels required).
    pub fn for_training(cfg: &crate::config::TrainConfig) -> ColumnChoice {
        ColumnChoice {
            image: cfg.image_column.clone(),
            label: cfg.label_column.clone(),
            split: cfg.split_column.clone(),
            group: cfg.group_column.clone(),
            label_optional: false,
        }
    }

    /// The columns `predict` names: image and label alone, labels optional.
    pub fn for_prediction(image: Option<ColumnRef>, label: Option<ColumnRef>) -> ColumnChoice {
        ColumnChoice { image, label, split: None, group: None, label_optional: true }
    }
}

pub fn read_metadata(path: &Path, choice: &ColumnChoice) -> Result<Metadata> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read the metadata file {}", path.display()))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    parse_metadata(&bytes, &name, choice)
}

/// Text of the file: UTF-8 (a BOM is dropped) or, failing that, Latin-1 with a warning.
fn decode_text(bytes: &[u8]) -> (String, &'static str) {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_string(), "UTF-8"),
        Err(_) => (bytes.iter().map(|&b| b as char).collect(), "Latin-1"),
    }
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
    let (text, encoding) = decode_text(bytes);
    let mut warnings = Vec::new();
    if encoding != "UTF-8" {
        warnings.push(format!(
            "{file_name} is not UTF-8; it was read as Latin-1. Save it as UTF-8 if names look wrong."
        ));
    }
    if text.trim().is_empty() {
        bail_input!("{file_name} is empty: it needs a header line and one row per image");
    }
    let delimiter = sniff_delimiter(&text);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .with_context(|| format!("cannot read the header line of {file_name}"))?
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
            let line = e.position().map_or(0, |p| line_of(text.as_bytes(), p.byte() as usize));
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
        let line = record.position().map_or(0, |p| line_of(text.as_bytes(), p.byte() as usize));
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
        if label.is_empty() && cols.label.is_some() && !choice.label_optional {
            bail_input!(
                "{file_name} line {line}: the label column '{}' is empty for image '{image}'; \
                 give every row a class or remove the row",
                headers[cols.label.unwrap_or(0)]
            );
        }
        let opt = |c: Option<usize>| c.map(field).filter(|s| !s.is_empty());
        rows.push(Row { line, image, label, split: opt(cols.split), group: opt(cols.group) });
    }
    if rows.is_empty() {
        bail_input!("{file_name} has a header line but no rows: add one row per image");
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
