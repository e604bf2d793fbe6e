//! GEMMs through cuBLASLt on CUDA devices (issue 9).
//!
//! cubek 0.3 has no `wgmma` routine, so its best Hopper GEMM reaches ~220 TFLOP/s where
//! cuBLAS reaches ~800 on the DiT's shapes (BENCHMARKS.md). Opt-in (see [`mode`] for why):
//! with `SANA_CUBLAS=f32`, products of f32 operands on a CUDA device go here first, with
//! `CUBLAS_COMPUTE_32F` (IEEE f32 FMAs, no TF32, so f32 parity holds); with `SANA_CUBLAS=all`
//! f16/bf16 operands too, with f32 accumulation and an f16/bf16 or f32 result. Anything this
//! cannot take (another layout, no cuBLASLt library) returns `None` and the caller falls
//! back to cubek.
//!
//! CubeCL does not expose its CUDA stream, so the GEMM runs on a stream of ours between two
//! host waits: for CubeCL's work to finish (the operands are written), and for ours to
//! finish before the output goes back to CubeCL. `SANA_CUBLAS_ORDER=ctx` (the default)
//! waits with `cuCtxSynchronize` once CubeCL's runner has issued every launch queued before
//! (the buffer-address requests are answered in queue order); `SANA_CUBLAS_ORDER=cubecl`
//! waits through CubeCL's own `sync`. Ordering on the GPU instead (a one-thread CubeCL kernel
//! spinning on a flag our stream writes) deadlocked on an H200 and was dropped: a GEMM
//! kernel can need the SM the spinning block holds.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Mutex, OnceLock};

use burn::tensor::{DType, Shape};
use burn_cubecl::{ops::numeric::empty_device_dtype, tensor::CubeTensor};
use cubecl::cuda::CudaRuntime;
use cubecl_runtime::runtime::Runtime;
use cudarc::cublaslt::{result as lt, sys};
use cudarc::driver::{result as drv, sys as dsys};

type CudaServer = <CudaRuntime as Runtime>::Server;

/// cuBLASLt's recommended workspace on Hopper.
const WORKSPACE_BYTES: usize = 32 << 20;
/// Plans kept per process; the DiT and its text encoder use a few dozen shapes.
const MAX_PLANS: usize = 512;

/// One problem's descriptors and the algorithm cuBLASLt's heuristic picked for it.
struct Plan {
    desc: sys::cublasLtMatmulDesc_t,
    a: sys::cublasLtMatrixLayout_t,
    b: sys::cublasLtMatrixLayout_t,
    d: sys::cublasLtMatrixLayout_t,
    algo: sys::cublasLtMatmulAlgo_t,
}

/// The key a plan is cached under: dtypes, sizes, leading dims and batch strides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Problem {
    in_dtype: u8,
    out_dtype: u8,
    m: usize,
    n: usize,
    k: usize,
    batch: usize,
    ld: [usize; 3],
    batch_stride: [usize; 3],
}

/// How the host waits for CubeCL's queue (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    Context,
    CubeCl,
}

/// Host time per phase, for [`stats`] (dit-forward prints it): asking CubeCL for the
/// buffers' addresses, waiting for its queue, enqueueing and waiting for the GEMM.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub calls: u64,
    pub resource_s: f64,
    pub wait_s: f64,
    pub gemm_s: f64,
}

struct State {
    ordinal: usize,
    order: Order,
    stats: Stats,
    ctx: dsys::CUcontext,
    stream: dsys::CUstream,
    handle: sys::cublasLtHandle_t,
    workspace: dsys::CUdeviceptr,
    plans: HashMap<Problem, Plan>,
}

// The raw handles are only used under the mutex.
unsafe impl Send for State {}

/// Which products [`matmul`] takes: none (the default), f32 ones (`SANA_CUBLAS=f32`) or all
/// (`SANA_CUBLAS=all`). Measured on an H200 (2026-11-28, BENCHMARKS.md): cuBLASLt's bf16
/// GEMMs run 2-3x faster than cubek's, but the host waits around each one cost more than
/// that saves. The bf16 DiT forward at 65,520 tokens took 1.72 s with every GEMM here,
/// 2.24 s with only the linear-attention f32 sums here (each wait drains a full queue),
/// and 1.66 s without cuBLASLt.
fn mode() -> (bool, bool) {
    static MODE: OnceLock<(bool, bool)> = OnceLock::new();
    *MODE.get_or_init(|| match std::env::var("SANA_CUBLAS").as_deref() {
        Ok("all") => (true, true),
        Ok("f32") => (true, false),
        _ => (false, false),
    })
}

