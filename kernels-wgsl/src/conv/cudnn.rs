//! cuDNN convolutions on CubeCL's CUDA stream (see `conv/mod.rs` for why).
//!
//! Like the cuBLASLt GEMMs (`matmul/cublas.rs`), each conv is a task on CubeCL's device
//! thread ([`crate::cuda_task::enqueue`]), enqueued on CubeCL's stream, ordered like any CubeCL
//! kernel, the host never waiting. The cuDNN handle is made, and every
//! problem planned (descriptors, the heuristic's algorithm), on that thread too
//! (`submit_blocking`, once per shape), so the handle is never used from two threads.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex, OnceLock};

use burn::tensor::{DType, Shape};
use burn_cubecl::{ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor};
use cubecl::cuda::CudaDevice;
use cubecl_common::device::Device as _;
use cubecl_common::device_handle::DeviceHandle;
use cudarc::cudnn::{result as dnn, sys};

use super::graph::{self, GraphPlan, Numerics};
use crate::cuda_task::{enqueue, CudaServer};

/// The most workspace one conv may take; algorithms needing more are skipped.
const MAX_WORKSPACE: usize = 1 << 30;

/// One conv's shape and numerics: the plan cache's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Problem {
    /// 0 f32, 1 f16, 2 bf16.
    dtype: u8,
    /// `[B, C, T, H, W]`.
    x: [usize; 5],
    /// `x`'s strides in elements (CubeCL may pad rows to 256 bytes on CUDA).
    x_strides: [usize; 5],
    /// `[O, C, kt, kh, kw]`.
    w: [usize; 5],
    stride_t: usize,
    pad: usize,
    tf32: bool,
    /// The input address's byte alignment (up to 16): a view at an offset may have less.
    x_align: u8,
}

/// Row-major strides of a packed 5-D tensor of dims `d`.
fn packed(d: [usize; 5]) -> [usize; 5] {
    [d[1] * d[2] * d[3] * d[4], d[2] * d[3] * d[4], d[3] * d[4], d[4], 1]
}

impl Problem {
    fn numerics(&self) -> Numerics {
        match (self.dtype, self.tf32) {
            (0, false) => Numerics::ExactF32,
            (0, true) => Numerics::Tf32,
            _ => Numerics::Half,
        }
    }

    fn out(&self) -> [usize; 5] {
        let [b, _, t, h, w] = self.x;
        let [o, _, kt, kh, kw] = self.w;
        [b, o, (t - kt) / self.stride_t + 1, h + 2 * self.pad - kh + 1, w + 2 * self.pad - kw + 1]
    }
}

/// A planned conv, through the graph API or the legacy one; destroyed with the last task
/// using it.
enum Plan {
    Graph(GraphPlan),
    Legacy(LegacyPlan),
}

impl Plan {
    fn workspace(&self) -> usize {
        match self {
            Plan::Graph(g) => g.workspace,
            Plan::Legacy(l) => l.workspace,
        }
    }
}

/// A legacy-API plan: descriptors and the algorithm.
struct LegacyPlan {
    x: sys::cudnnTensorDescriptor_t,
    w: sys::cudnnFilterDescriptor_t,
    conv: sys::cudnnConvolutionDescriptor_t,
    y: sys::cudnnTensorDescriptor_t,
    algo: sys::cudnnConvolutionFwdAlgo_t,
    workspace: usize,
}

// SAFETY: descriptors are plain host structs, used only on CubeCL's device thread.
unsafe impl Send for Plan {}
unsafe impl Sync for Plan {}

impl Drop for LegacyPlan {
    fn drop(&mut self) {
        // SAFETY: made by `plan` and destroyed once, here (null ones skipped by cuDNN).
        unsafe {
            let _ = dnn::destroy_tensor_descriptor(self.x);
            let _ = dnn::destroy_filter_descriptor(self.w);
            let _ = dnn::destroy_convolution_descriptor(self.conv);
            let _ = dnn::destroy_tensor_descriptor(self.y);
        }
    }
}

struct Handle(sys::cudnnHandle_t);
// SAFETY: made and used only on CubeCL's device thread (the tasks), which runs one at a time.
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

struct State {
    ordinal: usize,
    handle: Arc<Handle>,
    device: DeviceHandle<CudaServer>,
    /// Plans, or why cuDNN declined the problem (asked once; the reason printed once).
    plans: HashMap<Problem, Result<Arc<Plan>, String>>,
}

static STATE: OnceLock<Option<Mutex<State>>> = OnceLock::new();

