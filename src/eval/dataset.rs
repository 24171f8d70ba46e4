//! Data sets: an image folder in the ImageFolder convention (`DIR/<label>/*.png`; a flat folder is
//! unlabelled), or a CSV/JSONL file with a `text` or `image` column and optional `label`, `id`.

use std::path::{Path, PathBuf};

const IMAGE_EXTENSIONS: [&str; 9] = ["png", "jpg", "jpeg", "gif", "webp", "bmp", "tif", "tiff", "ico"];

#[derive(Debug, Clone, PartialEq)]
pub enum ExampleInput {
    Image(PathBuf),
    Text(String),
    /// A record that could not be read (invalid UTF-8, a line that is not JSON, no input
    /// field), with why. The rest of the data set stays usable: batch runs report it as a
    /// failed record.
    Invalid(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub id: String,
    pub input: ExampleInput,
    pub label: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub source: PathBuf,
    pub examples: Vec<Example>,
}

impl Dataset {
    /// A fingerprint of what the data set holds, for `batch --resume`: every record's id,
    /// input and label, and for images the file's size and modification time (a replaced file
    /// changes it; reading every image would cost as much as the run).
    pub fn fingerprint(&self) -> String {
        let mut hasher = crc32fast::Hasher::new();
        // Image paths relative to the data set, so that `data/` and `./data/` are the same run.
        let base =
            if self.source.is_dir() { self.source.as_path() } else { self.source.parent().unwrap_or(&self.source) };
        for e in &self.examples {
            hasher.update(e.id.as_bytes());
            hasher.update(&[0]);
            match &e.input {
                ExampleInput::Image(path) => {
                    hasher.update(path.strip_prefix(base).unwrap_or(path).to_string_lossy().as_bytes());
                    if let Ok(meta) = std::fs::metadata(path) {
                        hasher.update(&meta.len().to_le_bytes());
                        let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
                        hasher.update(&modified.map_or(0, |d| d.as_nanos()).to_le_bytes());
                    }
                }
                ExampleInput::Text(text) => hasher.update(text.as_bytes()),
                ExampleInput::Invalid(reason) => hasher.update(reason.as_bytes()),
            }
            hasher.update(&[0]);
            hasher.update(e.label.as_deref().unwrap_or("").as_bytes());
            hasher.update(&[0]);
        }
        format!("crc32:{:08x}:{}", hasher.finalize(), self.examples.len())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{} holds no images (expected DIR/<label>/*.png or image files)", .0.display())]
    NoImages(PathBuf),
    #[error("{}: {reason}", path.display())]
    Format { path: PathBuf, reason: String },
    #[error("{}, row {row}: {reason}", path.display())]
    Row { path: PathBuf, row: usize, reason: String },
}

impl Dataset {
    pub fn load(path: &Path) -> Result<Self, DatasetError> {
        if path.is_dir() {
            return Self::from_folder(path);
        }
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("csv") => Self::from_csv(path),
            Some("jsonl") | Some("ndjson") => Self::from_jsonl(path),
            _ if !path.exists() => Err(DatasetError::Io {
                path: path.into(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
            }),
            _ => Err(DatasetError::Format {
                path: path.into(),
                reason: "expected an image folder, a .csv or a .jsonl file".into(),
            }),
        }
    }

    /// Distinct labels, numerically sorted when they are all integers.
    /// The examples are images (a data set holds one kind; an empty one counts as texts).
    pub fn has_images(&self) -> bool {
        let first = self.examples.iter().map(|e| &e.input).find(|i| !matches!(i, ExampleInput::Invalid(_)));
        matches!(first, Some(ExampleInput::Image(_)))
    }

    /// Records that could not be read.
    pub fn invalid(&self) -> usize {
        self.examples.iter().filter(|e| matches!(e.input, ExampleInput::Invalid(_))).count()
    }

    /// Errors when every record is invalid (the file is not what it claims to be), naming the
    /// first reason.
    fn require_valid(self, path: &Path) -> Result<Self, DatasetError> {
        if self.examples.is_empty() {
            return Err(DatasetError::Format { path: path.into(), reason: "has no records".into() });
        }
        match self.examples.iter().find_map(|e| match &e.input {
            ExampleInput::Invalid(reason) => Some(reason.clone()),
            _ => None,
        }) {
            Some(reason) if self.invalid() == self.examples.len() => {
                Err(DatasetError::Format { path: path.into(), reason: format!("no readable record ({reason})") })
            }
            _ => Ok(self),
        }
    }

    pub fn labels(&self) -> Vec<String> {
        let mut labels: Vec<String> = self.examples.iter().filter_map(|e| e.label.clone()).collect();
        labels.sort();
        labels.dedup();
        if labels.iter().all(|l| l.parse::<i64>().is_ok()) {
            labels.sort_by_key(|l| l.parse::<i64>().unwrap_or(0));
        }
        labels
    }

    fn from_folder(dir: &Path) -> Result<Self, DatasetError> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| DatasetError::Io { path: dir.into(), source })?
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        let mut examples = Vec::new();
        let is_image = |p: &Path| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        };
        let subdirs: Vec<&PathBuf> = entries.iter().filter(|p| p.is_dir()).collect();
        if subdirs.is_empty() {
            for path in entries.iter().filter(|p| is_image(p)) {
                examples.push(image_example(dir, path, None));
            }
        } else {
            for sub in subdirs {
                let label = sub.file_name().map(|n| n.to_string_lossy().into_owned());
                let mut files: Vec<PathBuf> = std::fs::read_dir(sub)
                    .map_err(|source| DatasetError::Io { path: sub.into(), source })?
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| is_image(p))
                    .collect();
                files.sort();
                for path in files {
                    examples.push(image_example(dir, &path, label.clone()));
                }
            }
        }
        if examples.is_empty() {
            return Err(DatasetError::NoImages(dir.into()));
        }
        Ok(Self { source: dir.into(), examples })
    }

    fn from_csv(path: &Path) -> Result<Self, DatasetError> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(false)
            .from_path(path)
            .map_err(|e| DatasetError::Format { path: path.into(), reason: e.to_string() })?;
        let headers =
            reader.headers().map_err(|e| DatasetError::Format { path: path.into(), reason: e.to_string() })?.clone();
        let column = |name: &str| headers.iter().position(|h| h.trim().eq_ignore_ascii_case(name));
        let (text, image, label, id) = (column("text"), column("image"), column("label"), column("id"));
        if text.is_none() && image.is_none() {
            return Err(DatasetError::Format {
                path: path.into(),
                reason: "needs a `text` or an `image` column".into(),
            });
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let mut examples = Vec::new();
        for (i, record) in reader.byte_records().enumerate() {
            let row = i + 2;
            let record = record.map_err(|e| DatasetError::Row { path: path.into(), row, reason: e.to_string() })?;
            let get =
                |c: Option<usize>| c.and_then(|c| record.get(c)).map(|b| std::str::from_utf8(b).map(str::to_string));
            let text_of = |c: Option<usize>| get(c).and_then(Result::ok);
            let input = match (get(text), get(image)) {
                (Some(Ok(t)), _) => ExampleInput::Text(t),
                (Some(Err(_)), _) => ExampleInput::Invalid(format!("row {row}: the text is not valid UTF-8")),
                (None, Some(Ok(p))) => ExampleInput::Image(base.join(p)),
                (None, Some(Err(_))) => ExampleInput::Invalid(format!("row {row}: the image path is not valid UTF-8")),
                (None, None) => ExampleInput::Invalid(format!("row {row}: has neither text nor image")),
            };
            examples.push(Example {
                id: text_of(id).filter(|s| !s.is_empty()).unwrap_or_else(|| (row - 1).to_string()),
                input,
                label: text_of(label).filter(|s| !s.is_empty()),
            });
        }
        Self { source: path.into(), examples }.require_valid(path)
    }

    fn from_jsonl(path: &Path) -> Result<Self, DatasetError> {
        let bytes = std::fs::read(path).map_err(|source| DatasetError::Io { path: path.into(), source })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut examples = Vec::new();
        for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
            let row = i + 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let invalid = |reason: String| Example {
                id: row.to_string(),
                input: ExampleInput::Invalid(format!("line {row}: {reason}")),
                label: None,
            };
            let value: serde_json::Value = match serde_json::from_slice(line) {
                Ok(v) => v,
                Err(e) => {
                    examples.push(invalid(format!("not JSON: {e}")));
                    continue;
                }
            };
            let field = |k: &str| match value.get(k) {
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            let input = match (field("text"), field("image")) {
                (Some(t), _) => ExampleInput::Text(t),
                (None, Some(p)) => ExampleInput::Image(base.join(p)),
                (None, None) => ExampleInput::Invalid(format!("line {row}: needs a `text` or an `image` field")),
            };
            examples.push(Example { id: field("id").unwrap_or_else(|| row.to_string()), input, label: field("label") });
        }
        Self { source: path.into(), examples }.require_valid(path)
    }
}

fn image_example(root: &Path, path: &Path, label: Option<String>) -> Example {
    let id = path.strip_prefix(root).unwrap_or(path).to_string_lossy().into_owned();
    Example { id, input: ExampleInput::Image(path.into()), label }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_changes_with_a_row_or_a_replaced_image() {
        let tmp = tempfile::tempdir().unwrap();
        let csv = tmp.path().join("t.csv");
        std::fs::write(&csv, "id,text,label\na,good film,pos\nb,bad film,neg\n").unwrap();
        let before = Dataset::load(&csv).unwrap().fingerprint();
        assert_eq!(Dataset::load(&csv).unwrap().fingerprint(), before, "stable");
        std::fs::write(&csv, "id,text,label\na,good film,pos\nb,bad film,pos\n").unwrap();
        assert_ne!(Dataset::load(&csv).unwrap().fingerprint(), before, "a changed label");

        let dir = tmp.path().join("images/cat");
        std::fs::create_dir_all(&dir).unwrap();
        image::RgbImage::new(4, 4).save(dir.join("a.png")).unwrap();
        let folder = tmp.path().join("images");
        let before = Dataset::load(&folder).unwrap().fingerprint();
        image::RgbImage::from_pixel(5, 4, image::Rgb([9, 9, 9])).save(dir.join("a.png")).unwrap();
        assert_ne!(Dataset::load(&folder).unwrap().fingerprint(), before, "a replaced image");
        let now = Dataset::load(&folder).unwrap().fingerprint();
        let spelled_otherwise = tmp.path().join("images/./cat/..");
        assert_eq!(Dataset::load(&spelled_otherwise).unwrap().fingerprint(), now, "the same folder, named otherwise");
    }

    #[test]
    fn reads_image_folders_csv_and_jsonl() {
        let digits = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/digits/test");
        let data = Dataset::load(&digits).unwrap();
        assert_eq!(data.examples.len(), 540);
        assert_eq!(data.labels(), (0..10).map(|i| i.to_string()).collect::<Vec<_>>());

        let tmp = tempfile::tempdir().unwrap();
        let csv = tmp.path().join("t.csv");
        std::fs::write(&csv, "id,text,label\na,good film,pos\nb,\"bad, very bad\",neg\nc,meh,\n").unwrap();
        let data = Dataset::load(&csv).unwrap();
        assert_eq!(data.examples[1].input, ExampleInput::Text("bad, very bad".into()));
        assert_eq!(data.examples[2].label, None);
        assert_eq!(data.labels(), vec!["neg", "pos"]);

        std::fs::write(&csv, "text,label\nx,1,extra\n").unwrap();
        let err = Dataset::load(&csv).unwrap_err().to_string();
        assert!(err.contains("t.csv") && err.contains("row 2"), "{err}");

        let jsonl = tmp.path().join("t.jsonl");
        std::fs::write(&jsonl, "{\"image\": \"a.png\", \"label\": 3}\n\n{\"text\": \"hi\"}\n").unwrap();
        let data = Dataset::load(&jsonl).unwrap();
        assert_eq!(data.examples[0].input, ExampleInput::Image(tmp.path().join("a.png")));
        assert_eq!(data.examples[0].label.as_deref(), Some("3"));
        std::fs::write(&jsonl, "{oops\n").unwrap();
        assert!(Dataset::load(&jsonl).unwrap_err().to_string().contains("line 1"));
        // A bad record among good ones is kept as invalid, with its reason.
        std::fs::write(&jsonl, "{\"text\": \"fine\"}\n{oops\n{\"label\": 1}\n").unwrap();
        let data = Dataset::load(&jsonl).unwrap();
        assert_eq!(data.invalid(), 2);
        assert!(matches!(&data.examples[1].input, ExampleInput::Invalid(r) if r.contains("line 2: not JSON")));
        assert!(matches!(&data.examples[2].input, ExampleInput::Invalid(r) if r.contains("`text` or an `image`")));
        let mut bytes = b"text,label\nok,1\n".to_vec();
        bytes.extend_from_slice(b"caf\xe9,2\n");
        std::fs::write(&csv, bytes).unwrap();
        let data = Dataset::load(&csv).unwrap();
        assert!(
            matches!(&data.examples[1].input, ExampleInput::Invalid(r) if r.contains("row 3") && r.contains("UTF-8"))
        );
        assert_eq!(data.examples[1].label.as_deref(), Some("2"));
        assert!(Dataset::load(tmp.path()).is_err());
    }
}
