//! Parquet and Arrow IPC files through the CLI: training by column name, streamed log-prob with
//! the same numbers as CSV, outputs in either format, and clear errors for bad files.

mod common;

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int32Array, RecordBatch, StringArray};
use common::{fails, ok, write_conditional_data, write_data, TempDir};
use normflow::data::{read_table, CsvOptions};
use parquet::arrow::ArrowWriter;

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

fn column(path: &std::path::Path) -> Vec<f32> {
    read_table(path, &CsvOptions::default()).unwrap().data.into_vec()
}

/// A Parquet file of `columns` (name, array).
fn write_parquet(path: &std::path::Path, columns: Vec<(&str, ArrayRef)>) {
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn parquet_and_arrow_files_train_score_and_stream_like_csv() {
    let t = TempDir::new("columnar");
    let csv = t.path("data.csv");
    write_data(&csv, 3000, 1);
    let model = t.path("m.safetensors");
    ok(&["train", s(&csv), "--epochs", "3", "-q", "-o", s(&model)]);
    // Samples as Parquet and as Arrow IPC (the same seed: the same rows).
    let (pq, arrow, rows_csv) = (t.path("rows.parquet"), t.path("rows.arrow"), t.path("rows.csv"));
    for out in [&pq, &arrow, &rows_csv] {
        ok(&["sample", s(&model), "-n", "150000", "--seed", "4", "-o", s(out)]);
    }
    assert_eq!(column(&pq), column(&rows_csv));
    assert_eq!(column(&arrow), column(&rows_csv));
    // log-prob streams the columnar files (150,000 rows: three blocks) to the same numbers.
    let want = t.path("lp.csv");
    ok(&["log-prob", s(&model), s(&rows_csv), "-o", s(&want)]);
    for (input, out) in [(&pq, "lp.parquet"), (&arrow, "lp.arrow"), (&pq, "lp-from-parquet.csv")] {
        let got = t.path(out);
        ok(&["log-prob", s(&model), s(input), "-o", s(&got)]);
        assert_eq!(column(&got), column(&want), "{out}");
    }
    // The column names of a Parquet file: training picks them by name.
    let by_name = t.path("by-name.safetensors");
    ok(&["train", s(&pq), "--columns", "b,a", "--epochs", "1", "-q", "-o", s(&by_name)]);
    let info = ok(&["info", s(&by_name)]);
    assert!(info.contains('b') && info.contains('a'), "{info}");
}

#[test]
fn a_conditional_model_reads_its_context_columns_from_parquet() {
    let t = TempDir::new("columnar-context");
    let csv = t.path("data.csv");
    write_conditional_data(&csv, 2000, 2);
    let model = t.path("m.safetensors");
    ok(&["train", s(&csv), "--context-columns", "c", "--epochs", "2", "-q", "-o", s(&model)]);
    let table = read_table(&csv, &CsvOptions::default()).unwrap();
    let col = |j: usize| -> ArrayRef {
        Arc::new(Float64Array::from((0..table.data.rows()).map(|r| table.data.get(r, j) as f64).collect::<Vec<_>>()))
    };
    // Columns in another order than the CSV's, as float64.
    let pq = t.path("data.parquet");
    write_parquet(&pq, vec![("y", col(2)), ("c", col(0)), ("x", col(1))]);
    let (from_csv, from_pq) = (t.path("a.csv"), t.path("b.csv"));
    ok(&["log-prob", s(&model), s(&csv), "-o", s(&from_csv)]);
    ok(&["log-prob", s(&model), s(&pq), "-o", s(&from_pq)]);
    assert_eq!(column(&from_csv), column(&from_pq));
}

#[test]
fn bad_columnar_files_are_clear_errors() {
    let t = TempDir::new("columnar-bad");
    let csv = t.path("data.csv");
    write_data(&csv, 500, 1);
    let model = t.path("m.safetensors");
    ok(&["train", s(&csv), "--epochs", "1", "-q", "-o", s(&model)]);
    let good = t.path("good.parquet");
    ok(&["sample", s(&model), "-n", "100", "-o", s(&good)]);
    // Truncated.
    let cut = t.path("cut.parquet");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = fails(&["log-prob", s(&model), s(&cut)]);
    assert!(e.contains("cut.parquet"), "{e}");
    // A text column, a null cell, a missing column.
    let text = t.path("text.parquet");
    write_parquet(
        &text,
        vec![
            ("a", Arc::new(Float64Array::from(vec![1.0, 2.0])) as ArrayRef),
            ("b", Arc::new(StringArray::from(vec!["x", "y"])) as ArrayRef),
        ],
    );
    let e = fails(&["log-prob", s(&model), s(&text)]);
    assert!(e.contains("text.parquet") && e.contains("'b'") && e.contains("not numeric"), "{e}");
    let nulls = t.path("nulls.parquet");
    write_parquet(
        &nulls,
        vec![
            ("a", Arc::new(Float64Array::from(vec![Some(1.0), Some(2.0), Some(0.5)])) as ArrayRef),
            ("b", Arc::new(Int32Array::from(vec![Some(1), None, Some(3)])) as ArrayRef),
        ],
    );
    let e = fails(&["log-prob", s(&model), s(&nulls), "-o", s(&t.path("never.parquet"))]);
    assert!(e.contains("nulls.parquet") && e.contains("row 2") && e.contains("'b'"), "{e}");
    assert!(!t.path("never.parquet").exists(), "a failed run writes no output");
    let e = fails(&["train", s(&good), "--columns", "a,zzz", "-o", s(&t.path("never.safetensors"))]);
    assert!(e.contains("zzz"), "{e}");
    let e = fails(&["train", s(&good), "--columns", "a,a", "-o", s(&t.path("never.safetensors"))]);
    assert!(e.contains("good.parquet") && e.contains("selected twice"), "{e}");
    // Parquet needs a file: not stdout.
    let e = fails(&["sample", s(&model), "-n", "5", "-o", s(&t.path("out.txt"))]);
    assert!(e.contains(".parquet"), "{e}");
}

#[test]
fn streamed_log_prob_encode_and_decode_match_the_whole_file_read_with_dequantised_columns() {
    let t = TempDir::new("stream-csv");
    // 20,000 rows (three blocks): a continuous column and an integer count (dequantised).
    let mut rng = normflow::Rng::new(8);
    let mut text = String::from("a,n\n");
    for _ in 0..20_000 {
        let a = rng.normal();
        text.push_str(&format!("{a},{}\n", (a.abs() * 3.0).floor() + (rng.uniform() * 2.0).floor()));
    }
    let csv = t.path("data.csv");
    std::fs::write(&csv, text).unwrap();
    let model = t.path("m.safetensors");
    ok(&["train", s(&csv), "--epochs", "2", "-q", "-o", s(&model)]);
    let (whole, streamed) = (t.path("whole.npy"), t.path("streamed.csv"));
    ok(&["log-prob", s(&model), s(&csv), "-o", s(&whole)]);
    ok(&["log-prob", s(&model), s(&csv), "-o", s(&streamed)]);
    let (w, st) = (column(&whole), column(&streamed));
    assert_eq!(w.len(), 20_000);
    assert_eq!(w, st);
    // encode streams the same way: the latent rows of the whole-file read.
    let (whole_z, streamed_z) = (t.path("z.npy"), t.path("z.parquet"));
    ok(&["encode", s(&model), s(&csv), "-o", s(&whole_z)]);
    ok(&["encode", s(&model), s(&csv), "-o", s(&streamed_z)]);
    let (wz, sz) = (column(&whole_z), column(&streamed_z));
    assert_eq!(wz.len(), 40_000);
    assert_eq!(wz, sz);
    // And decode: the whole NPY file against the streamed Parquet one, and back near the rows.
    let (whole_x, streamed_x) = (t.path("x.npy"), t.path("x.csv"));
    ok(&["decode", s(&model), s(&whole_z), "-o", s(&whole_x)]);
    ok(&["decode", s(&model), s(&streamed_z), "-o", s(&streamed_x)]);
    let (wx, sx) = (column(&whole_x), column(&streamed_x));
    assert_eq!(wx, sx);
    let data = column(&csv);
    assert!(wx.iter().zip(&data).all(|(a, b)| (a - b).abs() < 1.01), "decoded rows are the (dequantised) data rows");
    // A header-only file is an error naming it, and writes nothing.
    let empty = t.path("empty.csv");
    std::fs::write(&empty, "a,n\n").unwrap();
    let e = fails(&["log-prob", s(&model), s(&empty), "-o", s(&t.path("never.csv"))]);
    assert!(e.contains("empty.csv"), "{e}");
    assert!(!t.path("never.csv").exists());
}
