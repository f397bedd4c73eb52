//! Output writes never replace what is not a regular file: FIFOs and devices are written
//! through, symbolic links are followed to their target, and a replaced file keeps its mode.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use normflow::io::write_atomic;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("normflow-output-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_text(path: &Path, text: &str) -> normflow::Result<()> {
    write_atomic(path, |w| w.write_all(text.as_bytes()).map_err(|e| normflow::Error::Io { path: path.into(), source: e }))
}

#[test]
fn output_to_a_fifo_is_streamed_not_renamed_over() {
    let dir = scratch("fifo");
    let fifo = dir.join("pipe");
    let status = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
    assert!(status.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut s = String::new();
            std::fs::File::open(&fifo).unwrap().read_to_string(&mut s).unwrap();
            s
        })
    };
    write_text(&fifo, "a,b\n1,2\n").unwrap();
    assert_eq!(reader.join().unwrap(), "a,b\n1,2\n");
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "the FIFO is still a FIFO");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temporary file left beside it");
}

#[test]
fn output_through_a_symlink_replaces_the_target_and_keeps_the_link() {
    let dir = scratch("symlink");
    let target = dir.join("real.csv");
    std::fs::write(&target, "old\n").unwrap();
    std::fs::create_dir(dir.join("links")).unwrap();
    let link = dir.join("links").join("out.csv");
    std::os::unix::fs::symlink("../real.csv", &link).unwrap();
    write_text(&link, "new\n").unwrap();
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link is still a link");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "new\n");
    // A dangling link creates its target.
    let dangling = dir.join("dangling.csv");
    std::os::unix::fs::symlink(dir.join("created.csv"), &dangling).unwrap();
    write_text(&dangling, "made\n").unwrap();
    assert!(std::fs::symlink_metadata(&dangling).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(dir.join("created.csv")).unwrap(), "made\n");
}

#[test]
fn output_over_a_read_only_file_keeps_its_mode() {
    let dir = scratch("mode");
    for mode in [0o444, 0o600, 0o755] {
        let file = dir.join(format!("f{mode:o}.csv"));
        std::fs::write(&file, "old\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        match write_text(&file, "new\n") {
            Ok(()) => assert_eq!(std::fs::read_to_string(&file).unwrap(), "new\n"),
            // Without root a read-only file may refuse; then it is untouched.
            Err(_) => assert_eq!(std::fs::read_to_string(&file).unwrap(), "old\n"),
        }
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, mode);
    }
}

#[test]
fn output_to_a_directory_is_an_error_naming_it() {
    let dir = scratch("dir");
    let err = write_text(&dir, "x").unwrap_err().to_string();
    assert!(err.contains(&dir.display().to_string()), "{err}");
}

#[test]
fn a_failed_write_leaves_the_old_file() {
    let dir = scratch("failed");
    let file = dir.join("model.bin");
    std::fs::write(&file, "good").unwrap();
    let r = write_atomic(&file, |w| {
        w.write_all(b"half").unwrap();
        Err(normflow::Error::NotEnoughData("stop".into()))
    });
    assert!(r.is_err());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "good");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
}

#[test]
fn a_non_finite_result_is_refused_with_its_row_and_the_file_is_untouched() {
    let dir = scratch("nonfinite");
    let file = dir.join("z.csv");
    std::fs::write(&file, "good\n").unwrap();
    let data = normflow::Matrix::from_vec(3, 2, vec![0.0, 1.0, 2.0, 3.0, f32::INFINITY, 5.0]);
    let err = normflow::data::write_table(&file, &data, None).unwrap_err().to_string();
    assert!(err.contains("row 3, column 1") && err.contains("inf"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "good\n");
}
