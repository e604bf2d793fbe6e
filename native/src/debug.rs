//! `inspect` and the component runners (`debug transformer`, later `text-encoder`, `vae-*`).

use burn::tensor::{DType, Device, FloatDType, Tensor};
use sana_video_core::device::{self, BackendKind};
use sana_video_core::io::safetensors::{serialize_f32, tensor_from_f32, Weights};
use sana_video_core::io::{self as sio, FsSource};
use sana_video_core::kernels::Impl;
use sana_video_core::models::dit::{SanaVideoTransformer3DModel, Timesteps};

use crate::args::Args;

pub fn inspect(argv: &[String]) -> Result<(), String> {
    let args = Args::parse(argv, &[], &[])?;
    let [dir] = args.positional.as_slice() else {
        return Err("usage: sana-video inspect DIR".into());
    };
    let report = sana_video_core::inspect::inspect(&FsSource, dir).map_err(|e| e.to_string())?;
    print!("{report}");
    Ok(())
}

pub fn open_device(args: &Args) -> Result<(BackendKind, Device), String> {
    match args.get("backend") {
        Some(b) => {
            let kind = BackendKind::parse(b).map_err(|e| e.to_string())?;
            Ok((kind, device::create(kind).map_err(|e| e.to_string())?))
        }
        None => device::best_available().map_err(|e| e.to_string()),
    }
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
    let out_dir = std::path::Path::new(output).parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(d) = out_dir {
        if !d.is_dir() {
            return Err(format!("--output {output}: folder {} does not exist", d.display()));
        }
    }

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