fn state(device: &CudaDevice) -> Option<&'static Mutex<State>> {
    STATE
        .get_or_init(|| match init(device) {
            Ok(s) => Some(Mutex::new(s)),
            Err(e) => {
                if std::env::var("SANA_CUDNN").as_deref() != Ok("off") {
                    eprintln!("note: cuDNN unavailable ({e}); VAE convolutions use tap GEMMs");
                }
                None
            }
        })
        .as_ref()
}

/// Whether cuDNN is loaded and a handle made on `device` (`SANA_CUDNN=off` turns it off).
pub fn available(device: &CudaDevice) -> bool {
    state(device).is_some_and(|s| s.lock().is_ok_and(|s| s.ordinal == device.index))
}

fn init(device: &CudaDevice) -> Result<State, String> {
    if std::env::var("SANA_CUDNN").as_deref() == Ok("off") {
        return Err("SANA_CUDNN=off".into());
    }
    // SAFETY: a library probe.
    if !unsafe { sys::is_culib_present() } {
        return Err("libcudnn not found on the library path".into());
    }
    let handle = DeviceHandle::<CudaServer>::new(device.to_id());
    // The handle is made on the device thread, whose CUDA context is current.
    let made = handle
        .submit_blocking(|_server: &mut CudaServer| {
            let version = dnn::get_version();
            if version < 8000 {
                return Err(format!("cuDNN {version} is older than 8.0"));
            }
            dnn::create_handle().map(Handle).map_err(|e| format!("cudnnCreate: {e:?}"))
        })
        .map_err(|e| format!("device thread: {e:?}"))??;
    Ok(State {
        ordinal: device.index,
        handle: Arc::new(made),
        device: handle,
        plans: HashMap::new(),
    })
}

/// cuDNN's type for each of `crate::DTYPES` (f32, f16, bf16), and that index.
fn data_type(dtype: DType) -> Option<(sys::cudnnDataType_t, u8)> {
    use sys::cudnnDataType_t::*;
    let i = crate::DTYPES.iter().position(|&d| d == dtype)?;
    Some(([CUDNN_DATA_FLOAT, CUDNN_DATA_HALF, CUDNN_DATA_BFLOAT16][i], i as u8))
}

/// The graph API's plan for `p` (the default), or where it declines or `SANA_CUDNN_API=legacy`
/// asks, the legacy API's.
///
/// # Safety
/// `handle` is live and used by no other thread now.
unsafe fn plan(handle: sys::cudnnHandle_t, p: &Problem, ty: sys::cudnnDataType_t) -> Result<Plan, String> {
    if std::env::var("SANA_CUDNN_API").as_deref() != Ok("legacy") {
        let dims = |d: [usize; 5]| d.map(|v| v as i64);
        let out = p.out();
        let pad = p.pad as i64;
        match graph::plan(
            handle,
            ty,
            (dims(p.x), dims(p.x_strides)),
            (dims(p.w), dims(packed(p.w))),
            (dims(out), dims(packed(out))),
            [0, pad, pad],
            [p.stride_t as i64, 1, 1],
            p.numerics(),
            MAX_WORKSPACE,
            p.x_align as u64,
        ) {
            Ok(g) => {
                if std::env::var("SANA_CUDNN_VERBOSE").is_ok_and(|v| v == "1") {
                    eprintln!("cuDNN {p:?}: graph API, engine {}, workspace {} B", g.engine, g.workspace);
                }
                return Ok(Plan::Graph(g));
            }
            Err(e) => eprintln!("note: cuDNN's graph API declines the conv {p:?} ({e}); its legacy API runs it"),
        }
    }
    legacy_plan(handle, p, ty).map(Plan::Legacy)
}

