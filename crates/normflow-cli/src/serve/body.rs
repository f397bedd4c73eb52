//! Request bodies to rows and results to response bodies. JSON bodies hold rows as arrays or as
//! objects keyed by column name; CSV bodies hold rows with or without a header. Every error
//! names the row (1-based, in the request) and the column.

use normflow::{Matrix, MAX_ABS_VALUE};
use serde_json::{json, Map, Value};

/// The body types a request can have; the response has the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `application/json` (the default).
    Json,
    /// `text/csv`.
    Csv,
}

impl Kind {
    /// The kind a `Content-Type` names (JSON unless it says CSV).
    pub fn of(content_type: Option<&str>) -> Kind {
        match content_type {
            Some(t) if t.trim_start().to_ascii_lowercase().starts_with("text/csv") => Kind::Csv,
            _ => Kind::Json,
        }
    }

    /// The `Content-Type` of a response of this kind.
    pub fn content_type(self) -> &'static str {
        match self {
            Kind::Json => "application/json",
            Kind::Csv => "text/csv",
        }
    }
}

/// The columns a request's rows must have.
pub struct Layout<'a> {
    /// Data columns in the model's order.
    pub columns: &'a [String],
    /// Context columns (empty for an unconditional model).
    pub context: &'a [String],
}

/// Rows parsed from a request.
#[derive(Debug)]
pub struct Rows {
    /// Data rows.
    pub x: Matrix,
    /// Context rows, for a conditional model.
    pub context: Option<Matrix>,
}

/// A value checked to be a finite number within the engine's range.
fn checked(v: f64, row: usize, column: &str) -> Result<f32, String> {
    let f = v as f32;
    if !f.is_finite() || f.abs() > MAX_ABS_VALUE {
        return Err(format!("row {row}, column {column}: {v} is not a finite number of magnitude at most {MAX_ABS_VALUE:e}"));
    }
    Ok(f)
}

fn number(v: &Value, row: usize, column: &str) -> Result<f32, String> {
    match v.as_f64() {
        Some(x) => checked(x, row, column),
        None => Err(format!("row {row}, column {column}: expected a number, got {v}")),
    }
}

/// One JSON row given as an array of `names.len()` numbers.
fn array_row(values: &[Value], names: &[String], row: usize, what: &str, out: &mut Vec<f32>) -> Result<(), String> {
    if values.len() != names.len() {
        return Err(format!("row {row}: {} {what} values, the model expects {} ({})", values.len(), names.len(), names.join(", ")));
    }
    for (v, name) in values.iter().zip(names) {
        out.push(number(v, row, name)?);
    }
    Ok(())
}

/// One JSON row given as an object: every data and context column by name, nothing else.
fn object_row(obj: &Map<String, Value>, layout: &Layout, row: usize, x: &mut Vec<f32>, c: &mut Vec<f32>) -> Result<(), String> {
    for key in obj.keys() {
        if !layout.columns.contains(key) && !layout.context.contains(key) {
            let mut known: Vec<&str> = layout.columns.iter().map(String::as_str).collect();
            known.extend(layout.context.iter().map(String::as_str));
            return Err(format!("row {row}: unknown column \"{key}\" (the model's columns: {})", known.join(", ")));
        }
    }
    for (names, out) in [(layout.columns, x), (layout.context, c)] {
        for name in names {
            let v = obj.get(name).ok_or_else(|| format!("row {row}: missing column \"{name}\""))?;
            out.push(number(v, row, name)?);
        }
    }
    Ok(())
}

