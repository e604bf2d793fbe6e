//! CubeCL path of the linear-attention sums, compiled to WGSL / SPIR-V / CUDA.
//!
//! The sums: one kernel (`kv_operands_kernel`) reads `k` and `v` once and writes the `KV`
//! GEMM's operands in the layout and dtype it takes (R·φ(k) transposed per token split, v per
//! split and head) plus per-tile sums of φ(k); the reduction over tokens then goes through
//! the device's tuned matmul (`crate::matmul`; f32 accumulation, operands rounded only for a
//! 16-bit model, see `gemm` and `kv_sums`): `KVᵀ = Σ_splits (R·φ(k))ᵀ·v` is one strided batch
//! of GEMMs with `d x d` (112 x 112) outputs. The older path (`SANA_LA_KV=gemm`) wrote φ(k) and
//! R·φ(k) in f32 `[B, H, N, d]`, cast v, and its GEMM's operands then needed a transposing
//! copy (BENCHMARKS.md, ninth run). The first kernels here gave each output element its own
//! thread and a serial loop over all N tokens (32k at 480p), which left the GPU mostly idle.
//!
//! The apply side, `o = KV·R·φ(q) / (⟨ksum, φ(q)⟩ + eps)`, is one kernel
//! (`apply_fused_kernel`, exact f32) where the head dim is a multiple of 4: each token's output
//! needs only its own `q` and the head's `d x d` sums, so the four passes over f32 `[B, H, N,
//! d]` intermediates it replaces (φ/RoPE of `q`, the `num` and `den` GEMMs, the division)
//! were memory traffic the GPU did not need (BENCHMARKS.md, eighth run).

use burn::backend::{backend_extension, tensor::FloatTensor, Backend, Dispatch};
use burn::tensor::{DType, Shape, Tensor as BTensor};
use burn_cubecl::{cubecl, ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor, CubeBackend};
use cubecl::ir::ElemType;

use crate::elem_type;
use cubecl::{calculate_cube_count_elemwise, prelude::*};

use super::{to_f32, KvSums};
use crate::matmul::{matmul, matmul_fast_f32};
use crate::Impl;

/// The sums' f32 GEMMs: exact f32 for an f32 model; on TF32 tensor cores for a 16-bit one,
/// whose attention output is rounded to 8 (bf16) or 11 (f16) mantissa bits anyway: φ(k), φ(q)
/// and v are exact in TF32 there, only the rotated operands and the sums are rounded (2^-11).
/// On CUDA this made the sums' GEMMs several times faster (BENCHMARKS.md). Elsewhere (wgpu)
/// `matmul_fast_f32` is exact f32, and `kv_sums` runs its `KV` GEMM on f16 operands instead.
fn gemm<const D: usize>(a: BTensor<D>, b: BTensor<D>, fast: bool) -> BTensor<D> {
    if fast { matmul_fast_f32(a, b, Impl::Auto) } else { matmul(a, b, Impl::Auto) }
}

/// φ of channel pair `(2p, 2p+1)` of `x` `[B, N, H, d]` at sample `b`, token `n`, head `h`
/// (zeros past the last token), and its rotation R(n)·φ: what every kernel here stages.
#[derive(CubeType)]
struct PhiPair {
    x0: f32,
    x1: f32,
    r0: f32,
    r1: f32,
}

#[cube]
fn phi_pair<F: Float>(x: &Tensor<F>, cos: &Tensor<f32>, sin: &Tensor<f32>, b: usize, n: usize, h: usize, p: usize) -> PhiPair {
    let mut x0 = 0.0f32;
    let mut x1 = 0.0f32;
    let mut cs = 1.0f32;
    let mut sn = 0.0f32;
    if n < x.shape(1) {
        let base = b * x.stride(0) + n * x.stride(1) + h * x.stride(2);
        x0 = f32::max(f32::cast_from(x[base + (2 * p) * x.stride(3)]), 0.0);
        x1 = f32::max(f32::cast_from(x[base + (2 * p + 1) * x.stride(3)]), 0.0);
        cs = cos[n * cos.stride(0) + p * cos.stride(1)];
        sn = sin[n * sin.stride(0) + p * sin.stride(1)];
    }
    PhiPair { x0, x1, r0: x0 * cs - x1 * sn, r1: x0 * sn + x1 * cs }
}

/// For `x` `[B, N, H, d]` (any strides, any float dtype): `phi = φ(x)` and `rot = R_n·φ(x)`,
/// both f32 `[B, H, N, d]` contiguous. One thread per channel pair `(2p, 2p+1)`.
#[cube(launch, address_type = "dynamic")]
fn relu_rope_kernel<F: Float>(
    x: &Tensor<F>,
    cos: &Tensor<f32>,
    sin: &Tensor<f32>,
    phi: &mut Tensor<f32>,
    rot: &mut Tensor<f32>,
    #[define(F)] _dtype: ElemType,
) {
    let tokens = x.shape(1);
    let heads = x.shape(2);
    let half = x.shape(3) / 2;
    if ABSOLUTE_POS >= x.shape(0) * heads * tokens * half {
        terminate!();
    }
    // Output order [B, H, N, d/2 pairs]: consecutive threads write consecutive pairs.
    let p = ABSOLUTE_POS % half;
    let n = (ABSOLUTE_POS / half) % tokens;
    let h = (ABSOLUTE_POS / (half * tokens)) % heads;
    let b = ABSOLUTE_POS / (half * tokens * heads);
    let v = phi_pair(x, cos, sin, b, n, h, p);
    let o = 2 * ABSOLUTE_POS;
    phi[o] = v.x0;
    phi[o + 1] = v.x1;
    rot[o] = v.r0;
    rot[o + 1] = v.r1;
}

