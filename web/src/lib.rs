//! Browser bindings of the SANA-Video engine: the same core library and pipeline as the CLI
//! (`sana_video_core::pipelines::run_async`), driven from a Web Worker (`web/www/worker.js`).
//!
//! ```text
//! page (main.js) ──postMessage──▶ worker.js ──▶ this crate: add_file × n, plan, generate
//!        ▲                                          │ Events: stage / advance / frames
//!        └──────── progress, frames (f32 RGB) ◀─────┘ pause() yields to the worker's event loop
//! ```
//!
//! The host-independent parts (request parsing, planning, buffer-limit checks) are plain Rust
//! and tested natively; only `bindings` touches wasm-bindgen.

use burn::tensor::DType;
use sana_video_core::io::diffusers::component_dir;
use sana_video_core::io::safetensors::Weights;
use sana_video_core::io::FileSource;
use sana_video_core::models::dit::{DitConfig, SanaVideoTransformer3DModel};
use sana_video_core::pipelines::{self, Plan, Request};
use sana_video_core::samplers::SamplerKind;
use serde_json::{json, Value};

/// The built-in model's folder name on the site (`dist/models/builtin/`), as on the CLI.
pub const BUILTIN: &str = "builtin";

/// Validates a `transformer/config.json` text and summarises it (JSON), or returns the
/// same error message the CLI would print.
pub fn describe_transformer_config(json: &str) -> Result<String, String> {
    let c = DitConfig::from_json(json, "transformer/config.json").map_err(|e| e.to_string())?;
    Ok(json!({
        "class": c.class_name,
        "layers": c.layers,
        "width": c.dim,
        "heads": c.heads,
        "patch_size": c.patch_size,
        "in_channels": c.in_channels,
        "parameters": c.parameter_count(),
    })
    .to_string())
}

/// The defaults the CLI uses for this model (JSON), so the page starts from the same settings.
pub fn model_defaults(source: &dyn FileSource, model_dir: &str) -> Result<String, String> {
    let d = pipelines::defaults(source, model_dir, model_dir == BUILTIN).map_err(|e| e.to_string())?;
    Ok(json!({
        "height": d.height,
        "width": d.width,
        "frames": d.frames,
        "steps": d.steps,
        "negative_prompt": d.negative_prompt,
        "cfg_scale": d.cfg_scale,
        "seed": 42,
        "fps": 16,
    })
    .to_string())
}

fn field_usize(v: &Value, key: &str, default: usize) -> Result<usize, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(x) => x
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| format!("{key}: expected a whole number ≥ 0, got {x}")),
    }
}

/// A page request (JSON) as a pipeline `Request`, with the model's defaults for what is
/// missing. Names the field at fault, as the CLI names its flags.
pub fn parse_request(source: &dyn FileSource, model_dir: &str, json_text: &str) -> Result<Request, String> {
    let v: Value = serde_json::from_str(json_text).map_err(|e| format!("request: not valid JSON: {e}"))?;
    let d = pipelines::defaults(source, model_dir, model_dir == BUILTIN).map_err(|e| e.to_string())?;
    let prompt = v.get("prompt").and_then(Value::as_str).unwrap_or("").to_string();
    if prompt.trim().is_empty() {
        return Err("prompt: type what the video should show".into());
    }
    let negative_prompt = match v.get("negative_prompt") {
        None | Some(Value::Null) => d.negative_prompt.to_string(),
        Some(x) => x.as_str().ok_or("negative_prompt: expected text")?.to_string(),
    };
    let seed = match v.get("seed") {
        None | Some(Value::Null) => 42,
        Some(x) => x.as_u64().ok_or_else(|| format!("seed: expected a whole number ≥ 0, got {x}"))?,
    };
    let cfg_scale = match v.get("cfg_scale") {
        None | Some(Value::Null) => d.cfg_scale,
        Some(x) => x.as_f64().ok_or_else(|| format!("cfg_scale: expected a number, got {x}"))? as f32,
    };
    let sampler = match v.get("sampler").and_then(Value::as_str) {
        None => None,
        Some(s) => Some(SamplerKind::parse(s).map_err(|e| e.to_string())?),
    };
    Ok(Request {
        prompt,
        negative_prompt,
        height: field_usize(&v, "height", d.height)?,
        width: field_usize(&v, "width", d.width)?,
        frames: field_usize(&v, "frames", d.frames)?,
        steps: field_usize(&v, "steps", d.steps)?,
        cfg_scale,
        seed,
        sampler,
        resolution_binning: d.binning,
        // The browser computes in f32: SwiftShader and many adapters lack shader-f16.
        dtype: DType::F32,
        vae_dtype: DType::F32,
        ..Default::default()
    })
}

