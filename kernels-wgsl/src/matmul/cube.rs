//! f32 matmul on CubeCL devices through cubek's `SimpleUnit` routine (no TF32).

use burn::backend::{backend_extension, cubecl::dtype_to_storage_type, tensor::FloatTensor, Backend, Dispatch};
use burn::tensor::{DType, Shape, Tensor as BTensor};
use burn_cubecl::{kernel::into_contiguous, ops::numeric::empty_device_dtype, tensor::CubeTensor, CubeBackend};
use cubek::matmul::{
    definition::{MatmulElems, MatmulGlobalElems},
    launch::launch_ref,
    multi_level,
    strategy::Strategy,
};
use cubek::std::InputBinding;

#[backend_extension(Cube)]
pub trait ExactMatmul: Backend {
    fn matmul_f32_exact(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Half-precision operands, f32 accumulation and result; burn's tuned matmul.
    fn matmul_half_to_f32(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self>;
    /// f32 operands on TF32 tensor cores where cuBLASLt runs (CUDA), else as exact as
    /// `matmul_f32_exact`.
    fn matmul_f32_fast(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl ExactMatmul for CubeBackend {
    fn matmul_f32_exact(lhs: CubeTensor, rhs: CubeTensor) -> CubeTensor {
        assert!(lhs.dtype == DType::F32 && rhs.dtype == DType::F32, "matmul_f32_exact: f32 operands only");
        #[cfg(feature = "cuda")]
        if let Some(out) = super::cublas::matmul(&lhs, &rhs, DType::F32, super::cublas::OutLayout::Contiguous) {
            return out;
        }
        let (lhs, rhs) = (into_contiguous(lhs), into_contiguous(rhs));
        #[cfg(feature = "cuda")]
        if let Some(out) = super::cublas::matmul(&lhs, &rhs, DType::F32, super::cublas::OutLayout::Contiguous) {
            return out;
        }
        let strategy = Strategy::MultiLevel(multi_level::Strategy::SimpleUnit(Default::default()));
        launch_with(&strategy, lhs, rhs, DType::F32).unwrap_or_else(|e| panic!("f32 unit matmul could not launch: {e}"))
    }

    fn matmul_half_to_f32(lhs: CubeTensor, rhs: CubeTensor) -> CubeTensor {
        assert!(lhs.dtype == rhs.dtype && matches!(lhs.dtype, DType::F16 | DType::BF16), "matmul_half_to_f32: f16 or bf16 operands of one dtype");
        matmul_half_any(lhs, rhs, DType::F32)
    }

    fn matmul_f32_fast(lhs: CubeTensor, rhs: CubeTensor) -> CubeTensor {
        #[cfg(feature = "cuda")]
        if let Some(out) = super::cublas::matmul_tf32(&lhs, &rhs) {
            return out;
        }
        #[cfg(feature = "cuda")]
        let (lhs, rhs) = (into_contiguous(lhs), into_contiguous(rhs));
        #[cfg(feature = "cuda")]
        if let Some(out) = super::cublas::matmul_tf32(&lhs, &rhs) {
            return out;
        }
        Self::matmul_f32_exact(lhs, rhs)
    }
}

pub fn matmul_to_f32<const D: usize>(a: BTensor<D>, b: BTensor<D>) -> BTensor<D> {
    BTensor::from_dispatch(<Dispatch as ExactMatmul>::matmul_half_to_f32(a.into_dispatch(), b.into_dispatch()))
}

pub fn matmul_f32<const D: usize>(a: BTensor<D>, b: BTensor<D>) -> BTensor<D> {
    BTensor::from_dispatch(<Dispatch as ExactMatmul>::matmul_f32_exact(a.into_dispatch(), b.into_dispatch()))
}

pub fn matmul_f32_fast<const D: usize>(a: BTensor<D>, b: BTensor<D>) -> BTensor<D> {
    BTensor::from_dispatch(<Dispatch as ExactMatmul>::matmul_f32_fast(a.into_dispatch(), b.into_dispatch()))
}

// ---- f16/bf16 GEMMs: which cubek routine ---------------------------------------------

use cubek::matmul::{
    multi_level::{
        components::tile::TileMatmulKind,
        routines::batch::{double_buffering::DoubleBufferingArgs, ordered_double_buffering::OrderedSelectionArgs, simple::SimpleArgs},
    },
    routine::BlueprintStrategy,
};

/// The tensor-core routines `SANA_HALF_MATMUL` may name (`dit-forward`'s and
/// `matmul-bench`'s comparisons). `simple-cmma` is what burn runs without autotune.
pub const HALF_ROUTINES: &[&str] = &[
    "simple-cmma",
    "simple-mma",
    "simple-multirow-mma",
    "double-cmma",
    "double-mma",
    "double-specialized-mma",
    "ordered4-mma",
    "ordered8-mma",
    "specialized-cmma",
    "specialized-mma",
    "tma-simple-mma",
    "tma-simple-multirow-mma",
    "tma-specialized-mma",
    // Cooperative-matrix variants: the only tensor-core routines of CubeCL's SPIR-V path
    // (Vulkan), where the `mma` ones are unavailable.
    "simple-multirow-cmma",
    "simple-tilewise-cmma",
    "simple-strided-cmma",
    "double-tilewise-cmma",
    "double-hybrid-cmma",
    "ordered4-cmma",
    "ordered8-cmma",
    "cublas",
];
// Not listed: `tma-specialized-cmma`, which on an H200 (2026-11-28) returned results it
// cannot have computed (faster than the card's peak, error exactly zero). On CUDA the
// specialised/double-buffered cmma routines are 10x slower than their mma twins; they are
// listed for Vulkan, where no `mma` routine runs.

fn half_strategy(name: &str) -> Option<Strategy> {
    use multi_level::Strategy as S;
    let simple = |multi_rows, tile_matmul| BlueprintStrategy::Inferred(SimpleArgs { multi_rows, tile_matmul });
    let double = |specialized, tile_matmul| BlueprintStrategy::Inferred(DoubleBufferingArgs { specialized, tile_matmul });
    let ordered = |rows, tile_matmul| {
        BlueprintStrategy::Inferred(OrderedSelectionArgs {
            partition_k: Some(2),
            row_count: Some(rows),
            rows_per_plane: Some(2),
            tile_matmul,
        })
    };
    let (cmma, mma) = (TileMatmulKind::Cmma, TileMatmulKind::Mma);
    let s = match name {
        "simple-cmma" => S::SimpleCyclicCmma(simple(false, cmma)),
        "simple-mma" => S::SimpleCyclicMma(simple(false, mma)),
        "simple-multirow-mma" => S::SimpleCyclicMma(simple(true, mma)),
        "double-cmma" => S::DoubleCyclicCmma(double(false, cmma)),
        "double-mma" => S::DoubleCyclicMma(double(false, mma)),
        "double-specialized-mma" => S::DoubleCyclicMma(double(true, mma)),
        "ordered4-mma" => S::OrderedDoubleMma(ordered(4, mma)),
        "ordered8-mma" => S::OrderedDoubleMma(ordered(8, mma)),
        "specialized-cmma" => S::SpecializedCyclicCmma(BlueprintStrategy::Inferred(().into())),
        "specialized-mma" => S::SpecializedCyclicMma(BlueprintStrategy::Inferred(().into())),
        "tma-simple-mma" => S::SimpleTmaMma(BlueprintStrategy::Inferred(SimpleArgs { multi_rows: false, tile_matmul: mma })),
        "tma-simple-multirow-mma" => S::SimpleTmaMma(BlueprintStrategy::Inferred(SimpleArgs { multi_rows: true, tile_matmul: mma })),
        "tma-specialized-cmma" => S::SpecializedTmaCmma(BlueprintStrategy::Inferred(().into())),
        "tma-specialized-mma" => S::SpecializedTmaMma(BlueprintStrategy::Inferred(().into())),
        "simple-multirow-cmma" => S::SimpleCyclicCmma(simple(true, cmma)),
        "simple-tilewise-cmma" => S::SimpleTilewiseCmma(BlueprintStrategy::Inferred(SimpleArgs { multi_rows: false, tile_matmul: cmma })),
        "simple-strided-cmma" => S::SimpleStridedCmma(BlueprintStrategy::Inferred(SimpleArgs { multi_rows: false, tile_matmul: cmma })),
        "double-tilewise-cmma" => S::DoubleTilewiseCmma(BlueprintStrategy::Inferred(DoubleBufferingArgs { specialized: false, tile_matmul: cmma })),
        "double-hybrid-cmma" => S::DoubleHybridCmma(BlueprintStrategy::Inferred(DoubleBufferingArgs { specialized: false, tile_matmul: cmma })),
        "ordered4-cmma" => S::OrderedDoubleCmma(ordered(4, cmma)),
        "ordered8-cmma" => S::OrderedDoubleCmma(ordered(8, cmma)),
        _ => return None,
    };
    Some(Strategy::MultiLevel(s))
}

/// The routine for f16/bf16 GEMMs: `SANA_HALF_MATMUL` if set to one of [`HALF_ROUTINES`]
/// (another value is reported and ignored), else this one, the fastest on the DiT's linear layers in `matmul-bench` on an H200
/// (2026-11-28: 205-238 TFLOP/s against 79-90 for burn's default `simple-cmma`). It needs
/// TMA (Hopper and later) and aligned shapes; where it cannot run, [`FALLBACK_HALF_ROUTINE`]
/// (the fastest routine that ran every DiT shape there), then burn's own choice. On CUDA
/// devices cuBLASLt goes first unless `SANA_CUBLAS` says otherwise (`cublas.rs`).
pub const DEFAULT_HALF_ROUTINE: &str = "tma-specialized-mma";
pub const FALLBACK_HALF_ROUTINE: &str = "double-mma";

/// Where only cooperative-matrix routines run (CubeCL's SPIR-V path on Vulkan): the routine
/// for a `k -> n` product. `matmul-bench --backend vulkan --dtype f16 --iters 10` on an H200's
/// Vulkan driver (2026-11-29, BENCHMARKS.md): `simple-multirow-cmma` 122-128 TFLOP/s on every
/// linear layer's GEMM (2240 -> 2240, 6720, 13440 and 6720 -> 2240) against 87-97 for
/// `simple-cmma` (burn's default), which stays ahead on the cross-attention's logits
/// (k·n = 112·300; 46 against 24). The DiT forward: 2.409 s with the threshold at 12M (the FFN
/// only), 2.214 s at 4M (every linear layer), alternated twice.
fn cmma_routine(k: usize, n: usize) -> &'static str {
    // `SANA_CMMA_MULTIROW_MIN` moves the k·n threshold (device comparisons).
    static MIN: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let min = *MIN.get_or_init(|| match std::env::var("SANA_CMMA_MULTIROW_MIN") {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| {
            eprintln!("warning: SANA_CMMA_MULTIROW_MIN={v} is not a whole number; using 4000000");
            4_000_000
        }),
        Err(_) => 4_000_000,
    });
    if k * n >= min { "simple-multirow-cmma" } else { "simple-cmma" }
}

fn chosen_half_routine() -> &'static str {
    use std::sync::OnceLock;
    static CHOICE: OnceLock<&'static str> = OnceLock::new();
    CHOICE.get_or_init(|| match std::env::var("SANA_HALF_MATMUL") {
        Ok(v) => HALF_ROUTINES.iter().copied().find(|r| *r == v).unwrap_or_else(|| {
            eprintln!("warning: SANA_HALF_MATMUL={v} is not a matmul routine (one of: {}); using {DEFAULT_HALF_ROUTINE}", HALF_ROUTINES.join(", "));
            DEFAULT_HALF_ROUTINE
        }),
        Err(_) => DEFAULT_HALF_ROUTINE,
    })
}

/// Launches `routine` on half-precision operands; `Err` when the device lacks what it needs
/// (no tensor cores, no TMA) or the problem does not fit its tiling.
fn launch_half(lhs: CubeTensor, rhs: CubeTensor, out_dtype: DType, routine: &str) -> Result<CubeTensor, String> {
    assert!(lhs.dtype == rhs.dtype && matches!(lhs.dtype, DType::F16 | DType::BF16), "half matmul: f16 or bf16 operands of one dtype");
    let strategy = half_strategy(routine).ok_or_else(|| format!("unknown matmul routine {routine}"))?;
    launch_with(&strategy, lhs, rhs, out_dtype)
}

/// `lhs · rhs` (same rank, equal batch dims, operands of one dtype) by one cubek strategy,
/// into a new `out_dtype` tensor.
fn launch_with(strategy: &Strategy, lhs: CubeTensor, rhs: CubeTensor, out_dtype: DType) -> Result<CubeTensor, String> {
    let (lhs, rhs) = (into_contiguous(lhs), into_contiguous(rhs));
    let ls = lhs.meta.shape().clone();
    let rs = rhs.meta.shape().clone();
    let rank = ls.num_dims();
    assert_eq!(rank, rs.num_dims(), "matmul: ranks differ");
    assert_eq!(ls[rank - 1], rs[rank - 2], "matmul: inner dims differ");
    let mut out_dims: Vec<usize> = ls.iter().copied().collect();
    out_dims[rank - 1] = rs[rank - 1];
    let client = lhs.client.clone();
    let out = empty_device_dtype(client.clone(), lhs.device.clone(), Shape::from(out_dims), out_dtype);
    let in_ty = dtype_to_storage_type(lhs.dtype);
    let out_ty = dtype_to_storage_type(out_dtype);
    let mut elems = MatmulElems::from_globals(&MatmulGlobalElems { lhs: in_ty, rhs: in_ty, out: out_ty });
    launch_ref(strategy, &client, InputBinding::new(lhs.binding(), in_ty), InputBinding::new(rhs.binding(), in_ty), out.clone().binding(), &mut elems)
        .map_err(|e| format!("{e:?}"))?;
    Ok(out)
}

/// Whether half-precision products go to cuBLASLt (cublas.rs): `SANA_HALF_MATMUL=cublas`
/// forces it (`Some(true)`), another named routine skips it (`None`), unset follows
/// `SANA_CUBLAS` (`Some(false)`). Read once.
#[cfg(feature = "cuda")]
fn half_cublas_rule() -> Option<bool> {
    static RULE: std::sync::OnceLock<Option<bool>> = std::sync::OnceLock::new();
    *RULE.get_or_init(|| match std::env::var("SANA_HALF_MATMUL").as_deref() {
        Ok("cublas") => Some(true),
        Ok(_) => None,
        Err(_) => Some(false),
    })
}

/// A half-precision product through cuBLASLt where [`half_cublas_rule`] sends it.
#[cfg(feature = "cuda")]
fn half_cublas(lhs: &CubeTensor, rhs: &CubeTensor, out_dtype: DType, layout: super::cublas::OutLayout) -> Option<CubeTensor> {
    if half_cublas_rule()? {
        super::cublas::matmul_any(lhs, rhs, out_dtype, layout)
    } else {
        super::cublas::matmul(lhs, rhs, out_dtype, layout)
    }
}

/// The chosen routine, then the fallback, then cubek's own choice (`Strategy::Auto`: tensor cores
/// where present, else a unit routine) when it cannot run here.
fn matmul_half_any(lhs: CubeTensor, rhs: CubeTensor, out_dtype: DType) -> CubeTensor {
    // On CUDA devices, cuBLASLt first. It reads pitched rows and folded batch strides as they
    // are, so it is tried before any copy to contiguous, and again after one.
    #[cfg(feature = "cuda")]
    if let Some(out) = half_cublas(&lhs, &rhs, out_dtype, super::cublas::OutLayout::Contiguous) {
        return out;
    }
    // Once, before the attempts: a routine that cannot run must not cost a copy each.
    let (lhs, rhs) = (into_contiguous(lhs), into_contiguous(rhs));
    #[cfg(feature = "cuda")]
    if let Some(out) = half_cublas(&lhs, &rhs, out_dtype, super::cublas::OutLayout::Contiguous) {
        return out;
    }
    let first = match chosen_half_routine() {
        "cublas" => DEFAULT_HALF_ROUTINE,
        r => r,
    };
    // Unavailable routines fail before compiling anything: on Vulkan the first two (`mma`
    // routines) are declined and the cooperative-matrix choice runs. (On CUDA it is reached
    // only when cuBLASLt and both `mma` routines decline, where burn's default would have
    // run `simple-cmma` anyway.)
    let dims = rhs.meta.shape().clone();
    let (k, n) = (dims[dims.num_dims() - 2], dims[dims.num_dims() - 1]);
    for routine in [first, FALLBACK_HALF_ROUTINE, cmma_routine(k, n)] {
        if let Ok(out) = launch_half(lhs.clone(), rhs.clone(), out_dtype, routine) {
            return out;
        }
    }
    burn_cubecl::kernel::matmul::matmul(lhs, rhs, None, Default::default(), out_dtype)
        .unwrap_or_else(|e| panic!("half-precision matmul could not launch: {e:?}"))
}

#[backend_extension(Cube)]
pub trait HalfMatmul: Backend {
    /// f16/bf16 operands, result in `out_f32 ? f32 : the operands' dtype`, f32 accumulation.
    fn matmul_half(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>, out_f32: bool) -> FloatTensor<Self>;
    /// `[B, H, M, K] · [B, H, K, N]` rounded to the operands' dtype, stored as row-major
    /// `[B, M, H, N]` and returned as its `[B, H, M, N]` view: the heads merge for free.
    fn matmul_half_heads_merged(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self>;
    /// One named routine, no fallback (benchmarks); `None` when it cannot run here.
    fn matmul_half_routine(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>, routine: usize) -> Option<FloatTensor<Self>>;
    /// `x · w + bias` with the bias added to the f32 sums before the one rounding (cuBLASLt's
    /// epilogue); `None` where that cannot run (not CUDA, or cuBLASLt declines).
    fn linear_half_bias(x: FloatTensor<Self>, w: FloatTensor<Self>, bias: FloatTensor<Self>) -> Option<FloatTensor<Self>>;
}

impl HalfMatmul for CubeBackend {
    fn matmul_half(lhs: CubeTensor, rhs: CubeTensor, out_f32: bool) -> CubeTensor {
        let out_dtype = if out_f32 { DType::F32 } else { lhs.dtype };
        matmul_half_any(lhs, rhs, out_dtype)
    }

