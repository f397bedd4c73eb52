//! The model file: one safetensors file whose metadata holds the JSON configuration
//! (architecture, dims, preprocessing, training summary, format version) and whose tensors hold
//! the weights and buffers. Loadable without any training state.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};

use super::{write_atomic, TensorSource};
use crate::bijection::BijectionSpec;
use crate::distribution::{Flow, FlowMeta};
use crate::{Error, Result};

/// Version of the model file format this build reads and writes; a file of any other version is
/// refused with both versions named (normflow is unreleased: no reader of older formats).
///
/// 3: layers on image rows (squeeze, per-channel ActNorm, 1×1 convolution, convolutional
/// couplings) and the whitening layer.
pub const FORMAT_VERSION: u32 = 3;

const METADATA_KEY: &str = "normflow";

/// The part of a configuration every version shares.
#[derive(Deserialize)]
struct FormatHeader {
    format: String,
    format_version: u32,
}

#[derive(Serialize, Deserialize)]
struct ModelConfig {
    format: String,
    format_version: u32,
    dim: usize,
    context_dim: usize,
    transform: BijectionSpec,
    meta: FlowMeta,
}

/// Prefix of the tensors a training checkpoint adds to a model file; a model reader skips them.
pub(crate) const CHECKPOINT_PREFIX: &str = "checkpoint.";

/// Saves `flow` to `path` atomically.
///
/// # Errors
/// [`Error::Io`] if the file cannot be written; an existing file is left untouched then.
pub fn save_flow(flow: &Flow, path: &Path) -> Result<()> {
    save_flow_with(flow, path, &[], None)
}

/// Saves `flow` with `extras` (tensors whose names start with [`CHECKPOINT_PREFIX`]) and an
/// extra metadata entry beside the configuration, atomically.
pub(crate) fn save_flow_with(flow: &Flow, path: &Path, extras: &[(String, &[f32])], extra_meta: Option<(&str, String)>) -> Result<()> {
    let buffer = serialize_flow(flow, extras, extra_meta).map_err(|message| Error::BadModel { path: path.into(), message })?;
    write_atomic(path, |w| w.write_all(&buffer).map_err(|e| Error::io(path, e)))
}

/// The bytes of a model file holding `flow`, `extras` and an extra metadata entry.
fn serialize_flow(flow: &Flow, extras: &[(String, &[f32])], extra_meta: Option<(&str, String)>) -> std::result::Result<Vec<u8>, String> {
    let config = ModelConfig {
        format: "normflow-model".into(),
        format_version: FORMAT_VERSION,
        dim: flow.dim(),
        context_dim: flow.context_dim(),
        transform: flow.transform().spec(),
        meta: flow.meta.clone(),
    };
    let mut tensors = Vec::new();
    flow.transform().tensors("transform.", &mut tensors);
    let bytes: Vec<(String, Vec<u8>)> = tensors
        .iter()
        .map(|(n, v)| (n.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .chain(extras.iter().map(|(n, v)| (n.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect())))
        .collect();
    let views =
        bytes.iter().map(|(n, b)| (n.as_str(), TensorView::new(Dtype::F32, vec![b.len() / 4], b).expect("f32 buffer matches its shape")));
    let json = serde_json::to_string(&config).expect("model config serialises");
    let mut meta = HashMap::from([(METADATA_KEY.to_string(), json)]);
    if let Some((key, value)) = extra_meta {
        meta.insert(key.to_string(), value);
    }
    safetensors::serialize(views, &Some(meta)).map_err(|e| e.to_string())
}

/// The bytes of the model file [`save_flow`] would write: for keeping a model in memory, in a
/// database or in a pickle.
///
/// # Errors
/// [`Error::BadModel`] if the tensors cannot be serialised.
pub fn flow_to_bytes(flow: &Flow) -> Result<Vec<u8>> {
    serialize_flow(flow, &[], None).map_err(|message| Error::BadModel { path: "<memory>".into(), message })
}

/// A flow from the bytes of a model file (see [`flow_to_bytes`]); `origin` names them in
/// errors.
///
/// # Errors
/// As [`load_flow`].
pub fn flow_from_bytes(bytes: &[u8], origin: &Path) -> Result<Flow> {
    Ok(parse_flow(bytes, origin)?.0)
}

/// Loads a flow saved by [`save_flow`] (a training checkpoint's extra tensors are skipped).
///
/// # Errors
/// [`Error::Io`] if the file cannot be read; [`Error::BadModel`] if it is truncated, not a
/// safetensors file, not a normflow model, of a newer format, or inconsistent with its own
/// configuration.
pub fn load_flow(path: &Path) -> Result<Flow> {
    Ok(load_flow_with(path)?.0)
}

/// A model file's flow, its [`CHECKPOINT_PREFIX`] tensors and its metadata entries.
pub(crate) type FlowWithExtras = (Flow, HashMap<String, Vec<f32>>, HashMap<String, String>);

/// Loads a flow and what [`save_flow_with`] stored beside it.
pub(crate) fn load_flow_with(path: &Path) -> Result<FlowWithExtras> {
    let buffer = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_flow(&buffer, path)
}

/// [`load_flow_with`] on the bytes of a model file read from `path`.
fn parse_flow(buffer: &[u8], path: &Path) -> Result<FlowWithExtras> {
    let bad = |message: String| Error::BadModel { path: path.into(), message };
    let (_, metadata) = SafeTensors::read_metadata(buffer)
        .map_err(|e| bad(format!("unreadable header ({e:?}); the file may be truncated or of another format")))?;
    let entries = metadata.metadata().clone().unwrap_or_default();
    let json = entries.get(METADATA_KEY).ok_or_else(|| bad("a safetensors file without normflow configuration".into()))?;
    // The format and its version first: a file of another version need not parse as this one.
    let header: FormatHeader = serde_json::from_str(json).map_err(|e| bad(format!("configuration does not parse: {e}")))?;
    if header.format != "normflow-model" {
        return Err(bad(format!("unknown format '{}'", header.format)));
    }
    if header.format_version != FORMAT_VERSION {
        let (relation, advice) =
            if header.format_version > FORMAT_VERSION { ("newer", "upgrade normflow") } else { ("older", "train the model again") };
        return Err(bad(format!(
            "format version {} is {relation} than this build reads ({FORMAT_VERSION}); {advice}",
            header.format_version
        )));
    }
    let config: ModelConfig = serde_json::from_str(json).map_err(|e| bad(format!("configuration does not parse: {e}")))?;
    let st = SafeTensors::deserialize(buffer).map_err(|e| bad(format!("tensor data is damaged ({e:?}); the file may be truncated")))?;
    let mut tensors = HashMap::new();
    let mut extras = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(bad(format!("tensor '{name}' is not f32")));
        }
        let values: Vec<f32> = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        if name.starts_with(CHECKPOINT_PREFIX) {
            extras.insert(name, values);
        } else {
            tensors.insert(name, values);
        }
    }
    let mut transform = config.transform.build().map_err(|e| bad(format!("architecture is invalid: {e}")))?;
    if transform.dim() != config.dim || transform.context_dim() != config.context_dim {
        return Err(bad("architecture does not match the recorded dimensions".into()));
    }
    let mut source = TensorSource::new(path, tensors);
    transform.load_tensors("transform.", &mut source)?;
    if let Some(extra) = source.leftover().first() {
        return Err(bad(format!("unexpected tensor '{extra}'")));
    }
    let mut flow = Flow::new(transform);
    flow.meta = config.meta;
    Ok((flow, extras, entries))
}
