//! GEMMs through cuBLASLt on CUDA devices (issue 9).
//!
//! cubek 0.3 has no `wgmma` routine, so its best Hopper GEMM reaches ~220 TFLOP/s where
//! cuBLAS reaches 435-681 on the DiT's shapes (BENCHMARKS.md). On a CUDA device every product
//! goes here first (see [`mode`] for `SANA_CUBLAS`): f32 operands with `CUBLAS_COMPUTE_32F`
//! (IEEE f32 FMAs, no TF32, so f32 parity holds), f16/bf16 operands with f32 accumulation and
//! an f16/bf16 or f32 result. Anything this cannot take (another layout, no cuBLASLt library)
//! returns `None` and the caller falls back to cubek.
//!
//! Each GEMM is a task on CubeCL's device thread ([`crate::cuda_task::enqueue`]): enqueued on
//! CubeCL's own stream, ordered like any CubeCL kernel, the host never waiting, and a failure
//! tainting the output as a failed kernel launch would. An earlier version ran on a stream of
//! ours between two host waits; those waits cost more than cuBLASLt saved (1.72 s against cubek's 1.66 s per 480p forward on an
//! H200, BENCHMARKS.md).

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use burn::tensor::{DType, Shape};
use burn_cubecl::{ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor};
use cubecl::cuda::CudaDevice;
use cubecl_common::device::Device as _;
use cubecl_common::device_handle::DeviceHandle;
use cubecl_environment::stream::StreamId;
use cudarc::cublaslt::{result as lt, sys};
use cudarc::driver::{result as drv, sys as dsys};

use crate::cuda_task::{enqueue, CudaServer};

/// cuBLASLt's recommended workspace on Hopper.
const WORKSPACE_BYTES: usize = 32 << 20;
/// Plans kept per process; the DiT and its text encoder use a few dozen shapes.
const MAX_PLANS: usize = 512;

/// One problem's descriptors and the algorithm cuBLASLt's heuristic picked for it. Shared
/// with the device-thread tasks that use it, and destroyed when the last one is done.
struct Plan {
    desc: sys::cublasLtMatmulDesc_t,
    a: sys::cublasLtMatrixLayout_t,
    b: sys::cublasLtMatrixLayout_t,
    d: sys::cublasLtMatrixLayout_t,
    algo: sys::cublasLtMatmulAlgo_t,
}

impl Drop for Plan {
    fn drop(&mut self) {
        // SAFETY: made by `make_plan` and destroyed once, here.
        unsafe {
            let _ = lt::destroy_matrix_layout(self.a);
            let _ = lt::destroy_matrix_layout(self.b);
            let _ = lt::destroy_matrix_layout(self.d);
            let _ = lt::destroy_matmul_desc(self.desc);
        }
    }
}

/// The key a plan is cached under: dtypes, sizes, leading dims and batch strides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Problem {
    in_dtype: u8,
    /// f32 operands rounded to TF32 on tensor cores (`CUBLAS_COMPUTE_32F_FAST_TF32`).
    tf32: bool,
    out_dtype: u8,
    m: usize,
    n: usize,
    k: usize,
    batch: usize,
    ld: [usize; 3],
    batch_stride: [usize; 3],
    /// Byte alignment the lhs and rhs pointers are guaranteed (0: cuBLASLt's default, 256),
    /// for operands that start inside a buffer ([`tap_gemms`]).
    align: [u32; 2],
    /// A bias vector in the output's dtype added in cuBLASLt's epilogue ([`linear_bias`]).
    bias: bool,
}

/// GEMMs sent to cuBLASLt so far (`dit-forward` prints it).
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub calls: u64,
}

/// The cuBLASLt handle and a workspace per CubeCL stream: GEMMs on one stream run in order
/// and can share one, GEMMs of two host threads run on two streams and cannot.
struct Lt {
    handle: sys::cublasLtHandle_t,
    workspaces: Mutex<HashMap<u64, dsys::CUdeviceptr>>,
}

// SAFETY: cuBLASLt handles may be used from any thread; the workspace map is behind a mutex.
unsafe impl Send for Lt {}
unsafe impl Sync for Lt {}
unsafe impl Send for Plan {}
unsafe impl Sync for Plan {}

struct State {
    ordinal: usize,
    stats: Stats,
    lt: Arc<Lt>,
    device: DeviceHandle<CudaServer>,
    plans: HashMap<Problem, Arc<Plan>>,
    /// FP8 plans, or why cuBLASLt has none for the problem (asked once).
    fp8_plans: HashMap<Fp8Problem, Result<Arc<Plan>, String>>,
    /// NVFP4 plans (the same key, leading dimensions in values), or why there is none.
    nvfp4_plans: HashMap<Fp8Problem, Result<Arc<Plan>, String>>,
}

/// Which products [`matmul`] takes: f32 and f16/bf16 ones (the default, `SANA_CUBLAS=all`),
/// f32 ones only (`SANA_CUBLAS=f32`), or none (`SANA_CUBLAS=off`: cubek's routines).
fn mode() -> (bool, bool) {
    static MODE: OnceLock<(bool, bool)> = OnceLock::new();
    *MODE.get_or_init(|| match std::env::var("SANA_CUBLAS").as_deref() {
        Ok("off") | Ok("0") | Ok("none") => (false, false),
        Ok("f32") => (true, false),
        _ => (true, true),
    })
}

static STATE: OnceLock<Option<Mutex<State>>> = OnceLock::new();

/// cuBLASLt's handle, made on the first GEMM sent here.
fn state(device: &CudaDevice) -> Option<&'static Mutex<State>> {
    STATE
        .get_or_init(|| match init(device) {
            Ok(s) => Some(Mutex::new(s)),
            Err(e) => {
                eprintln!("note: cuBLASLt unavailable ({e}); GEMMs use cubek's routines");
                None
            }
        })
        .as_ref()
}

/// GEMMs sent to cuBLASLt so far; zero when none was (it does not start cuBLASLt).
pub fn stats() -> Stats {
    STATE.get().and_then(|s| s.as_ref()).and_then(|s| s.lock().ok().map(|s| s.stats)).unwrap_or_default()
}