static STATE: OnceLock<Option<Mutex<State>>> = OnceLock::new();

/// cuBLASLt's handles, made on the first GEMM sent here.
fn state() -> Option<&'static Mutex<State>> {
    STATE
        .get_or_init(|| match init(0) {
            Ok(s) => Some(Mutex::new(s)),
            Err(e) => {
                eprintln!("note: cuBLASLt unavailable ({e}); GEMMs use cubek's routines");
                None
            }
        })
        .as_ref()
}

/// Calls and host time per phase so far; zero when no GEMM came here (it does not start
/// cuBLASLt).
pub fn stats() -> Stats {
    STATE.get().and_then(|s| s.as_ref()).and_then(|s| s.lock().ok().map(|s| s.stats)).unwrap_or_default()
}

fn init(ordinal: usize) -> Result<State, String> {
    // SAFETY: plain driver and cuBLASLt calls; every handle made here lives for the process.
    unsafe {
        if !sys::is_culib_present() {
            return Err("libcublasLt not found on the library path".into());
        }
        drv::init().map_err(|e| format!("cuInit: {e:?}"))?;
        let dev = drv::device::get(ordinal as i32).map_err(|e| format!("device {ordinal}: {e:?}"))?;
        // The primary context: the one CubeCL's CUDA runtime uses, so pointers are shared.
        let ctx = drv::primary_ctx::retain(dev).map_err(|e| format!("primary context: {e:?}"))?;
        drv::ctx::set_current(ctx).map_err(|e| format!("set context: {e:?}"))?;
        let stream = drv::stream::create(drv::stream::StreamKind::NonBlocking).map_err(|e| format!("stream: {e:?}"))?;
        let handle = lt::create_handle().map_err(|e| format!("cublasLtCreate: {e:?}"))?;
        let workspace = drv::malloc_sync(WORKSPACE_BYTES).map_err(|e| format!("workspace: {e:?}"))?;
        let order = match std::env::var("SANA_CUBLAS_ORDER").as_deref() {
            Ok("cubecl") => Order::CubeCl,
            _ => Order::Context,
        };
        Ok(State { ordinal, order, stats: Stats::default(), ctx, stream, handle, workspace, plans: HashMap::new() })
    }
}

fn cuda_type(dtype: DType) -> Option<(sys::cudaDataType, u8)> {
    Some(match dtype {
        DType::F32 => (sys::cudaDataType::CUDA_R_32F, 0),
        DType::F16 => (sys::cudaDataType::CUDA_R_16F, 1),
        DType::BF16 => (sys::cudaDataType::CUDA_R_16BF, 2),
        _ => return None,
    })
}

/// A matrix operand's (rows, cols, row stride, batch count, batch stride), if its layout is
/// one cuBLASLt reads: unit column stride, and the batch dims foldable into one stride.
fn layout(t: &CubeTensor) -> Option<(usize, usize, usize, usize, usize)> {
    if t.meta.tiling != Default::default() {
        return None;
    }
    let shape = t.meta.shape();
    let strides = t.meta.strides();
    let r = shape.num_dims();
    if r < 2 {
        return None;
    }
    let (rows, cols) = (shape[r - 2], shape[r - 1]);
    if strides[r - 1] != 1 && cols > 1 {
        return None;
    }
    let ld = if rows > 1 { strides[r - 2] } else { cols };
    if ld < cols.max(1) {
        return None;
    }
    let batch: usize = (0..r - 2).map(|i| shape[i]).product();
    let mut batch_stride = 0;
    if batch > 1 {
        // Fold the batch dims: each must step over the next one whole.
        let dims: Vec<usize> = (0..r - 2).filter(|&i| shape[i] > 1).collect();
        let last = *dims.last()?;
        batch_stride = strides[last];
        let mut expect = batch_stride;
        for &i in dims.iter().rev() {
            if strides[i] != expect {
                return None;
            }
            expect = strides[i] * shape[i];
        }
        if batch_stride < ld * rows.max(1) {
            return None;
        }
    }
    Some((rows, cols, ld, batch, batch_stride))
}

