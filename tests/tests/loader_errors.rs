//! A corpus of malformed checkpoints: each must give a clear error naming the file,
//! tensor or config field, and never panic.

use std::path::{Path, PathBuf};

use burn::tensor::{DType, Device};
use sana_video_core::io::FsSource;
use sana_video_core::models::dit::SanaVideoTransformer3DModel;
use sana_video_tests::{copy_dir, fixtures, scratch};

fn fresh(name: &str) -> PathBuf {
    let dir = scratch(name).join("transformer");
    copy_dir(&fixtures().join("dit/p122_b2_mask/transformer"), &dir);
    dir
}

fn load_err(dir: &Path) -> String {
    let device = Device::flex();
    match SanaVideoTransformer3DModel::load(&FsSource, &dir.to_string_lossy(), &device, DType::F32) {
        Ok(_) => panic!("loading {} should have failed", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn expect(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "error message {msg:?} should contain {p:?}");
    }
}

const WEIGHTS: &str = "diffusion_pytorch_model.safetensors";

/// Rewrites the safetensors header with `edit`, keeping the data section.
fn edit_header(path: &Path, edit: impl Fn(&mut serde_json::Map<String, serde_json::Value>)) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(header.as_object_mut().unwrap());
    let mut text = serde_json::to_vec(&header).unwrap();
    while text.len() % 8 != 0 {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(path, out).unwrap();
}

#[test]
fn missing_tensor_in_valid_file_is_named() {
    let dir = fresh("missing-valid");
    let path = dir.join(WEIGHTS);
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, safetensors::tensor::TensorView)> =
        st.tensors().into_iter().filter(|(n, _)| n != "caption_norm.weight").collect();
    let out = safetensors::serialize(kept, None).unwrap();
    std::fs::write(&path, out).unwrap();
    let msg = load_err(&dir);
    expect(&msg, &["caption_norm.weight", "missing", WEIGHTS]);
}

#[test]
fn wrong_shape_is_named() {
    let dir = fresh("shape");
    edit_header(&dir.join(WEIGHTS), |h| {
        let t = h.get_mut("scale_shift_table").unwrap();
        // [2, 32] -> [4, 16]: same byte count, wrong shape
        t["shape"] = serde_json::json!([4, 16]);
    });
    let msg = load_err(&dir);
    expect(&msg, &["scale_shift_table", "[4, 16]", "[2, 32]"]);
}

#[test]
fn truncated_file() {
    let dir = fresh("truncated");
    let path = dir.join(WEIGHTS);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    expect(&load_err(&dir), &[WEIGHTS, "truncated"]);
    std::fs::write(&path, &bytes[..5]).unwrap();
    expect(&load_err(&dir), &[WEIGHTS, "not a safetensors file"]);
}

#[test]
fn header_offsets_out_of_range() {
    let dir = fresh("offsets");
    edit_header(&dir.join(WEIGHTS), |h| {
        let t = h.get_mut("proj_out.bias").unwrap();
        t["data_offsets"] = serde_json::json!([0, 1_000_000_000u64]);
    });
    expect(&load_err(&dir), &[WEIGHTS, "corrupt"]);
}

#[test]
fn header_not_json() {
    let dir = fresh("notjson");
    let path = dir.join(WEIGHTS);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[9] = b'#';
    std::fs::write(&path, bytes).unwrap();
    expect(&load_err(&dir), &[WEIGHTS, "corrupt"]);
}

#[test]
fn unsupported_dtype_is_named() {
    let dir = fresh("dtype");
    edit_header(&dir.join(WEIGHTS), |h| {
        let t = h.get_mut("proj_out.bias").unwrap();
        // 16 f32 = 64 bytes = 64 u8 values... keep byte count: [16] F32 -> [64] U8 would change
        // the shape too; use I32 (4 bytes) so shape and size stay valid.
        t["dtype"] = serde_json::json!("I32");
    });
    expect(&load_err(&dir), &["proj_out.bias", "dtype"]);
}

fn edit_config(dir: &Path, edit: impl Fn(&mut serde_json::Map<String, serde_json::Value>)) {
    let path = dir.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(cfg.as_object_mut().unwrap());
    std::fs::write(&path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
}

#[test]
fn bad_and_unsupported_configs() {
    let dir = fresh("config");
    std::fs::write(dir.join("config.json"), "{ not json").unwrap();
    expect(&load_err(&dir), &["config.json", "invalid config"]);

    let cases: Vec<(&str, serde_json::Value, &[&str])> = vec![
        ("_class_name", serde_json::json!("WanTransformer3DModel"), &["_class_name", "WanTransformer3DModel"]),
        ("guidance_embeds", serde_json::json!(true), &["guidance_embeds"]),
        ("qk_norm", serde_json::json!("layer_norm"), &["qk_norm"]),
        ("patch_size", serde_json::json!([1, 0, 2]), &["patch_size"]),
        ("num_layers", serde_json::json!("two"), &["invalid config", "num_layers"]),
        ("cross_attention_dim", serde_json::json!(64), &["cross_attention_dim"]),
    ];
    for (key, value, parts) in cases {
        let dir = fresh(&format!("config-{key}"));
        edit_config(&dir, |c| {
            c.insert(key.into(), value.clone());
        });
        let msg = load_err(&dir);
        expect(&msg, parts);
        assert!(msg.contains("config.json"), "{msg}");
    }
    // Unknown extra fields are tolerated.
    let dir = fresh("config-extra");
    edit_config(&dir, |c| {
        c.insert("some_future_field".into(), serde_json::json!([1, 2, 3]));
    });
    SanaVideoTransformer3DModel::load(&FsSource, &dir.to_string_lossy(), &Device::flex(), DType::F32).unwrap();
}

#[test]
fn config_changing_shapes_is_caught_before_compute() {
    // A config that disagrees with the weights (more layers than stored) fails in the
    // up-front tensor check, naming the first missing tensor.
    let dir = fresh("config-layers");
    edit_config(&dir, |c| {
        c.insert("num_layers".into(), serde_json::json!(3));
    });
    expect(&load_err(&dir), &["transformer_blocks.2.", "missing"]);
}

#[test]
fn sharded_index_problems() {
    let base = fixtures().join("dit/p122_single_frame_sharded/transformer");
    let dir = scratch("shards").join("transformer");
    copy_dir(&base, &dir);
    let index = dir.join("diffusion_pytorch_model.safetensors.index.json");
    let text = std::fs::read_to_string(&index).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let shard = v["weight_map"]["proj_out.bias"].as_str().unwrap().to_string();
    std::fs::remove_file(dir.join(&shard)).unwrap();
    expect(&load_err(&dir), &[&shard, "missing"]);

    copy_dir(&base, &dir);
    v["weight_map"]["proj_out.bias"] = serde_json::json!("../../etc/passwd");
    std::fs::write(&index, serde_json::to_vec(&v).unwrap()).unwrap();
    expect(&load_err(&dir), &["proj_out.bias", "outside"]);
}

#[test]
fn missing_folder_and_files() {
    let dir = scratch("nothing");
    let msg = load_err(&dir.join("does-not-exist"));
    assert!(msg.contains("does-not-exist"), "{msg}");
    let dir = fresh("noweights");
    std::fs::remove_file(dir.join(WEIGHTS)).unwrap();
    expect(&load_err(&dir), &["no weights", "diffusion_pytorch_model.safetensors"]);
}