/// The largest single weight tensor in f32 bytes, and its name: WebGPU caps one buffer
/// (`maxBufferSize`) and one binding (`maxStorageBufferBindingSize`).
pub fn largest_tensor(source: &dyn FileSource, plan: &Plan) -> Result<(String, u64), String> {
    let te_dir = component_dir(source, &plan.model_dir, "text_encoder").map_err(|e| e.to_string())?;
    let mut best = (String::new(), 0u64);
    for (dir, stem) in [(te_dir.as_str(), "model"), (plan.transformer_dir.as_str(), "diffusion_pytorch_model"), (plan.vae_dir.as_str(), "diffusion_pytorch_model")] {
        let w = Weights::open_dir(source, dir, stem).map_err(|e| e.to_string())?;
        for name in w.names() {
            if let Some(m) = w.meta(&name) {
                let bytes = m.shape.iter().product::<usize>() as u64 * 4;
                if bytes > best.1 {
                    best = (format!("{}: {name}", m.file), bytes);
                }
            }
        }
    }
    Ok(best)
}

/// Plans a request (JSON in, JSON out) and checks it against the adapter's limits, so a
/// request that cannot fit is refused with the reason before anything loads.
pub fn plan_request(source: &dyn FileSource, model_dir: &str, request: &str, max_buffer: u64, max_binding: u64) -> Result<(Request, Plan, String), String> {
    let req = parse_request(source, model_dir, request)?;
    let plan = pipelines::plan(source, model_dir, &req).map_err(|e| e.to_string())?;
    let (tensor, bytes) = largest_tensor(source, &plan)?;
    let limit = max_buffer.min(max_binding);
    if limit > 0 && bytes > limit {
        return Err(format!(
            "{tensor} needs a {:.1} MB buffer in f32, but this GPU allows {:.1} MB per buffer \
             (maxBufferSize {max_buffer}, maxStorageBufferBindingSize {max_binding}); this model does not fit in this browser",
            bytes as f64 / 1e6,
            limit as f64 / 1e6
        ));
    }
    // The largest activation: the DiT's feed-forward input, [batch · tokens, 2 · ffn] in f32.
    let dit = SanaVideoTransformer3DModel::read_config(source, &plan.transformer_dir).map_err(|e| e.to_string())?;
    let batch = if req.cfg_scale > 1.0 { 2 } else { 1 };
    let ffn_bytes = (batch * plan.tokens * 2 * dit.ffn_hidden * 4) as u64;
    if limit > 0 && ffn_bytes > limit {
        return Err(format!(
            "{} frames of {}x{} make {} tokens, whose feed-forward activations need a {:.1} MB buffer in f32, but this GPU \
             allows {:.1} MB per buffer: use fewer frames or a smaller size",
            plan.frames,
            plan.gen_size.1,
            plan.gen_size.0,
            plan.tokens,
            ffn_bytes as f64 / 1e6,
            limit as f64 / 1e6
        ));
    }
    let summary = json!({
        "gen_size": [plan.gen_size.0, plan.gen_size.1],
        "out_size": [plan.out_size.0, plan.out_size.1],
        "frames": plan.frames,
        "steps": req.steps,
        "latent_shape": plan.latent_shape,
        "tokens": plan.tokens,
        "sampler": plan.sampler.name(),
        "peak_bytes": plan.memory.peak(),
        "memory": plan.memory.to_string(),
        "largest_tensor": tensor,
        "largest_tensor_bytes": bytes,
    })
    .to_string();
    Ok((req, plan, summary))
}

#[cfg(target_arch = "wasm32")]
mod bindings {
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;