fn init(device: &CudaDevice) -> Result<State, String> {
    // SAFETY: plain driver and cuBLASLt calls; the handle lives for the process.
    let handle = unsafe {
        if !sys::is_culib_present() {
            return Err("libcublasLt not found on the library path".into());
        }
        lt::create_handle().map_err(|e| format!("cublasLtCreate: {e:?}"))?
    };
    Ok(State {
        ordinal: device.index,
        stats: Stats::default(),
        lt: Arc::new(Lt { handle, workspaces: Mutex::new(HashMap::new()) }),
        // The device thread CubeCL's client for this device already runs.
        device: DeviceHandle::<CudaServer>::new(device.to_id()),
        plans: HashMap::new(),
        fp8_plans: HashMap::new(),
        nvfp4_plans: HashMap::new(),
    })
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
/// one cuBLASLt reads: unit column stride, and the batch dims foldable into one stride. The
/// matrices of a batch may interleave (per-head views of `[B, N, H, d]` rows, batch stride
/// `d` inside a row stride `H·d`) as long as no two share an element.
fn layout_of(shape: &[usize], strides: &[usize]) -> Option<(usize, usize, usize, usize, usize)> {
    let r = shape.len();
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
    let batch: usize = shape[..r - 2].iter().product();
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
        let disjoint = batch_stride >= ld * rows.max(1);
        let interleaved = batch_stride >= cols && (batch - 1) * batch_stride + cols <= ld;
        if !(disjoint || interleaved) {
            return None;
        }
    }
    Some((rows, cols, ld, batch, batch_stride))
}

fn layout(t: &CubeTensor) -> Option<(usize, usize, usize, usize, usize)> {
    if t.meta.tiling != Default::default() {
        return None;
    }
    layout_of(t.meta.shape(), t.meta.strides())
}

/// At most this many cuBLASLt calls for one product whose outer batch dim does not fold
/// (`[B, H, ..]` views of `[B, N, H, d]` rows: one strided batch over `H` per `b`).
const MAX_OUTER: usize = 64;

/// `t`'s layout as `outer` products `outer_stride` elements apart, each a strided batch;
/// `outer` is 1 when [`layout`] folds the whole batch.
fn split_layout(t: &CubeTensor, split: bool) -> Option<(usize, usize, (usize, usize, usize, usize, usize))> {
    if !split {
        return layout(t).map(|l| (1, 0, l));
    }
    if t.meta.tiling != Default::default() || t.meta.shape().num_dims() < 3 {
        return None;
    }
    let (shape, strides) = (t.meta.shape(), t.meta.strides());
    Some((shape[0], strides[0], layout_of(&shape[1..], &strides[1..])?))
}

/// How [`matmul_any`] lays out its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutLayout {
    /// Row-major `[.., M, N]`.
    Contiguous,
    /// For `[B, H, M, K] · [B, H, K, N]`: the `[B, H, M, N]` result stored as row-major
    /// `[B, M, H, N]` (returned as that view), so merging the heads back is free.
    HeadsMerged,
}

/// `lhs · rhs` (`[.., M, K] · [.., K, N]`, equal batch dims) into a new `out_dtype` tensor,
/// or `None` where cuBLASLt cannot take it or is not used for its dtype (see [`mode`]).
pub fn matmul(lhs: &CubeTensor, rhs: &CubeTensor, out_dtype: DType, out_layout: OutLayout) -> Option<CubeTensor> {
    let (f32s, halves) = mode();
    if !(if lhs.dtype == DType::F32 { f32s } else { halves }) {
        return None;
    }
    matmul_any(lhs, rhs, out_dtype, out_layout)
}

/// [`matmul`] for every dtype cuBLASLt takes, whatever `SANA_CUBLAS` says (`matmul-bench`,
/// `SANA_HALF_MATMUL=cublas`).
pub fn matmul_any(lhs: &CubeTensor, rhs: &CubeTensor, out_dtype: DType, out_layout: OutLayout) -> Option<CubeTensor> {
    matmul_with(lhs, rhs, None, out_dtype, out_layout, false)
}

/// `x · w + bias` for f16/bf16 operands (`[M, K] · [K, N]`, `bias` `[N]`, all one dtype) into
/// a new tensor of that dtype, the bias added in cuBLASLt's epilogue to the f32 sums before
/// their one rounding: no second pass over the `[M, N]` result, and one rounding instead of
/// two (PyTorch's `F.linear` on CUDA does the same). `None` where [`matmul`] would not take
/// it (or, with `any`, [`matmul_any`]).
pub fn linear_bias(x: &CubeTensor, w: &CubeTensor, bias: &CubeTensor, any: bool) -> Option<CubeTensor> {
    if !(any || mode().1) || !matches!(x.dtype, DType::F16 | DType::BF16) || bias.dtype != x.dtype {
        return None;
    }
    let n = *w.meta.shape().as_slice().last()?;
    if bias.meta.shape().as_slice() != [n] || bias.meta.strides()[0] != 1 || x.meta.shape().num_dims() != 2 {
        return None;
    }
    matmul_with(x, w, Some(bias), x.dtype, OutLayout::Contiguous, false)
}

/// An f32 product on TF32 tensor cores (operands rounded to 10 explicit mantissa bits, f32
/// accumulation), for callers whose result is rounded to f16/bf16 anyway (see
/// `matmul::matmul_fast_f32`); `None` where [`matmul`] would not take it.
pub fn matmul_tf32(lhs: &CubeTensor, rhs: &CubeTensor) -> Option<CubeTensor> {
    if lhs.dtype != DType::F32 || !mode().0 {
        return None;
    }
    matmul_with(lhs, rhs, None, DType::F32, OutLayout::Contiguous, true)
}

