//! Safetensors weights: one file or a sharded set with `*.safetensors.index.json`.
//!
//! Headers are parsed (and their offsets validated) when a set is opened; tensor bytes
//! are read lazily from the memory map and converted to the compute dtype on load.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use burn::tensor::{DType, Device, Tensor, TensorData};
use safetensors::{tensor::Metadata, Dtype, SafeTensors};

use super::{join, Blob, FileSource, RangeRead};
use crate::quant::{self, Format, Layout, QuantInfo};
use crate::{Error, Result};

struct WeightFile {
    path: String,
    data: Data,
    data_start: usize,
    meta: Metadata,
    /// Quantised tensors the file's `__metadata__` declares (`crate::quant`).
    quant: HashMap<String, (quant::Format, Option<Vec<usize>>, quant::Layout)>,
}

fn with_quant(mut f: WeightFile) -> Result<WeightFile> {
    if let Some(m) = f.meta.metadata() {
        f.quant = quant::layers_from_metadata(m, &f.path).map_err(Error::Input)?;
    }
    Ok(f)
}

/// A file's bytes: whole (mapped, compiled in, or in memory), or read per tensor.
enum Data {
    Whole(Blob),
    Ranged(Arc<dyn RangeRead>),
}

impl WeightFile {
    /// Bytes `[a, b)` of the data section.
    fn bytes(&self, a: usize, b: usize) -> Result<Cow<'_, [u8]>> {
        match &self.data {
            Data::Whole(blob) => Ok(Cow::Borrowed(&blob[self.data_start + a..self.data_start + b])),
            Data::Ranged(r) => {
                let v = r.read_range(&self.path, (self.data_start + a) as u64, b - a)?;
                if v.len() != b - a {
                    return Err(Error::file(&self.path, format!("read {} bytes at offset {}, expected {}", v.len(), self.data_start + a, b - a)));
                }
                Ok(Cow::Owned(v))
            }
        }
    }
}

/// A set of safetensors files seen as one name → tensor map.
pub struct Weights {
    files: Vec<WeightFile>,
    index: HashMap<String, usize>,
}

/// Dtype and shape of one stored tensor.
#[derive(Clone, Debug)]
pub struct TensorMeta {
    pub file: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
}

fn open_file(source: &dyn FileSource, path: &str) -> Result<WeightFile> {
    if let Some(reader) = source.ranged() {
        return open_ranged(reader, path);
    }
    let blob = source.read(path)?;
    let (n, meta) = SafeTensors::read_metadata(&blob).map_err(|e| Error::file(path, describe_error(e)))?;
    with_quant(WeightFile { path: path.to_string(), data: Data::Whole(blob), data_start: 8 + n, meta, quant: HashMap::new() })
}

/// Reads only the header (the same checks as `SafeTensors::read_metadata` on a whole file);
/// tensors are read when loaded.
fn open_ranged(reader: Arc<dyn RangeRead>, path: &str) -> Result<WeightFile> {
    use safetensors::SafeTensorError as E;
    let bad = |e: E| Error::file(path, describe_error(e));
    let size = reader.size(path)?;
    if size < 8 {
        return Err(bad(E::HeaderTooSmall));
    }
    let head = reader.read_range(path, 0, 8)?;
    let n = u64::from_le_bytes(head.as_slice().try_into().map_err(|_| bad(E::HeaderTooSmall))?);
    if n > 100_000_000 {
        return Err(bad(E::HeaderTooLarge));
    }
    if 8 + n > size {
        return Err(bad(E::InvalidHeaderLength));
    }
    let header = reader.read_range(path, 8, n as usize)?;
    let meta: Metadata = serde_json::from_slice(&header)
        .map_err(|e| Error::file(path, format!("corrupt safetensors file: header is not valid: {e}")))?;
    if meta.data_len() as u64 + 8 + n != size {
        return Err(bad(E::MetadataIncompleteBuffer));
    }
    with_quant(WeightFile { path: path.to_string(), data: Data::Ranged(reader), data_start: 8 + n as usize, meta, quant: HashMap::new() })
}

