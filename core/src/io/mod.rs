//! File access behind a small trait (so the browser can supply bytes from fetch/IndexedDB),
//! safetensors weights (single or sharded, memory-mapped natively), and diffusers folders.

pub mod diffusers;
pub mod safetensors;

use std::ops::Deref;
use std::sync::Arc;

use crate::{Error, Result};

/// Bytes of one file: memory-mapped on native targets, owned elsewhere.
#[derive(Clone)]
pub enum Blob {
    #[cfg(not(target_arch = "wasm32"))]
    Mapped(Arc<memmap2::Mmap>),
    Owned(Arc<Vec<u8>>),
    /// Compiled into the program (the built-in model).
    Static(&'static [u8]),
}

impl Deref for Blob {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            Blob::Mapped(m) => m,
            Blob::Owned(v) => v,
            Blob::Static(b) => b,
        }
    }
}

/// Where files come from. Paths are '/'-separated strings.
pub trait FileSource {
    fn read(&self, path: &str) -> Result<Blob>;
    fn exists(&self, path: &str) -> bool;
    /// File names (not paths) directly inside `dir`.
    fn list(&self, dir: &str) -> Result<Vec<String>>;
    fn read_string(&self, path: &str) -> Result<String> {
        let blob = self.read(path)?;
        String::from_utf8(blob.to_vec()).map_err(|_| Error::file(path, "is not valid UTF-8 text"))
    }
}

pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// In-memory files (the browser, tests).
#[derive(Default, Clone)]
pub struct MemorySource {
    files: std::collections::BTreeMap<String, Arc<Vec<u8>>>,
}

impl MemorySource {
    pub fn insert(&mut self, path: impl Into<String>, bytes: Vec<u8>) {
        self.files.insert(path.into(), Arc::new(bytes));
    }
}

impl FileSource for MemorySource {
    fn read(&self, path: &str) -> Result<Blob> {
        self.files.get(path).cloned().map(Blob::Owned).ok_or_else(|| Error::file(path, "no such file"))
    }
    fn exists(&self, path: &str) -> bool {
        self.files.contains_key(path) || self.files.keys().any(|k| k.starts_with(&format!("{path}/")))
    }
    fn list(&self, dir: &str) -> Result<Vec<String>> {
        let prefix = if dir.is_empty() { String::new() } else { format!("{}/", dir.trim_end_matches('/')) };
        Ok(self
            .files
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .filter(|rest| !rest.contains('/'))
            .map(str::to_string)
            .collect())
    }
}

/// Files compiled into the program (`include_bytes!`), e.g. the built-in model, under `root`.
#[derive(Clone, Copy)]
pub struct StaticSource {
    pub root: &'static str,
    pub files: &'static [(&'static str, &'static [u8])],
}

impl StaticSource {
    fn relative<'p>(&self, path: &'p str) -> Option<&'p str> {
        match path.strip_prefix(self.root) {
            Some("") => Some(""),
            Some(rest) => rest.strip_prefix('/'),
            None => None,
        }
    }
}

impl FileSource for StaticSource {
    fn read(&self, path: &str) -> Result<Blob> {
        let rel = self.relative(path).ok_or_else(|| Error::file(path, "no such file"))?;
        self.files.iter().find(|(p, _)| *p == rel).map(|(_, b)| Blob::Static(b)).ok_or_else(|| Error::file(path, "no such file"))
    }
    fn exists(&self, path: &str) -> bool {
        let Some(rel) = self.relative(path.trim_end_matches('/')) else { return false };
        rel.is_empty() || self.files.iter().any(|(p, _)| *p == rel || p.strip_prefix(rel).is_some_and(|r| r.starts_with('/')))
    }
    fn list(&self, dir: &str) -> Result<Vec<String>> {
        let rel = self.relative(dir.trim_end_matches('/')).ok_or_else(|| Error::file(dir, "no such folder"))?;
        let prefix = if rel.is_empty() { String::new() } else { format!("{rel}/") };
        let mut names: Vec<String> = self
            .files
            .iter()
            .filter_map(|(p, _)| p.strip_prefix(prefix.as_str()))
            .map(|rest| rest.split('/').next().unwrap_or(rest).to_string())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }
}

/// The local file system; files are memory-mapped.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Default, Clone, Copy)]
pub struct FsSource;

#[cfg(not(target_arch = "wasm32"))]
impl FileSource for FsSource {
    fn read(&self, path: &str) -> Result<Blob> {
        let file = std::fs::File::open(path).map_err(|e| Error::file(path, format!("cannot open: {e}")))?;
        let len = file.metadata().map_err(|e| Error::file(path, format!("cannot stat: {e}")))?.len();
        if len == 0 {
            return Ok(Blob::Owned(Arc::new(Vec::new())));
        }
        // SAFETY: the map is read-only; a file truncated by another process while
        // mapped is outside what we can defend against (as in every mmap loader).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::file(path, format!("cannot map: {e}")))?;
        Ok(Blob::Mapped(Arc::new(map)))
    }
    fn exists(&self, path: &str) -> bool {
        std::path::Path::new(path).exists()
    }
    fn list(&self, dir: &str) -> Result<Vec<String>> {
        let rd = std::fs::read_dir(dir).map_err(|e| Error::file(dir, format!("cannot list: {e}")))?;
        let mut names: Vec<String> = rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        Ok(names)
    }
}

/// Writes `bytes` to `path` atomically (temporary file in the same folder, then rename),
/// so a failed run never leaves a partial output behind.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_atomic(path: &str, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let target = std::path::Path::new(path);
    let dir = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    if !dir.is_dir() {
        return Err(Error::file(path, format!("output folder {} does not exist", dir.display())));
    }
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, target)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::file(path, format!("cannot write: {e}")));
    }
    Ok(())
}
