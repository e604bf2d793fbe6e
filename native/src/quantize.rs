//! `sana-video quantize`: writes a copy of a diffusers SanaVideoPipeline folder (or of one
//! `transformer/` or `text_encoder/` folder) whose linear and 1x1-conv weights are FP8 or
//! NVFP4 (`sana_video_core::quant` has the layouts). Everything else is copied byte for
//! byte. The output appears only when complete (written to a temporary folder, renamed).

use std::path::Path;

use sana_video_core::io::safetensors::Weights;
use sana_video_core::io::{join, FileSource};
use sana_video_core::quant::{self, Format, Summary};

use crate::args::Args;

/// Components whose weights are quantised; the VAE and the tokenizer are copied.
const QUANTISED: &[(&str, &str)] = &[("transformer", "diffusion_pytorch_model"), ("text_encoder", "model")];

pub fn run(argv: &[String]) -> Result<(), String> {
    let args = Args::parse(argv, &["format", "model", "output"], &[])?;
    let format = args.get("format").ok_or("--format fp8|nvfp4 is required")?;
    let format = match format {
        "fp8" => Format::Fp8,
        "nvfp4" => Format::Nvfp4,
        other => return Err(format!("--format {other}: expected fp8 or nvfp4")),
    };
    let model = args.get("model").ok_or("--model DIR is required (a diffusers folder, `builtin` or `builtin-long`)")?;
    let output = args.get("output").ok_or("--output DIR is required")?;
    if Path::new(output).exists() {
        return Err(format!("--output {output}: already exists; choose a new folder"));
    }
    let (source, dir) = crate::builtin::resolve(Some(model))?;
    let parent = Path::new(output).parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = Path::new(output).file_name().ok_or_else(|| format!("--output {output}: not a folder name"))?;
    let tmp = parent.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let result = write_all(source, &dir, &tmp, format);
    match result {
        Ok(s) => {
            std::fs::rename(&tmp, output).map_err(|e| {
                let _ = std::fs::remove_dir_all(&tmp);
                format!("{output}: {e}")
            })?;
            println!(
                "wrote {output}: {} tensors in {} ({} kept in full precision); weights {:.1} MB -> {:.1} MB",
                s.quantised,
                format.name(),
                s.kept,
                s.bytes_in as f64 / 1e6,
                s.bytes_out as f64 / 1e6
            );
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

fn write_all(source: &dyn FileSource, dir: &str, out: &Path, format: Format) -> Result<Summary, String> {
    let mut sum = Summary { quantised: 0, kept: 0, bytes_in: 0, bytes_out: 0 };
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let is_pipeline = source.exists(&join(dir, "model_index.json"));
    let stem_here = QUANTISED.iter().find(|(_, stem)| source.exists(&join(dir, &format!("{stem}.safetensors"))) || source.exists(&join(dir, &format!("{stem}.safetensors.index.json"))));
    if !is_pipeline && stem_here.is_none() {
        return Err(format!(
            "--model {}: neither a diffusers pipeline folder (model_index.json) nor a transformer/ or text_encoder/ folder",
            dir
        ));
    }
    // Everything is copied except the weights of the components rewritten below (one file
    // each out, so their shard index is dropped too).
    copy_tree(source, dir, out, &mut |rel| {
        let comp = Path::new(rel).parent().map(|p| p.to_string_lossy().to_string()).unwrap_or_default();
        let rewritten = if is_pipeline { QUANTISED.iter().any(|(c, _)| *c == comp) } else { comp.is_empty() };
        !(rewritten && (rel.ends_with(".safetensors") || rel.ends_with(".safetensors.index.json")))
    })?;
    let targets: Vec<(String, &str)> = if is_pipeline {
        QUANTISED.iter().filter(|(c, _)| source.exists(&join(dir, c))).map(|(c, s)| (c.to_string(), *s)).collect()
    } else {
        vec![(String::new(), stem_here.map(|(_, s)| *s).unwrap_or("model"))]
    };
    for (comp, stem) in targets {
        let cdir = if comp.is_empty() { dir.to_string() } else { join(dir, &comp) };
        let w = Weights::open_dir(source, &cdir, stem).map_err(|e| e.to_string())?;
        let dest = if comp.is_empty() { out.to_path_buf() } else { out.join(&comp) };
        std::fs::create_dir_all(&dest).map_err(|e| format!("{}: {e}", dest.display()))?;
        let path = dest.join(format!("{stem}.safetensors"));
        let (bytes, s) = quant::quantize_weights(&w, format).map_err(|e| e.to_string())?;
        std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        sum.quantised += s.quantised;
        sum.kept += s.kept;
        sum.bytes_in += s.bytes_in;
        sum.bytes_out += s.bytes_out;
    }
    Ok(sum)
}

/// Copies every file under `dir` for which `keep(relative path)` holds.
fn copy_tree(source: &dyn FileSource, dir: &str, out: &Path, keep: &mut dyn FnMut(&str) -> bool) -> Result<(), String> {
    fn walk(source: &dyn FileSource, root: &str, rel: &str, out: &Path, keep: &mut dyn FnMut(&str) -> bool) -> Result<(), String> {
        let here = if rel.is_empty() { root.to_string() } else { join(root, rel) };
        for name in source.list(&here).map_err(|e| e.to_string())? {
            let rel_child = if rel.is_empty() { name.clone() } else { join(rel, &name) };
            let path = join(&here, &name);
            match source.read(&path) {
                Ok(blob) => {
                    if keep(&rel_child) {
                        let dest = out.join(&rel_child);
                        if let Some(p) = dest.parent() {
                            std::fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()))?;
                        }
                        std::fs::write(&dest, &blob[..]).map_err(|e| format!("{}: {e}", dest.display()))?;
                    }
                }
                // A folder (reading it fails): descend.
                Err(_) => walk(source, root, &rel_child, out, keep)?,
            }
        }
        Ok(())
    }
    walk(source, dir, "", out, keep)
}
