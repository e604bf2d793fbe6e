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

/// Reads part of a file without reading the whole: the browser's disk-backed `Blob`s (a
/// local folder, the Cache API), so weights go to the GPU tensor by tensor and a model never
/// has to fit in wasm memory.
pub trait RangeRead {
    fn size(&self, path: &str) -> Result<u64>;
    /// Exactly `len` bytes from `start`.
    fn read_range(&self, path: &str, start: u64, len: usize) -> Result<Vec<u8>>;
}

/// Where files come from. Paths are '/'-separated strings.
pub trait FileSource {
    fn read(&self, path: &str) -> Result<Blob>;
    /// A reader of parts of files, where reading a whole file would be wasteful; weights are
    /// then read tensor by tensor (`io::safetensors`). `None`: files are read whole (or mapped).
    fn ranged(&self) -> Option<Arc<dyn RangeRead>> {
        None
    }
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

/// Files known by name and size and read in parts through a [`RangeRead`]: the browser
/// hands over disk-backed `Blob`s this way, so weights stream to the GPU tensor by tensor.
#[derive(Clone)]
pub struct RangedSource {
    sizes: std::collections::BTreeMap<String, u64>,
    reader: Arc<dyn RangeRead>,
}

impl RangedSource {
    pub fn new(reader: Arc<dyn RangeRead>, files: impl IntoIterator<Item = (String, u64)>) -> Self {
        RangedSource { sizes: files.into_iter().collect(), reader }
    }
    pub fn total_bytes(&self) -> u64 {
        self.sizes.values().sum()
    }
}

/// Names directly inside `dir` among '/'-separated `paths` (files, and folders once).
fn list_in<'a>(paths: impl Iterator<Item = &'a String>, dir: &str) -> Vec<String> {
    let prefix = if dir.is_empty() { String::new() } else { format!("{}/", dir.trim_end_matches('/')) };
    let mut names: Vec<String> =
        paths.filter_map(|k| k.strip_prefix(prefix.as_str())).map(|rest| rest.split('/').next().unwrap_or(rest).to_string()).collect();
    names.sort();
    names.dedup();
    names
}

impl FileSource for RangedSource {
    fn read(&self, path: &str) -> Result<Blob> {
        let &size = self.sizes.get(path).ok_or_else(|| Error::file(path, "no such file"))?;
        let len = usize::try_from(size).map_err(|_| Error::file(path, "too large to read whole on this platform"))?;
        Ok(Blob::Owned(Arc::new(self.reader.read_range(path, 0, len)?)))
    }
    fn exists(&self, path: &str) -> bool {
        let path = path.trim_end_matches('/');
        self.sizes.contains_key(path) || self.sizes.keys().any(|k| k.starts_with(&format!("{path}/")))
    }
    fn list(&self, dir: &str) -> Result<Vec<String>> {
        Ok(list_in(self.sizes.keys(), dir))
    }
    fn ranged(&self) -> Option<Arc<dyn RangeRead>> {
        Some(self.reader.clone())
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

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom};
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Reads parts of files on disk and counts the bytes read.
    struct Disk {
        root: String,
        read: AtomicU64,
    }

    impl RangeRead for Disk {
        fn size(&self, path: &str) -> Result<u64> {
            std::fs::metadata(join(&self.root, path)).map(|m| m.len()).map_err(|e| Error::file(path, e.to_string()))
        }
        fn read_range(&self, path: &str, start: u64, len: usize) -> Result<Vec<u8>> {
            let mut f = std::fs::File::open(join(&self.root, path)).map_err(|e| Error::file(path, e.to_string()))?;
            f.seek(SeekFrom::Start(start)).map_err(|e| Error::file(path, e.to_string()))?;
            let mut v = vec![0; len];
            f.read_exact(&mut v).map_err(|e| Error::file(path, e.to_string()))?;
            self.read.fetch_add(len as u64, Ordering::Relaxed);
            Ok(v)
        }
    }

    fn ranged(root: &str, files: &[&str]) -> (RangedSource, Arc<Disk>) {
        let disk = Arc::new(Disk { root: root.to_string(), read: AtomicU64::new(0) });
        let sizes = files.iter().map(|f| (f.to_string(), disk.size(f).unwrap())).collect::<Vec<_>>();
        (RangedSource::new(disk.clone(), sizes), disk)
    }

    /// Tensor by tensor through ranges gives the same values as the whole file, and an
    /// embedding lookup reads only its rows.
    #[test]
    fn ranged_weights_equal_whole_file_weights() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../builtin-model");
        let file = "text_encoder/model.safetensors";
        let (src, disk) = ranged(root, &[file, "text_encoder/config.json"]);
        assert_eq!(src.list("").unwrap(), vec!["text_encoder".to_string()]);
        assert_eq!(src.list("text_encoder").unwrap(), vec!["config.json".to_string(), "model.safetensors".to_string()]);
        assert!(src.exists("text_encoder") && !src.exists("vae"));
        let a = safetensors::Weights::open_files(&src, &[file.to_string()]).unwrap();
        let b = safetensors::Weights::open_files(&FsSource, &[join(root, file)]).unwrap();
        assert_eq!(a.names(), b.names());
        let header_bytes = disk.read.load(Ordering::Relaxed);
        for name in a.names() {
            assert_eq!(a.read_f32(&name).unwrap(), b.read_f32(&name).unwrap(), "{name}");
        }
        let emb = "embed_tokens.weight";
        assert!(a.meta(emb).is_some());
        let before = disk.read.load(Ordering::Relaxed);
        let (rows, width) = a.read_rows_f32(emb, &[3, 1, 3]).unwrap();
        assert_eq!(rows, b.read_rows_f32(emb, &[3, 1, 3]).unwrap().0);
        assert_eq!(disk.read.load(Ordering::Relaxed) - before, 3 * width as u64 * 2, "f16 rows only");
        assert!(header_bytes < 100_000, "opening read only the header ({header_bytes} bytes)");
    }

    /// A truncated file is refused when opened, with the same message as a whole file.
    #[test]
    fn ranged_truncated_file_is_named() {
        let dir = std::env::temp_dir().join(format!("sana-ranged-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../builtin-model");
        let bytes = std::fs::read(join(root, "vae/diffusion_pytorch_model.safetensors")).unwrap();
        std::fs::write(dir.join("cut.safetensors"), &bytes[..bytes.len() - 10]).unwrap();
        let (src, _) = ranged(dir.to_str().unwrap(), &["cut.safetensors"]);
        let e = safetensors::Weights::open_files(&src, &["cut.safetensors".to_string()]).err().unwrap().to_string();
        let w = safetensors::Weights::open_files(&FsSource, &[dir.join("cut.safetensors").to_string_lossy().into_owned()]).err().unwrap().to_string();
        assert!(e.contains("cut.safetensors") && e.contains("truncated"), "{e}");
        assert_eq!(e.split_once(": ").unwrap().1, w.split_once(": ").unwrap().1);
        std::fs::remove_dir_all(dir).ok();
    }
}