/// `out[b, n, h, c] = num[b, h, n, c] / (den[b, h, n] + eps)` in `out`'s dtype: the division,
/// the head merge back to token-major order and the cast in one pass (they were three, over
/// f32 `[B, H, N, d]` tensors). One thread per output element.
#[cube(launch, address_type = "dynamic")]
fn finish_kernel<F: Float>(num: &Tensor<f32>, den: &Tensor<f32>, out: &mut Tensor<F>, eps: f32, #[define(F)] _dtype: ElemType) {
    let heads = num.shape(1);
    let tokens = num.shape(2);
    let d = num.shape(3);
    if ABSOLUTE_POS >= out.len() {
        terminate!();
    }
    let c = ABSOLUTE_POS % d;
    let h = (ABSOLUTE_POS / d) % heads;
    let bn = ABSOLUTE_POS / (d * heads);
    let n = bn % tokens;
    let b = bn / tokens;
    let row = (b * heads + h) * tokens + n;
    out[ABSOLUTE_POS] = F::cast_from(num[row * d + c] / (den[row] + eps));
}

/// The whole apply side in one pass (the default where `d` is a multiple of 4 up to 508):
/// `o_n = KV·R(n)·φ(q_n) / (⟨ksum, φ(q_n)⟩ + eps)`, exact f32 inside, rounded once to `F`.
/// It replaces φ/RoPE of `q` into two f32 `[B, H, N, d]` tensors, the `num` and `den` GEMMs
/// and the finishing division (four passes over f32 intermediates) with one read of `q` and
/// one write of the output.
///
/// One cube per (sample and head `bh`, `groups·t` tokens). First R·φ(q) and φ(q) of its tokens
/// go to shared memory channel-major, four consecutive tokens to a vector (`sh[c·quads + j]`
/// holds channel `c` of tokens `4j .. 4j + 4`; R·φ(q) in rows `0..d`, φ(q) in `d..2d`): each
/// unit of that phase stages one channel pair of four tokens, consecutive units consecutive
/// token quads, so a warp's stores go to consecutive vectors. Then unit `(g, av)` of the first
/// `groups·dv` accumulates output channels `4·av .. 4·av + 4` of the `t` tokens of group `g`:
/// per channel `c`, one `KVᵀ` row vector (`kvt[c]`, L1-resident: `d x d` f32 per head) and
/// `t / 4` shared vectors feed `4·t` FMAs. Nsight Compute (sixth session) found the previous
/// layout (a scalar shared load per token, four tokens a unit) bound by the L1/shared pipe
/// (74% busy) rather than the FMAs; `t = 8` halves the loads per FMA. The next `quads` units
/// sum one quad of tokens' denominators each.
#[cube(launch, address_type = "dynamic")]
#[allow(clippy::too_many_arguments)]
fn apply_fused_kernel<F: Float, N: Size>(
    q: &Tensor<F>,
    cos: &Tensor<f32>,
    sin: &Tensor<f32>,
    kvt: &Tensor<Vector<f32, N>>,
    ksum: &Tensor<f32>,
    out: &mut Tensor<Vector<F, N>>,
    eps: f32,
    #[comptime] d: usize,
    #[comptime] t: usize,
    #[comptime] groups: usize,
    #[define(F)] _dtype: ElemType,
) {
    let tokens = q.shape(1);
    let heads = q.shape(2);
    let rows = comptime!(groups * t);
    let quads = comptime!(groups * t / 4);
    let tq = comptime!(t / 4);
    let dv = comptime!(d / 4);
    let pairs = comptime!(d / 2);
    let tiles = tokens.div_ceil(rows);
    let cube = CUBE_POS;
    // The same for every unit of a cube: no unit leaves before another's barrier.
    if cube >= q.shape(0) * heads * tiles {
        terminate!();
    }
    let bh = cube / tiles;
    let (b, h) = (bh / heads, bh % heads);
    let n0 = (cube % tiles) * rows;
    let mut sh = Shared::<[Vector<f32, N>]>::new_slice(comptime!(2 * d * quads));
    let mut dens = Shared::<[Vector<f32, N>]>::new_slice(quads);
    let u = UNIT_POS as usize;

    let mut e = u;
    while e < quads * pairs {
        let (p, j) = (e / quads, e % quads);
        let mut r0 = Vector::<f32, N>::empty();
        let mut r1 = Vector::<f32, N>::empty();
        let mut x0 = Vector::<f32, N>::empty();
        let mut x1 = Vector::<f32, N>::empty();
        #[unroll]
        for l in 0..4usize {
            let v = phi_pair(q, cos, sin, b, n0 + 4 * j + l, h, p);
            r0.insert(l, v.r0);
            r1.insert(l, v.r1);
            x0.insert(l, v.x0);
            x1.insert(l, v.x1);
        }
        sh[2 * p * quads + j] = r0;
        sh[(2 * p + 1) * quads + j] = r1;
        sh[(d + 2 * p) * quads + j] = x0;
        sh[(d + 2 * p + 1) * quads + j] = x1;
        e += CUBE_DIM as usize;
    }
    sync_cube();

    let num_units = groups * dv;
    let (g, av) = (u / dv, u % dv);
    let mut acc = Array::<Vector<f32, N>>::new(t);
    #[unroll]
    for i in 0..t {
        acc[i] = Vector::<f32, N>::new(0.0);
    }
    if u < num_units {
        let kbase = bh * d * dv + av;
        for c in 0..d {
            let kv = kvt[kbase + c * dv];
            #[unroll]
            for k in 0..tq {
                let x = sh[c * quads + g * tq + k];
                #[unroll]
                for l in 0..4usize {
                    acc[k * 4 + l] += kv * Vector::<f32, N>::new(x.extract(l));
                }
            }
        }
    } else if u < num_units + quads {
        let j = u - num_units;
        let mut den = Vector::<f32, N>::new(0.0);
        for c in 0..d {
            den += Vector::<f32, N>::new(ksum[bh * d + c]) * sh[(d + c) * quads + j];
        }
        dens[j] = den;
    }
    sync_cube();
    if u < num_units {
        #[unroll]
        for k in 0..tq {
            let dq = dens[g * tq + k];
            #[unroll]
            for l in 0..4usize {
                let n = n0 + g * t + k * 4 + l;
                if n < tokens {
                    let den = Vector::<f32, N>::new(dq.extract(l) + eps);
                    out[((b * tokens + n) * heads + h) * dv + av] = Vector::<F, N>::cast_from(acc[k * 4 + l] / den);
                }
            }
        }
    }
}

