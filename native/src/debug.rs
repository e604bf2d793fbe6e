//! `inspect` and the component runners (`debug transformer`, `text-encoder`,
//! `encode-prompt`; later `vae-*`).

use burn::tensor::{DType, Device, FloatDType, Tensor};
use sana_video_core::device::{self, BackendKind};
use sana_video_core::io::safetensors::{serialize, serialize_f32, tensor_from_f32, HostData, Weights};
use sana_video_core::io::{self as sio, FsSource};
use sana_video_core::kernels::Impl;
use sana_video_core::models::dit::{SanaVideoTransformer3DModel, Timesteps};
use sana_video_core::models::vae::{Vae, VaeConfig};
use sana_video_core::models::text_encoder::{
    Gemma2Model, Instruction, PromptOptions, TextEncoder, TokenBatch, DEFAULT_NEGATIVE_PROMPT,
};

use crate::args::Args;

pub fn inspect(argv: &[String]) -> Result<(), String> {
    let args = Args::parse(argv, &[], &[])?;
    let [dir] = args.positional.as_slice() else {
        return Err("usage: sana-video inspect DIR".into());
    };
    let report = if let Some(source) = crate::builtin::embedded(dir) {
        sana_video_core::inspect::inspect(source, dir)
    } else {
        sana_video_core::inspect::inspect(&FsSource, dir)
    }
    .map_err(|e| e.to_string())?;
    print!("{report}");
    Ok(())
}

pub fn open_device(args: &Args) -> Result<(BackendKind, Device), String> {
    let (kind, device) = match args.get("backend") {
        Some(b) => {
            let kind = BackendKind::parse(b).map_err(|e| e.to_string())?;
            (kind, device::create(kind).map_err(|e| e.to_string())?)
        }
        None => device::best_available().map_err(|e| e.to_string())?,
    };
    Ok((kind, device))
}

/// Reads the runner's input file as f32 host tensors, naming the file and tensor in errors.
struct Inputs {
    weights: Weights,
    path: String,
}

impl Inputs {
    fn open(path: &str) -> Result<Inputs, String> {
        let weights = Weights::open_files(&FsSource, &[path.to_string()]).map_err(|e| e.to_string())?;
        Ok(Inputs { weights, path: path.to_string() })
    }

    fn get(&self, name: &str, rank: &[usize]) -> Result<Option<(Vec<f32>, Vec<usize>)>, String> {
        if self.weights.meta(name).is_none() {
            return Ok(None);
        }
        let (v, shape) = self.weights.read_f32(name).map_err(|e| e.to_string())?;
        if !rank.contains(&shape.len()) {
            return Err(format!("{}: tensor `{name}` has shape {shape:?}; expected rank {rank:?}", self.path));
        }
        Ok(Some((v, shape)))
    }

    fn require(&self, name: &str, rank: &[usize]) -> Result<(Vec<f32>, Vec<usize>), String> {
        self.get(name, rank)?.ok_or_else(|| format!("{}: missing tensor `{name}`", self.path))
    }
}

