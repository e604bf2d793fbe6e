//! CubeCL kernels for the linear-attention sums, compiled to WGSL / SPIR-V / CUDA.
//!
//! Baseline kernels: one thread per output element, f32 accumulation, inputs
//! read through their strides (so per-head views need no copy). Outputs are allocated
//! contiguous and written by linear index: a plain `empty` allocation may come back with
//! padded (pitched) row strides on CUDA, which linear writes would scatter. The fused,
//! tiled versions for the CUDA fast path come later; these set the contract.

use burn::backend::{backend_extension, tensor::FloatTensor, Backend, Dispatch};
use burn::tensor::{DType, Shape, Tensor as BTensor};
use burn_cubecl::{cubecl, ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor, CubeBackend};
use cubecl::{calculate_cube_count_elemwise, prelude::*};

use super::KvSums;

/// `kv[b, h, a, c] = Σ_n v[b, n, h, a]·(R_n φ(k))[b, n, h, c]` and, for `a == 0`,
/// `ksum[b, h, c] = Σ_n φ(k)[b, n, h, c]`. One thread per `kv` element.
#[cube(launch)]
fn kv_sums_kernel(
    k: &Tensor<f32>,
    v: &Tensor<f32>,
    cos: &Tensor<f32>,
    sin: &Tensor<f32>,
    kv: &mut Tensor<f32>,
    ksum: &mut Tensor<f32>,
) {
    let tokens = k.shape(1);
    let heads = k.shape(2);
    let d = k.shape(3);
    // Bound by the logical size from the shapes, independent of how the buffer was allocated.
    if ABSOLUTE_POS >= k.shape(0) * heads * d * d {
        terminate!();
    }
    let c = ABSOLUTE_POS % d;
    let a = (ABSOLUTE_POS / d) % d;
    let h = (ABSOLUTE_POS / (d * d)) % heads;
    let b = ABSOLUTE_POS / (d * d * heads);
    let p = c / 2;
    let odd = c % 2;

    let k_base = b * k.stride(0) + h * k.stride(2);
    let v_base = b * v.stride(0) + h * v.stride(2) + a * v.stride(3);
    let k0_off = (2 * p) * k.stride(3);
    let k1_off = (2 * p + 1) * k.stride(3);
    let mut acc = 0.0f32;
    let mut ks = 0.0f32;
    for n in 0..tokens {
        let kn = k_base + n * k.stride(1);
        let k0 = f32::max(k[kn + k0_off], 0.0);
        let k1 = f32::max(k[kn + k1_off], 0.0);
        let cs = cos[n * cos.stride(0) + p * cos.stride(1)];
        let sn = sin[n * sin.stride(0) + p * sin.stride(1)];
        let vv = v[v_base + n * v.stride(1)];
        let mut kr = k0 * sn + k1 * cs;
        let mut kc = k1;
        if odd == 0 {
            kr = k0 * cs - k1 * sn;
            kc = k0;
        }
        acc += vv * kr;
        ks += kc;
    }
    kv[ABSOLUTE_POS] = acc;
    if a == 0 {
        ksum[(b * heads + h) * d + c] = ks;
    }
}

/// `out[b, n, h, a] = Σ_c kv[b, h, a, c]·(R_n φ(q))[c] / (Σ_c ksum[b, h, c]·φ(q)[c] + eps)`.
/// One thread per output element.
#[cube(launch)]
fn apply_kernel(
    q: &Tensor<f32>,
    kv: &Tensor<f32>,
    ksum: &Tensor<f32>,
    cos: &Tensor<f32>,
    sin: &Tensor<f32>,
    out: &mut Tensor<f32>,
    eps: f32,
) {
    let tokens = q.shape(1);
    let heads = q.shape(2);
    let d = q.shape(3);
    // Bound by the logical size from the shapes, independent of how the buffer was allocated.
    if ABSOLUTE_POS >= q.shape(0) * tokens * heads * d {
        terminate!();
    }
    let a = ABSOLUTE_POS % d;
    let h = (ABSOLUTE_POS / d) % heads;
    let n = (ABSOLUTE_POS / (d * heads)) % tokens;
    let b = ABSOLUTE_POS / (d * heads * tokens);

    let q_base = b * q.stride(0) + n * q.stride(1) + h * q.stride(2);
    let kv_base = b * kv.stride(0) + h * kv.stride(1) + a * kv.stride(2);
    let ks_base = b * ksum.stride(0) + h * ksum.stride(1);
    let mut num = 0.0f32;
    let mut den = 0.0f32;
    let half = d / 2;
    for p in 0..half {
        let q0 = f32::max(q[q_base + (2 * p) * q.stride(3)], 0.0);
        let q1 = f32::max(q[q_base + (2 * p + 1) * q.stride(3)], 0.0);
        let cs = cos[n * cos.stride(0) + p * cos.stride(1)];
        let sn = sin[n * sin.stride(0) + p * sin.stride(1)];
        let r0 = q0 * cs - q1 * sn;
        let r1 = q0 * sn + q1 * cs;
        num += kv[kv_base + (2 * p) * kv.stride(3)] * r0 + kv[kv_base + (2 * p + 1) * kv.stride(3)] * r1;
        den += ksum[ks_base + (2 * p) * ksum.stride(2)] * q0 + ksum[ks_base + (2 * p + 1) * ksum.stride(2)] * q1;
    }
    out[ABSOLUTE_POS] = num / (den + eps);
}

