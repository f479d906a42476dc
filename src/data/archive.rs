//! The image ZIP: read in place (never extracted to disk), its image entries indexed, and each
//! metadata row matched to one entry by full path, then file name, then file name without
//! extension; at each step an exact match (after Unicode NFC, so that names from macOS ZIPs meet
//! names typed elsewhere) wins over one that ignores case.
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::Result;

use crate::bail_input;
use crate::data::metadata::Row;
use crate::error::{input_error, short};

pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp", "gif"];
/// Largest decompressed size accepted for one entry (a ZIP bomb stops here, while reading).
pub const MAX_ENTRY_BYTES: u64 = 256 << 20;

#[derive(Clone, Debug)]
pub struct Entry {
    pub index: usize,
    pub name: String,
}

/// The ZIP file, read at explicit positions: clones share one open file and read it from several
/// threads at once, each with its own position.
#[derive(Clone, Debug)]
pub struct SharedFile {
    file: Arc<File>,
    pos: u64,
}

impl Read for SharedFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SharedFile {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let base = match to {
            SeekFrom::Start(p) => {
                self.pos = p;
                return Ok(p);
            }
            SeekFrom::End(d) => (self.file.metadata()?.len(), d),
            SeekFrom::Current(d) => (self.pos, d),
        };
        self.pos = base.0.checked_add_signed(base.1).ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start of the file"))?;
        Ok(self.pos)
    }
}

/// Reads entries of an open archive by their index in the ZIP, from any thread: each clone
/// shares the archive's index and file (a clone is cheap).
#[derive(Clone)]
pub struct EntryReader {
    display_name: Arc<str>,
    zip: zip::ZipArchive<SharedFile>,
}

impl EntryReader {
    /// The decompressed bytes of the ZIP's entry `index` (named `name` in messages).
    pub fn read(&self, index: usize, name: &str) -> Result<Vec<u8>> {
        read_entry(&mut self.zip.clone(), index, name, &self.display_name)
    }

    pub fn display_name(&self) -> &str {
        &self.display_name
    }
}

pub struct Archive<R: Read + Seek = SharedFile> {
    pub display_name: String,
    pub entries: Vec<Entry>,
    /// Entries passed over: folders, `__MACOSX/`, dot-files and files that are not images.
    pub skipped: usize,
    zip: zip::ZipArchive<R>,
}

/// How the rows met the entries.
#[derive(Debug, Default)]
pub struct MatchReport {
    /// (row index, entry index) for each row that found its image.
    pub matched: Vec<(usize, usize)>,
    /// Rows whose image is not in the ZIP: (line, image).
    pub missing: Vec<(usize, String)>,
    /// Image entries that no row names.
    pub unused: Vec<String>,
    /// Rows left out because an earlier row, with the same label, names the same image:
    /// (line, image, the earlier line).
    pub repeated: Vec<(usize, String, usize)>,
}

/// A path as rows and entries are compared: `/` separators, no leading `./` or `/`, Unicode NFC.
fn normalise(path: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let p = path.replace('\\', "/");
    p.trim_start_matches("./").trim_start_matches('/').nfc().collect()
}

fn file_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

fn stem(name: &str) -> &str {
    match name.rfind('.') {
        Some(i) if i > 0 => &name[..i],
        _ => name,
    }
}

fn is_image_name(name: &str) -> bool {
    let n = name.to_lowercase();
    IMAGE_EXTENSIONS.iter().any(|e| n.ends_with(&format!(".{e}")))
}

impl Archive<SharedFile> {
    pub fn open(path: &Path) -> Result<Self> {
        let display = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut file = super::open_input(path, "image ZIP", u64::MAX)?;
        let mut head = [0u8; 512];
        let n = file.read(&mut head).unwrap_or(0);
        let head = &head[..n];
        if n > 0 && !head.starts_with(b"PK") && !head.contains(&0) && head.contains(&b'\n') && head.iter().any(|b| b",;\t".contains(b)) {
            bail_input!("{display} is a text table, not a ZIP of images: did you swap the images (--images) and the metadata (--metadata)?");
        }
        Archive::from_reader(SharedFile { file: Arc::new(file), pos: 0 }, &display)
    }

    /// A reader of this archive's entries for other threads.
    pub fn entry_reader(&self) -> EntryReader {
        EntryReader { display_name: self.display_name.as_str().into(), zip: self.zip.clone() }
    }
}

impl<R: Read + Seek> Archive<R> {
    pub fn from_reader(reader: R, display_name: &str) -> Result<Self> {
        let mut zip = zip::ZipArchive::new(reader).map_err(|e| {
            input_error(format!(
                "{display_name} is not a readable ZIP archive ({e}); upload the images as one .zip file"
            ))
        })?;
        let mut entries = Vec::new();
        let mut skipped = 0;
        for index in 0..zip.len() {
            let f = zip.by_index_raw(index).map_err(|e| {
                input_error(format!("{display_name}: entry {index} cannot be read ({e}); the ZIP may be damaged"))
            })?;
            let name = f.name().to_string();
            let base = file_name(&name);
            let hidden = name.split(['/', '\\']).any(|c| c == "__MACOSX") || base.starts_with('.');
            if f.is_dir() || hidden || !is_image_name(&name) {
                skipped += 1;
                continue;
            }
            entries.push(Entry { index, name });
        }
        if entries.is_empty() {
            bail_input!(
                "{display_name} holds no images ({} entries, none ending in {})",
                zip.len(),
                IMAGE_EXTENSIONS.join(", ")
            );
        }
        Ok(Archive { display_name: display_name.to_string(), entries, skipped, zip })
    }