fn describe_error(e: safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::HeaderTooSmall => "not a safetensors file (shorter than its 8-byte header length)".into(),
        E::InvalidHeaderLength => "truncated or corrupt safetensors file: header length exceeds the file".into(),
        E::HeaderTooLarge => "corrupt safetensors file: header length is implausibly large".into(),
        E::MetadataIncompleteBuffer => {
            "truncated or corrupt safetensors file: tensor data does not match the file size".into()
        }
        E::InvalidOffset(name) => format!("corrupt safetensors file: tensor `{name}` has data offsets out of range"),
        E::InvalidHeader(_) | E::InvalidHeaderDeserialization(_) => {
            "corrupt safetensors file: header is not valid JSON".into()
        }
        other => format!("invalid safetensors file: {other}"),
    }
}

impl Weights {
    /// Opens the weights in `dir`: `{stem}.safetensors`, else `{stem}.safetensors.index.json`
    /// with its shards, else the only `*.safetensors` file there.
    pub fn open_dir(source: &dyn FileSource, dir: &str, stem: &str) -> Result<Weights> {
        let single = join(dir, &format!("{stem}.safetensors"));
        let index = join(dir, &format!("{stem}.safetensors.index.json"));
        if source.exists(&single) {
            return Self::open_files(source, &[single]);
        }
        if source.exists(&index) {
            return Self::open_index(source, dir, &index);
        }
        let names = source.list(dir)?;
        let found: Vec<&String> = names.iter().filter(|n| n.ends_with(".safetensors")).collect();
        match found.as_slice() {
            [one] => Self::open_files(source, &[join(dir, one)]),
            [] => Err(Error::file(dir, format!("no weights: expected {stem}.safetensors or {stem}.safetensors.index.json"))),
            _ => Err(Error::file(
                dir,
                format!("several .safetensors files and no {stem}.safetensors.index.json saying how they fit together"),
            )),
        }
    }