    fn matmul_half_heads_merged(lhs: CubeTensor, rhs: CubeTensor) -> CubeTensor {
        let dtype = lhs.dtype;
        // cuBLASLt writes each head's rows straight into the merged layout.
        #[cfg(feature = "cuda")]
        if let Some(out) = half_cublas(&lhs, &rhs, dtype, super::cublas::OutLayout::HeadsMerged) {
            return out;
        }
        // Elsewhere: the product, then one copy into merged-head order.
        let mut out = matmul_half_any(lhs, rhs, dtype);
        out.meta.swap(1, 2);
        let mut out = into_contiguous(out);
        out.meta.swap(1, 2);
        out
    }

    fn matmul_half_routine(lhs: CubeTensor, rhs: CubeTensor, routine: usize) -> Option<CubeTensor> {
        let dtype = lhs.dtype;
        if HALF_ROUTINES.get(routine) == Some(&"cublas") {
            #[cfg(feature = "cuda")]
            return super::cublas::matmul_any(&into_contiguous(lhs), &into_contiguous(rhs), dtype, super::cublas::OutLayout::Contiguous);
            #[cfg(not(feature = "cuda"))]
            return None;
        }
        launch_half(lhs, rhs, dtype, HALF_ROUTINES.get(routine)?).ok()
    }