    /// Matches each row's image to one entry: full path, then file name, then stem; exact
    /// before case-insensitive at each. Two rows that reach one entry are one image: a repeat with
    /// the same label is left out (and reported), one with another label is an error.
    pub fn match_rows(&self, rows: &[Row]) -> Result<MatchReport> {
        // Six indexes, in the order they are tried.
        let mut index: [HashMap<String, Vec<usize>>; 6] = Default::default();
        let keys = |text: &str| -> [String; 6] {
            let full = normalise(text);
            let name = file_name(&full).to_string();
            let stem = stem(&name).to_string();
            [full.clone(), full.to_lowercase(), name.clone(), name.to_lowercase(), stem.clone(), stem.to_lowercase()]
        };
        for (i, e) in self.entries.iter().enumerate() {
            for (map, key) in index.iter_mut().zip(keys(&e.name)) {
                let hits = map.entry(key).or_default();
                if hits.last() != Some(&i) {
                    hits.push(i);
                }
            }
        }
        let mut report = MatchReport::default();
        let mut row_of_entry: HashMap<usize, usize> = HashMap::new();
        for (row_index, row) in rows.iter().enumerate() {
            let found = index.iter().zip(keys(&row.image)).find_map(|(map, key)| map.get(&key));
            let entry = match found {
                None => {
                    report.missing.push((row.line, row.image.clone()));
                    continue;
                }
                Some(hits) if hits.len() > 1 => {
                    let names: Vec<_> = hits.iter().take(4).map(|&i| short(&self.entries[i].name)).collect();
                    bail_input!(
                        "line {}: '{}' matches {} images in {} ({}); write the image's full path inside the \
                         ZIP, with its case, in the image column so that it names one",
                        row.line,
                        short(&row.image),
                        hits.len(),
                        self.display_name,
                        names.join(", ")
                    );
                }
                Some(hits) => hits[0],
            };
            match row_of_entry.get(&entry) {
                None => {
                    row_of_entry.insert(entry, row_index);
                    report.matched.push((row_index, entry));
                }
                Some(&first) if rows[first].label == row.label => {
                    report.repeated.push((row.line, row.image.clone(), rows[first].line));
                }
                Some(&first) => bail_input!(
                    "line {} ('{}', label '{}') and line {} ('{}', label '{}') name the same image, {}, \
                     with two labels; keep the row with the right label and remove the other",
                    rows[first].line,
                    short(&rows[first].image),
                    short(&rows[first].label),
                    row.line,
                    short(&row.image),
                    short(&row.label),
                    short(&self.entries[entry].name)
                ),
            }
        }
        let used: std::collections::HashSet<usize> = row_of_entry.keys().copied().collect();
        report.unused = (0..self.entries.len()).filter(|i| !used.contains(i)).map(|i| self.entries[i].name.clone()).collect();
        Ok(report)
    }

    /// The decompressed bytes of one entry, refusing more than `MAX_ENTRY_BYTES`.
    pub fn read(&mut self, entry: usize) -> Result<Vec<u8>> {
        let e = &self.entries[entry];
        read_entry(&mut self.zip, e.index, &e.name, &self.display_name)
    }
}