/// `lhs · rhs` (`[.., M, K] · [.., K, N]`, equal batch dims) into a new `out_dtype` tensor,
/// or `None` where cuBLASLt cannot take it or is not used for its dtype (see [`mode`]).
pub fn matmul(lhs: &CubeTensor, rhs: &CubeTensor, out_dtype: DType) -> Option<CubeTensor> {
    let (f32s, halves) = mode();
    if !(if lhs.dtype == DType::F32 { f32s } else { halves }) {
        return None;
    }
    matmul_any(lhs, rhs, out_dtype)
}

/// [`matmul`] for every dtype cuBLASLt takes, whatever `SANA_CUBLAS` says (`matmul-bench`,
/// `SANA_HALF_MATMUL=cublas`).
pub fn matmul_any(lhs: &CubeTensor, rhs: &CubeTensor, out_dtype: DType) -> Option<CubeTensor> {
    let cubecl::Device::Cuda(dev) = &lhs.device else { return None };
    let state = state()?;
    let (in_ty, in_code) = cuda_type(lhs.dtype)?;
    let (out_ty, out_code) = cuda_type(out_dtype)?;
    if rhs.dtype != lhs.dtype || (lhs.dtype == DType::F32 && out_dtype != DType::F32) || (lhs.dtype != DType::F32 && out_dtype != DType::F32 && out_dtype != lhs.dtype) {
        return None;
    }
    let (ls, rs) = (lhs.meta.shape(), rhs.meta.shape());
    let r = ls.num_dims();
    if r != rs.num_dims() || r < 2 || (0..r - 2).any(|i| ls[i] != rs[i]) || ls[r - 1] != rs[r - 2] {
        return None;
    }
    let (m, k, lda, batch, sa) = layout(lhs)?;
    let (_, n, ldb, _, sb) = layout(rhs)?;
    if m == 0 || n == 0 || k == 0 {
        return None;
    }
    let mut out_dims: Vec<usize> = ls.iter().copied().collect();
    out_dims[r - 1] = n;
    let out = empty_device_dtype(lhs.client.clone(), lhs.device.clone(), Shape::from(out_dims), out_dtype);
    let (_, _, ldd, _, sd) = layout(&out)?;
    let problem = Problem { in_dtype: in_code, out_dtype: out_code, m, n, k, batch, ld: [lda, ldb, ldd], batch_stride: [sa, sb, sd] };

    let mut st = state.lock().ok()?;
    if st.ordinal != dev.index {
        return None;
    }
    let client = &lhs.client;
    let t0 = std::time::Instant::now();
    let a_res = client.get_resource::<CudaServer>(lhs.handle.clone()).ok()?;
    let b_res = client.get_resource::<CudaServer>(rhs.handle.clone()).ok()?;
    let d_res = client.get_resource::<CudaServer>(out.handle.clone()).ok()?;
    let t1 = std::time::Instant::now();
    let (a, b, d) = (a_res.resource().ptr, b_res.resource().ptr, d_res.resource().ptr);
    // The operands are written once CubeCL's queue is drained.
    match st.order {
        Order::CubeCl => pollster::block_on(client.sync()).ok()?,
        Order::Context => unsafe {
            drv::ctx::set_current(st.ctx).ok()?;
            drv::ctx::synchronize().ok()?;
        },
    }
    st.stats.wait_s += t1.elapsed().as_secs_f64();
    let t2 = std::time::Instant::now();
    let result = unsafe { run(&mut st, &problem, in_ty, out_ty, b, a, d) };
    st.stats.gemm_s += t2.elapsed().as_secs_f64();
    st.stats.calls += 1;
    st.stats.resource_s += (t1 - t0).as_secs_f64();
    match result {
        Ok(()) => Some(out),
        Err(e) => {
            eprintln!("warning: cuBLASLt GEMM {problem:?} failed ({e}); using cubek's routine");
            None
        }
    }
}

