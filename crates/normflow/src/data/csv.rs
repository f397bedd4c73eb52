//! Numeric CSV: optional header (detected), column selection, and precise errors.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use super::{resolve_column, Table};
use crate::engine::Matrix;
use crate::{Error, Result};

/// How to read a CSV file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CsvOptions {
    /// Keep only these columns, in this order: header names, or 1-based positions.
    pub columns: Option<Vec<String>>,
    /// Drop these columns (names or 1-based positions), e.g. a label or an id.
    pub drop: Vec<String>,
}

/// A numeric CSV file read in chunks of rows, in bounded memory (gzip-compressed or not).
///
/// A first line with any non-numeric field is taken as a header. Blank lines are skipped;
/// fields are trimmed. Errors name the file and the 1-based line and column.
pub struct CsvChunks {
    path: std::path::PathBuf,
    lines: Box<dyn BufRead>,
    line_no: usize,
    first_row: Option<(usize, String)>,
    cols: usize,
    keep: Vec<usize>,
    columns: Option<Vec<String>>,
    buf: String,
    gz: bool,
}

impl std::fmt::Debug for CsvChunks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CsvChunks({}, line {})", self.path.display(), self.line_no)
    }
}

impl CsvChunks {
    /// Opens `path` and reads its first line (header detection, column selection).
    ///
    /// # Errors
    /// [`Error::Io`] if it cannot be opened; [`Error::BadFile`] for an empty file or unknown
    /// columns; [`Error::Parse`] for a bad first data row.
    pub fn open(path: &Path, options: &CsvOptions) -> Result<Self> {
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut magic = [0u8; 2];
        let gz = std::io::Read::read(&mut file, &mut magic).map_err(|e| Error::io(path, e))? == 2 && magic == [0x1f, 0x8b];
        std::io::Seek::rewind(&mut file).map_err(|e| Error::io(path, e))?;
        let lines: Box<dyn BufRead> =
            if gz { Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file))) } else { Box::new(BufReader::new(file)) };
        let mut me = Self {
            path: path.into(),
            lines,
            line_no: 0,
            first_row: None,
            cols: 0,
            keep: Vec::new(),
            columns: None,
            buf: String::new(),
            gz,
        };
        let (first_no, first) = me.next_line()?.ok_or_else(|| Error::BadFile { path: path.into(), message: "the file is empty".into() })?;
        let fields = split_fields(&first).map_err(|message| Error::Parse { path: path.into(), row: first_no, column: 1, message })?;
        let header = fields.iter().any(|f| f.parse::<f64>().is_err()).then_some(fields.clone());
        if let Some(h) = &header {
            let duplicates = duplicates(h);
            if !duplicates.is_empty() {
                return Err(Error::BadFile {
                    path: path.into(),
                    message: format!("duplicate column names in the header: {}", duplicates.join(", ")),
                });
            }
        }
        let cols = fields.len();
        let base: Vec<usize> = match &options.columns {
            Some(sel) => {
                let idx = sel.iter().map(|s| resolve_column(path, s, header.as_deref(), cols)).collect::<Result<Vec<_>>>()?;
                let twice: Vec<String> = (0..idx.len()).filter(|&k| idx[..k].contains(&idx[k])).map(|k| sel[k].clone()).collect();
                if !twice.is_empty() {
                    return Err(Error::BadFile { path: path.into(), message: format!("column selected twice: {}", twice.join(", ")) });
                }
                idx
            }
            None => (0..cols).collect(),
        };
        let dropped = options.drop.iter().map(|s| resolve_column(path, s, header.as_deref(), cols)).collect::<Result<Vec<_>>>()?;
        me.keep = base.into_iter().filter(|c| !dropped.contains(c)).collect();
        if me.keep.is_empty() {
            return Err(Error::BadFile { path: path.into(), message: "no columns left to read".into() });
        }
        me.cols = cols;
        me.columns = header.as_ref().map(|h| me.keep.iter().map(|&c| h[c].clone()).collect());
        if header.is_none() {
            me.first_row = Some((first_no, first));
        }
        Ok(me)
    }

    /// Names of the selected columns, when the file has a header.
    pub fn columns(&self) -> Option<&[String]> {
        self.columns.as_deref()
    }

    /// Number of selected columns.
    pub fn width(&self) -> usize {
        self.keep.len()
    }

    fn next_line(&mut self) -> Result<Option<(usize, String)>> {
        loop {
            self.buf.clear();
            let gz = self.gz;
            let n = self.lines.read_line(&mut self.buf).map_err(|e| match e.kind() {
                _ if gz => Error::BadFile { path: self.path.clone(), message: format!("damaged gzip data: {e}") },
                std::io::ErrorKind::InvalidData => {
                    Error::BadFile { path: self.path.clone(), message: "not UTF-8 text (is it a CSV file?)".into() }
                }
                _ => Error::io(&self.path, e),
            })?;
            if n == 0 {
                return Ok(None);
            }
            self.line_no += 1;
            let first_line = self.line_no;
            // A quoted field may hold line breaks: read on until the quotes balance.
            while self.buf.bytes().filter(|&b| b == b'"').count() % 2 == 1 {
                if self.lines.read_line(&mut self.buf).map_err(|e| Error::io(&self.path, e))? == 0 {
                    return Err(Error::Parse {
                        path: self.path.clone(),
                        row: first_line,
                        column: 1,
                        message: "a quoted field is not closed".into(),
                    });
                }
                self.line_no += 1;
            }
            if !self.buf.trim().is_empty() {
                return Ok(Some((first_line, self.buf.trim_end_matches(['\n', '\r']).to_string())));
            }
        }
    }

    fn parse_line(&self, no: usize, line: &str, out: &mut Vec<f32>) -> Result<()> {
        // Most numeric rows hold no quotes: split them without allocating a string per field.
        let quoted;
        let fields: Vec<&str> = if line.contains('"') {
            quoted = split_fields(line).map_err(|message| Error::Parse { path: self.path.clone(), row: no, column: 1, message })?;
            quoted.iter().map(String::as_str).collect()
        } else {
            line.split(',').map(str::trim).collect()
        };
        if fields.len() != self.cols {
            return Err(Error::Parse {
                path: self.path.clone(),
                row: no,
                column: fields.len().min(self.cols) + 1,
                message: format!("expected {} fields, found {}", self.cols, fields.len()),
            });
        }
        for &c in &self.keep {
            let f = fields[c];
            let bad = |message: String| Error::Parse { path: self.path.clone(), row: no, column: c + 1, message };
            if f.is_empty() {
                return Err(bad("missing value".into()));
            }
            let v: f64 = f.parse().map_err(|_| bad(format!("'{f}' is not a number")))?;
            if !v.is_finite() {
                return Err(bad(format!("non-finite value '{f}'")));
            }
            if !(v as f32).is_finite() {
                return Err(bad(format!("'{f}' is beyond the range of 32-bit floats (±3.4e38)")));
            }
            out.push(v as f32);
        }
        Ok(())
    }

    /// The next chunk of at most `max_rows` rows, or `None` at the end of the file.
    ///
    /// # Errors
    /// [`Error::Parse`] naming the line and column of a bad cell or ragged row.
    pub fn next_chunk(&mut self, max_rows: usize) -> Result<Option<Matrix>> {
        let mut data = Vec::with_capacity(max_rows.min(1 << 16) * self.keep.len());
        let mut rows = 0;
        if let Some((no, line)) = self.first_row.take() {
            self.parse_line(no, &line, &mut data)?;
            rows += 1;
        }
        while rows < max_rows.max(1) {
            let Some((no, line)) = self.next_line()? else { break };
            self.parse_line(no, &line, &mut data)?;
            rows += 1;
        }
        Ok((rows > 0).then(|| Matrix::from_vec(rows, self.keep.len(), data)))
    }
}