/// The `KV` sum's operands in one pass over `k` and `v` (`[B, N, H, d]`, any strides, one
/// dtype), for `S` token splits of `per` tokens (`S·per ≥ N`; tokens past N are zeros):
/// `rot_t` `[B, S, H, d, per]` (R·φ(k) transposed within each split), `vs`
/// `[B, S, H, per, d]` (v), both in `O`, so `KVᵀ = Σ_splits rot_t · vs` is one strided
/// batch of `B·S·H` GEMMs; and `ksum_part` f32 `[B, H, tiles, d]`, Σ φ(k) over each tile of
/// `t` tokens. One cube per tile of one head: R·φ(k) and φ(k) are staged in shared memory
/// (`[d][t + 1]` each) and written out token-contiguous, so reads and writes are coalesced.
#[cube(launch, address_type = "dynamic")]
#[allow(clippy::too_many_arguments)]
fn kv_operands_kernel<F: Float, O: Float>(
    k: &Tensor<F>,
    v: &Tensor<F>,
    cos: &Tensor<f32>,
    sin: &Tensor<f32>,
    rot_t: &mut Tensor<O>,
    vs: &mut Tensor<O>,
    ksum_part: &mut Tensor<f32>,
    splits: u32,
    per: u32,
    #[comptime] d: usize,
    #[comptime] t: usize,
    #[define(F, O)] _dtypes: [ElemType; 2],
) {
    let tokens = k.shape(1);
    let heads = k.shape(2);
    let (splits, per) = (splits as usize, per as usize);
    let padded = splits * per;
    let tiles = padded.div_ceil(t);
    let cube = CUBE_POS;
    // The same for every unit of a cube: no unit leaves before another's barrier.
    if cube >= k.shape(0) * heads * tiles {
        terminate!();
    }
    let bh = cube / tiles;
    let (b, h) = (bh / heads, bh % heads);
    let tile = cube % tiles;
    let n0 = tile * t;
    let stride = comptime!(t + 1);
    // R·φ(k) rows (channel-major) first, then φ(k) rows.
    let mut sh = Shared::<[f32]>::new_slice(comptime!(2 * d * (t + 1)));
    let u = UNIT_POS as usize;
    let pairs = comptime!(d / 2);
    let mut e = u;
    while e < t * pairs {
        let (r, p) = (e / pairs, e % pairs);
        let v = phi_pair(k, cos, sin, b, n0 + r, h, p);
        sh[(2 * p) * stride + r] = v.r0;
        sh[(2 * p + 1) * stride + r] = v.r1;
        sh[(d + 2 * p) * stride + r] = v.x0;
        sh[(d + 2 * p + 1) * stride + r] = v.x1;
        e += CUBE_DIM as usize;
    }
    // v rows of this tile, channel-contiguous as read.
    let mut e = u;
    while e < t * d {
        let (r, c) = (e / d, e % d);
        let n = n0 + r;
        if n < padded {
            let mut x = O::new(0.0);
            if n < tokens {
                x = O::cast_from(v[b * v.stride(0) + n * v.stride(1) + h * v.stride(2) + c * v.stride(3)]);
            }
            let (s, m) = (n / per, n % per);
            vs[(((b * splits + s) * heads + h) * per + m) * d + c] = x;
        }
        e += CUBE_DIM as usize;
    }
    sync_cube();
    let mut e = u;
    while e < d * t {
        let (c, r) = (e / t, e % t);
        let n = n0 + r;
        if n < padded {
            let (s, m) = (n / per, n % per);
            rot_t[(((b * splits + s) * heads + h) * d + c) * per + m] = O::cast_from(sh[c * stride + r]);
        }
        e += CUBE_DIM as usize;
    }
    // Σ φ(k) over the tile, a channel per unit (head dims past the cube's units wrap).
    let mut c = u;
    while c < d {
        let mut acc = 0.0f32;
        for r in 0..t {
            acc += sh[(d + c) * stride + r];
        }
        ksum_part[(bh * tiles + tile) * d + c] = acc;
        c += CUBE_DIM as usize;
    }
}

/// Tokens per cube of [`kv_operands_kernel`] for head dim `d`: two f32 `[d][t + 1]` tiles in
/// WebGPU's 16 KiB of workgroup storage, at most 32; `None` below 4 (d above 409), where
/// `kv_sums` keeps its older path. (48 tokens in CUDA's 48 KiB, for longer runs of tokens in
/// the transposed rows it writes, was slower on an H200: 0.0250 against 0.0221 s a 480p
/// forward, BENCHMARKS.md eleventh run.)
pub fn kv_tile_tokens(d: usize) -> Option<usize> {
    if d == 0 || d % 2 != 0 {
        return None;
    }
    let t = (crate::WEBGPU_SHARED_BYTES / 4 / (2 * d)).saturating_sub(1).min(32);
    (t >= 4).then_some(t)
}