/// The product, with `bias` (`[N]`, the output's dtype, one strided batch only) added in the
/// epilogue when given.
fn matmul_with(lhs: &CubeTensor, rhs: &CubeTensor, bias: Option<&CubeTensor>, out_dtype: DType, out_layout: OutLayout, tf32: bool) -> Option<CubeTensor> {
    let cubecl::Device::Cuda(dev) = &lhs.device else {
        return None;
    };
    let state = state(dev)?;
    let (in_ty, in_code) = cuda_type(lhs.dtype)?;
    let (out_ty, out_code) = cuda_type(out_dtype)?;
    if rhs.dtype != lhs.dtype
        || (lhs.dtype == DType::F32 && out_dtype != DType::F32)
        || (lhs.dtype != DType::F32 && out_dtype != DType::F32 && out_dtype != lhs.dtype)
    {
        return None;
    }
    let (ls, rs) = (lhs.meta.shape(), rhs.meta.shape());
    let r = ls.num_dims();
    if r != rs.num_dims() || r < 2 || (0..r - 2).any(|i| ls[i] != rs[i]) || ls[r - 1] != rs[r - 2] {
        return None;
    }
    let mut out_dims: Vec<usize> = ls.iter().copied().collect();
    out_dims[r - 1] = rs[r - 1];
    // Contiguous, not CubeCL's default pitched rows (256-byte row starts on CUDA): every
    // consumer that reshapes or indexes rows linearly would otherwise copy it first.
    let out = match out_layout {
        OutLayout::Contiguous => empty_device_contiguous_dtype(lhs.client.clone(), lhs.device.clone(), Shape::from(out_dims), out_dtype),
        OutLayout::HeadsMerged => {
            if r != 4 {
                return None;
            }
            let merged = Shape::from(vec![out_dims[0], out_dims[2], out_dims[1], out_dims[3]]);
            let mut t = empty_device_contiguous_dtype(lhs.client.clone(), lhs.device.clone(), merged, out_dtype);
            t.meta.swap(1, 2);
            t
        }
    };
    // One strided batch if every operand folds its batch dims, else one per index of the
    // outermost dim (each of the rest folding).
    let split = layout(lhs).is_none() || layout(rhs).is_none() || layout(&out).is_none();
    let (outer, oa, (m, k, lda, batch, sa)) = split_layout(lhs, split)?;
    let (_, ob, (_, n, ldb, _, sb)) = split_layout(rhs, split)?;
    let (_, od, (_, _, ldd, _, sd)) = split_layout(&out, split)?;
    if m == 0 || n == 0 || k == 0 || outer > MAX_OUTER || (bias.is_some() && (outer > 1 || batch > 1 || out_dtype == DType::F32)) {
        return None;
    }
    let tf32 = tf32 && lhs.dtype == DType::F32;
    let problem = Problem { in_dtype: in_code, tf32, out_dtype: out_code, m, n, k, batch, ld: [lda, ldb, ldd], batch_stride: [sa, sb, sd], align: [0, 0], bias: bias.is_some() };
    let (in_size, out_size) = (lhs.dtype.size() as u64, out_dtype.size() as u64);
    let offsets: Vec<[u64; 3]> = (0..outer as u64).map(|i| [i * oa as u64 * in_size, i * ob as u64 * in_size, i * od as u64 * out_size]).collect();

    let mut st = state.lock().ok()?;
    if st.ordinal != dev.index {
        return None;
    }
    let plan = cached_plan(&mut st, problem, in_ty, out_ty, "cubek's routine")?;
    st.stats.calls += outer as u64;
    let lt = st.lt.clone();
    let mut buffers = vec![lhs.handle.clone().binding(), rhs.handle.clone().binding()];
    buffers.extend(bias.map(|b| b.handle.clone().binding()));
    buffers.push(out.handle.clone().binding());
    let written = buffers.len() - 1;
    enqueue(&st.device, buffers, vec![written], move |stream_id, stream, ptr| {
        let workspace = lt.workspace(stream_id)?;
        let out = ptr[written];
        if problem.bias {
            // The plan's descriptor is only touched on this (the device) thread, and cuBLASLt
            // reads it when the GEMM is enqueued: setting the pointer per call is safe as long
            // as every GEMM of a plan is enqueued here (no graph capture replays it).
            // SAFETY: the address is the live bias buffer's.
            let set = unsafe { lt::set_matmul_desc_attribute(plan.desc, sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_BIAS_POINTER, &ptr[2] as *const u64 as *const c_void, 8) };
            set.map_err(|e| format!("cuBLASLt GEMM {problem:?}: bias pointer: {e:?}"))?;
        }
        for [oa, ob, od] in &offsets {
            // SAFETY: the pointers address live buffers of the plan's sizes.
            unsafe { gemm(&lt, &plan, workspace, stream, ptr[1] + ob, ptr[0] + oa, out + od, 0.0) }.map_err(|e| format!("cuBLASLt GEMM {problem:?}: {e}"))?;
        }
        Ok(())
    });
    Some(out)
}

/// Sum over taps of row-shifted products, for convolutions over a flattened padded grid:
/// `out[r, :] = Σ_i x[r + offsets[i], :] · w[i·C .. (i+1)·C, :]` for `r < m`, with `x`
/// `[R, C]` and `w` `[taps·C, O]` row-major and contiguous, into a new f32 `[R, O]` tensor
/// whose rows from `m` on are left unwritten (a conv's outputs that fall off the grid).
/// Each tap is one GEMM reading `x` in place at its offset, accumulated by cuBLASLt into
/// the output (`beta` 1): no shifted copies. `None` where cuBLASLt cannot take it.
pub fn tap_gemms(x: &CubeTensor, w: &CubeTensor, offsets: &[usize], m: usize, tf32: bool) -> Option<CubeTensor> {
    let cubecl::Device::Cuda(dev) = &x.device else {
        return None;
    };
    let (f32s, halves) = mode();
    if !(if x.dtype == DType::F32 { f32s } else { halves }) || w.dtype != x.dtype {
        return None;
    }
    let state = state(dev)?;
    let (ty, code) = cuda_type(x.dtype)?;
    let (xs, ws) = (x.meta.shape(), w.meta.shape());
    if xs.num_dims() != 2 || ws.num_dims() != 2 || offsets.is_empty() || x.meta.tiling != Default::default() || w.meta.tiling != Default::default() {
        return None;
    }
    let (rows, c, o) = (xs[0], xs[1], ws[1]);
    if ws[0] != offsets.len() * c || x.meta.strides()[..] != [c, 1] || w.meta.strides()[..] != [o, 1] || m == 0 || c == 0 || o == 0 {
        return None;
    }
    if offsets.iter().any(|&off| off + m > rows) {
        return None;
    }
    let size = x.dtype.size();
    // The largest power of two (at most 256) dividing every operand's start, in bytes.
    let align = |starts: &mut dyn Iterator<Item = usize>| -> u32 { starts.fold(256usize, |a, s| if s == 0 { a } else { a.min(1 << s.trailing_zeros()) }) as u32 };
    let align_x = align(&mut offsets.iter().map(|&off| off * c * size));
    let align_w = align(&mut (0..offsets.len()).map(|i| i * c * o * size));
    let tf32 = tf32 && x.dtype == DType::F32;
    // The taps accumulate in the output, so it is f32 whatever the operands: a 16-bit output
    // would round each of the (up to 27) partial sums.
    let (out_ty, out_code) = cuda_type(DType::F32)?;
    let problem = Problem { in_dtype: code, tf32, out_dtype: out_code, m, n: o, k: c, batch: 1, ld: [c, o, o], batch_stride: [0; 3], align: [align_x, align_w], bias: false };
    let out = empty_device_contiguous_dtype(x.client.clone(), x.device.clone(), Shape::from(vec![rows, o]), DType::F32);
    let starts: Vec<[u64; 2]> = offsets.iter().enumerate().map(|(i, &off)| [(off * c * size) as u64, (i * c * o * size) as u64]).collect();

    let mut st = state.lock().ok()?;
    if st.ordinal != dev.index {
        return None;
    }
    let plan = cached_plan(&mut st, problem, ty, out_ty, "per-tap products")?;
    st.stats.calls += starts.len() as u64;
    let lt = st.lt.clone();
    let buffers = vec![x.handle.clone().binding(), w.handle.clone().binding(), out.handle.clone().binding()];
    enqueue(&st.device, buffers, vec![2], move |stream_id, stream, ptr| {
        let workspace = lt.workspace(stream_id)?;
        for (i, [ox, ow]) in starts.iter().enumerate() {
            let beta = if i == 0 { 0.0 } else { 1.0 };
            // SAFETY: every tap's rows `[off, off + m)` lie inside `x` (checked above), its
            // weight slab inside `w`, and the first `m` output rows inside `out`.
            unsafe { gemm(&lt, &plan, workspace, stream, ptr[1] + ow, ptr[0] + ox, ptr[2], beta) }.map_err(|e| format!("cuBLASLt tap GEMM {problem:?}: {e}"))?;
        }
        Ok(())
    });
    Some(out)
}