/// Parses a JSON body: `{"rows": [...], "context": [...]}` or a bare array of rows. Rows are
/// arrays (context then comes in `context`, one array per row) or objects by column name
/// (context columns included).
pub fn parse_json(body: &[u8], layout: &Layout, max_rows: usize) -> Result<Rows, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("malformed JSON: {e}"))?;
    let (rows, context) = match &v {
        Value::Array(rows) => (rows, None),
        Value::Object(o) => {
            for key in o.keys() {
                if key != "rows" && key != "context" {
                    return Err(format!("unknown field \"{key}\" (a request has \"rows\" and, for a conditional model, \"context\")"));
                }
            }
            let rows = o.get("rows").and_then(Value::as_array).ok_or("the body needs \"rows\": an array of rows")?;
            let context = match o.get("context") {
                None | Some(Value::Null) => None,
                Some(Value::Array(c)) => Some(c),
                Some(_) => return Err("\"context\" must be an array of rows".into()),
            };
            (rows, context)
        }
        _ => return Err("the body must be a JSON object with \"rows\", or an array of rows".into()),
    };
    if rows.is_empty() {
        return Err("no rows".into());
    }
    if rows.len() > max_rows {
        return Err(too_many(rows.len(), max_rows));
    }
    let (d, k) = (layout.columns.len(), layout.context.len());
    let mut x = Vec::with_capacity(rows.len() * d);
    let mut c = Vec::with_capacity(rows.len() * k);
    for (i, r) in rows.iter().enumerate() {
        match r {
            Value::Array(values) => array_row(values, layout.columns, i + 1, "data", &mut x)?,
            Value::Object(obj) => object_row(obj, layout, i + 1, &mut x, &mut c)?,
            other => return Err(format!("row {}: expected an array or an object, got {other}", i + 1)),
        }
    }
    if let Some(context) = context {
        if k == 0 {
            return Err("\"context\" given, but the model is unconditional".into());
        }
        if !c.is_empty() {
            return Err("context given twice: in the row objects and in \"context\"".into());
        }
        if context.len() != rows.len() {
            return Err(format!("{} context rows for {} rows", context.len(), rows.len()));
        }
        for (i, r) in context.iter().enumerate() {
            let values = r.as_array().ok_or_else(|| format!("context row {}: expected an array", i + 1))?;
            array_row(values, layout.context, i + 1, "context", &mut c)?;
        }
    }
    rows_of(rows.len(), x, c, layout)
}

fn too_many(n: usize, max: usize) -> String {
    format!("{n} rows; this server takes at most {max} per request (--max-rows)")
}

/// The parsed rows, with the context a conditional model needs.
fn rows_of(n: usize, x: Vec<f32>, c: Vec<f32>, layout: &Layout) -> Result<Rows, String> {
    let k = layout.context.len();
    if k > 0 && c.len() != n * k {
        return Err(format!(
            "the model is conditional: give its context columns ({}) in each row or in \"context\"",
            layout.context.join(", ")
        ));
    }
    let context = (k > 0).then(|| Matrix::from_vec(n, k, c));
    Ok(Rows { x: Matrix::from_vec(n, layout.columns.len(), x), context })
}

/// Parses a CSV body. A first line that is not all numbers is a header: its names pick the data
/// and context columns in any order (unknown names are an error). Without a header, each line
/// holds the data columns then the context columns.
pub fn parse_csv(body: &[u8], layout: &Layout, max_rows: usize) -> Result<Rows, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("the CSV body is not UTF-8: {e}"))?;
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).peekable();
    let fields = |l: &str| -> Vec<String> { l.split(',').map(|f| f.trim().trim_matches('"').to_string()).collect() };
    let all: Vec<String> = layout.columns.iter().chain(layout.context).cloned().collect();
    // Position in the line of each data and context column.
    let mut order: Vec<usize> = (0..all.len()).collect();
    let mut width = all.len();
    if let Some((_, first)) = lines.peek() {
        let head = fields(first);
        if head.iter().any(|f| f.parse::<f64>().is_err()) {
            for name in &head {
                if !all.contains(name) {
                    return Err(format!("header: unknown column \"{name}\" (the model's columns: {})", all.join(", ")));
                }
            }
            order = all
                .iter()
                .map(|name| head.iter().position(|h| h == name).ok_or_else(|| format!("header: missing column \"{name}\"")))
                .collect::<Result<_, _>>()?;
            width = head.len();
            lines.next();
        }
    }
    let d = layout.columns.len();
    let (mut x, mut c) = (Vec::new(), Vec::new());
    let mut n = 0;
    for (_, line) in lines {
        n += 1;
        if n > max_rows {
            return Err(too_many(n, max_rows));
        }
        let f = fields(line);
        if f.len() != width {
            return Err(format!("row {n}: {} values, expected {width} ({})", f.len(), all.join(", ")));
        }
        for (j, &pos) in order.iter().enumerate() {
            let v: f64 = f[pos].parse().map_err(|_| format!("row {n}, column {}: \"{}\" is not a number", all[j], f[pos]))?;
            let v = checked(v, n, &all[j])?;
            if j < d {
                x.push(v)
            } else {
                c.push(v)
            }
        }
    }
    if n == 0 {
        return Err("no rows".into());
    }
    rows_of(n, x, c, layout)
}