    fn open_index(source: &dyn FileSource, dir: &str, index_path: &str) -> Result<Weights> {
        let text = source.read_string(index_path)?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::file(index_path, format!("invalid JSON: {e}")))?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| Error::file(index_path, "missing `weight_map` object"))?;
        let mut shard_names: Vec<String> = Vec::new();
        let mut expected: BTreeMap<String, String> = BTreeMap::new();
        for (name, file) in map {
            let file = file.as_str().ok_or_else(|| Error::file(index_path, format!("weight_map entry `{name}` is not a file name")))?;
            if file.contains('/') || file.contains("..") {
                return Err(Error::file(index_path, format!("weight_map entry `{name}` points outside the folder: {file}")));
            }
            if !shard_names.iter().any(|s| s == file) {
                shard_names.push(file.to_string());
            }
            expected.insert(name.clone(), file.to_string());
        }
        shard_names.sort();
        let paths: Vec<String> = shard_names.iter().map(|s| join(dir, s)).collect();
        for p in &paths {
            if !source.exists(p) {
                return Err(Error::file(p, format!("shard listed in {index_path} is missing")));
            }
        }
        let weights = Self::open_files(source, &paths)?;
        for (name, file) in &expected {
            match weights.index.get(name) {
                Some(&i) if weights.files[i].path.ends_with(file.as_str()) => {}
                Some(&i) => {
                    return Err(Error::tensor(&weights.files[i].path, name, format!("{index_path} says it lives in {file}")))
                }
                None => return Err(Error::tensor(join(dir, file), name, format!("listed in {index_path} but not in the shard"))),
            }
        }
        Ok(weights)
    }

    /// Opens these files as one set; a tensor name present twice is an error.
    pub fn open_files(source: &dyn FileSource, paths: &[String]) -> Result<Weights> {
        let mut files = Vec::new();
        let mut index = HashMap::new();
        for p in paths {
            let f = open_file(source, p)?;
            let i = files.len();
            for name in f.meta.tensors().keys() {
                if let Some(prev) = index.insert(name.clone(), i) {
                    let prev: &WeightFile = &files[prev];
                    return Err(Error::tensor(p, name, format!("also present in {}", prev.path)));
                }
            }
            files.push(f);
        }
        Ok(Weights { files, index })
    }

    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.index.keys().cloned().collect();
        v.sort();
        v
    }

    pub fn files(&self) -> Vec<String> {
        self.files.iter().map(|f| f.path.clone()).collect()
    }

    /// A short description of where these weights live, for messages.
    pub fn location(&self) -> String {
        match self.files.as_slice() {
            [one] => one.path.clone(),
            many => format!("{} (+{} more shards)", many[0].path, many.len() - 1),
        }
    }

    pub fn meta(&self, name: &str) -> Option<TensorMeta> {
        let &i = self.index.get(name)?;
        let f = &self.files[i];
        let info = f.meta.info(name)?;
        Some(TensorMeta { file: f.path.clone(), dtype: info.dtype, shape: info.shape.clone() })
    }

    /// Checks every expected tensor for presence, shape and a loadable dtype before any
    /// compute; returns the names present in the files but not expected.
    pub fn check(&self, expected: &[(String, Vec<usize>)]) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        for (name, shape) in expected {
            match self.quant_info(name) {
                Err(e) => {
                    problems.push(e);
                    continue;
                }
                Ok(Some(q)) => {
                    // ComfyUI's NVFP4 is always 2-D: it stands for a 1x1 conv's `[out, in, 1, 1]` too.
                    let conv_as_matrix = q.layout == Layout::Comfy
                        && q.shape.len() == 2
                        && shape.len() > 2
                        && shape[2..].iter().all(|&d| d == 1)
                        && q.shape[..] == shape[..2];
                    if &q.shape != shape && !conv_as_matrix {
                        let file = self.meta(name).map(|m| m.file).unwrap_or_default();
                        problems.push(Error::tensor(file, name, format!("({}) has shape {:?}, expected {:?}", q.format.name(), q.shape, shape)));
                    }
                    continue;
                }
                Ok(None) => {}
            }
            match self.meta(name) {
                None => problems.push(Error::tensor(self.location(), name, format!("missing (expected shape {shape:?})"))),
                Some(m) if &m.shape != shape => problems.push(Error::tensor(
                    &m.file,
                    name,
                    format!("has shape {:?}, expected {:?}", m.shape, shape),
                )),
                Some(m) if !matches!(m.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64) => problems.push(
                    Error::tensor(&m.file, name, format!("has dtype {:?}; only F32, F16, BF16 and F64 are supported", m.dtype)),
                ),
                Some(_) => {}
            }
        }
        if let Some(first) = problems.first() {
            let more = problems.len() - 1;
            let msg = if more > 0 { format!("{first} (and {more} more tensor problems)") } else { first.to_string() };
            return Err(Error::Input(msg));
        }
        let wanted: std::collections::HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
        // A quantised weight's companions (scales, ComfyUI's per-layer records) are expected too.
        let companion = |n: &str| {
            let owner = ["_scale_2", "_scale"].iter().find_map(|suf| n.strip_suffix(suf).map(str::to_string)).or_else(|| {
                [".input_scale", ".comfy_quant"].iter().find_map(|suf| n.strip_suffix(suf).map(|p| format!("{p}.weight")))
            });
            owner.is_some_and(|w| wanted.contains(w.as_str()) && matches!(self.quant_info(&w), Ok(Some(_))))
        };
        Ok(self.names().into_iter().filter(|n| !wanted.contains(n.as_str()) && !companion(n)).collect())
    }

    /// Values of a tensor as f32 on the host (quantised ones dequantised).
    pub fn read_f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        if let Some(q) = self.quant_info(name)? {
            return self.dequantize(name, &q);
        }
        let &i = self.index.get(name).ok_or_else(|| Error::tensor(self.location(), name, "missing"))?;
        let f = &self.files[i];
        let info = f.meta.info(name).ok_or_else(|| Error::tensor(&f.path, name, "missing"))?;
        let (a, b) = info.data_offsets;
        let bytes = f.bytes(a, b)?;
        let values = decode_f32(&bytes, info.dtype).ok_or_else(|| {
            Error::tensor(&f.path, name, format!("has dtype {:?}; only F32, F16, BF16 and F64 are supported", info.dtype))
        })?;
        Ok((values, info.shape.clone()))
    }

    /// How `name` is quantised, if it is: declared in the file's metadata, or stored as
    /// F8_E4M3, or described by a ComfyUI `*.comfy_quant` record.
    pub fn quant_info(&self, name: &str) -> Result<Option<QuantInfo>> {
        let Some(&i) = self.index.get(name) else { return Ok(None) };
        let f = &self.files[i];
        let Some(info) = f.meta.info(name) else { return Ok(None) };
        let stored = info.shape.clone();
        let declared = f.quant.get(name).cloned();
        let (format, declared_shape, layout) = match (declared, info.dtype) {
            (Some((fmt, shape, layout)), _) => (fmt, shape, layout),
            (None, Dtype::F8_E4M3) => (Format::Fp8, None, Layout::Ours),
            (None, _) => match name.strip_suffix(".weight").map(|p| format!("{p}.comfy_quant")) {
                Some(rec) if self.index.contains_key(&rec) => {
                    let (bytes, _, _, file) = self.raw(&rec)?;
                    let v: serde_json::Value = serde_json::from_slice(&bytes)
                        .map_err(|e| Error::tensor(file, &rec, format!("is not a ComfyUI quantisation record: {e}")))?;
                    let fmt = v.get("format").and_then(|f| f.as_str());
                    match fmt.and_then(quant::comfy_format) {
                        Some(format) => (format, None, Layout::Comfy),
                        None => {
                            return Err(Error::tensor(
                                file,
                                &rec,
                                format!("ComfyUI quantisation {fmt:?} is not supported (this build reads float8_e4m3fn and nvfp4)"),
                            ))
                        }
                    }
                }
                _ => return Ok(None),
            },
        };
        let shape = match format {
            Format::Fp8 => stored,
            Format::Nvfp4 => match declared_shape {
                Some(s) => s,
                None if stored.len() == 2 => vec![stored[0], stored[1] * 2],
                None => return Err(Error::tensor(&f.path, name, format!("nvfp4 tensor of stored shape {stored:?} has no declared shape"))),
            },
        };
        Ok(Some(QuantInfo { format, shape, layout }))
    }

    /// An FP8 tensor's e4m3 codes as stored (`[rows, cols]` row-major, `rows` the first
    /// dimension of `q.shape`) and its scales: one (per tensor) or one per row.
    pub fn fp8_codes(&self, name: &str, q: &QuantInfo) -> Result<(Cow<'_, [u8]>, Vec<f32>)> {
        let (codes, dtype, _, file) = self.raw(name)?;
        let (rows, _) = q.rows_cols();
        let scale_name = format!("{name}_scale");
        if q.format != Format::Fp8 || dtype != Dtype::F8_E4M3 {
            return Err(Error::tensor(file, name, format!("is declared {} but stored as {dtype:?}", q.format.name())));
        }
        let scales = if self.index.contains_key(&scale_name) { self.read_f32(&scale_name)?.0 } else { vec![1.0] };
        if scales.len() != 1 && scales.len() != rows {
            return Err(Error::tensor(
                file,
                &scale_name,
                format!("has {} values; expected 1 (per tensor) or {rows} (per output channel)", scales.len()),
            ));
        }
        Ok((codes, scales))
    }

    /// An NVFP4 tensor in our layout: e2m1 codes two per byte (`[rows, cols/2]`, the even index
    /// in the low nibble), e4m3 block-scale codes (`[rows, cols/16]`), the global f32 scale.
    /// ComfyUI's layout is converted to it here.
    pub fn nvfp4_codes(&self, name: &str, q: &QuantInfo) -> Result<(Cow<'_, [u8]>, Cow<'_, [u8]>, f32)> {
        let (rows, cols) = q.rows_cols();
        let (codes, dtype, stored, file) = self.raw(name)?;
        let scale_name = format!("{name}_scale");
        let ok = q.format == Format::Nvfp4 && dtype == Dtype::U8 && cols % quant::NVFP4_BLOCK == 0 && codes.len() * 2 == rows * cols;
        if !ok {
            return Err(Error::tensor(
                file,
                name,
                format!("nvfp4: stored {dtype:?} {stored:?} does not pack a {:?} tensor (U8, two values per byte, 16-value blocks)", q.shape),
            ));
        }
        let (blocks, bdtype, _, bfile) = self.raw(&scale_name)?;
        let block_cols = cols / quant::NVFP4_BLOCK;
        let (codes, blocks) = match q.layout {
            Layout::Ours => {
                if bdtype != Dtype::F8_E4M3 || blocks.len() != rows * block_cols {
                    return Err(Error::tensor(bfile, &scale_name, format!("expected F8_E4M3 block scales [{rows}, {block_cols}]")));
                }
                (codes, blocks)
            }
            Layout::Comfy => {
                let unswizzled = (bdtype == Dtype::F8_E4M3).then(|| quant::unswizzle_block_scales(&blocks, rows, block_cols)).flatten();
                let Some(unswizzled) = unswizzled else {
                    return Err(Error::tensor(
                        bfile,
                        &scale_name,
                        format!(
                            "expected ComfyUI's F8_E4M3 block scales in cuBLAS's blocked layout [{}, {}]",
                            rows.div_ceil(128) * 128,
                            block_cols.div_ceil(4) * 4
                        ),
                    ));
                };
                // High nibble first in ComfyUI's files, low nibble first in ours.
                let swapped: Vec<u8> = codes.iter().map(|b| b.rotate_left(4)).collect();
                (Cow::Owned(swapped), Cow::Owned(unswizzled))
            }
        };
        let global_name = format!("{name}_scale_2");
        let global = self.read_f32(&global_name)?.0;
        let [g] = global[..] else {
            return Err(Error::tensor(file, &global_name, format!("has {} values, expected one", global.len())));
        };
        Ok((codes, blocks, g))
    }

    fn dequantize(&self, name: &str, q: &QuantInfo) -> Result<(Vec<f32>, Vec<usize>)> {
        let (rows, cols) = q.rows_cols();
        let values = match q.format {
            Format::Fp8 => {
                let (codes, scales) = self.fp8_codes(name, q)?;
                quant::dequantize_fp8(&codes, &scales, rows, cols)
            }
            Format::Nvfp4 => {
                let (codes, blocks, g) = self.nvfp4_codes(name, q)?;
                quant::dequantize_nvfp4(&codes, &blocks, g, rows, cols)
            }
        };
        Ok((values, q.shape.clone()))
    }

    /// The stored bytes, dtype and shape of a tensor, as they are in the file.
    pub fn stored(&self, name: &str) -> Result<(Vec<u8>, Dtype, Vec<usize>)> {
        let (bytes, dtype, shape, _) = self.raw(name)?;
        Ok((bytes.into_owned(), dtype, shape))
    }

    /// The stored bytes of a tensor with its dtype, shape and file.
    fn raw(&self, name: &str) -> Result<(Cow<'_, [u8]>, Dtype, Vec<usize>, &str)> {
        let &i = self.index.get(name).ok_or_else(|| Error::tensor(self.location(), name, "missing"))?;
        let f = &self.files[i];
        let info = f.meta.info(name).ok_or_else(|| Error::tensor(&f.path, name, "missing"))?;
        let (a, b) = info.data_offsets;
        Ok((f.bytes(a, b)?, info.dtype, info.shape.clone(), &f.path))
    }

    /// Selected rows of a 2-D tensor as f32 on the host (an embedding lookup straight from
    /// the file, so the table never has to be resident).
    pub fn read_rows_f32(&self, name: &str, rows: &[usize]) -> Result<(Vec<f32>, usize)> {
        let &i = self.index.get(name).ok_or_else(|| Error::tensor(self.location(), name, "missing"))?;
        let f = &self.files[i];
        let info = f.meta.info(name).ok_or_else(|| Error::tensor(&f.path, name, "missing"))?;
        let (file, dtype) = (f.path.as_str(), info.dtype);
        if self.quant_info(name)?.is_some() {
            return Err(Error::tensor(file, name, "is quantised; embedding tables must stay in f32, f16 or bf16"));
        }
        let [n, width] = info.shape[..] else {
            return Err(Error::tensor(file, name, format!("has shape {:?}, expected 2 dimensions", info.shape)));
        };
        let row_bytes = width * dtype.bitsize() / 8;
        let start = info.data_offsets.0;
        let mut out = Vec::with_capacity(rows.len() * width);
        for &r in rows {
            if r >= n {
                return Err(Error::Input(format!("token id {r} is out of range: {file}: `{name}` has {n} rows")));
            }
            // Row by row: a ranged source then reads only these rows of the table.
            let row = f.bytes(start + r * row_bytes, start + (r + 1) * row_bytes)?;
            out.extend(decode_f32(&row, dtype).ok_or_else(|| {
                Error::tensor(file, name, format!("has dtype {dtype:?}; only F32, F16, BF16 and F64 are supported"))
            })?);
        }
        Ok((out, width))
    }

    /// Values of an integer tensor (I64, I32, U8 or BOOL) on the host.
    pub fn read_i64(&self, name: &str) -> Result<(Vec<i64>, Vec<usize>)> {
        let (bytes, dtype, shape, file) = self.raw(name)?;
        let values = match dtype {
            Dtype::I64 => bytes.chunks_exact(8).map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect(),
            Dtype::I32 => bytes.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect(),
            Dtype::U8 | Dtype::BOOL => bytes.iter().map(|&b| b as i64).collect(),
            other => {
                return Err(Error::tensor(file, name, format!("has dtype {other:?}; expected an integer tensor (I64 or I32)")))
            }
        };
        Ok((values, shape))
    }

    /// A dense 2-D (or more, flattened after the first dim) `[out, in]` weight as its `[in, out]`
    /// transpose on `device` in `dtype`: decoded, transposed and converted on the host in one
    /// pass over tiles, split over the host's cores (it was three single-threaded passes with
    /// two f32 copies, most of a full-size model's load time).
    pub fn load_transposed(&self, name: &str, device: &Device, dtype: DType) -> Result<Tensor<2>> {
        let (bytes, src, shape, file) = self.raw(name)?;
        let Some((&out, rest)) = shape.split_first() else {
            return Err(Error::tensor(file, name, "is a scalar, expected a weight matrix"));
        };
        let inp: usize = rest.iter().product();
        let data = transposed_data(&bytes, src, out, inp, dtype)
            .ok_or_else(|| Error::tensor(file, name, format!("has dtype {src:?}; only F32, F16, BF16 and F64 are supported")))?;
        Ok(Tensor::from_data(data, (device, dtype)))
    }

    /// Loads a tensor onto `device` in `dtype`, checking its rank.
    pub fn load<const D: usize>(&self, name: &str, device: &Device, dtype: DType) -> Result<Tensor<D>> {
        let (values, shape) = self.read_f32(name)?;
        if shape.len() != D {
            let file = self.meta(name).map(|m| m.file).unwrap_or_default();
            return Err(Error::tensor(file, name, format!("has rank {}, expected {D}", shape.len())));
        }
        Ok(tensor_from_f32(values, shape, device, dtype))
    }
}

