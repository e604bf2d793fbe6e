//! Diffusers folders: a pipeline folder (`model_index.json` + component subfolders), a
//! single component folder (`config.json` + weights), or either inside a Hugging Face
//! cache entry (`models--ORG--NAME/snapshots/REV/`).

use super::{join, FileSource};
use crate::{Error, Result};

/// Resolves a user-given model location to a folder holding `model_index.json` or
/// `config.json`: the folder itself, a `models--ORG--NAME` cache entry (its `refs/main`
/// snapshot, or its only snapshot), or a repo id `ORG/NAME` looked up in the HF cache.
pub fn resolve_model_dir(source: &dyn FileSource, given: &str) -> Result<String> {
    let given_trim = given.trim_end_matches('/');
    let has_model = |d: &str| source.exists(&join(d, "model_index.json")) || source.exists(&join(d, "config.json"));
    if has_model(given_trim) {
        return Ok(given_trim.to_string());
    }
    if source.exists(&join(given_trim, "snapshots")) {
        return snapshot_of(source, given_trim);
    }
    if !source.exists(given_trim) {
        if let Some(dir) = hf_cache_entry(source, given_trim) {
            return snapshot_of(source, &dir);
        }
        return Err(Error::file(given, "no such folder (nor a Hugging Face cache entry of that name)"));
    }
    Err(Error::file(given, "not a diffusers folder: no model_index.json or config.json inside"))
}

fn snapshot_of(source: &dyn FileSource, entry: &str) -> Result<String> {
    let snapshots = join(entry, "snapshots");
    if let Ok(rev) = source.read_string(&join(entry, "refs/main")) {
        let dir = join(&snapshots, rev.trim());
        if source.exists(&dir) {
            return Ok(dir);
        }
    }
    let revs = source.list(&snapshots)?;
    match revs.as_slice() {
        [one] => Ok(join(&snapshots, one)),
        [] => Err(Error::file(&snapshots, "Hugging Face cache entry has no snapshot")),
        _ => Err(Error::file(
            &snapshots,
            format!("several snapshots ({}) and no refs/main: pass the snapshot folder itself", revs.join(", ")),
        )),
    }
}

fn hf_cache_entry(source: &dyn FileSource, repo_id: &str) -> Option<String> {
    let (org, name) = repo_id.split_once('/')?;
    if name.contains('/') || org.is_empty() || name.is_empty() {
        return None;
    }
    let entry = format!("models--{org}--{name}");
    let mut roots = Vec::new();
    if let Ok(c) = std::env::var("HF_HUB_CACHE") {
        roots.push(c);
    }
    if let Ok(h) = std::env::var("HF_HOME") {
        roots.push(join(&h, "hub"));
    }
    if let Ok(h) = std::env::var("HOME") {
        roots.push(join(&h, ".cache/huggingface/hub"));
    }
    roots.into_iter().map(|r| join(&r, &entry)).find(|p| source.exists(p))
}

/// A component folder (e.g. `transformer/`) inside a pipeline folder, or the folder itself
/// when it already is a component (has `config.json`).
pub fn component_dir(source: &dyn FileSource, model_dir: &str, component: &str) -> Result<String> {
    component_dir_marked(source, model_dir, component, "config.json")
}

/// As `component_dir`, for components recognised by another file (`tokenizer.json`).
pub fn component_dir_marked(source: &dyn FileSource, model_dir: &str, component: &str, marker: &str) -> Result<String> {
    if source.exists(&join(model_dir, marker)) && !source.exists(&join(model_dir, "model_index.json")) {
        return Ok(model_dir.to_string());
    }
    let index_path = join(model_dir, "model_index.json");
    let text = source.read_string(&index_path)?;
    let index: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::file(&index_path, format!("invalid JSON: {e}")))?;
    if index.get(component).is_none() {
        return Err(Error::config(&index_path, format!("has no `{component}` component")));
    }
    let dir = join(model_dir, component);
    if !source.exists(&join(&dir, marker)) {
        return Err(Error::file(&dir, format!("component folder has no {marker}")));
    }
    Ok(dir)
}

/// Components listed in a pipeline folder's `model_index.json`: (name, library, class).
pub fn list_components(source: &dyn FileSource, model_dir: &str) -> Result<Vec<(String, String, String)>> {
    let index_path = join(model_dir, "model_index.json");
    let text = source.read_string(&index_path)?;
    let index: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::file(&index_path, format!("invalid JSON: {e}")))?;
    let obj = index.as_object().ok_or_else(|| Error::file(&index_path, "is not a JSON object"))?;
    let mut out = Vec::new();
    for (k, v) in obj {
        if k.starts_with('_') {
            continue;
        }
        if let Some([lib, class]) = v.as_array().map(|a| a.as_slice()) {
            out.push((k.clone(), lib.as_str().unwrap_or("?").to_string(), class.as_str().unwrap_or("null").to_string()));
        }
    }
    Ok(out)
}