/// Units per cube of [`kv_operands_kernel`].
const KV_UNITS: u32 = 256;

/// Shared bytes and units a cube of [`apply_fused_kernel`] takes for head dim `d` with `t`
/// tokens a unit and `groups` token groups: R·φ(q) and φ(q) as `2d` rows of `groups·t / 4`
/// f32 vectors, a denominator vector per quad; `groups·d / 4` accumulating units and one per
/// quad for the denominators.
fn apply_cost(d: usize, [t, groups]: [usize; 2]) -> (usize, usize) {
    let quads = groups * t / 4;
    (16 * quads * (2 * d + 1), groups * (d / 4) + quads)
}

/// Whether tile `[t, groups]` is valid for head dim `d` and fits `shared` bytes and `units`
/// units a cube.
pub fn apply_tile_fits(d: usize, tile: [usize; 2], shared: usize, units: usize) -> bool {
    let (bytes, n) = apply_cost(d, tile);
    d > 0 && d % 4 == 0 && tile_valid(tile) && bytes <= shared && n <= units
}

/// `t` a multiple of 4 in 4..=16 tokens a unit, 1..=8 token groups a cube.
fn tile_valid([t, groups]: [usize; 2]) -> bool {
    t % 4 == 0 && (4..=16).contains(&t) && (1..=8).contains(&groups)
}

/// `SANA_LA_APPLY_TILE` parsed (read once; a malformed value warns and is ignored).
fn forced_apply_tile() -> Option<[usize; 2]> {
    static FORCED: std::sync::OnceLock<Option<[usize; 2]>> = std::sync::OnceLock::new();
    *FORCED.get_or_init(|| {
        let v = std::env::var("SANA_LA_APPLY_TILE").ok()?;
        let p: Option<Vec<usize>> = v.split(',').map(|x| x.trim().parse().ok()).collect();
        match p.as_deref() {
            Some(&[t, g]) if tile_valid([t, g]) => Some([t, g]),
            _ => {
                eprintln!("warning: SANA_LA_APPLY_TILE={v:?} is not `t,groups` (t 4, 8, 12 or 16; groups 1 to 8); using the default");
                None
            }
        }
    })
}

/// The tile `[tokens a unit, token groups a cube]` of [`apply_fused_kernel`] for head dim `d`
/// on a device with `shared` bytes of workgroup storage and `units` units a cube: with `wide`
/// (CUDA) `[8, 4]` where it fits (28.8 KB at d = 112), else four tokens a unit with as many
/// groups (at most 4) as fit; `None` where not one group of four tokens fits. On an H200
/// (BENCHMARKS.md, eleventh run) `[8, 4]` took 0.0375 s a 480p forward against 0.0411 for
/// `[4, 4]` on CUDA, but made the Vulkan forward 38 ms slower, hence CUDA only.
/// `SANA_LA_APPLY_TILE=t,groups` overrides it where that fits (read once; to compare on a GPU).
pub fn apply_tile(d: usize, shared: usize, units: usize, wide: bool) -> Option<[usize; 2]> {
    let fits = |tile| apply_tile_fits(d, tile, shared, units);
    if let Some(tile) = forced_apply_tile().filter(|&tile| fits(tile)) {
        return Some(tile);
    }
    if wide && fits([8, 4]) {
        return Some([8, 4]);
    }
    (1..=4).rev().map(|g| [4, g]).find(|&tile| fits(tile))
}

/// The largest workgroup storage [`apply_tile`] plans with: 48 KiB, what CUDA grants a kernel
/// without an opt-in.
const APPLY_SHARED_CAP: usize = 48 * 1024;