/// Builds a tensor from host f32 values, converted to `dtype` on the host.
pub fn tensor_from_f32<const D: usize>(values: Vec<f32>, shape: Vec<usize>, device: &Device, dtype: DType) -> Tensor<D> {
    let data = match dtype {
        DType::F16 => TensorData::new(values.into_iter().map(half::f16::from_f32).collect::<Vec<_>>(), shape),
        DType::BF16 => TensorData::new(values.into_iter().map(half::bf16::from_f32).collect::<Vec<_>>(), shape),
        _ => TensorData::new(values, shape),
    };
    Tensor::from_data(data, (device, dtype))
}

/// `[rows, cols]` values in `bytes` (file dtype `src`) as the `[cols, rows]` transpose in
/// `dtype` (f16, bf16, else f32). Same-dtype weights move as raw 16- or 32-bit words; tiles of
/// 64 x 64 keep both sides in cache; whole output rows go to each core
/// ([`crate::par::par_fill`]).
pub fn transposed_data(bytes: &[u8], src: Dtype, rows: usize, cols: usize, dtype: DType) -> Option<TensorData> {
    if bytes.len() < rows * cols * src.bitsize() / 8 {
        return None;
    }
    fn fill<T: Copy + Default + Send>(rows: usize, cols: usize, read: impl Fn(usize) -> T + Sync) -> Vec<T> {
        const TILE: usize = 64;
        let mut out = vec![T::default(); rows * cols];
        // Output row c holds input column c; a part is whole output rows `first..`.
        crate::par::par_fill(&mut out, rows.max(1), 1 << 16, |start, part| {
            let first = start / rows.max(1);
            let n = part.len() / rows.max(1);
            for c0 in (0..n).step_by(TILE) {
                for r0 in (0..rows).step_by(TILE) {
                    for c in c0..(c0 + TILE).min(n) {
                        let dst = &mut part[c * rows..(c + 1) * rows];
                        for r in r0..(r0 + TILE).min(rows) {
                            dst[r] = read(r * cols + first + c);
                        }
                    }
                }
            }
        });
        out
    }
    let b2 = |i: usize| [bytes[2 * i], bytes[2 * i + 1]];
    let b4 = |i: usize| [bytes[4 * i], bytes[4 * i + 1], bytes[4 * i + 2], bytes[4 * i + 3]];
    let b8 = |i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&bytes[8 * i..8 * i + 8]);
        a
    };
    let f32_of = |i: usize| -> f32 {
        match src {
            Dtype::F32 => f32::from_le_bytes(b4(i)),
            Dtype::F16 => half::f16::from_le_bytes(b2(i)).to_f32(),
            Dtype::BF16 => half::bf16::from_le_bytes(b2(i)).to_f32(),
            _ => f64::from_le_bytes(b8(i)) as f32,
        }
    };
    if !matches!(src, Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64) {
        return None;
    }
    let shape = vec![cols, rows];
    Some(match (src, dtype) {
        (Dtype::F16, DType::F16) => TensorData::new(fill(rows, cols, |i| half::f16::from_le_bytes(b2(i))), shape),
        (Dtype::BF16, DType::BF16) => TensorData::new(fill(rows, cols, |i| half::bf16::from_le_bytes(b2(i))), shape),
        (_, DType::F16) => TensorData::new(fill(rows, cols, |i| half::f16::from_f32(f32_of(i))), shape),
        (_, DType::BF16) => TensorData::new(fill(rows, cols, |i| half::bf16::from_f32(f32_of(i))), shape),
        (Dtype::F32, _) => TensorData::new(fill(rows, cols, |i| f32::from_le_bytes(b4(i))), shape),
        _ => TensorData::new(fill(rows, cols, f32_of), shape),
    })
}