/// `problem`'s plan, made on first use; `None` (with a note naming `fallback`) where
/// cuBLASLt has none.
fn cached_plan(st: &mut State, problem: Problem, in_ty: sys::cudaDataType, out_ty: sys::cudaDataType, fallback: &str) -> Option<Arc<Plan>> {
    if let Some(plan) = st.plans.get(&problem) {
        return Some(plan.clone());
    }
    // SAFETY: descriptors only; the handle is live.
    let plan = match unsafe { make_plan(st.lt.handle, &problem, in_ty, out_ty) } {
        Ok(plan) => Arc::new(plan),
        Err(e) => {
            eprintln!("note: cuBLASLt cannot plan {problem:?} ({e}); using {fallback}");
            return None;
        }
    };
    if st.plans.len() >= MAX_PLANS {
        st.plans.clear();
    }
    st.plans.insert(problem, plan.clone());
    Some(plan)
}

impl Lt {
    /// This stream's workspace, allocated on its first GEMM (on CubeCL's device thread, whose
    /// context is current).
    fn workspace(&self, stream: StreamId) -> Result<dsys::CUdeviceptr, String> {
        let mut map = self.workspaces.lock().map_err(|_| "cuBLASLt workspace lock poisoned".to_string())?;
        if let Some(&ptr) = map.get(&stream.value) {
            return Ok(ptr);
        }
        // SAFETY: a plain allocation, kept for the process.
        let ptr = unsafe { drv::malloc_sync(WORKSPACE_BYTES) }.map_err(|e| format!("cuBLASLt workspace ({} MiB): {e:?}", WORKSPACE_BYTES >> 20))?;
        map.insert(stream.value, ptr);
        Ok(ptr)
    }
}

/// Enqueues the GEMM on `stream`. cuBLASLt is column-major: row-major
/// `D[M,N] = A[M,K]·B[K,N]` is column-major `Dᵀ[N,M] = Bᵀ[N,K]·Aᵀ[K,M]`, so its "A" is our
/// `rhs` and its "B" our `lhs`.
///
/// # Safety
/// The pointers address live buffers of the sizes the plan describes.
/// `beta` 1 adds the product to what `out` holds (C = D in place).
unsafe fn gemm(lt: &Lt, plan: &Plan, workspace: dsys::CUdeviceptr, stream: dsys::CUstream, rhs: u64, lhs: u64, out: u64, beta: f32) -> Result<(), String> {
    let alpha = 1.0f32;
    gemm_scaled(lt, plan, workspace, stream, rhs, lhs, out, &alpha as *const f32 as *const c_void, &beta as *const f32 as *const c_void)
}

/// [`gemm`] with alpha and beta given as pointers (host or device memory, as the plan's
/// pointer mode says).
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_scaled(
    lt: &Lt,
    plan: &Plan,
    workspace: dsys::CUdeviceptr,
    stream: dsys::CUstream,
    rhs: u64,
    lhs: u64,
    out: u64,
    alpha: *const c_void,
    beta: *const c_void,
) -> Result<(), String> {
    lt::matmul(
        lt.handle,
        plan.desc,
        alpha,
        beta,
        rhs as *const c_void,
        plan.a,
        lhs as *const c_void,
        plan.b,
        out as *const c_void,
        plan.d,
        out as *mut c_void,
        plan.d,
        &plan.algo,
        workspace as *mut c_void,
        WORKSPACE_BYTES,
        stream as sys::cudaStream_t,
    )
    .map_err(|e| format!("cublasLtMatmul: {e:?}"))
}