/// The CubeCL half of the backend trait: the same body serves WGSL, SPIR-V and CUDA.
#[backend_extension(Cube)]
pub trait LinearAttentionKernels: Backend {
    /// `(φ(x), R·φ(x))` of `x` `[B, N, H, d]`, each f32 `[B, H, N, d]`.
    fn la_relu_rope(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>);
    /// `num / (den + eps)` (f32 `[B, H, N, d]` and `[B, H, N, 1]`) as `[B, N, H, d]` in `dtype`.
    fn la_finish(num: FloatTensor<Self>, den: FloatTensor<Self>, eps: f32, dtype: DType) -> FloatTensor<Self>;
    /// The fused apply ([`apply_fused_kernel`]): `q` `[B, N, H, d]`, `kvt` f32 `[B, H, d, d]`
    /// (`KVᵀ`, any strides), `ksum` f32 `[B, H, d]`; `[B, N, H, d]` in `dtype`. `tile` must pass
    /// [`apply_tile_fits`] on the device.
    #[allow(clippy::too_many_arguments)]
    fn la_apply_fused(q: FloatTensor<Self>, kvt: FloatTensor<Self>, ksum: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>, eps: f32, dtype: DType, tile: [usize; 2]) -> FloatTensor<Self>;
    /// [`kv_operands_kernel`]: `(rot_t, vs, ksum_part)` for `k`, `v` `[B, N, H, d]` (one
    /// dtype), `splits` of `per` tokens, operands in `dtype`. `d` must pass [`kv_tile_tokens`].
    fn la_kv_operands(
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        splits: usize,
        per: usize,
        dtype: DType,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl LinearAttentionKernels for CubeBackend {
    fn la_relu_rope(x: CubeTensor, cos: CubeTensor, sin: CubeTensor) -> (CubeTensor, CubeTensor) {
        for (name, t) in [("cos", &cos), ("sin", &sin)] {
            assert_eq!(t.dtype, DType::F32, "linear attention kernel: {name} must be f32");
        }
        let dtype = x.dtype;
        let dims = x.meta.shape().clone();
        let (b, n, h, d) = (dims[0], dims[1], dims[2], dims[3]);
        let client = x.client.clone();
        let device = x.device.clone();
        // Outputs are allocated contiguous and written by linear index: a plain `empty` may
        // come back with pitched rows on CUDA, which linear writes would scatter.
        let shape = Shape::new([b, h, n, d]);
        let phi = empty_device_contiguous_dtype(client.clone(), device.clone(), shape.clone(), DType::F32);
        let rot = empty_device_contiguous_dtype(client.clone(), device, shape, DType::F32);
        let threads = b * n * h * d / 2;
        let cube_dim = CubeDim::new(&client, threads);
        let cube_count = calculate_cube_count_elemwise(&client, threads, cube_dim);
        let address = [x.required_address_type(), phi.required_address_type()].into_iter().max().unwrap_or_default();
        relu_rope_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            address,
            x.into_tensor_arg(),
            cos.into_tensor_arg(),
            sin.into_tensor_arg(),
            phi.clone().into_tensor_arg(),
            rot.clone().into_tensor_arg(),
            elem_type(dtype),
        );
        (phi, rot)
    }

    fn la_finish(num: CubeTensor, den: CubeTensor, eps: f32, dtype: DType) -> CubeTensor {
        let (num, den) = (burn_cubecl::kernel::into_contiguous(num), burn_cubecl::kernel::into_contiguous(den));
        let dims = num.meta.shape().clone();
        let (b, h, n, d) = (dims[0], dims[1], dims[2], dims[3]);
        let client = num.client.clone();
        let out = empty_device_contiguous_dtype(client.clone(), num.device.clone(), Shape::new([b, n, h, d]), dtype);
        let threads = b * n * h * d;
        let cube_dim = CubeDim::new(&client, threads);
        let cube_count = calculate_cube_count_elemwise(&client, threads, cube_dim);
        let address = [num.required_address_type(), out.required_address_type()].into_iter().max().unwrap_or_default();
        finish_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            address,
            num.into_tensor_arg(),
            den.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            eps,
            elem_type(dtype),
        );
        out
    }

    fn la_apply_fused(q: CubeTensor, kvt: CubeTensor, ksum: CubeTensor, cos: CubeTensor, sin: CubeTensor, eps: f32, dtype: DType, tile: [usize; 2]) -> CubeTensor {
        for (name, t) in [("kvt", &kvt), ("ksum", &ksum), ("cos", &cos), ("sin", &sin)] {
            assert_eq!(t.dtype, DType::F32, "linear attention kernel: {name} must be f32");
        }
        // The kernel reads q in the output's dtype (one `F`) and trusts these shapes.
        assert_eq!(q.dtype, dtype, "la_apply_fused: q must be in the output dtype");
        let dims = q.meta.shape().clone();
        let (b, n, h, d) = (dims[0], dims[1], dims[2], dims[3]);
        let (shared, units) = device_limits(&q);
        assert!(apply_tile_fits(d, tile, shared, units), "la_apply_fused: tile {tile:?} does not fit head dim {d} on this device");
        let [t, groups] = tile;
        assert_eq!(kvt.meta.shape().as_slice(), [b, h, d, d], "la_apply_fused: kvt shape");
        assert_eq!(ksum.meta.shape().as_slice(), [b, h, d], "la_apply_fused: ksum shape");
        for t in [&cos, &sin] {
            assert_eq!(t.meta.shape().as_slice(), [n, d / 2], "la_apply_fused: RoPE table shape");
        }
        // KVᵀ (the caller's view), so a unit's four output channels are one vector of a row.
        let kvt = burn_cubecl::kernel::into_contiguous(kvt);
        let ksum = burn_cubecl::kernel::into_contiguous(ksum);
        let client = q.client.clone();
        let out = empty_device_contiguous_dtype(client.clone(), q.device.clone(), Shape::new([b, n, h, d]), dtype);
        let rows = groups * t;
        let address = [q.required_address_type(), out.required_address_type()].into_iter().max().unwrap_or_default();
        apply_fused_kernel::launch(
            &client,
            crate::rows::cube_grid(b * h * n.div_ceil(rows)),
            CubeDim::new_1d(apply_cost(d, tile).1 as u32),
            address,
            4,
            q.into_tensor_arg(),
            cos.into_tensor_arg(),
            sin.into_tensor_arg(),
            kvt.into_tensor_arg(),
            ksum.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            eps,
            d,
            t,
            groups,
            elem_type(dtype),
        );
        out
    }

