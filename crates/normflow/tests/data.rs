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

fn idx_bytes(sizes: &[u32], values: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 0x08, sizes.len() as u8];
    for s in sizes {
        b.extend_from_slice(&s.to_be_bytes());
    }
    b.extend_from_slice(values);
    b
}

#[test]
fn idx_images_read_plain_and_gzipped_and_bad_files_are_named() {
    use std::io::Write;
    let dir = std::env::temp_dir().join(format!("normflow-idx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Two 2×3 images.
    let values: Vec<u8> = (0..12).map(|v| v * 20).collect();
    let plain = dir.join("images-idx3-ubyte");
    std::fs::write(&plain, idx_bytes(&[2, 2, 3], &values)).unwrap();
    let idx = normflow::data::read_idx(&plain).unwrap();
    assert_eq!((idx.data.rows(), idx.data.cols(), idx.item_shape.clone()), (2, 6, vec![2, 3]));
    assert_eq!(idx.data.row(1), &[120.0, 140.0, 160.0, 180.0, 200.0, 220.0]);
    let gz = dir.join("images-idx3-ubyte.gz");
    let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::default());
    enc.write_all(&idx_bytes(&[2, 2, 3], &values)).unwrap();
    enc.finish().unwrap();
    assert_eq!(normflow::data::read_idx(&gz).unwrap(), idx);
    // Labels: one dimension, items of one value.
    let labels = dir.join("labels-idx1-ubyte");
    std::fs::write(&labels, idx_bytes(&[3], &[7, 0, 9])).unwrap();
    let l = normflow::data::read_idx(&labels).unwrap();
    assert_eq!((l.data.rows(), l.data.cols(), l.item_shape.len()), (3, 1, 0));
    // Bad files: wrong magic, truncated values, truncated header, another element type.
    for (name, bytes, says) in [
        ("magic", b"P5\n2 3\n255\n".to_vec(), "magic number"),
        ("short", idx_bytes(&[2, 2, 3], &values[..7]), "truncated"),
        ("header", vec![0, 0, 8, 3, 0, 0], "truncated"),
        (
            "floats",
            {
                let mut b = idx_bytes(&[1, 1], &[0, 0, 0, 0]);
                b[2] = 0x0d;
                b
            },
            "not supported",
        ),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = normflow::data::read_idx(&path).unwrap_err().to_string();
        assert!(err.contains(name) && err.contains(says), "{err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
#[ignore = "needs ../shared/data"]
fn mnist_idx_files_read_with_their_shapes() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/mnist");
    let train = normflow::data::read_idx(&dir.join("train-images-idx3-ubyte.gz")).unwrap();
    assert_eq!((train.data.rows(), train.data.cols(), train.item_shape.clone()), (60_000, 784, vec![28, 28]));
    let labels = normflow::data::read_idx(&dir.join("t10k-labels-idx1-ubyte.gz")).unwrap();
    assert_eq!(labels.data.rows(), 10_000);
    assert!(train.data.as_slice().iter().all(|&v| (0.0..=255.0).contains(&v)));
    assert!(labels.data.as_slice().iter().all(|&v| v <= 9.0));
}