pub fn transformer(argv: &[String]) -> Result<(), String> {
    let args = Args::parse(argv, &["model", "inputs", "output", "backend", "dtype"], &["reference-kernels"])?;
    let model_dir = args.require("model")?;
    let inputs_path = args.require("inputs")?;
    let output = args.require("output")?;
    let dtype = match args.get("dtype") {
        Some(d) => device::parse_dtype(d).map_err(|e| e.to_string())?,
        None => DType::F32,
    };

    // Read and check inputs before loading weights or opening a device.
    let inputs = Inputs::open(inputs_path)?;
    let (x, x_shape) = inputs.require("hidden_states", &[5])?;
    let (y, y_shape) = inputs.require("encoder_hidden_states", &[3])?;
    let (t, t_shape) = inputs.require("timestep", &[1, 2])?;
    let mask = inputs.get("encoder_attention_mask", &[2])?;
    let batch = x_shape[0];
    if t_shape[0] != batch {
        return Err(format!("{inputs_path}: tensor `timestep` has batch {} but hidden_states has {batch}", t_shape[0]));
    }
    let timestep = if t_shape.len() == 1 { Timesteps::PerSample(t) } else { Timesteps::PerToken(t) };
    if let Some((_, ms)) = &mask {
        if ms[..] != [batch, y_shape[1]] {
            return Err(format!(
                "{inputs_path}: tensor `encoder_attention_mask` has shape {ms:?}, expected [{batch}, {}]",
                y_shape[1]
            ));
        }
    }
    check_output_dir(output)?;

    let (kind, device) = open_device(&args)?;
    let model_dir = sio::diffusers::resolve_model_dir(&FsSource, model_dir).map_err(|e| e.to_string())?;
    let (mut model, report) =
        SanaVideoTransformer3DModel::load(&FsSource, &model_dir, &device, dtype).map_err(|e| e.to_string())?;
    if !report.unexpected.is_empty() {
        eprintln!("warning: {} has tensors the model does not use: {}", report.weights_location, report.unexpected.join(", "));
    }
    if args.flag("reference-kernels") {
        model.kernels = Impl::Reference;
    }
    let hidden: Tensor<5> = tensor_from_f32(x, x_shape, &device, DType::F32);
    let enc: Tensor<3> = tensor_from_f32(y, y_shape, &device, DType::F32);
    let start = std::time::Instant::now();
    let sample = model
        .forward(hidden, enc, &timestep, mask.as_ref().map(|(m, _)| m.as_slice()))
        .map_err(|e| e.to_string())?;
    let sample = sample.cast(FloatDType::F32);
    let shape = sample.dims().to_vec();
    let data = sample.into_data().try_to_vec::<f32>().map_err(|e| format!("cannot read the result back: {e:?}"))?;
    eprintln!(
        "transformer forward on {} ({:?}): {:.3} s, output {:?}",
        device::name(kind),
        dtype,
        start.elapsed().as_secs_f64(),
        shape
    );
    let bytes = serialize_f32(&[("sample", &data, &shape)]).map_err(|e| e.to_string())?;
    sio::write_atomic(output, &bytes).map_err(|e| e.to_string())?;
    Ok(())
}

/// Refuses an output path whose folder does not exist, before any work.
fn check_output_dir(output: &str) -> Result<(), String> {
    let out_dir = std::path::Path::new(output).parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(d) = out_dir {
        if !d.is_dir() {
            return Err(format!("--output {output}: folder {} does not exist", d.display()));
        }
    }
    Ok(())
}

fn compute_dtype(args: &Args) -> Result<DType, String> {
    match args.get("dtype") {
        Some(d) => device::parse_dtype(d).map_err(|e| e.to_string()),
        None => Ok(DType::F32),
    }
}

/// Reads a tensor back to the host as f32 with its shape.
fn host_f32<const D: usize>(t: Tensor<D>) -> Result<(Vec<f32>, Vec<usize>), String> {
    let t = t.cast(FloatDType::F32);
    let shape = t.dims().to_vec();
    let data = t.into_data().try_to_vec::<f32>().map_err(|e| format!("cannot read the result back: {e:?}"))?;
    Ok((data, shape))
}

pub fn text_encoder(argv: &[String]) -> Result<(), String> {
    let args = Args::parse(argv, &["model", "inputs", "output", "backend", "dtype"], &[])?;
    let model_dir = args.require("model")?;
    let inputs_path = args.require("inputs")?;
    let output = args.require("output")?;
    let dtype = compute_dtype(&args)?;

    let inputs = Weights::open_files(&FsSource, &[inputs_path.to_string()]).map_err(|e| e.to_string())?;
    let read = |name: &str| -> Result<(Vec<i64>, Vec<usize>), String> {
        if inputs.meta(name).is_none() {
            return Err(format!("{inputs_path}: missing tensor `{name}`"));
        }
        let (v, shape) = inputs.read_i64(name).map_err(|e| e.to_string())?;
        if shape.len() != 2 {
            return Err(format!("{inputs_path}: tensor `{name}` has shape {shape:?}; expected [batch, length]"));
        }
        Ok((v, shape))
    };
    let (ids, ids_shape) = read("input_ids")?;
    let (mask, mask_shape) = if inputs.meta("attention_mask").is_some() {
        read("attention_mask")?
    } else {
        (vec![1; ids.len()], ids_shape.clone())
    };
    if mask_shape != ids_shape {
        return Err(format!("{inputs_path}: attention_mask has shape {mask_shape:?} but input_ids has {ids_shape:?}"));
    }
    let to_u32 = |what: &str, v: &[i64]| -> Result<Vec<u32>, String> {
        v.iter()
            .enumerate()
            .map(|(i, &x)| u32::try_from(x).map_err(|_| format!("{inputs_path}: {what}[{i}] = {x} is negative or too large")))
            .collect()
    };
    let input_ids = to_u32("input_ids", &ids)?;
    let attention_mask = to_u32("attention_mask", &mask)?
        .into_iter()
        .enumerate()
        .map(|(i, m)| u8::try_from(m).ok().filter(|&m| m <= 1).ok_or_else(|| format!("{inputs_path}: attention_mask[{i}] = {m} is not 0 or 1")))
        .collect::<Result<Vec<u8>, String>>()?;
    let tokens = TokenBatch { batch: ids_shape[0], len: ids_shape[1], input_ids, attention_mask };
    check_output_dir(output)?;

    let (kind, device) = open_device(&args)?;
    let model_dir = sio::diffusers::resolve_model_dir(&FsSource, model_dir).map_err(|e| e.to_string())?;
    let t0 = std::time::Instant::now();
    let (model, report) = Gemma2Model::load(&FsSource, &model_dir, &device, dtype).map_err(|e| e.to_string())?;
    eprintln!("text encoder loaded in {:.2} s ({:.2} GB on the device)", t0.elapsed().as_secs_f64(), model.device_bytes() as f64 / 1e9);
    if !report.unexpected.is_empty() {
        eprintln!("warning: {} has tensors the model does not use: {}", report.weights_location, report.unexpected.join(", "));
    }
    model.check_tokens(&tokens).map_err(|e| format!("{inputs_path}: {e}"))?;
    let start = std::time::Instant::now();
    let hidden = model.forward(&tokens).map_err(|e| e.to_string())?;
    let (data, shape) = host_f32(hidden)?;
    eprintln!(
        "text encoder forward on {} ({:?}): {:.3} s, output {:?}",
        device::name(kind),
        dtype,
        start.elapsed().as_secs_f64(),
        shape
    );
    let bytes = serialize_f32(&[("last_hidden_state", &data, &shape)]).map_err(|e| e.to_string())?;
    sio::write_atomic(output, &bytes).map_err(|e| e.to_string())?;
    Ok(())
}