    fn la_kv_operands(k: CubeTensor, v: CubeTensor, cos: CubeTensor, sin: CubeTensor, splits: usize, per: usize, dtype: DType) -> (CubeTensor, CubeTensor, CubeTensor) {
        for (name, t) in [("cos", &cos), ("sin", &sin)] {
            assert_eq!(t.dtype, DType::F32, "linear attention kernel: {name} must be f32");
        }
        assert_eq!(k.dtype, v.dtype, "la_kv_operands: k and v dtypes differ");
        let dims = k.meta.shape().clone();
        let (b, n, h, d) = (dims[0], dims[1], dims[2], dims[3]);
        assert_eq!(v.meta.shape().as_slice(), [b, n, h, d], "la_kv_operands: v shape");
        for t in [&cos, &sin] {
            assert_eq!(t.meta.shape().as_slice(), [n, d / 2], "la_kv_operands: RoPE table shape");
        }
        assert!(splits * per >= n, "la_kv_operands: {splits} splits of {per} tokens do not cover {n}");
        let t = kv_tile_tokens(d).expect("la_kv_operands: head dim not supported");
        let tiles = (splits * per).div_ceil(t);
        let client = k.client.clone();
        let device = k.device.clone();
        let rot_t = empty_device_contiguous_dtype(client.clone(), device.clone(), Shape::new([b, splits, h, d, per]), dtype);
        let vs = empty_device_contiguous_dtype(client.clone(), device.clone(), Shape::new([b, splits, h, per, d]), dtype);
        let ksum_part = empty_device_contiguous_dtype(client.clone(), device, Shape::new([b, h, tiles, d]), DType::F32);
        let address = [k.required_address_type(), v.required_address_type(), rot_t.required_address_type(), vs.required_address_type()].into_iter().max().unwrap_or_default();
        let in_dtype = k.dtype;
        kv_operands_kernel::launch(
            &client,
            crate::rows::cube_grid(b * h * tiles),
            CubeDim::new_1d(KV_UNITS),
            address,
            k.into_tensor_arg(),
            v.into_tensor_arg(),
            cos.into_tensor_arg(),
            sin.into_tensor_arg(),
            rot_t.clone().into_tensor_arg(),
            vs.clone().into_tensor_arg(),
            ksum_part.clone().into_tensor_arg(),
            splits as u32,
            per as u32,
            d,
            t,
            [elem_type(in_dtype), elem_type(dtype)],
        );
        (rot_t, vs, ksum_part)
    }
}

fn relu_rope(x: BTensor<4>, cos: BTensor<2>, sin: BTensor<2>) -> (BTensor<4>, BTensor<4>) {
    let (phi, rot) = <Dispatch as LinearAttentionKernels>::la_relu_rope(x.into_dispatch(), cos.into_dispatch(), sin.into_dispatch());
    (BTensor::from_dispatch(phi), BTensor::from_dispatch(rot))
}

/// Token splits for the `vᵀ·R·φ(k)` reduction: its output is only `B·H` tiles of `d x d`
/// while the reduction runs over every token, so one GEMM leaves most of a large GPU idle.
/// Splitting the tokens into `S` batches of partial sums (then adding them) multiplies the
/// parallel work by `S`; about 1k tokens a split, at most 32.
/// A split count that divides `n` is preferred (down to half the target): on the older path
/// (`SANA_LA_KV=gemm`) padding costs a copy of both operands; the operand kernel writes the
/// padding's zeros itself.
fn token_splits(n: usize) -> usize {
    let target = (n / 1024).clamp(1, 32);
    (target.div_ceil(2)..=target).rev().find(|s| n % s == 0).unwrap_or(target)
}

pub fn kv_sums(k: BTensor<4>, v: BTensor<4>, cos: BTensor<2>, sin: BTensor<2>) -> KvSums {
    kv_sums_with(k, v, cos, sin, fused_kv_default())
}

/// [`kv_sums`] by the path asked for: `fused` ([`kv_sums_fused`], taken only where the head
/// dim fits its tiles and k and v share a dtype) or the older one.
pub fn kv_sums_with(k: BTensor<4>, v: BTensor<4>, cos: BTensor<2>, sin: BTensor<2>, fused: bool) -> KvSums {
    let [b, n, h, d] = k.dims();
    let dev = k.device();
    let fast = k.dtype() != DType::F32 && v.dtype() != DType::F32;
    // Where cuBLASLt's TF32 is not (every wgpu device: WGSL, SPIR-V; an f16 model, wgpu has
    // no bf16), the `KV` GEMM of an f16 model takes f16 operands with f32 accumulation: v is
    // f16 already, and R·φ(k) rounds to f16 as TF32 rounds it on CUDA (10 explicit mantissa
    // bits; its size is at most √2·max|k|, which overflows f16 only for |k| above ~46,000,
    // far past what the RMS-normed keys reach). On Vulkan that runs on cooperative matrices
    // instead of the exact-f32 unit routine; on WGSL both are unit routines.
    let half_kv = fast && k.dtype() == DType::F16 && v.dtype() == DType::F16 && !crate::is_cuda_device(&dev);
    if fused && k.dtype() == v.dtype() && kv_tile_tokens(d).is_some() {
        return kv_sums_fused(k, v, cos, sin, fast, half_kv);
    }
    let (phi, rot) = relu_rope(k, cos, sin);
    crate::mark(&dev, "la.relu_rope(k)");
    let (vt, rot) = if half_kv { (v, rot.cast(burn::tensor::FloatDType::F16)) } else { (to_f32(v), rot) };
    let vt = vt.permute([0, 2, 3, 1]); // [B, H, d, N]
    let kv_gemm = |a: BTensor<5>, b: BTensor<5>| if half_kv { crate::matmul::matmul_to_f32(a, b, Impl::Auto) } else { gemm(a, b, fast) };
    let splits = token_splits(n);
    // Both sums are GEMMs over the tokens, `S` partial sums each: `KV = vᵀ·R·φ(k)` and
    // `Σ φ(k) = 1ᵀ·φ(k)` (a GEMM, not a reduction op: burn's `sum_dim` over N took 4 ms a
    // layer at 480p on an H200, the GEMM reads the same bytes at full bandwidth).
    let (kv, ksum) = if splits == 1 {
        // [B, H, d, N] x [B, H, N, d] -> [B, H, d, d]
        let ones = BTensor::<4>::ones([b, h, 1, n], (&dev, DType::F32));
        let kv = kv_gemm(vt.unsqueeze_dim(2), rot.unsqueeze_dim(2)).reshape([b, h, d, d]);
        (kv, gemm(ones, phi, fast).reshape([b, h, d]))
    } else {
        // Zero tokens add nothing to the sums: pad N to a multiple of the splits.
        let per = n.div_ceil(splits);
        let pad = per * splits - n;
        let (mut vt, mut r, mut phi) = (vt, rot, phi);
        if pad > 0 {
            vt = BTensor::cat(vec![vt.clone(), BTensor::zeros([b, h, d, pad], (&dev, vt.dtype()))], 3);
            r = BTensor::cat(vec![r.clone(), BTensor::zeros([b, h, pad, d], (&dev, r.dtype()))], 2);
            phi = BTensor::cat(vec![phi, BTensor::zeros([b, h, pad, d], (&dev, DType::F32))], 2);
        }
        // [B, H, S, d, N/S] x [B, H, S, N/S, d] -> [B, H, S, d, d], summed over S.
        let vt: BTensor<5> = vt.reshape([b, h, d, splits, per]).swap_dims(2, 3);
        let r: BTensor<5> = r.reshape([b, h, splits, per, d]);
        let kv = kv_gemm(vt, r).sum_dim(2).reshape([b, h, d, d]);
        crate::mark(&dev, "la.kv (v to f32 or rot to f16, GEMM)");
        let ones = BTensor::<5>::ones([b, h, splits, 1, per], (&dev, DType::F32));
        let phi: BTensor<5> = phi.reshape([b, h, splits, per, d]);
        (kv, gemm(ones, phi, fast).sum_dim(2).reshape([b, h, d]))
    };
    crate::mark(&dev, "la.ksum");
    KvSums { kv, ksum }
}