/// Parses a body of either kind.
pub fn parse(kind: Kind, body: &[u8], layout: &Layout, max_rows: usize) -> Result<Rows, String> {
    match kind {
        Kind::Json => parse_json(body, layout, max_rows),
        Kind::Csv => parse_csv(body, layout, max_rows),
    }
}

/// A number for a response: finite values as they are; beyond f32's range, the nearest finite
/// value (JSON has no infinities).
fn finite(v: f32) -> f32 {
    if v.is_nan() {
        f32::MIN
    } else {
        v.clamp(f32::MIN, f32::MAX)
    }
}

/// A response of named columns of equal length (`(name, values)`).
pub fn columns_body(kind: Kind, columns: &[(&str, Vec<Value>)]) -> String {
    match kind {
        Kind::Json => Value::Object(columns.iter().map(|(k, v)| (k.to_string(), Value::Array(v.clone()))).collect()).to_string(),
        Kind::Csv => {
            let n = columns.first().map_or(0, |c| c.1.len());
            let mut out = columns.iter().map(|c| c.0).collect::<Vec<_>>().join(",");
            out.push('\n');
            for i in 0..n {
                let line: Vec<String> = columns.iter().map(|c| csv_value(&c.1[i])).collect();
                out.push_str(&line.join(","));
                out.push('\n');
            }
            out
        }
    }
}

fn csv_value(v: &Value) -> String {
    match v {
        Value::Bool(b) => u8::from(*b).to_string(),
        other => other.to_string(),
    }
}

/// A number as a JSON value, written with the shortest digits that give back the same f32
/// (`0.1`, not the f64 expansion `0.10000000149011612`).
fn number_value(v: f32) -> Value {
    let v = finite(v);
    json!(v.to_string().parse::<f64>().unwrap_or(f64::from(v)))
}

/// Numbers as JSON values.
pub fn values(v: &[f32]) -> Vec<Value> {
    v.iter().map(|&x| number_value(x)).collect()
}