pub fn decode_f32(bytes: &[u8], dtype: Dtype) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F16 => bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::BF16 => bytes.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        _ => return None,
    })
}

/// Host data of one tensor to serialise.
pub enum HostData<'a> {
    F32(&'a [f32]),
    I64(&'a [i64]),
}

/// Serialises f32 and i64 tensors to safetensors bytes.
pub fn serialize(tensors: &[(&str, HostData<'_>, &[usize])]) -> Result<Vec<u8>> {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, data, shape)| {
            let (dtype, bytes): (Dtype, &[u8]) = match data {
                HostData::F32(d) => (Dtype::F32, bytemuck::cast_slice(d)),
                HostData::I64(d) => (Dtype::I64, bytemuck::cast_slice(d)),
            };
            safetensors::tensor::TensorView::new(dtype, shape.to_vec(), bytes)
                .map(|v| (name.to_string(), v))
                .map_err(|e| Error::Input(format!("cannot serialise `{name}`: {e}")))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize(views, None).map_err(|e| Error::Input(format!("cannot serialise output: {e}")))
}

/// Serialises f32 tensors to safetensors bytes.
pub fn serialize_f32(tensors: &[(&str, &[f32], &[usize])]) -> Result<Vec<u8>> {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, data, shape)| {
            let bytes: &[u8] = bytemuck::cast_slice(data);
            safetensors::tensor::TensorView::new(Dtype::F32, shape.to_vec(), bytes)
                .map(|v| (name.to_string(), v))
                .map_err(|e| Error::Input(format!("cannot serialise `{name}`: {e}")))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize(views, None).map_err(|e| Error::Input(format!("cannot serialise output: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass tiled transpose equals decoding, transposing and converting separately,
    /// for each file dtype and target dtype, at sizes that are not multiples of the tile and
    /// large enough to be split over threads.
    #[test]
    fn transposed_data_matches_separate_passes() {
        for (rows, cols) in [(1usize, 1usize), (3, 130), (257, 65), (300, 1000)] {
            let values: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919) % 1000) as f32 / 37.0 - 13.0).collect();
            let files: Vec<(Dtype, Vec<u8>)> = vec![
                (Dtype::F32, values.iter().flat_map(|v| v.to_le_bytes()).collect()),
                (Dtype::F16, values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect()),
                (Dtype::BF16, values.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect()),
                (Dtype::F64, values.iter().flat_map(|&v| (v as f64).to_le_bytes()).collect()),
            ];
            for (src, bytes) in &files {
                let decoded = decode_f32(bytes, *src).unwrap();
                let mut expected = vec![0f32; rows * cols];
                for r in 0..rows {
                    for c in 0..cols {
                        expected[c * rows + r] = decoded[r * cols + c];
                    }
                }
                for dtype in [DType::F32, DType::F16, DType::BF16] {
                    let got = transposed_data(bytes, *src, rows, cols, dtype).unwrap();
                    assert_eq!(got.shape().to_vec(), vec![cols, rows]);
                    assert_eq!(got.dtype(), dtype);
                    let want = match dtype {
                        DType::F16 => TensorData::new(expected.iter().map(|&v| half::f16::from_f32(v)).collect::<Vec<_>>(), [cols, rows]),
                        DType::BF16 => TensorData::new(expected.iter().map(|&v| half::bf16::from_f32(v)).collect::<Vec<_>>(), [cols, rows]),
                        _ => TensorData::new(expected.clone(), [cols, rows]),
                    };
                    assert_eq!(got.as_bytes(), want.as_bytes(), "{src:?} -> {dtype:?}, {rows}x{cols}");
                }
            }
        }
        // Too few bytes, or a dtype that is not a float: refused, not read out of bounds.
        assert!(transposed_data(&[0u8; 7], Dtype::F32, 2, 1, DType::F32).is_none());
        assert!(transposed_data(&[0u8; 8], Dtype::I64, 1, 1, DType::F32).is_none());
    }
}