/// [`kv_sums`] through [`kv_operands_kernel`]: its operands already in the split batch layout
/// and the GEMM's dtype, so `KVᵀ` is one strided batch of `B·S·H` products (no transposing
/// copy of v, no f32 φ(k) tensor), summed over the splits; `Σ φ(k)` from the kernel's
/// per-tile sums by an exact f32 GEMM. Same operands and roundings as the older path; only
/// the order of the f32 additions differs.
fn kv_sums_fused(k: BTensor<4>, v: BTensor<4>, cos: BTensor<2>, sin: BTensor<2>, fast: bool, half_kv: bool) -> KvSums {
    let [b, n, h, d] = k.dims();
    let dev = k.device();
    let splits = token_splits(n);
    let per = n.div_ceil(splits);
    let dtype = if half_kv { DType::F16 } else { DType::F32 };
    let (rot_t, vs, part) = <Dispatch as LinearAttentionKernels>::la_kv_operands(
        k.into_dispatch(),
        v.into_dispatch(),
        cos.into_dispatch(),
        sin.into_dispatch(),
        splits,
        per,
        dtype,
    );
    let (rot_t, vs, part): (BTensor<3>, BTensor<3>, BTensor<4>) = (
        BTensor::<5>::from_dispatch(rot_t).reshape([b * splits * h, d, per]),
        BTensor::<5>::from_dispatch(vs).reshape([b * splits * h, per, d]),
        BTensor::from_dispatch(part),
    );
    crate::mark(&dev, "la.kv operands (relu, rope, layout)");
    // [B·S·H, d, per] x [B·S·H, per, d] -> KVᵀ per split, summed over the splits.
    let kvt = if half_kv { crate::matmul::matmul_to_f32(rot_t, vs, Impl::Auto) } else { gemm(rot_t, vs, fast) };
    let kvt = kvt.reshape([b, splits, h, d, d]).sum_dim(1).reshape([b, h, d, d]);
    crate::mark(&dev, "la.kv GEMM");
    let tiles = part.dims()[2];
    let ones = BTensor::<4>::ones([b, h, 1, tiles], (&dev, DType::F32));
    // Exact f32 (not TF32): the per-tile sums are not exact in 10 mantissa bits.
    let ksum = gemm(ones, part, false).reshape([b, h, d]);
    crate::mark(&dev, "la.ksum");
    KvSums { kv: kvt.swap_dims(2, 3), ksum }
}

/// Whether [`kv_sums`] runs [`kv_sums_fused`] (the default where the head dim allows) or the
/// older path (φ/RoPE kernel, v cast, GEMMs over copied operands): `SANA_LA_KV=gemm` picks the
/// latter to compare on a GPU (read once).
pub fn fused_kv_default() -> bool {
    static S: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *S.get_or_init(|| fused_unless_gemm("SANA_LA_KV"))
}

/// `var` set to `gemm` picks the older path; unset or `fused` the fused one (others warn).
fn fused_unless_gemm(var: &str) -> bool {
    match std::env::var(var).as_deref() {
        Err(_) | Ok("fused") => true,
        Ok("gemm") => false,
        Ok(other) => {
            eprintln!("warning: {var}={other:?} is not `fused` or `gemm`; using `fused`");
            true
        }
    }
}

/// Whether `apply` runs [`apply_fused_kernel`] (the default where the head dim allows) or the
/// four-pass path (φ/RoPE, the `num` and `den` GEMMs, the division): `SANA_LA_APPLY=gemm`
/// picks the latter to compare on a GPU (read once).
pub fn fused_apply_default() -> bool {
    static S: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *S.get_or_init(|| fused_unless_gemm("SANA_LA_APPLY"))
}

pub fn apply(q: BTensor<4>, s: &KvSums, cos: BTensor<2>, sin: BTensor<2>, eps: f32, dtype: DType) -> BTensor<4> {
    apply_with(q, s, cos, sin, eps, dtype, fused_apply_default())
}