/// The CubeCL half of the backend trait: the same body serves WGSL, SPIR-V and CUDA.
#[backend_extension(Cube)]
pub trait LinearAttentionKernels: Backend {
    fn la_kv_sums(
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    fn la_apply(
        q: FloatTensor<Self>,
        kv: FloatTensor<Self>,
        ksum: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        eps: f32,
    ) -> FloatTensor<Self>;
}

fn check_f32(name: &str, t: &CubeTensor) {
    assert_eq!(t.dtype, DType::F32, "linear attention kernel: {name} must be f32");
}

impl LinearAttentionKernels for CubeBackend {
    fn la_kv_sums(k: CubeTensor, v: CubeTensor, cos: CubeTensor, sin: CubeTensor) -> (CubeTensor, CubeTensor) {
        for (name, t) in [("k", &k), ("v", &v), ("cos", &cos), ("sin", &sin)] {
            check_f32(name, t);
        }
        let dims = k.meta.shape().clone();
        let (b, h, d) = (dims[0], dims[2], dims[3]);
        let client = k.client.clone();
        let device = k.device.clone();
        let kv = empty_device_contiguous_dtype(client.clone(), device.clone(), Shape::new([b, h, d, d]), DType::F32);
        let ksum = empty_device_contiguous_dtype(client.clone(), device, Shape::new([b, h, d]), DType::F32);
        let threads = b * h * d * d;
        let cube_dim = CubeDim::new(&client, threads);
        let cube_count = calculate_cube_count_elemwise(&client, threads, cube_dim);
        kv_sums_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            k.into_tensor_arg(),
            v.into_tensor_arg(),
            cos.into_tensor_arg(),
            sin.into_tensor_arg(),
            kv.clone().into_tensor_arg(),
            ksum.clone().into_tensor_arg(),
        );
        (kv, ksum)
    }

    fn la_apply(q: CubeTensor, kv: CubeTensor, ksum: CubeTensor, cos: CubeTensor, sin: CubeTensor, eps: f32) -> CubeTensor {
        for (name, t) in [("q", &q), ("kv", &kv), ("ksum", &ksum), ("cos", &cos), ("sin", &sin)] {
            check_f32(name, t);
        }
        let shape = q.meta.shape().clone();
        let client = q.client.clone();
        let out = empty_device_contiguous_dtype(client.clone(), q.device.clone(), shape.clone(), DType::F32);
        let threads = shape.num_elements();
        let cube_dim = CubeDim::new(&client, threads);
        let cube_count = calculate_cube_count_elemwise(&client, threads, cube_dim);
        apply_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            q.into_tensor_arg(),
            kv.into_tensor_arg(),
            ksum.into_tensor_arg(),
            cos.into_tensor_arg(),
            sin.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            eps,
        );
        out
    }
}

pub fn kv_sums(k: BTensor<4>, v: BTensor<4>, cos: BTensor<2>, sin: BTensor<2>) -> KvSums {
    let (kv, ksum) = <Dispatch as LinearAttentionKernels>::la_kv_sums(
        k.into_dispatch(),
        v.into_dispatch(),
        cos.into_dispatch(),
        sin.into_dispatch(),
    );
    KvSums { kv: BTensor::from_dispatch(kv), ksum: BTensor::from_dispatch(ksum) }
}

pub fn apply(q: BTensor<4>, s: &KvSums, cos: BTensor<2>, sin: BTensor<2>, eps: f32) -> BTensor<4> {
    BTensor::from_dispatch(<Dispatch as LinearAttentionKernels>::la_apply(
        q.into_dispatch(),
        s.kv.clone().into_dispatch(),
        s.ksum.clone().into_dispatch(),
        cos.into_dispatch(),
        sin.into_dispatch(),
        eps,
    ))
}