unsafe fn make_plan(handle: sys::cublasLtHandle_t, p: &Problem, in_ty: sys::cudaDataType, out_ty: sys::cudaDataType) -> Result<Plan, String> {
    let err = |what: &'static str| move |e: cudarc::cublaslt::result::CublasError| format!("{what}: {e:?}");
    use sys::cublasComputeType_t::{CUBLAS_COMPUTE_32F, CUBLAS_COMPUTE_32F_FAST_TF32};
    let compute = if p.tf32 { CUBLAS_COMPUTE_32F_FAST_TF32 } else { CUBLAS_COMPUTE_32F };
    let desc = lt::create_matmul_desc(compute, sys::cudaDataType::CUDA_R_32F).map_err(err("matmul desc"))?;
    if p.bias {
        use sys::cublasLtMatmulDescAttributes_t as A;
        // As for the scaled plans: planned with a stand-in address, the bias's set before
        // every call.
        let stand_in: u64 = 1 << 20;
        let epilogue = sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BIAS as u32;
        let ty = out_ty as i32;
        let attrs = || -> Result<(), cudarc::cublaslt::result::CublasError> {
            lt::set_matmul_desc_attribute(desc, A::CUBLASLT_MATMUL_DESC_BIAS_POINTER, &stand_in as *const u64 as *const c_void, 8)?;
            lt::set_matmul_desc_attribute(desc, A::CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue as *const u32 as *const c_void, 4)?;
            lt::set_matmul_desc_attribute(desc, A::CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &ty as *const i32 as *const c_void, 4)
        };
        if let Err(e) = attrs() {
            let _ = lt::destroy_matmul_desc(desc);
            return Err(format!("bias epilogue: {e:?}"));
        }
    }
    let matrix = |ty, rows: usize, cols: usize, ld: usize, stride: usize| -> Result<sys::cublasLtMatrixLayout_t, String> {
        let l = lt::create_matrix_layout(ty, rows as u64, cols as u64, ld as i64).map_err(err("layout"))?;
        if p.batch > 1 {
            let count = p.batch as i32;
            let stride = stride as i64;
            lt::set_matrix_layout_attribute(
                l,
                sys::cublasLtMatrixLayoutAttribute_t::CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                &count as *const i32 as *const c_void,
                4,
            )
            .map_err(err("batch count"))?;
            lt::set_matrix_layout_attribute(
                l,
                sys::cublasLtMatrixLayoutAttribute_t::CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                &stride as *const i64 as *const c_void,
                8,
            )
            .map_err(err("batch stride"))?;
        }
        Ok(l)
    };
    // Column-major views (see `gemm`): A = rhsᵀ [N, K], B = lhsᵀ [K, M], D = outᵀ [N, M].
    let a = matrix(in_ty, p.n, p.k, p.ld[1], p.batch_stride[1])?;
    let b = matrix(in_ty, p.k, p.m, p.ld[0], p.batch_stride[0])?;
    let d = matrix(out_ty, p.n, p.m, p.ld[2], p.batch_stride[2])?;
    let pref = lt::create_matmul_pref().map_err(err("preference"))?;
    let ws = WORKSPACE_BYTES as u64;
    lt::set_matmul_pref_attribute(
        pref,
        sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
        &ws as *const u64 as *const c_void,
        8,
    )
    .map_err(err("workspace size"))?;
    // cuBLASLt's "A" is our rhs, its "B" our lhs (see `gemm`).
    for (attr, align) in [
        (sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, p.align[0]),
        (sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, p.align[1]),
    ] {
        if align != 0 {
            lt::set_matmul_pref_attribute(pref, attr, &align as *const u32 as *const c_void, 4).map_err(err("alignment"))?;
        }
    }
    let heuristic = lt::get_matmul_algo_heuristic(handle, desc, a, b, d, d, pref).map_err(err("no algorithm for this problem"));
    let _ = lt::destroy_matmul_pref(pref);
    Ok(Plan { desc, a, b, d, algo: heuristic?.algo })
}

// ---- FP8 (e4m3) W8A8 products ---------------------------------------------------------

/// An FP8 product's plan key: `[m, k]` activation codes times `[n, k]` weight codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fp8Problem {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// Row strides of the activation and weight codes, in bytes (codes): at least `k`.
    pub ld_x: usize,
    pub ld_w: usize,
    /// 0 f32, 1 f16, 2 bf16 (see `cuda_type`).
    pub out_dtype: u8,
    /// Whether the bias is added in cuBLASLt's epilogue (half-precision results only).
    pub bias: bool,
    /// FP8 products: cuBLASLt's fast accumulation ([`fp8_fast_accumulation`]); false for NVFP4.
    pub fast_accum: bool,
}

fn out_type(code: u8) -> Option<sys::cudaDataType> {
    [DType::F32, DType::F16, DType::BF16].get(code as usize).and_then(|&d| cuda_type(d)).map(|(t, _)| t)
}

/// Whether cuBLASLt plans `problem` on `device` (planning it now if it was not asked yet),
/// or why not. FP8 products with per-row scale vectors need Hopper or newer and cuBLASLt 12.9
/// or newer; elsewhere there is no plan. Sizes: `k` and `n` multiples of 16 (cuBLASLt's FP8
/// alignment).
pub fn fp8_plan_status(device: &CudaDevice, problem: Fp8Problem) -> Result<(), String> {
    plan_status(device, |st| fp8_plan(st, problem))
}

/// `plan` run on `device`'s cuBLASLt state: whether it planned, or why not.
fn plan_status(device: &CudaDevice, plan: impl FnOnce(&mut State) -> Result<Arc<Plan>, String>) -> Result<(), String> {
    let state = state(device).ok_or("cuBLASLt unavailable")?;
    let mut st = state.lock().map_err(|_| "cuBLASLt state lock poisoned")?;
    if st.ordinal != device.index {
        return Err(format!("cuBLASLt runs on CUDA device {}", st.ordinal));
    }
    plan(&mut st).map(|_| ())
}

/// The plan cached under `p` in `plans`, else `make`'s, cached (the cache emptied when full).
fn cached_scaled_plan(
    plans: &mut HashMap<Fp8Problem, Result<Arc<Plan>, String>>,
    p: Fp8Problem,
    make: impl FnOnce() -> Result<Arc<Plan>, String>,
) -> Result<Arc<Plan>, String> {
    if let Some(plan) = plans.get(&p) {
        return plan.clone();
    }
    let plan = make();
    if plans.len() >= MAX_PLANS {
        plans.clear();
    }
    plans.insert(p, plan.clone());
    plan
}

/// [`fp8_plan_status`] as a yes or no.
pub fn fp8_plannable(device: &CudaDevice, problem: Fp8Problem) -> bool {
    fp8_plan_status(device, problem).is_ok()
}

fn fp8_plan(st: &mut State, p: Fp8Problem) -> Result<Arc<Plan>, String> {
    let aligned = p.n % 16 == 0 && p.k % 16 == 0 && p.ld_x % 16 == 0 && p.ld_w % 16 == 0 && p.ld_x >= p.k && p.ld_w >= p.k;
    if p.m == 0 || p.n == 0 || p.k == 0 || !aligned || (p.bias && p.out_dtype == 0) {
        return Err(format!("{p:?} is not an FP8 problem cuBLASLt takes (sizes multiples of 16; bias only with a 16-bit result)"));
    }
    let handle = st.lt.handle;
    cached_scaled_plan(&mut st.fp8_plans, p, || {
        let out_ty = out_type(p.out_dtype).ok_or("unknown output dtype")?;
        // SAFETY: descriptors only; the handle is live.
        unsafe { make_scaled_plan(handle, &p, out_ty, Scaling::Fp8Vectors) }.map(Arc::new).map_err(|e| {
            // Say whether FP8 GEMMs plan at all here (with scalar scales), to tell a refused
            // scale mode from a missing FP8 GEMM.
            // SAFETY: as above.
            let scalar = match unsafe { make_scaled_plan(handle, &p, out_ty, Scaling::Fp8Scalar) } {
                Ok(_) => "planned".to_string(),
                Err(e) => e,
            };
            format!("{e}; with scalar scales instead: {scalar}")
        })
    })
}