/// Descriptors for `p` and the legacy heuristic's first algorithm that fits the workspace
/// limit and keeps the numerics asked for (exact f32: FMA kernels only; never a
/// down-conversion).
///
/// # Safety
/// `handle` is live and used by no other thread now.
unsafe fn legacy_plan(handle: sys::cudnnHandle_t, p: &Problem, ty: sys::cudnnDataType_t) -> Result<LegacyPlan, String> {
    use sys::cudnnMathType_t::*;
    let err = |what: &'static str| move |e: dnn::CudnnError| format!("{what}: {e:?}");
    let int = |v: usize| i32::try_from(v).map_err(|_| format!("{v} exceeds cuDNN's int range"));
    let tensor = |d: [usize; 5], st: [usize; 5]| -> Result<sys::cudnnTensorDescriptor_t, String> {
        if d.iter().zip(st).map(|(&n, s)| (n - 1) * s).sum::<usize>() >= 1 << 31 {
            return Err(format!("{d:?} spans 2^31 elements or more"));
        }
        let dims = d.map(|v| v as i32);
        let st = st.map(|v| v as i32);
        let desc = dnn::create_tensor_descriptor().map_err(err("tensor descriptor"))?;
        dnn::set_tensornd_descriptor(desc, ty, 5, dims.as_ptr(), st.as_ptr()).map_err(err("tensor descriptor"))?;
        Ok(desc)
    };
    let mut plan = LegacyPlan {
        x: std::ptr::null_mut(),
        w: std::ptr::null_mut(),
        conv: std::ptr::null_mut(),
        y: std::ptr::null_mut(),
        algo: sys::cudnnConvolutionFwdAlgo_t::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
        workspace: 0,
    };
    plan.x = tensor(p.x, p.x_strides)?;
    plan.y = tensor(p.out(), packed(p.out()))?;
    plan.w = dnn::create_filter_descriptor().map_err(err("filter descriptor"))?;
    let wd = p.w.map(|v| v as i32);
    dnn::set_filternd_descriptor(plan.w, ty, sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW, 5, wd.as_ptr()).map_err(err("filter descriptor"))?;
    plan.conv = dnn::create_convolution_descriptor().map_err(err("conv descriptor"))?;
    let (pads, steps, dil) = ([0, int(p.pad)?, int(p.pad)?], [int(p.stride_t)?, 1, 1], [1i32; 3]);
    dnn::set_convolutionnd_descriptor(
        plan.conv,
        3,
        pads.as_ptr(),
        steps.as_ptr(),
        dil.as_ptr(),
        sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
        sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
    )
    .map_err(err("conv descriptor"))?;
    let exact = matches!(p.numerics(), Numerics::ExactF32);
    let math = if exact {
        CUDNN_FMA_MATH
    } else if p.dtype == 0 {
        CUDNN_DEFAULT_MATH
    } else {
        CUDNN_TENSOR_OP_MATH
    };
    dnn::set_convolution_math_type(plan.conv, math).map_err(err("math type"))?;
    let mut perf = [std::mem::zeroed::<sys::cudnnConvolutionFwdAlgoPerf_t>(); 16];
    let mut count = 0i32;
    // The heuristic's pick; `SANA_CUDNN_FIND=1` times every algorithm instead (cudnnFind,
    // with its own buffers, once per shape: ~5 s more on the first 480p Wan decode, and on
    // the H200 no faster, BENCHMARKS.md). 16-bit convs take implicit-GEMM algorithms only.
    let find = p.dtype == 0 && std::env::var("SANA_CUDNN_FIND").as_deref() == Ok("1");
    use sys::cudnnConvolutionFwdAlgo_t::{CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM};
    if find {
        sys::cudnnFindConvolutionForwardAlgorithm(handle, plan.x, plan.w, plan.conv, plan.y, perf.len() as i32, &mut count, perf.as_mut_ptr())
            .result()
            .map_err(err("find"))?;
    } else {
        dnn::get_convolution_forward_algorithm(handle, plan.x, plan.w, plan.conv, plan.y, perf.len() as i32, &mut count, perf.as_mut_ptr())
            .map_err(err("heuristic"))?;
    }
    let chosen = perf[..count.max(0) as usize].iter().find(|r| {
        r.status == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS
            && r.memory <= MAX_WORKSPACE
            && r.mathType != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION
            && (!exact || r.mathType == CUDNN_FMA_MATH)
            && (p.dtype == 0
                || matches!(
                    r.algo,
                    CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM | CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM
                ))
    });
    if std::env::var("SANA_CUDNN_VERBOSE").is_ok_and(|v| v == "1") {
        for r in &perf[..count.max(0) as usize] {
            eprintln!("cuDNN {p:?}: {:?} {:?} {:?} {:.3} ms {} B", r.algo, r.status, r.mathType, r.time, r.memory);
        }
    }
    let Some(r) = chosen else {
        return Err(format!(
            "no algorithm among {count} fits (workspace at most {} MiB, math {math:?})",
            MAX_WORKSPACE >> 20
        ));
    };
    dnn::set_convolution_math_type(plan.conv, r.mathType).map_err(err("math type"))?;
    plan.algo = r.algo;
    plan.workspace = dnn::get_convolution_forward_workspace_size(handle, plan.x, plan.w, plan.conv, plan.y, r.algo).map_err(err("workspace size"))?;
    Ok(plan)
}

