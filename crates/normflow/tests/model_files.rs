//! Model files across format versions: files written before a change still load as they were
//! saved, and files from a newer build are refused rather than misread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use normflow::bijection::{Chain, MaskedAutoregressive, Transformer};
use normflow::io::{load_flow, save_flow, FORMAT_VERSION};
use normflow::nn::HiddenDegrees;
use normflow::testing::randomize_params;
use normflow::{Bijection, Error, Flow, Matrix, Rng};
use safetensors::SafeTensors;

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("normflow-model-files-{name}-{}.safetensors", std::process::id()))
}

/// Rewrites the normflow configuration in `path`'s metadata with `edit`, keeping the tensors.
fn edit_config(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let bytes = std::fs::read(path).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let mut metadata: HashMap<String, String> = meta.metadata().clone().unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&metadata["normflow"]).unwrap();
    edit(&mut config);
    metadata.insert("normflow".into(), config.to_string());
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let out = safetensors::serialize(st.tensors(), &Some(metadata)).unwrap();
    std::fs::write(path, out).unwrap();
}

/// Removes `key` from every object in `v`, recursively.
fn remove_key(v: &mut serde_json::Value, key: &str) {
    match v {
        serde_json::Value::Object(map) => {
            map.remove(key);
            map.values_mut().for_each(|c| remove_key(c, key));
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|c| remove_key(c, key)),
        _ => {}
    }
}

/// A two-layer MAF with random weights whose MADEs use the cyclic layout.
fn cyclic_maf() -> Flow {
    let mut rng = Rng::new(5);
    let layers: Vec<Box<dyn Bijection>> = (0..2)
        .map(|k| {
            let order: Vec<usize> = if k == 0 { (0..4).collect() } else { (0..4).rev().collect() };
            let layer =
                MaskedAutoregressive::with_hidden_degrees(4, &[24, 24], order, 0, Transformer::Affine, HiddenDegrees::Cyclic, &mut rng);
            Box::new(layer.unwrap()) as Box<dyn Bijection>
        })
        .collect();
    let mut chain = Chain::new(layers).unwrap();
    randomize_params(&mut chain, 0.2, &mut rng);
    Flow::new(Box::new(chain))
}

#[test]
fn cyclic_maf_files_round_trip_and_older_formats_are_refused() {
    let flow = cyclic_maf();
    let path = temp("cyclic");
    save_flow(&flow, &path).unwrap();
    let loaded = load_flow(&path).unwrap();
    let x = Matrix::from_vec(3, 4, vec![0.1, -0.5, 1.2, 0.3, 2.0, 0.0, -1.0, 0.7, -0.2, 0.4, 0.9, -1.5]);
    assert_eq!(loaded.log_prob(&x, None).unwrap(), flow.log_prob(&x, None).unwrap());
    // Under the sorted layout the same weights would be a different model: the test can fail.
    let mut sorted = Chain::new(
        (0..2)
            .map(|k| {
                let order: Vec<usize> = if k == 0 { (0..4).collect() } else { (0..4).rev().collect() };
                Box::new(MaskedAutoregressive::new(4, &[24, 24], order, 0, Transformer::Affine, &mut Rng::new(0)).unwrap())
                    as Box<dyn Bijection>
            })
            .collect(),
    )
    .unwrap();
    let mut weights = Vec::new();
    flow.transform().params(&mut |p| weights.extend_from_slice(p));
    let mut off = 0;
    sorted.params_mut(&mut |p| {
        p.copy_from_slice(&weights[off..off + p.len()]);
        off += p.len();
    });
    let misread = Flow::new(Box::new(sorted));
    assert_ne!(misread.log_prob(&x, None).unwrap(), flow.log_prob(&x, None).unwrap());
    // A version-1 file (no degree layout) is refused, naming both versions.
    edit_config(&path, |c| {
        remove_key(c, "hidden_degrees");
        c["format_version"] = 1.into();
    });
    let err = load_flow(&path).expect_err("an older file must not load").to_string();
    assert!(err.contains("format version 1") && err.contains(&format!("({FORMAT_VERSION})")) && err.contains("cyclic"), "{err}");
    std::fs::remove_file(&path).ok();
}

#[test]
fn files_of_a_newer_format_are_refused_by_name_and_version() {
    let path = temp("newer");
    save_flow(&cyclic_maf(), &path).unwrap();
    edit_config(&path, |c| c["format_version"] = (FORMAT_VERSION + 1).into());
    let err = load_flow(&path).expect_err("a newer file must not load");
    assert!(matches!(err, Error::BadModel { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&format!("format version {} is newer", FORMAT_VERSION + 1)), "{message}");
    assert!(message.contains("model-files-newer"), "the message names the file: {message}");
    std::fs::remove_file(&path).ok();
}

#[test]
fn model_bytes_round_trip_and_damaged_bytes_are_refused() {
    let flow = cyclic_maf();
    let bytes = normflow::io::flow_to_bytes(&flow).unwrap();
    // The same bytes as the file save_flow writes.
    let path = temp("bytes");
    save_flow(&flow, &path).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    std::fs::remove_file(&path).unwrap();
    let back = normflow::io::flow_from_bytes(&bytes, Path::new("pickled")).unwrap();
    let x = Matrix::from_vec(3, flow.dim(), (0..3 * flow.dim()).map(|i| (i as f32 * 0.37).sin()).collect());
    assert_eq!(back.log_prob(&x, None).unwrap(), flow.log_prob(&x, None).unwrap());
    let e = normflow::io::flow_from_bytes(&bytes[..bytes.len() / 2], Path::new("pickled")).unwrap_err();
    assert!(matches!(e, Error::BadModel { .. }) && e.to_string().contains("pickled"), "{e}");
}
