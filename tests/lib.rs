//! Shared helpers of the parity and integration tests: fixture paths, the backends to
//! run every case on, and error metrics.

use burn::tensor::Device;
use sana_video_core::device::{self, BackendKind};

/// `tests/fixtures`, or `$SANA_FIXTURES` (test binaries carried to another machine).
pub fn fixtures() -> std::path::PathBuf {
    match std::env::var_os("SANA_FIXTURES") {
        Some(dir) => dir.into(),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures"),
    }
}

/// The backends every numeric test runs on: the CPU (burn-flex) and wgpu (Mesa lavapipe
/// in CI). A backend that is compiled in but cannot open is a test failure, not a skip,
/// unless `SANA_TEST_BACKENDS` names the backends to use (e.g. `cpu` or `cuda`).
pub fn backends() -> Vec<(BackendKind, Device)> {
    let wanted: Vec<BackendKind> = match std::env::var("SANA_TEST_BACKENDS") {
        Ok(s) => s.split(',').map(|b| BackendKind::parse(b.trim()).expect("SANA_TEST_BACKENDS")).collect(),
        Err(_) => vec![BackendKind::Cpu, BackendKind::Wgpu],
    };
    wanted
        .into_iter()
        .map(|k| (k, device::create(k).unwrap_or_else(|e| panic!("backend {}: {e}", device::name(k)))))
        .collect()
}

/// Relative L2 error ‖a − b‖ / ‖b‖ (f64 accumulation) and max absolute error.
pub fn rel_l2(actual: &[f32], expected: &[f32]) -> (f64, f64) {
    assert_eq!(actual.len(), expected.len(), "length mismatch");
    let mut num = 0f64;
    let mut den = 0f64;
    let mut max_abs = 0f64;
    for (&a, &e) in actual.iter().zip(expected) {
        let diff = a as f64 - e as f64;
        num += diff * diff;
        den += (e as f64) * (e as f64);
        max_abs = max_abs.max(diff.abs());
        assert!(a.is_finite(), "non-finite output");
    }
    ((num / den.max(1e-300)).sqrt(), max_abs)
}

/// Deterministic pseudo-random f32 in [-1, 1) (SplitMix64), for kernel tests.
pub fn random_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A fresh scratch folder under the system temp dir (removed by the caller or left for
/// inspection on failure).
pub fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sana-video-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Copies a folder (one level of subfolders) to `to`.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// The f32 output of the DiT in `dir` (a `transformer/` folder, e.g. a quantised copy of the
/// fixture) on the `dit/p122_b2_mask` fixture's inputs, and the tensors the loader did not
/// expect.
pub fn dit_mask_case_output(dir: &str, device: &Device) -> (Vec<f32>, Vec<String>) {
    use burn::tensor::{DType, Tensor};
    use sana_video_core::io::safetensors::{tensor_from_f32, Weights};
    use sana_video_core::io::FsSource;
    use sana_video_core::models::dit::{SanaVideoTransformer3DModel, Timesteps};
    let case = fixtures().join("dit/p122_b2_mask");
    let inputs = Weights::open_files(&FsSource, &[case.join("inputs.safetensors").to_string_lossy().to_string()]).unwrap();
    let (model, report) = SanaVideoTransformer3DModel::load(&FsSource, dir, device, DType::F32).unwrap();
    let (x, xs) = inputs.read_f32("hidden_states").unwrap();
    let (y, ys) = inputs.read_f32("encoder_hidden_states").unwrap();
    let (t, _) = inputs.read_f32("timestep").unwrap();
    let mask = inputs.read_f32("encoder_attention_mask").unwrap().0;
    let x: Tensor<5> = tensor_from_f32(x, xs, device, DType::F32);
    let y: Tensor<3> = tensor_from_f32(y, ys, device, DType::F32);
    let out = model.forward(x, y, &Timesteps::PerSample(t), Some(&mask)).unwrap();
    (out.into_data().try_to_vec::<f32>().unwrap(), report.unexpected)
}