/// `x` `[B, C, T, H, W]` (any strides; `cube.rs` makes it contiguous first) convolved with
/// `weight` `[O, C, kt, kh, kw]` (packed, same dtype), no bias, into a new contiguous tensor; `None` where cuDNN is
/// unavailable or declines the problem (the reason printed once per shape).
pub fn conv3d(x: &CubeTensor, weight: &CubeTensor, stride_t: usize, pad: usize, tf32: bool) -> Option<CubeTensor> {
    let cubecl::Device::Cuda(dev) = &x.device else {
        return None;
    };
    let (ty, code) = data_type(x.dtype)?;
    let (xs, ws) = (x.meta.shape(), weight.meta.shape());
    if weight.dtype != x.dtype || xs.num_dims() != 5 || ws.num_dims() != 5 || xs[1] != ws[1] || stride_t == 0 {
        return None;
    }
    let (xst, wst) = (x.meta.strides(), weight.meta.strides());
    let w_dims = [ws[0], ws[1], ws[2], ws[3], ws[4]];
    // Filters have no strides in cuDNN: the weight must be packed.
    let w_packed = packed(w_dims);
    if (0..5).any(|i| w_dims[i] > 1 && wst[i] != w_packed[i]) || x.meta.tiling != Default::default() || weight.meta.tiling != Default::default() {
        return None;
    }
    // The graph API's plans promise 16-byte aligned weights (a loaded weight is its own buffer).
    if weight.handle.offset_start.unwrap_or(0) % 16 != 0 {
        return None;
    }
    let problem = Problem {
        dtype: code,
        x: [xs[0], xs[1], xs[2], xs[3], xs[4]],
        x_strides: [xst[0], xst[1], xst[2], xst[3], xst[4]],
        w: w_dims,
        stride_t,
        pad,
        tf32: tf32 && x.dtype == DType::F32,
        // The pool's slices are 512-byte aligned; a view adds its offset.
        x_align: 1 << x.handle.offset_start.unwrap_or(0).trailing_zeros().min(4),
    };
    if problem.x[2] < problem.w[2]
        || problem.x[3] + 2 * pad < problem.w[3]
        || problem.x[4] + 2 * pad < problem.w[4]
        || problem.x.contains(&0)
        || problem.w.contains(&0)
    {
        return None;
    }
    let state = state(dev)?;
    let mut st = state.lock().ok()?;
    if st.ordinal != dev.index {
        return None;
    }
    let plan = match st.plans.get(&problem) {
        Some(p) => p.clone(),
        None => {
            let handle = st.handle.clone();
            let made = st
                .device
                // SAFETY: on the device thread, the only user of the handle.
                .submit_blocking(move |_server: &mut CudaServer| unsafe { plan(handle.0, &problem, ty) }.map(Arc::new))
                .unwrap_or_else(|e| Err(format!("device thread: {e:?}")));
            if let Err(e) = &made {
                eprintln!("note: cuDNN declines the conv {problem:?} ({e}); that shape takes the fallback conv");
            }
            st.plans.insert(problem, made.clone());
            made
        }
    };
    let plan = plan.ok()?;
    let out = empty_device_contiguous_dtype(x.client.clone(), x.device.clone(), Shape::from(problem.out().to_vec()), x.dtype);
    // The workspace as a CubeCL buffer: allocated from its pool and ordered on its stream.
    let ws_buf = (plan.workspace() > 0)
        .then(|| empty_device_contiguous_dtype(x.client.clone(), x.device.clone(), Shape::from(vec![plan.workspace().div_ceil(4)]), DType::F32));
    let handle = st.handle.clone();
    let mut buffers = vec![x.handle.clone().binding(), weight.handle.clone().binding(), out.handle.clone().binding()];
    buffers.extend(ws_buf.as_ref().map(|t| t.handle.clone().binding()));
    enqueue(&st.device, buffers, vec![2], move |_, stream, ptr| {
        let (alpha, beta) = (1.0f32, 0.0f32);
        let workspace = ptr.get(3).copied().unwrap_or(0);
        // SAFETY: the pointers address live buffers of the plan's sizes; the handle is used on
        // this (the device) thread only.
        unsafe {
            dnn::set_stream(handle.0, stream as sys::cudaStream_t).map_err(|e| format!("cudnnSetStream: {e:?}"))?;
            match &*plan {
                Plan::Graph(g) => graph::execute(handle.0, g, ptr[0], ptr[1], ptr[2], workspace).map_err(|e| format!("{e} {problem:?}")),
                Plan::Legacy(l) => dnn::convolution_forward(
                    handle.0,
                    &alpha as *const f32 as *const c_void,
                    l.x,
                    ptr[0] as *const c_void,
                    l.w,
                    ptr[1] as *const c_void,
                    l.conv,
                    l.algo,
                    workspace as *mut c_void,
                    l.workspace,
                    &beta as *const f32 as *const c_void,
                    l.y,
                    ptr[2] as *mut c_void,
                )
                .map_err(|e| format!("cudnnConvolutionForward {problem:?}: {e:?}")),
            }
        }
    });
    drop(ws_buf);
    Some(out)
}