pub fn encode_prompt(argv: &[String]) -> Result<(), String> {
    let args = Args::parse(
        argv,
        &["model", "prompt", "negative-prompt", "motion-score", "instruction", "output", "backend", "dtype"],
        &["no-lowercase", "no-negative"],
    )?;
    let model_dir = args.require("model")?;
    let text = args.require("prompt")?.to_string();
    let output = args.require("output")?;
    let dtype = compute_dtype(&args)?;
    let motion_score = match args.get("motion-score") {
        Some(v) => Some(v.parse::<u32>().map_err(|_| format!("--motion-score {v}: expected a whole number >= 0"))?),
        None => None,
    };
    let instruction = Instruction::parse(args.get("instruction").unwrap_or("video")).map_err(|e| e.to_string())?;
    let opts = PromptOptions { instruction, lowercase: !args.flag("no-lowercase"), motion_score, ..Default::default() };
    if args.flag("no-negative") && args.get("negative-prompt").is_some() {
        return Err("--no-negative and --negative-prompt exclude each other".into());
    }
    let negative =
        (!args.flag("no-negative")).then(|| args.get("negative-prompt").unwrap_or(DEFAULT_NEGATIVE_PROMPT).to_string());
    check_output_dir(output)?;

    let (kind, device) = open_device(&args)?;
    let model_dir = sio::diffusers::resolve_model_dir(&FsSource, model_dir).map_err(|e| e.to_string())?;
    let t0 = std::time::Instant::now();
    let (te, report) = TextEncoder::load(&FsSource, &model_dir, &device, dtype).map_err(|e| e.to_string())?;
    eprintln!("tokenizer and text encoder loaded in {:.2} s", t0.elapsed().as_secs_f64());
    if !report.unexpected.is_empty() {
        eprintln!("warning: {} has tensors the model does not use: {}", report.weights_location, report.unexpected.join(", "));
    }
    let start = std::time::Instant::now();
    let negatives = negative.map(|n| vec![n]);
    let enc = te.encode(&[text], negatives.as_deref(), &opts).map_err(|e| e.to_string())?;
    for w in &enc.warnings {
        eprintln!("warning: {w}");
    }
    let (pe, pe_shape) = host_f32(enc.prompt.embeds)?;
    let pm: Vec<i64> = enc.prompt.mask.iter().map(|&m| m as i64).collect();
    let m_shape = [pe_shape[0], pe_shape[1]];
    let mut tensors: Vec<(&str, HostData<'_>, &[usize])> =
        vec![("prompt_embeds", HostData::F32(&pe), &pe_shape), ("prompt_attention_mask", HostData::I64(&pm), &m_shape)];
    let neg = match enc.negative {
        Some(n) => {
            let (ne, ne_shape) = host_f32(n.embeds)?;
            Some((ne, ne_shape, n.mask.iter().map(|&m| m as i64).collect::<Vec<i64>>()))
        }
        None => None,
    };
    let nm_shape;
    if let Some((ne, ne_shape, nm)) = &neg {
        nm_shape = [ne_shape[0], ne_shape[1]];
        tensors.push(("negative_prompt_embeds", HostData::F32(ne), ne_shape));
        tensors.push(("negative_prompt_attention_mask", HostData::I64(nm), &nm_shape));
    }
    eprintln!(
        "prompt encoded on {} ({:?}): {:.3} s, prompt_embeds {:?}",
        device::name(kind),
        dtype,
        start.elapsed().as_secs_f64(),
        pe_shape
    );
    let bytes = serialize(&tensors).map_err(|e| e.to_string())?;
    sio::write_atomic(output, &bytes).map_err(|e| e.to_string())?;
    te.unload();
    Ok(())
}

/// Opens a `vae/` folder with the VAE class its config names.
fn load_vae(model_dir: &str, device: &Device, dtype: DType) -> Result<Vae, String> {
    let t0 = std::time::Instant::now();
    let (vae, unexpected) = Vae::load(&FsSource, model_dir, device, dtype).map_err(|e| e.to_string())?;
    if !unexpected.is_empty() {
        eprintln!("warning: {model_dir} has tensors the VAE does not use: {}", unexpected.join(", "));
    }
    eprintln!("VAE loaded in {:.2} s", t0.elapsed().as_secs_f64());
    Ok(vae)
}

fn vae_runner(argv: &[String], decode: bool) -> Result<(), String> {
    let args = Args::parse(
        argv,
        &["model", "inputs", "output", "backend", "dtype", "vae-tile-size", "vae-tile-overlap"],
        &["vae-tiling"],
    )?;
    let tiling = if args.flag("vae-tiling") {
        let mut t = sana_video_core::models::vae::Tiling::default();
        let px = |name: &str, v: &str| v.parse::<usize>().map_err(|_| format!("--{name} {v}: expected a number of pixels"));
        if let Some(v) = args.get("vae-tile-size") {
            t.tile = px("vae-tile-size", v)?;
        }
        if let Some(v) = args.get("vae-tile-overlap") {
            t.overlap = px("vae-tile-overlap", v)?;
        }
        if !decode {
            return Err("--vae-tiling applies to vae-decode only".into());
        }
        Some(t)
    } else {
        if args.get("vae-tile-size").is_some() || args.get("vae-tile-overlap").is_some() {
            return Err("--vae-tile-size / --vae-tile-overlap need --vae-tiling".into());
        }
        None
    };
    args.require("model")?;
    let inputs_path = args.require("inputs")?;
    let output = args.require("output")?;
    let dtype = compute_dtype(&args)?;
    let inputs = Inputs::open(inputs_path)?;
    let (name, out_name) = if decode { ("latents", "sample") } else { ("sample", "latent_mean") };
    let (x, shape) = inputs.require(name, &[5])?;
    check_output_dir(output)?;
    // The config alone says what the VAE takes: refuse bad inputs before loading weights.
    let model_dir = sio::diffusers::resolve_model_dir(&FsSource, args.require("model")?).map_err(|e| e.to_string())?;
    let (_, cfg) = VaeConfig::read(&FsSource, &model_dir).map_err(|e| e.to_string())?;
    if decode { cfg.check_latents(&shape) } else { cfg.check_sample(&shape) }.map_err(|e| format!("{inputs_path}: {e}"))?;
    let (kind, device) = open_device(&args)?;
    let vae = load_vae(&model_dir, &device, dtype)?;
    let x: Tensor<5> = tensor_from_f32(x, shape, &device, dtype);
    let start = std::time::Instant::now();
    let y = match (decode, tiling) {
        (true, Some(t)) => vae.decode_tiled(x, t),
        (true, None) => vae.decode(x),
        (false, _) => vae.encode_mean(x),
    }
    .map_err(|e| e.to_string())?;
    let (data, shape) = host_f32(y)?;
    eprintln!(
        "VAE {} on {} ({:?}): {:.3} s, output {:?}",
        if decode { "decode" } else { "encode" },
        device::name(kind),
        dtype,
        start.elapsed().as_secs_f64(),
        shape
    );
    let bytes = serialize_f32(&[(out_name, &data, &shape)]).map_err(|e| e.to_string())?;
    sio::write_atomic(output, &bytes).map_err(|e| e.to_string())?;
    Ok(())
}

pub fn vae_decode(argv: &[String]) -> Result<(), String> {
    vae_runner(argv, true)
}

pub fn vae_encode(argv: &[String]) -> Result<(), String> {
    vae_runner(argv, false)
}