/// The decompressed bytes of the ZIP's entry `index` (`name`, in `display`), refusing more than
/// `MAX_ENTRY_BYTES`.
fn read_entry<R: Read + Seek>(zip: &mut zip::ZipArchive<R>, index: usize, name: &str, display: &str) -> Result<Vec<u8>> {
    let name = short(name);
    let mut f = zip.by_index(index).map_err(|e| {
        let hint = if e.to_string().to_lowercase().contains("password") {
            "the ZIP is encrypted; make it again without a password"
        } else {
            "the ZIP may be damaged or use an unsupported compression"
        };
        input_error(format!("{display}: cannot read '{name}' ({e}): {hint}"))
    })?;
    // The header's size is not trusted for the allocation (a forged one could be huge).
    let mut buf = Vec::with_capacity(f.size().min(16 << 20) as usize);
    (&mut f).take(MAX_ENTRY_BYTES + 1).read_to_end(&mut buf).map_err(|e| {
        input_error(format!("{display}: '{name}' is damaged or truncated ({e})"))
    })?;
    if buf.len() as u64 > MAX_ENTRY_BYTES {
        bail_input!(
            "{display}: '{name}' decompresses to more than {} MiB; no image needs that (a ZIP bomb?)",
            MAX_ENTRY_BYTES >> 20
        );
    }
    Ok(buf)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::{Cursor, Write};

    pub fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in entries {
            if name.ends_with('/') {
                w.add_directory(*name, zip::write::SimpleFileOptions::default()).unwrap();
            } else {
                w.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
                w.write_all(data).unwrap();
            }
        }
        w.finish().unwrap().into_inner()
    }

    fn row(line: usize, image: &str) -> Row {
        Row { line, image: image.into(), label: "x".into(), split: None, group: None }
    }

    #[test]
    fn skips_macos_dotfiles_and_non_images() {
        let z = zip_of(&[
            ("imgs/", b""),
            ("imgs/a.png", b"1"),
            ("__MACOSX/imgs/._a.png", b"2"),
            ("imgs/._b.png", b"3"),
            ("imgs/notes.txt", b"4"),
            ("imgs/B.JPG", b"5"),
        ]);
        let a = Archive::from_reader(Cursor::new(z), "t.zip").unwrap();
        let names: Vec<_> = a.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["imgs/a.png", "imgs/B.JPG"]);
        assert_eq!(a.skipped, 4);
    }

    #[test]
    fn matching_rules_in_order() {
        let z = zip_of(&[
            ("data/x/a.png", b"1"), ("data/y/a.png", b"2"), ("data/y/B.jpg", b"3"), ("c.tif", b"4"), ("spare.png", b"5"),
            ("w/d.png", b"6"), ("Case/Red.png", b"7"), ("case/red.png", b"8"), ("caf\u{e9}.png", b"9"),
        ]);
        let a = Archive::from_reader(Cursor::new(z), "t.zip").unwrap();
        let rows = [
            row(2, "data/y/a.png"),   // full path, although the name is ambiguous
            row(3, "./DATA/X/A.PNG"), // full path, other case and a ./ prefix
            row(4, "b.JPG"),          // file name, case-insensitive
            row(5, "C"),              // stem
            row(6, "elsewhere\\d.png"), // file name after a Windows folder
            row(7, "missing.png"),
            row(8, "case/red.png"),   // two entries differ only in case: the exact one wins
            row(9, "Case/Red.png"),
            row(10, "cafe\u{301}.png"), // NFD (as macOS writes it) meets the NFC entry
        ];
        let r = a.match_rows(&rows).unwrap();
        let got: Vec<_> = r.matched.iter().map(|&(row, e)| (row, a.entries[e].name.as_str())).collect();
        assert_eq!(
            got,
            [(0, "data/y/a.png"), (1, "data/x/a.png"), (2, "data/y/B.jpg"), (3, "c.tif"), (4, "w/d.png"),
             (6, "case/red.png"), (7, "Case/Red.png"), (8, "caf\u{e9}.png")]
        );
        assert_eq!(r.missing, [(7, "missing.png".to_string())]);
        assert_eq!(r.unused, ["spare.png"]);
        assert!(r.repeated.is_empty());
    }

    #[test]
    fn rows_that_reach_one_image_are_one_image() {
        let z = zip_of(&[("imgs/red_0.png", b"1"), ("imgs/blue_0.png", b"2")]);
        let a = Archive::from_reader(Cursor::new(z), "t.zip").unwrap();
        // The same image under two spellings, same label: the repeat is left out and reported.
        let r = a.match_rows(&[row(2, "imgs/red_0.png"), row(3, "RED_0.PNG"), row(4, "blue_0")]).unwrap();
        assert_eq!(r.matched, [(0, 0), (2, 1)]);
        assert_eq!(r.repeated, [(3, "RED_0.PNG".to_string(), 2)]);
        // Under two labels: an error naming both lines and both labels.
        let mut other = row(3, "red_0.png");
        other.label = "y".into();
        let e = format!("{:#}", a.match_rows(&[row(2, "imgs/red_0.png"), other]).unwrap_err());
        assert!(e.contains("line 2 ('imgs/red_0.png', label 'x') and line 3 ('red_0.png', label 'y') name the same image"), "{e}");
    }

    #[test]
    fn ambiguous_file_name_is_an_error() {
        let z = zip_of(&[("x/a.png", b"1"), ("y/a.png", b"2")]);
        let a = Archive::from_reader(Cursor::new(z), "t.zip").unwrap();
        let e = format!("{:#}", a.match_rows(&[row(2, "a.png")]).unwrap_err());
        assert!(e.contains("matches 2 images") && e.contains("x/a.png") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn not_a_zip_and_empty_zip() {
        let e = format!("{:#}", Archive::from_reader(Cursor::new(b"hello".to_vec()), "t.zip").err().unwrap());
        assert!(e.contains("not a readable ZIP"), "{e}");
        let z = zip_of(&[("readme.txt", b"1")]);
        let e = format!("{:#}", Archive::from_reader(Cursor::new(z), "t.zip").err().unwrap());
        assert!(e.contains("holds no images"), "{e}");
    }

    #[test]
    fn reads_entry_bytes() {
        let z = zip_of(&[("a.png", b"abc")]);
        let mut a = Archive::from_reader(Cursor::new(z), "t.zip").unwrap();
        assert_eq!(a.read(0).unwrap(), b"abc");
    }
}