/// `y[M, N] = x_scale[m] · w_scale[n] · Σ_k e4m3(x_codes[m, k]) · e4m3(w_codes[n, k]) (+ bias[n])`
/// on FP8 tensor cores, accumulated in f32 and rounded once to `out_dtype`. `x_codes` `[M, K/4]`
/// and `w_codes` `[N, K/4]` are row-major e4m3 bytes packed in i32s (first code in the lowest
/// byte, so the buffers are the byte matrices cuBLASLt reads); the scales are f32 vectors; the
/// bias, in `out_dtype` (f16 or bf16 only), is added in the GEMM's epilogue. `None` where the
/// device or cuBLASLt cannot (see [`fp8_plannable`]). `fast_accum`: the accumulation mode
/// (see [`fp8_fast_accumulation`]; passed in, so that a caller's plan and its product agree).
pub fn fp8_linear(x_codes: &CubeTensor, x_scale: &CubeTensor, w_codes: &CubeTensor, w_scale: &CubeTensor, bias: Option<&CubeTensor>, out_dtype: DType, fast_accum: bool) -> Option<CubeTensor> {
    let cubecl::Device::Cuda(dev) = &x_codes.device else {
        return None;
    };
    let (_, out_code) = cuda_type(out_dtype)?;
    let (xs, ws) = (x_codes.meta.shape(), w_codes.meta.shape());
    if xs.num_dims() != 2 || ws.num_dims() != 2 || xs[1] != ws[1] || x_codes.dtype != DType::I32 || w_codes.dtype != DType::I32 {
        return None;
    }
    let (m, n, k) = (xs[0], ws[0], xs[1] * 4);
    // Row stride (in i32 words) of a row-major matrix with unit column stride.
    let row_stride = |t: &CubeTensor, cols: usize| layout(t).and_then(|(_, c, ld, batch, _)| (c == cols && batch == 1).then_some(ld));
    let vector = |t: &CubeTensor, len: usize, dtype: DType| {
        t.dtype == dtype && t.meta.tiling == Default::default() && t.meta.shape().num_dims() == 1 && t.meta.shape()[0] == len && t.meta.strides()[0] == 1
    };
    let (Some(ld_x), Some(ld_w)) = (row_stride(x_codes, k / 4), row_stride(w_codes, k / 4)) else {
        return None;
    };
    if !vector(x_scale, m, DType::F32) || !vector(w_scale, n, DType::F32) {
        return None;
    }
    if bias.is_some_and(|b| !vector(b, n, out_dtype)) {
        return None;
    }
    let problem = Fp8Problem { m, n, k, ld_x: 4 * ld_x, ld_w: 4 * ld_w, out_dtype: out_code, bias: bias.is_some(), fast_accum };
    let state = state(dev)?;
    let mut st = state.lock().ok()?;
    if st.ordinal != dev.index {
        return None;
    }
    let plan = fp8_plan(&mut st, problem).ok()?;
    Some(enqueue_scaled(&mut st, plan, &[x_codes, x_scale, w_codes, w_scale], bias, [m, n], out_dtype, format!("cuBLASLt FP8 GEMM {problem:?}"), fp8_gemm))
}

/// A scaled GEMM's enqueuing routine: `ptr` holds the operands' device addresses, then the
/// bias's if the plan adds one, and last the output's.
type ScaledGemm = unsafe fn(&Lt, &Plan, dsys::CUdeviceptr, dsys::CUstream, &[u64]) -> Result<(), String>;

/// Enqueues `run` on CubeCL's device thread with `operands`, the bias if any and a new
/// `shape` output in `out_dtype` as its buffers (the output the only one written), and
/// returns that output. `what` names the GEMM in a failure.
#[allow(clippy::too_many_arguments)]
fn enqueue_scaled(
    st: &mut State,
    plan: Arc<Plan>,
    operands: &[&CubeTensor],
    bias: Option<&CubeTensor>,
    shape: [usize; 2],
    out_dtype: DType,
    what: String,
    run: ScaledGemm,
) -> CubeTensor {
    let first = operands[0];
    let out = empty_device_contiguous_dtype(first.client.clone(), first.device.clone(), Shape::from(shape.to_vec()), out_dtype);
    st.stats.calls += 1;
    let lt = st.lt.clone();
    let mut buffers: Vec<_> = operands.iter().copied().chain(bias).map(|t| t.handle.clone().binding()).collect();
    buffers.push(out.handle.clone().binding());
    let written = vec![buffers.len() - 1];
    enqueue(&st.device, buffers, written, move |stream_id, stream, ptr| {
        let workspace = lt.workspace(stream_id)?;
        // SAFETY: the pointers address live buffers of the plan's sizes; the descriptor is only
        // touched on this (the device) thread.
        unsafe { run(&lt, &plan, workspace, stream, ptr) }.map_err(|e| format!("{what}: {e}"))
    });
    out
}

/// Enqueues an FP8 GEMM. `ptr`: activation codes, token scales, weight codes, channel scales,
/// then the bias if the plan adds one, and last the output. cuBLASLt's "A" is the weight
/// (`[N, K]` row-major, i.e. column-major `[K, N]` transposed: the "TN" layout FP8 tensor
/// cores require), its "B" the activations, so its `m` is our `n`.
unsafe fn fp8_gemm(lt: &Lt, plan: &Plan, workspace: dsys::CUdeviceptr, stream: dsys::CUstream, ptr: &[u64]) -> Result<(), String> {
    use sys::cublasLtMatmulDescAttributes_t as A;
    let set = |attr: A, p: &u64| lt::set_matmul_desc_attribute(plan.desc, attr, p as *const u64 as *const c_void, 8).map_err(|e| format!("{attr:?}: {e:?}"));
    let (x, xs, w, ws, out) = (ptr[0], ptr[1], ptr[2], ptr[3], ptr[ptr.len() - 1]);
    set(A::CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &ws)?;
    set(A::CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &xs)?;
    if ptr.len() == 6 {
        set(A::CUBLASLT_MATMUL_DESC_BIAS_POINTER, &ptr[4])?;
    }
    gemm(lt, plan, workspace, stream, w, x, out, 0.0)
}

/// FP8 accumulation mode: 0 not chosen yet (`SANA_FP8_FAST_ACCUM` decides), 1 fast, 2 precise.
static FAST_ACCUM: AtomicU8 = AtomicU8::new(0);