/// The fields of one CSV record (RFC 4180): separated by commas, each optionally in double
/// quotes, inside which commas and line breaks are data and `""` is one quote; unquoted fields
/// are trimmed.
fn split_fields(line: &str) -> std::result::Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
            chars.next();
        }
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("a quoted field is not closed".into()),
                }
            }
            while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
                chars.next();
            }
            if chars.peek().is_some_and(|c| *c != ',') {
                return Err(format!("text after the closing quote of field {}", fields.len() + 1));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                field.push(c);
                chars.next();
            }
            field = field.trim().to_string();
        }
        fields.push(field);
        if chars.next().is_none() {
            return Ok(fields);
        }
    }
}

/// Names that occur more than once in `names`, each once, in order of first repetition.
fn duplicates(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (k, n) in names.iter().enumerate() {
        if names[..k].contains(n) && !out.contains(n) {
            out.push(n.clone());
        }
    }
    out
}

/// A field as CSV text: quoted (with quotes doubled) when it holds a comma, a quote, a line
/// break or surrounding spaces.
fn quote_field(field: &str) -> std::borrow::Cow<'_, str> {
    if field.contains([',', '"', '\n', '\r']) || field.trim() != field {
        format!("\"{}\"", field.replace('"', "\"\"")).into()
    } else {
        field.into()
    }
}

/// The column names of a CSV file's header (or of a Parquet or Arrow file's schema), or `None`
/// when it has none (or is NPY).
///
/// # Errors
/// As [`CsvChunks::open`].
pub fn read_header(path: &Path) -> Result<Option<Vec<String>>> {
    #[cfg(feature = "columnar")]
    if super::Format::of(path).is_columnar() {
        return super::read_columnar_header(path).map(Some);
    }
    if super::Format::of(path) != super::Format::Csv {
        return Ok(None);
    }
    Ok(CsvChunks::open(path, &CsvOptions::default())?.columns.take())
}

/// Reads a whole numeric CSV file (see [`CsvChunks`] for the format and errors).
///
/// # Errors
/// As [`CsvChunks`]; also [`Error::BadFile`] for a file without data rows.
pub fn read_csv(path: &Path, options: &CsvOptions) -> Result<Table> {
    let mut chunks = CsvChunks::open(path, options)?;
    let (mut values, mut rows) = (Vec::new(), 0);
    while let Some(m) = chunks.next_chunk(1 << 16)? {
        rows += m.rows();
        values.extend_from_slice(m.as_slice());
    }
    if rows == 0 {
        return Err(Error::BadFile { path: path.into(), message: "no data rows".into() });
    }
    Ok(Table { data: Matrix::from_vec(rows, chunks.width(), values), columns: chunks.columns.take() })
}

/// Writes `data` as CSV with an optional header line. Values use the shortest representation
/// that reads back to the same `f32`.
///
/// # Errors
/// Any I/O error of `w`.
pub fn write_csv(w: &mut dyn Write, data: &Matrix, header: Option<&[String]>) -> std::io::Result<()> {
    if let Some(h) = header {
        let fields: Vec<_> = h.iter().map(|f| quote_field(f)).collect();
        writeln!(w, "{}", fields.join(","))?;
    }
    let mut line = String::new();
    for i in 0..data.rows() {
        line.clear();
        for (j, v) in data.row(i).iter().enumerate() {
            if j > 0 {
                line.push(',');
            }
            line.push_str(&v.to_string());
        }
        line.push('\n');
        w.write_all(line.as_bytes())?;
    }
    Ok(())
}