/// Whether `apply_with(.., fused: true)` runs the one-pass kernel for this head dim and these
/// dtypes on every device (some tile fits WebGPU's minimum limits; it reads `q` in the output
/// dtype; a model's `q` always is).
pub fn fused_apply_supported(d: usize, q: DType, out: DType) -> bool {
    apply_tile(d, crate::WEBGPU_SHARED_BYTES, crate::WEBGPU_MAX_UNITS, false).is_some() && q == out
}

/// Workgroup storage and units a cube on `x`'s device, as [`apply_tile`] plans with them.
fn device_limits(x: &CubeTensor) -> (usize, usize) {
    limits_of(&x.client.properties().hardware)
}

fn limits_of(hw: &cubecl::ir::HardwareProperties) -> (usize, usize) {
    (hw.max_shared_memory_size.min(APPLY_SHARED_CAP), hw.max_units_per_cube as usize)
}

/// Workgroup storage and units a cube [`apply_tile`] plans with on `device` (`None`: not a
/// CubeCL device).
pub fn apply_limits_on(device: &burn::tensor::Device) -> Option<(usize, usize)> {
    match device.as_dispatch() {
        burn::backend::DispatchDevice::Cube(dev) => Some(limits_of(&dev.client().properties().hardware)),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// The tile [`apply_with`] uses for head dim `d` on `device` (`None`: not a CubeCL device,
/// or no tile fits).
pub fn apply_tile_on(d: usize, device: &burn::tensor::Device) -> Option<[usize; 2]> {
    let (shared, units) = apply_limits_on(device)?;
    if let Some(tile) = forced_apply_tile().filter(|&tile| !apply_tile_fits(d, tile, shared, units)) {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            let bytes = apply_cost(d, tile).0;
            eprintln!("warning: SANA_LA_APPLY_TILE={},{} does not fit head dim {d} on this device ({bytes} bytes of workgroup storage, {shared} usable); using the default", tile[0], tile[1]);
        });
    }
    apply_tile(d, shared, units, crate::is_cuda_device(device))
}

/// `apply` with the path chosen: `fused` runs the one-pass kernel where
/// [`fused_apply_supported`], else the four passes.
pub fn apply_with(q: BTensor<4>, s: &KvSums, cos: BTensor<2>, sin: BTensor<2>, eps: f32, dtype: DType, fused: bool) -> BTensor<4> {
    let d = q.dims()[3];
    let tile = if fused && fused_apply_supported(d, q.dtype(), dtype) { apply_tile_on(d, &q.device()) } else { None };
    apply_tiled(q, s, cos, sin, eps, dtype, tile)
}

/// `apply` through the fused kernel with `tile` (`[t, groups]`, see [`apply_tile`]; it must
/// pass [`apply_tile_fits`] on the device and `q` be in `dtype`), or the four passes for `None`.
pub fn apply_tiled(q: BTensor<4>, s: &KvSums, cos: BTensor<2>, sin: BTensor<2>, eps: f32, dtype: DType, tile: Option<[usize; 2]>) -> BTensor<4> {
    let [b, _, h, d] = q.dims();
    let dev = q.device();
    if let Some(tile) = tile {
        let kvt = s.kv.clone().swap_dims(2, 3);
        let out = <Dispatch as LinearAttentionKernels>::la_apply_fused(
            q.into_dispatch(),
            kvt.into_dispatch(),
            s.ksum.clone().into_dispatch(),
            cos.into_dispatch(),
            sin.into_dispatch(),
            eps,
            dtype,
            tile,
        );
        crate::mark(&dev, "la.apply (fused)");
        return BTensor::from_dispatch(out);
    }
    let fast = q.dtype() != DType::F32 && dtype != DType::F32;
    let (phi, rot) = relu_rope(q, cos, sin);
    crate::mark(&dev, "la.relu_rope(q)");
    let num = gemm(rot, s.kv.clone().swap_dims(2, 3), fast); // [B, H, N, d]
    crate::mark(&dev, "la.num GEMM");
    let den = gemm(phi, s.ksum.clone().reshape([b, h, d, 1]), fast); // [B, H, N, 1]
    crate::mark(&dev, "la.den GEMM");
    let out = BTensor::from_dispatch(<Dispatch as LinearAttentionKernels>::la_finish(num.into_dispatch(), den.into_dispatch(), eps, dtype));
    crate::mark(&dev, "la.finish");
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn apply_tiles_fit_their_limits() {
        use super::{apply_cost, apply_tile, apply_tile_fits};
        let (web, units) = (crate::WEBGPU_SHARED_BYTES, crate::WEBGPU_MAX_UNITS);
        assert_eq!(apply_tile(112, web, units, false), Some([4, 4]));
        assert_eq!(apply_tile(112, web, units, true), Some([4, 4]));
        assert_eq!(apply_tile(112, 48 * 1024, 1024, true), Some([8, 4]));
        assert_eq!(apply_tile(112, 48 * 1024, 1024, false), Some([4, 4]));
        assert_eq!(apply_tile(10, web, units, true), None);
        assert_eq!(apply_tile(1024, web, units, true), None);
        assert!(!apply_tile_fits(112, [6, 4], 1 << 20, 1024), "t must be a multiple of 4");
        for d in (4..=508).step_by(4) {
            let tile = apply_tile(d, web, units, false).unwrap_or_else(|| panic!("d {d}"));
            let (bytes, n) = apply_cost(d, tile);
            assert!(bytes <= web && n <= units, "d {d}");
        }
    }
}
