//! CSV (plain and gzip) and NPY readers and writers.

use normflow::data::{read_csv, read_npy, read_table, write_table, CsvOptions};
use normflow::{Error, Matrix};

fn dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("normflow-data-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn csv_and_npy_round_trip_with_header_and_column_selection() {
    let d = dir("rt");
    let m = Matrix::from_vec(3, 3, vec![1.0, -2.5, 3e-8, 4.0, 5.0, 6.0, 7.0, 8.0, 1e30]);
    let names = vec!["a".to_string(), "b".into(), "c".into()];
    for f in ["x.csv", "x.npy"] {
        let p = d.join(f);
        write_table(&p, &m, Some(&names)).unwrap();
        let t = read_table(&p, &CsvOptions::default()).unwrap();
        assert_eq!(t.data, m, "{f}");
    }
    let t = read_csv(&d.join("x.csv"), &CsvOptions { columns: Some(vec!["c".into(), "1".into()]), ..Default::default() }).unwrap();
    assert_eq!(t.columns, Some(vec!["c".to_string(), "a".into()]));
    assert_eq!(t.data.row(1), &[6.0, 4.0]);
    let t = read_csv(&d.join("x.csv"), &CsvOptions { drop: vec!["b".into()], ..Default::default() }).unwrap();
    assert_eq!(t.data.cols(), 2);
    let err = read_csv(&d.join("x.csv"), &CsvOptions { columns: Some(vec!["zz".into()]), ..Default::default() }).unwrap_err();
    assert!(err.to_string().contains("no column 'zz'"), "{err}");
    assert_eq!(read_npy(&d.join("x.npy")).unwrap(), m);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn gzip_csv_is_read_transparently() {
    use std::io::Write;
    let d = dir("gz");
    let p = d.join("x.csv.gz");
    let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(&p).unwrap(), flate2::Compression::default());
    enc.write_all(b"u,v\n1,2\n3,4\n").unwrap();
    enc.finish().unwrap();
    let t = read_csv(&p, &CsvOptions::default()).unwrap();
    assert_eq!(t.data, Matrix::from_vec(2, 2, vec![1.0, 2.0, 3.0, 4.0]));
    let bad = d.join("bad.csv.gz");
    std::fs::write(&bad, [0x1f, 0x8b, 8, 0, 1, 2, 3]).unwrap();
    assert!(matches!(read_csv(&bad, &CsvOptions::default()).unwrap_err(), Error::BadFile { .. }));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn bad_cells_name_row_and_column() {
    let d = dir("bad");
    let p = d.join("x.csv");
    std::fs::write(&p, "a,b\n1,2\n\n3,inf\n").unwrap();
    match read_csv(&p, &CsvOptions::default()).unwrap_err() {
        Error::Parse { row, column, .. } => assert_eq!((row, column), (4, 2)),
        e => panic!("{e}"),
    }
    std::fs::write(&p, "a,b\n1,\n").unwrap();
    assert!(read_csv(&p, &CsvOptions::default()).unwrap_err().to_string().contains("missing value"));
    std::fs::write(&p, "a,b\n").unwrap();
    assert!(read_csv(&p, &CsvOptions::default()).unwrap_err().to_string().contains("no data rows"));
    std::fs::remove_dir_all(&d).unwrap();
}