/// Whether FP8 products use cuBLASLt's fast accumulation: the default; `SANA_FP8_FAST_ACCUM=0`
/// (or [`set_fp8_fast_accumulation`]) chooses the precise mode instead. Hopper's FP8 tensor
/// cores add products in an accumulator narrower than f32 (about 14 mantissa bits); in the
/// precise mode cuBLASLt moves those partial sums into f32 every few steps of `k`, in the fast
/// mode only at the end. Measured on an H200 (BENCHMARKS.md): the 480p FP8 DiT forward 0.456
/// against 0.495 s, its error against the float64 reference 5.229e-2 against 5.222e-2 (the
/// weights' and activations' FP8 rounding dominate); one product at `k` = 2240, 1.2e-3
/// against 2e-4. Inference engines (vLLM's CUTLASS FP8 kernels, torchao) use it too.
pub fn fp8_fast_accumulation() -> bool {
    match FAST_ACCUM.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let fast = !matches!(std::env::var("SANA_FP8_FAST_ACCUM").as_deref(), Ok("0") | Ok("off"));
            // A concurrent `set_fp8_fast_accumulation` wins.
            let _ = FAST_ACCUM.compare_exchange(0, if fast { 1 } else { 2 }, Ordering::Relaxed, Ordering::Relaxed);
            FAST_ACCUM.load(Ordering::Relaxed) == 1
        }
    }
}

/// Chooses FP8 products' accumulation for the products planned from now on (see
/// [`fp8_fast_accumulation`]); plans are kept per mode.
pub fn set_fp8_fast_accumulation(fast: bool) {
    FAST_ACCUM.store(if fast { 1 } else { 2 }, Ordering::Relaxed);
}

/// How a scaled product's operands are scaled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scaling {
    /// FP8 codes with per-row f32 scale vectors (what FP8 products use).
    Fp8Vectors,
    /// FP8 codes with scalar scales: only to tell a refused scale mode from no FP8 GEMM.
    Fp8Scalar,
    /// e2m1 codes with an e4m3 scale per 16 values in cuBLASLt's tiled layout, alpha and
    /// beta read from device memory (the activations' global scale is computed there).
    Nvfp4,
}

unsafe fn make_scaled_plan(handle: sys::cublasLtHandle_t, p: &Fp8Problem, out_ty: sys::cudaDataType, scaling: Scaling) -> Result<Plan, String> {
    use sys::cublasLtMatmulDescAttributes_t as A;
    let err = |what: &'static str| move |e: cudarc::cublaslt::result::CublasError| format!("{what}: {e:?}");
    let desc = lt::create_matmul_desc(sys::cublasComputeType_t::CUBLAS_COMPUTE_32F, sys::cudaDataType::CUDA_R_32F).map_err(err("matmul desc"))?;
    let set_i32 = |attr: A, v: i32| lt::set_matmul_desc_attribute(desc, attr, &v as *const i32 as *const c_void, 4);
    // A (the weight) transposed: CUBLAS_OP_T is 1.
    let mode = match scaling {
        Scaling::Fp8Vectors => Some(sys::cublasLtMatmulMatrixScale_t::CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F as i32),
        Scaling::Fp8Scalar => None,
        Scaling::Nvfp4 => Some(sys::cublasLtMatmulMatrixScale_t::CUBLASLT_MATMUL_MATRIX_SCALE_VEC16_UE4M3 as i32),
    };
    let attrs = || -> Result<(), cudarc::cublaslt::result::CublasError> {
        set_i32(A::CUBLASLT_MATMUL_DESC_TRANSA, 1)?;
        if let Some(mode) = mode {
            set_i32(A::CUBLASLT_MATMUL_DESC_A_SCALE_MODE, mode)?;
            set_i32(A::CUBLASLT_MATMUL_DESC_B_SCALE_MODE, mode)?;
        }
        if scaling == Scaling::Nvfp4 {
            set_i32(A::CUBLASLT_MATMUL_DESC_POINTER_MODE, sys::cublasLtPointerMode_t::CUBLASLT_POINTER_MODE_DEVICE as i32)?;
        }
        // Vector scales (and the bias) are read through pointers that are set before every
        // call; cuBLASLt checks them when planning too and refuses null ones (INVALID_VALUE),
        // so the plan is made with a stand-in address, never dereferenced while planning.
        let stand_in: u64 = 1 << 20;
        for attr in [A::CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, A::CUBLASLT_MATMUL_DESC_B_SCALE_POINTER] {
            lt::set_matmul_desc_attribute(desc, attr, &stand_in as *const u64 as *const c_void, 8)?;
        }
        if p.bias {
            lt::set_matmul_desc_attribute(desc, A::CUBLASLT_MATMUL_DESC_BIAS_POINTER, &stand_in as *const u64 as *const c_void, 8)?;
        }
        if scaling != Scaling::Nvfp4 {
            let fast = p.fast_accum as i8;
            lt::set_matmul_desc_attribute(desc, A::CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast as *const i8 as *const c_void, 1)?;
        }
        if p.bias {
            let epilogue = sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BIAS as u32;
            lt::set_matmul_desc_attribute(desc, A::CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue as *const u32 as *const c_void, 4)?;
            set_i32(A::CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, out_ty as i32)?;
        }
        Ok(())
    };
    if let Err(e) = attrs() {
        let _ = lt::destroy_matmul_desc(desc);
        return Err(format!("{scaling:?} descriptor: {e:?}"));
    }
    let in_ty = if scaling == Scaling::Nvfp4 { sys::cudaDataType::CUDA_R_4F_E2M1 } else { sys::cudaDataType::CUDA_R_8F_E4M3 };
    let layouts = || -> Result<_, cudarc::cublaslt::result::CublasError> {
        Ok((
            lt::create_matrix_layout(in_ty, p.k as u64, p.n as u64, p.ld_w as i64)?,
            lt::create_matrix_layout(in_ty, p.k as u64, p.m as u64, p.ld_x as i64)?,
            lt::create_matrix_layout(out_ty, p.n as u64, p.m as u64, p.n as i64)?,
        ))
    };
    let (a, b, d) = match layouts() {
        Ok(l) => l,
        Err(e) => {
            let _ = lt::destroy_matmul_desc(desc);
            return Err(format!("{scaling:?} layouts: {e:?}"));
        }
    };
    // From here the plan owns the descriptors (its Drop destroys them).
    let mut plan = Plan { desc, a, b, d, algo: std::mem::zeroed() };
    let pref = lt::create_matmul_pref().map_err(err("preference"))?;
    let ws = WORKSPACE_BYTES as u64;
    let set_ws = lt::set_matmul_pref_attribute(
        pref,
        sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
        &ws as *const u64 as *const c_void,
        8,
    );
    let heuristic = set_ws.and_then(|_| lt::get_matmul_algo_heuristic(handle, desc, a, b, d, d, pref)).map_err(err("no algorithm for this problem"));
    let _ = lt::destroy_matmul_pref(pref);
    plan.algo = heuristic?.algo;
    Ok(plan)
}