/// A response of rows: JSON `{"columns": [...], "rows": [[...]], ...extra}` or CSV with a header.
pub fn rows_body(kind: Kind, names: &[String], m: &Matrix, extra: &[(&str, Value)]) -> String {
    match kind {
        Kind::Json => {
            let rows: Vec<Value> = (0..m.rows()).map(|i| Value::Array(values(m.row(i)))).collect();
            let mut o = Map::new();
            o.insert("columns".into(), json!(names));
            o.insert("rows".into(), Value::Array(rows));
            for (k, v) in extra {
                o.insert(k.to_string(), v.clone());
            }
            Value::Object(o).to_string()
        }
        Kind::Csv => {
            let mut out = names.join(",");
            out.push('\n');
            for i in 0..m.rows() {
                let line: Vec<String> = m.row(i).iter().map(|&v| finite(v).to_string()).collect();
                out.push_str(&line.join(","));
                out.push('\n');
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn json_rows_as_arrays_or_objects_in_any_key_order() {
        let (cols, ctx) = (names(&["a", "b"]), names(&["c"]));
        let layout = Layout { columns: &cols, context: &ctx };
        let r = parse_json(br#"{"rows": [[1, 2]], "context": [[3]]}"#, &layout, 10).unwrap();
        assert_eq!((r.x.as_slice(), r.context.unwrap().as_slice()), (&[1.0, 2.0][..], &[3.0][..]));
        let r = parse_json(br#"[{"c": 3, "b": 2, "a": 1}, {"a": 4, "b": 5, "c": 6}]"#, &layout, 10).unwrap();
        assert_eq!(r.x.as_slice(), &[1.0, 2.0, 4.0, 5.0]);
        assert_eq!(r.context.unwrap().as_slice(), &[3.0, 6.0]);
    }

    #[test]
    fn json_errors_name_the_row_and_column() {
        let cols = names(&["a", "b"]);
        let layout = Layout { columns: &cols, context: &[] };
        let err = |body: &str| parse_json(body.as_bytes(), &layout, 3).unwrap_err();
        assert!(err("{\"rows\": [[1, 2], [1]").contains("malformed JSON"));
        assert!(err(r#"{"rows": [[1, 2], [1]]}"#).starts_with("row 2: 1 data values, the model expects 2"));
        assert!(err(r#"{"rows": [[1, "NaN"]]}"#).starts_with("row 1, column b: expected a number"));
        assert!(err(r#"{"rows": [[1, 1e39]]}"#).starts_with("row 1, column b:"));
        assert!(err(r#"[{"a": 1, "b": 2, "z": 3}]"#).contains("unknown column \"z\""));
        assert!(err(r#"[{"a": 1}]"#).contains("row 1: missing column \"b\""));
        assert!(err(r#"{"rows": [[1, 2]], "context": [[1]]}"#).contains("unconditional"));
        assert!(err(r#"{"rows": [[1,2],[1,2],[1,2],[1,2]]}"#).contains("at most 3"));
        assert!(err(r#"{"rows": []}"#).contains("no rows"));
    }

    #[test]
    fn csv_with_a_header_in_any_order_or_without_one() {
        let (cols, ctx) = (names(&["a", "b"]), names(&["c"]));
        let layout = Layout { columns: &cols, context: &ctx };
        let r = parse_csv(b"c,b,a\n3,2,1\n6,5,4\n", &layout, 10).unwrap();
        assert_eq!(r.x.as_slice(), &[1.0, 2.0, 4.0, 5.0]);
        assert_eq!(r.context.unwrap().as_slice(), &[3.0, 6.0]);
        let r = parse_csv(b"1,2,3\n", &layout, 10).unwrap();
        assert_eq!((r.x.as_slice(), r.context.unwrap().as_slice()), (&[1.0, 2.0][..], &[3.0][..]));
        assert!(parse_csv(b"a,b,c\n1,2,nan\n", &layout, 10).unwrap_err().starts_with("row 1, column c:"));
        assert!(parse_csv(b"a,b,c\n1,2\n", &layout, 10).unwrap_err().starts_with("row 1: 2 values, expected 3"));
        assert!(parse_csv(b"a,b,x\n1,2,3\n", &layout, 10).unwrap_err().contains("unknown column \"x\""));
    }

    #[test]
    fn responses_hold_finite_numbers() {
        let body = columns_body(Kind::Json, &[("log_prob", values(&[f32::NEG_INFINITY, 1.5]))]);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["log_prob"][0].as_f64().unwrap() as f32, f32::MIN);
        let csv = columns_body(Kind::Csv, &[("score", values(&[2.0])), ("flag", vec![json!(true)])]);
        assert_eq!(csv, "score,flag\n2.0,1\n");
    }
}