/// Plans (or reuses the plan for) `problem`, runs it on our stream and waits for it.
/// cuBLASLt is column-major: row-major `D[M,N] = A[M,K]·B[K,N]` is column-major
/// `Dᵀ[N,M] = Bᵀ[N,K]·Aᵀ[K,M]`, so its "A" is our `rhs` and its "B" our `lhs`.
///
/// # Safety
/// The pointers address live buffers of the sizes `problem` describes.
unsafe fn run(st: &mut State, p: &Problem, in_ty: sys::cudaDataType, out_ty: sys::cudaDataType, rhs: u64, lhs: u64, out: u64) -> Result<(), String> {
    drv::ctx::set_current(st.ctx).map_err(|e| format!("set context: {e:?}"))?;
    gemm(st, p, in_ty, out_ty, rhs, lhs, out)?;
    drv::stream::synchronize(st.stream).map_err(|e| format!("stream sync: {e:?}"))
}

/// Enqueues the GEMM on our stream.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm(st: &mut State, p: &Problem, in_ty: sys::cudaDataType, out_ty: sys::cudaDataType, rhs: u64, lhs: u64, out: u64) -> Result<(), String> {
    if !st.plans.contains_key(p) {
        let plan = make_plan(st.handle, p, in_ty, out_ty)?;
        if st.plans.len() >= MAX_PLANS {
            st.plans.clear();
        }
        st.plans.insert(*p, plan);
    }
    let plan = &st.plans[p];
    let (alpha, beta) = (1.0f32, 0.0f32);
    lt::matmul(
        st.handle,
        plan.desc,
        &alpha as *const f32 as *const c_void,
        &beta as *const f32 as *const c_void,
        rhs as *const c_void,
        plan.a,
        lhs as *const c_void,
        plan.b,
        out as *const c_void,
        plan.d,
        out as *mut c_void,
        plan.d,
        &plan.algo,
        st.workspace as *mut c_void,
        WORKSPACE_BYTES,
        st.stream as sys::cudaStream_t,
    )
    .map_err(|e| format!("cublasLtMatmul: {e:?}"))
}

unsafe fn make_plan(handle: sys::cublasLtHandle_t, p: &Problem, in_ty: sys::cudaDataType, out_ty: sys::cudaDataType) -> Result<Plan, String> {
    let err = |what: &'static str| move |e: cudarc::cublaslt::result::CublasError| format!("{what}: {e:?}");
    let desc = lt::create_matmul_desc(sys::cublasComputeType_t::CUBLAS_COMPUTE_32F, sys::cudaDataType::CUDA_R_32F).map_err(err("matmul desc"))?;
    let matrix = |ty, rows: usize, cols: usize, ld: usize, stride: usize| -> Result<sys::cublasLtMatrixLayout_t, String> {
        let l = lt::create_matrix_layout(ty, rows as u64, cols as u64, ld as i64).map_err(err("layout"))?;
        if p.batch > 1 {
            let count = p.batch as i32;
            let stride = stride as i64;
            lt::set_matrix_layout_attribute(l, sys::cublasLtMatrixLayoutAttribute_t::CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count as *const i32 as *const c_void, 4).map_err(err("batch count"))?;
            lt::set_matrix_layout_attribute(l, sys::cublasLtMatrixLayoutAttribute_t::CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride as *const i64 as *const c_void, 8)
                .map_err(err("batch stride"))?;
        }
        Ok(l)
    };
    // Column-major views (see `run`): A = rhsᵀ [N, K], B = lhsᵀ [K, M], D = outᵀ [N, M].
    let a = matrix(in_ty, p.n, p.k, p.ld[1], p.batch_stride[1])?;
    let b = matrix(in_ty, p.k, p.m, p.ld[0], p.batch_stride[0])?;
    let d = matrix(out_ty, p.n, p.m, p.ld[2], p.batch_stride[2])?;
    let pref = lt::create_matmul_pref().map_err(err("preference"))?;
    let ws = WORKSPACE_BYTES as u64;
    lt::set_matmul_pref_attribute(pref, sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws as *const u64 as *const c_void, 8).map_err(err("workspace size"))?;
    let heuristic = lt::get_matmul_algo_heuristic(handle, desc, a, b, d, d, pref).map_err(err("no algorithm for this problem"));
    let _ = lt::destroy_matmul_pref(pref);
    Ok(Plan { desc, a, b, d, algo: heuristic?.algo })
}