// ---- NVFP4 W4A4 products: the FP4 tensor cores of sm_100 / sm_120 -------------------------

/// Whether cuBLASLt plans the NVFP4 product `problem` (leading dimensions in values) on
/// `device`, or why not. Block-scaled FP4 GEMMs exist on Blackwell (sm_100, sm_120) with
/// cuBLASLt 12.8 or newer; on older GPUs the heuristic finds no algorithm. Sizes: `k` a
/// multiple of 64 (the quantiser's scale words), `n` of 32.
pub fn nvfp4_plan_status(device: &CudaDevice, problem: Fp8Problem) -> Result<(), String> {
    plan_status(device, |st| nvfp4_plan(st, problem))
}

fn nvfp4_plan(st: &mut State, p: Fp8Problem) -> Result<Arc<Plan>, String> {
    let aligned = p.n % 32 == 0 && p.k % 64 == 0 && p.ld_x % 64 == 0 && p.ld_w % 64 == 0 && p.ld_x >= p.k && p.ld_w >= p.k;
    if p.m == 0 || p.n == 0 || p.k == 0 || !aligned || (p.bias && p.out_dtype == 0) {
        return Err(format!("{p:?} is not an NVFP4 problem cuBLASLt takes (k a multiple of 64, n of 32; bias only with a 16-bit result)"));
    }
    let handle = st.lt.handle;
    cached_scaled_plan(&mut st.nvfp4_plans, p, || {
        let out_ty = out_type(p.out_dtype).ok_or("unknown output dtype")?;
        // SAFETY: descriptors only; the handle is live.
        unsafe { make_scaled_plan(handle, &p, out_ty, Scaling::Nvfp4) }.map(Arc::new)
    })
}

/// `y[M, N] = globals[1] · Σ_k x̂[m, k] · ŵ[n, k] (+ bias[n])` on FP4 tensor cores, where
/// `x̂ = e2m1(x_codes) · e4m3(x_scales)` and `ŵ` likewise (NVFP4 blocks of 16 along `k`),
/// accumulated in f32 and rounded once to `out_dtype`. `x_codes` `[M, K/8]` and `w_codes`
/// `[N, K/8]`: row-major e2m1 nibbles, eight per i32, first in the lowest; `x_scales` and
/// `w_scales`: e4m3 scale codes in cuBLASLt's tiled layout (`nvfp4::ScaleLayout::Tiled`);
/// `globals` `[3]` f32 on the device: the activations' global scale, alpha (it times the
/// weight's) and beta (0), as `nvfp4::quantize_rows` writes them. `None` where the device or
/// cuBLASLt cannot (see [`nvfp4_plan_status`]).
#[allow(clippy::too_many_arguments)]
pub fn nvfp4_linear(
    x_codes: &CubeTensor,
    x_scales: &CubeTensor,
    globals: &CubeTensor,
    w_codes: &CubeTensor,
    w_scales: &CubeTensor,
    bias: Option<&CubeTensor>,
    out_dtype: DType,
) -> Option<CubeTensor> {
    let cubecl::Device::Cuda(dev) = &x_codes.device else {
        return None;
    };
    let (_, out_code) = cuda_type(out_dtype)?;
    let (xs, ws) = (x_codes.meta.shape(), w_codes.meta.shape());
    if xs.num_dims() != 2 || ws.num_dims() != 2 || xs[1] != ws[1] || x_codes.dtype != DType::I32 || w_codes.dtype != DType::I32 {
        return None;
    }
    let (m, n, k) = (xs[0], ws[0], xs[1] * 8);
    let contiguous = |t: &CubeTensor, cols: usize| layout(t).is_some_and(|(_, c, ld, batch, _)| c == cols && ld == cols && batch == 1);
    let vector = |t: &CubeTensor, len: usize, dtype: DType| {
        t.dtype == dtype && t.meta.tiling == Default::default() && t.meta.shape().num_dims() == 1 && t.meta.shape()[0] == len && t.meta.strides()[0] == 1
    };
    let words = |rows: usize| rows.div_ceil(128) * 128 * (k / 64);
    if !contiguous(x_codes, k / 8) || !contiguous(w_codes, k / 8) || k % 64 != 0 {
        return None;
    }
    if !vector(x_scales, words(m), DType::I32) || !vector(w_scales, words(n), DType::I32) || !vector(globals, 3, DType::F32) {
        return None;
    }
    if bias.is_some_and(|b| !vector(b, n, out_dtype)) {
        return None;
    }
    let problem = Fp8Problem { m, n, k, ld_x: k, ld_w: k, out_dtype: out_code, bias: bias.is_some(), fast_accum: false };
    let state = state(dev)?;
    let mut st = state.lock().ok()?;
    if st.ordinal != dev.index {
        return None;
    }
    let plan = nvfp4_plan(&mut st, problem).ok()?;
    let operands = [x_codes, x_scales, globals, w_codes, w_scales];
    Some(enqueue_scaled(&mut st, plan, &operands, bias, [m, n], out_dtype, format!("cuBLASLt NVFP4 GEMM {problem:?}"), nvfp4_gemm))
}

/// Enqueues an NVFP4 GEMM. `ptr`: activation codes, their scales, the globals, weight codes,
/// their scales, the bias if the plan adds one, and last the output. As for FP8, cuBLASLt's
/// "A" is the weight (the "TN" layout), its "B" the activations; alpha and beta are read from
/// the globals' second and third floats.
unsafe fn nvfp4_gemm(lt: &Lt, plan: &Plan, workspace: dsys::CUdeviceptr, stream: dsys::CUstream, ptr: &[u64]) -> Result<(), String> {
    use sys::cublasLtMatmulDescAttributes_t as A;
    let set = |attr: A, p: &u64| lt::set_matmul_desc_attribute(plan.desc, attr, p as *const u64 as *const c_void, 8).map_err(|e| format!("{attr:?}: {e:?}"));
    let (x, xs, globals, w, ws, out) = (ptr[0], ptr[1], ptr[2], ptr[3], ptr[4], ptr[ptr.len() - 1]);
    set(A::CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &ws)?;
    set(A::CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &xs)?;
    if ptr.len() == 7 {
        set(A::CUBLASLT_MATMUL_DESC_BIAS_POINTER, &ptr[5])?;
    }
    gemm_scaled(lt, plan, workspace, stream, w, x, out, (globals + 4) as *const c_void, (globals + 8) as *const c_void)
}