    use burn::tensor::Device;
    use js_sys::{Function, Object, Promise, Reflect, Uint8Array};
    use sana_video_core::io::{RangeRead, RangedSource};
    use sana_video_core::pipelines::{self, Events, Frames, Stage};
    use sana_video_core::Error;
    use wasm_bindgen::prelude::*;
    use wasm_bindgen_futures::JsFuture;

    thread_local! {
        static DEVICE: RefCell<Option<Device>> = const { RefCell::new(None) };
        static SOURCE: RefCell<Option<Arc<RangedSource>>> = const { RefCell::new(None) };
        static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
    }

    fn err(msg: impl Into<String>) -> JsValue {
        JsValue::from_str(&msg.into())
    }

    /// Installs a panic hook that keeps the message (a panic in wasm surfaces in JavaScript
    /// only as "unreachable"), so the page can say what went wrong.
    #[wasm_bindgen(start)]
    pub fn start() {
        std::panic::set_hook(Box::new(|info| {
            let msg = info.to_string();
            web_log(&format!("sana-video panicked: {msg}"));
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(msg));
        }));
    }

    #[wasm_bindgen]
    extern "C" {
        #[wasm_bindgen(js_namespace = console, js_name = error)]
        fn web_log(s: &str);
    }

    /// The message of the last Rust panic, if any (after a panic the module must be reloaded).
    #[wasm_bindgen(js_name = lastPanic)]
    pub fn last_panic() -> Option<String> {
        LAST_PANIC.with(|p| p.borrow().clone())
    }

    #[wasm_bindgen(js_name = engineVersion)]
    pub fn engine_version() -> String {
        env!("CARGO_PKG_VERSION").to_string()
    }

    #[wasm_bindgen(js_name = describeTransformerConfig)]
    pub fn describe_transformer_config(json: &str) -> Result<String, JsValue> {
        super::describe_transformer_config(json).map_err(err)
    }

    /// Opens the WebGPU device through burn (asynchronously: the browser cannot block).
    #[wasm_bindgen(js_name = initDevice)]
    pub async fn init_device() -> Result<(), JsValue> {
        if DEVICE.with(|d| d.borrow().is_some()) {
            return Ok(());
        }
        let device = Device::wgpu_options()
            .init_async()
            .await
            .map_err(|e| err(format!("WebGPU device could not be opened: {e}")))?;
        DEVICE.with(|d| *d.borrow_mut() = Some(device));
        Ok(())
    }

    /// Reads parts of the page's files through its synchronous callback
    /// `readRange(path, start, len) -> Uint8Array` (FileReaderSync on Blobs, in the worker).
    struct JsReader {
        sizes: BTreeMap<String, u64>,
        read: Function,
    }

    impl RangeRead for JsReader {
        fn size(&self, path: &str) -> sana_video_core::Result<u64> {
            self.sizes.get(path).copied().ok_or_else(|| Error::file(path, "no such file"))
        }
        fn read_range(&self, path: &str, start: u64, len: usize) -> sana_video_core::Result<Vec<u8>> {
            let v = self
                .read
                .call3(&JsValue::NULL, &JsValue::from_str(path), &JsValue::from_f64(start as f64), &JsValue::from_f64(len as f64))
                .map_err(|e| Error::file(path, format!("reading {len} bytes at {start} failed: {}", js_text(&e))))?;
            let bytes = v.dyn_into::<Uint8Array>().map_err(|_| Error::file(path, "the page's reader returned no bytes"))?;
            if bytes.length() as usize != len {
                return Err(Error::file(path, format!("read {} bytes at {start}, expected {len}", bytes.length())));
            }
            Ok(bytes.to_vec())
        }
    }

    fn js_text(v: &JsValue) -> String {
        v.as_string()
            .or_else(|| Reflect::get(v, &JsValue::from_str("message")).ok().and_then(|m| m.as_string()))
            .unwrap_or_else(|| format!("{v:?}"))
    }

    /// Hands over a model's files: `files` is JSON `[[path, size], ...]`, `read_range` reads
    /// parts of them. Weights are then read tensor by tensor, never whole into wasm memory.
    #[wasm_bindgen(js_name = setFiles)]
    pub fn set_files(files: &str, read_range: Function) -> Result<(), JsValue> {
        let list: Vec<(String, u64)> = serde_json::from_str(files).map_err(|e| err(format!("setFiles: bad file list: {e}")))?;
        let reader = Arc::new(JsReader { sizes: list.iter().cloned().collect(), read: read_range });
        SOURCE.with(|s| *s.borrow_mut() = Some(Arc::new(RangedSource::new(reader, list))));
        Ok(())
    }

    fn source() -> Result<Arc<RangedSource>, JsValue> {
        SOURCE.with(|s| s.borrow().clone()).ok_or_else(|| err("no model files: call setFiles() first"))
    }

    #[wasm_bindgen(js_name = modelDefaults)]
    pub fn model_defaults(model_dir: &str) -> Result<String, JsValue> {
        super::model_defaults(source()?.as_ref(), model_dir).map_err(err)
    }

    /// Plans a request without loading anything: JSON summary, or the reason it cannot run.
    #[wasm_bindgen(js_name = planRequest)]
    pub fn plan_request(model_dir: &str, request: &str, max_buffer: f64, max_binding: f64) -> Result<String, JsValue> {
        super::plan_request(source()?.as_ref(), model_dir, request, max_buffer as u64, max_binding as u64)
            .map(|(_, _, s)| s)
            .map_err(err)
    }

    /// Forwards pipeline events to the worker's callbacks object:
    /// `{ stage(name, units), advance(done), frames(Float32Array, count, height, width),
    ///    cancelled() -> bool, pause() -> Promise }`.
    struct JsEvents {
        cb: Object,
    }

    impl JsEvents {
        fn func(&self, name: &str) -> Option<Function> {
            Reflect::get(&self.cb, &JsValue::from_str(name)).ok()?.dyn_into::<Function>().ok()
        }
    }

    impl Events for JsEvents {
        fn stage(&mut self, stage: Stage, units: usize) {
            if let Some(f) = self.func("stage") {
                let _ = f.call2(&self.cb, &JsValue::from_str(stage.name()), &JsValue::from_f64(units as f64));
            }
        }
        fn advance(&mut self, done: usize) {
            if let Some(f) = self.func("advance") {
                let _ = f.call1(&self.cb, &JsValue::from_f64(done as f64));
            }
        }
        fn warn(&mut self, msg: &str) {
            if let Some(f) = self.func("warn") {
                let _ = f.call1(&self.cb, &JsValue::from_str(msg));
            }
        }
        fn frames(&mut self, frames: Frames) -> sana_video_core::Result<()> {
            let f = self.func("frames").ok_or_else(|| Error::Device("the page gave no frames callback".into()))?;
            let data = js_sys::Float32Array::from(frames.data.as_slice());
            let args = js_sys::Array::of4(&data, &(frames.count as f64).into(), &(frames.height as f64).into(), &(frames.width as f64).into());
            f.apply(&self.cb, &args).map_err(|e| Error::Device(format!("the page's frames callback failed: {e:?}")))?;
            Ok(())
        }
        fn sync_steps(&self) -> bool {
            true
        }
        fn cancelled(&self) -> bool {
            self.func("cancelled").and_then(|f| f.call0(&self.cb).ok()).and_then(|v| v.as_bool()).unwrap_or(false)
        }
        fn pause(&mut self) -> Pin<Box<dyn Future<Output = ()> + '_>> {
            let promise = self.func("pause").and_then(|f| f.call0(&self.cb).ok()).and_then(|v| v.dyn_into::<Promise>().ok());
            Box::pin(async move {
                if let Some(p) = promise {
                    let _ = JsFuture::from(p).await;
                }
            })
        }
    }

    /// Runs a request (JSON) on the WebGPU device with the files added so far. Resolves to a
    /// JSON summary; rejects with "cancelled" or a message naming what failed.
    #[wasm_bindgen]
    pub async fn generate(model_dir: String, request: String, callbacks: Object, max_buffer: f64, max_binding: f64) -> Result<String, JsValue> {
        let device = DEVICE.with(|d| d.borrow().clone()).ok_or_else(|| err("call initDevice() first"))?;
        let source = source()?;
        let (req, plan, summary) = super::plan_request(source.as_ref(), &model_dir, &request, max_buffer as u64, max_binding as u64).map_err(err)?;
        let mut events = JsEvents { cb: callbacks };
        match pipelines::run_async(source.as_ref(), &plan, &req, &device, &mut events).await {
            Ok(_) => Ok(summary),
            Err(Error::Interrupted) => Err(err("cancelled")),
            Err(e) => Err(err(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sana_video_core::io::FileSource;

    use sana_video_core::io::MemorySource;

    /// The built-in model's files as the page hands them over.
    fn builtin() -> MemorySource {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../builtin-model");
        let mut files = MemorySource::default();
        fn walk(dir: &std::path::Path, rel: &str, files: &mut MemorySource) {
            for e in std::fs::read_dir(dir).unwrap() {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                let r = format!("{rel}/{name}");
                if e.path().is_dir() {
                    walk(&e.path(), &r, files);
                } else {
                    files.insert(r, std::fs::read(e.path()).unwrap());
                }
            }
        }
        walk(std::path::Path::new(root), BUILTIN, &mut files);
        files
    }

    #[test]
    fn refuses_unknown_class() {
        let err = describe_transformer_config(r#"{"_class_name": "FluxTransformer2DModel"}"#).unwrap_err();
        assert!(err.contains("FluxTransformer2DModel"), "{err}");
    }

    #[test]
    fn builtin_defaults_match_the_cli() {
        let files = builtin();
        assert!(files.exists("builtin/transformer/config.json"));
        let d: Value = serde_json::from_str(&model_defaults(&files, BUILTIN).unwrap()).unwrap();
        assert_eq!((d["height"].as_u64(), d["width"].as_u64(), d["frames"].as_u64(), d["steps"].as_u64()), (Some(128), Some(128), Some(17), Some(20)));
        assert_eq!(d["negative_prompt"], "");
    }

    #[test]
    fn plans_and_refuses_with_the_field_named() {
        let files = builtin();
        let (req, plan, summary) = plan_request(&files, BUILTIN, r#"{"prompt":"a red circle","frames":5,"steps":2,"seed":7}"#, 1 << 30, 1 << 30).unwrap();
        assert_eq!((req.seed, req.steps, plan.frames, plan.out_size), (7, 2, 5, (128, 128)));
        assert!(summary.contains("\"tokens\""), "{summary}");
        for (request, needle) in [
            (r#"{"prompt":""}"#, "prompt"),
            (r#"{"prompt":"x","frames":6}"#, "--frames 6"),
            (r#"{"prompt":"x","height":100}"#, "multiples of 16"),
            (r#"{"prompt":"x","seed":-1}"#, "seed"),
            (r#"{"prompt":"x","sampler":"ddim"}"#, "ddim"),
            ("not json", "JSON"),
        ] {
            let e = plan_request(&files, BUILTIN, request, 1 << 30, 1 << 30).unwrap_err();
            assert!(e.contains(needle), "{request}: {e}");
        }
        // A GPU whose buffers are smaller than the largest tensor is refused by name.
        let e = plan_request(&files, BUILTIN, r#"{"prompt":"x"}"#, 1 << 30, 1 << 16).unwrap_err();
        assert!(e.contains("does not fit") && e.contains("safetensors: "), "{e}");
        // Activations too: 17 frames of 1024x1024 need one buffer over 128 MiB (WebGPU's default limit).
        let e = plan_request(&files, BUILTIN, r#"{"prompt":"x","height":1024,"width":1024}"#, 1 << 27, 1 << 27).unwrap_err();
        assert!(e.contains("20480 tokens") && e.contains("fewer frames"), "{e}");
    }

    #[test]
    fn missing_files_are_named() {
        let all = builtin();
        let mut files = MemorySource::default();
        for name in ["model_index.json", "transformer/config.json"] {
            files.insert(format!("builtin/{name}"), all.read(&format!("builtin/{name}")).unwrap().to_vec());
        }
        let e = plan_request(&files, BUILTIN, r#"{"prompt":"x"}"#, 1 << 30, 1 << 30).unwrap_err();
        assert!(e.contains("builtin/"), "{e}");
    }
}