    fn linear_half_bias(x: CubeTensor, w: CubeTensor, bias: CubeTensor) -> Option<CubeTensor> {
        #[cfg(feature = "cuda")]
        {
            // Where the plain product would go to cuBLASLt, and only on CUDA devices: a copy
            // to contiguous is worth trying only there.
            let any = half_cublas_rule()?;
            if !matches!(x.device, cubecl::Device::Cuda(_)) {
                return None;
            }
            if let Some(out) = super::cublas::linear_bias(&x, &w, &bias, any) {
                return Some(out);
            }
            super::cublas::linear_bias(&into_contiguous(x), &into_contiguous(w), &into_contiguous(bias), any)
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = (x, w, bias);
            None
        }
    }
}

pub fn matmul_half<const D: usize>(a: BTensor<D>, b: BTensor<D>, out_f32: bool) -> BTensor<D> {
    BTensor::from_dispatch(<Dispatch as HalfMatmul>::matmul_half(a.into_dispatch(), b.into_dispatch(), out_f32))
}

/// See [`HalfMatmul::matmul_half_heads_merged`]; returns the `[B, M, H, N]` tensor.
pub fn matmul_half_heads_merged(a: BTensor<4>, b: BTensor<4>) -> BTensor<4> {
    BTensor::from_dispatch(<Dispatch as HalfMatmul>::matmul_half_heads_merged(a.into_dispatch(), b.into_dispatch())).swap_dims(1, 2)
}

/// See [`HalfMatmul::linear_half_bias`].
pub fn linear_half_bias(x: BTensor<2>, w: BTensor<2>, bias: BTensor<1>) -> Option<BTensor<2>> {
    <Dispatch as HalfMatmul>::linear_half_bias(x.into_dispatch(), w.into_dispatch(), bias.into_dispatch()).map(BTensor::from_dispatch)
}

/// Runs routine `HALF_ROUTINES[routine]` alone; `None` if it cannot run on this device/problem.
pub fn matmul_half_routine<const D: usize>(a: BTensor<D>, b: BTensor<D>, routine: usize) -> Option<BTensor<D>> {
    <Dispatch as HalfMatmul>::matmul_half_routine(a.into_dispatch(), b.into_dispatch(), routine).map(BTensor::from_dispatch)
}

// ---- Convolutions as row-shifted GEMMs over a flattened padded grid --------------------

#[backend_extension(Cube)]
pub trait TapGemms: Backend {
    /// See [`super::tap_gemms`]: `x` `[R, C]`, `w` `[taps·C, O]`, the taps' row offsets
    /// `(a·hp + b)·wp + k` over a `kt x kh x kw` kernel; `None` where only the reference runs.
    #[allow(clippy::too_many_arguments)]
    fn tap_gemms(x: FloatTensor<Self>, w: FloatTensor<Self>, kt: usize, kh: usize, kw: usize, hp: usize, wp: usize, m: usize, tf32: bool) -> Option<FloatTensor<Self>>;
}

impl TapGemms for CubeBackend {
    fn tap_gemms(x: CubeTensor, w: CubeTensor, kt: usize, kh: usize, kw: usize, hp: usize, wp: usize, m: usize, tf32: bool) -> Option<CubeTensor> {
        #[cfg(feature = "cuda")]
        {
            let offsets = super::tap_offsets([kt, kh, kw], hp, wp);
            super::cublas::tap_gemms(&into_contiguous(x), &into_contiguous(w), &offsets, m, tf32)
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = (x, w, kt, kh, kw, hp, wp, m, tf32);
            None
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub fn tap_gemms(x: BTensor<2>, w: BTensor<2>, kernel: [usize; 3], hp: usize, wp: usize, m: usize, tf32: bool) -> Option<BTensor<2>> {
    let [kt, kh, kw] = kernel;
    <Dispatch as TapGemms>::tap_gemms(x.into_dispatch(), w.into_dispatch(), kt, kh, kw, hp, wp, m, tf32).map(BTensor::from_dispatch)
}
