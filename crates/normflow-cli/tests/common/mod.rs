//! Helpers the CLI test files share: temporary directories and runs of the real binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("normflow-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn normflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_normflow")).args(args).output().expect("runs the binary")
}

pub fn ok(args: &[&str]) -> String {
    let out = normflow(args);
    assert!(out.status.success(), "normflow {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

pub fn fails(args: &[&str]) -> String {
    let out = normflow(args);
    assert!(!out.status.success(), "normflow {args:?} should fail");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!err.contains("panicked"), "normflow {args:?} panicked: {err}");
    err
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A correlated 2-D Gaussian as CSV with header `a,b`.
pub fn write_data(path: &Path, n: usize, seed: u64) {
    let (x, _) = normflow::data::toy::correlated_gaussian(n, 0.6, seed);
    let mut text = String::from("a,b\n");
    for i in 0..n {
        text.push_str(&format!("{},{}\n", x.get(i, 0), x.get(i, 1)));
    }
    std::fs::write(path, text).unwrap();
}

/// `n` rows `c,x,y` with `x = 2c + 0.3·noise` and `y` independent noise (header `c,x,y`): data
/// whose first column is a context that the others depend on.
pub fn write_conditional_data(path: &Path, n: usize, seed: u64) {
    let mut rng = normflow::Rng::new(seed);
    let mut text = String::from("c,x,y\n");
    for _ in 0..n {
        let c = rng.normal();
        text.push_str(&format!("{c},{},{}\n", 2.0 * c + 0.3 * rng.normal(), rng.normal()));
    }
    std::fs::write(path, text).unwrap();
}
