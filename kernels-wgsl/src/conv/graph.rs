//! cuDNN's graph (backend) API for one convolution: what PyTorch calls through
//! cudnn-frontend, and why its TF32 convs ran 2.9x faster than ours through the legacy
//! `cudnnConvolutionForward` (BENCHMARKS.md, 2026-11-29): the legacy API maps onto a small
//! set of older engines, the heuristics of the graph API reach all of them.
//!
//! One conv is a one-operation graph: tensors `x`, `w`, `y` (unique ids 1, 2, 3), a
//! convolution descriptor, the heuristic's engine configurations in order (`INSTANT` mode,
//! as PyTorch), the first whose numerical notes keep the numerics asked for and whose plan
//! finalises within the workspace limit. Everything here runs on CubeCL's device thread.

use std::ffi::c_void;

use cudarc::cudnn::sys;
use sys::cudnnBackendAttributeName_t as A;
use sys::cudnnBackendAttributeType_t as T;
use sys::cudnnBackendDescriptorType_t as D;

/// An owned backend descriptor.
pub(super) struct Desc(sys::cudnnBackendDescriptor_t);

impl Drop for Desc {
    fn drop(&mut self) {
        // SAFETY: made by `Desc::new`, destroyed once.
        unsafe {
            let _ = sys::cudnnBackendDestroyDescriptor(self.0);
        }
    }
}

fn check(what: &str, s: sys::cudnnStatus_t) -> Result<(), String> {
    if s == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS {
        Ok(())
    } else {
        Err(format!("{what}: {s:?}"))
    }
}

impl Desc {
    unsafe fn new(ty: D) -> Result<Desc, String> {
        let mut d: sys::cudnnBackendDescriptor_t = std::ptr::null_mut();
        check("cudnnBackendCreateDescriptor", sys::cudnnBackendCreateDescriptor(ty, &mut d))?;
        Ok(Desc(d))
    }

    unsafe fn set<V>(&self, name: A, ty: T, values: &[V]) -> Result<(), String> {
        check(
            &format!("set {name:?}"),
            sys::cudnnBackendSetAttribute(self.0, name, ty, values.len() as i64, values.as_ptr() as *const c_void),
        )
    }

    unsafe fn desc(&self, name: A, d: &Desc) -> Result<(), String> {
        self.set(name, T::CUDNN_TYPE_BACKEND_DESCRIPTOR, &[d.0])
    }

    unsafe fn finalize(self) -> Result<Desc, String> {
        check("cudnnBackendFinalize", sys::cudnnBackendFinalize(self.0))?;
        Ok(self)
    }
}

/// A finalised execution plan and what it keeps alive.
pub(super) struct GraphPlan {
    plan: Desc,
    pub workspace: usize,
    /// The engine's global index, for `SANA_CUDNN_VERBOSE`.
    pub engine: i64,
    /// The byte alignment promised for `x` (the other buffers are CubeCL's own, 512-byte
    /// aligned); [`execute`] checks it.
    align: u64,
    // Referenced by the plan; dropped after it (fields drop in declaration order).
    _keep: Vec<Desc>,
}

/// The numerics a conv may use: which numerical notes rule an engine out.
#[derive(Clone, Copy, Debug)]
pub(super) enum Numerics {
    /// f32 on CUDA cores, in the order of a plain sum of products: no tensor cores (TF32), no
    /// down-conversion, FFT or Winograd.
    ExactF32,
    /// f32 operands rounded to TF32 on tensor cores, f32 accumulation (PyTorch's default).
    Tf32,
    /// f16/bf16 operands, f32 accumulation.
    Half,
}

impl Numerics {
    fn allows(self, notes: &[sys::cudnnBackendNumericalNote_t]) -> bool {
        use sys::cudnnBackendNumericalNote_t::*;
        notes.iter().all(|n| match n {
            CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS | CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION => false,
            CUDNN_NUMERICAL_NOTE_TENSOR_CORE => !matches!(self, Numerics::ExactF32),
            CUDNN_NUMERICAL_NOTE_FFT
            | CUDNN_NUMERICAL_NOTE_WINOGRAD
            | CUDNN_NUMERICAL_NOTE_WINOGRAD_TILE_4x4
            | CUDNN_NUMERICAL_NOTE_WINOGRAD_TILE_6x6
            | CUDNN_NUMERICAL_NOTE_WINOGRAD_TILE_13x13 => !matches!(self, Numerics::ExactF32),
            _ => true,
        })
    }
}

/// Plans `y = conv(x, w)`: dims and strides in elements (`w` packed), `pads` and
/// `steps` per spatial dim (T, H, W); `x_align` the byte alignment `x`'s address will have
/// (16 for a buffer of its own; a view at an offset may have less, as PyTorch's plans
/// record).
///
/// # Safety
/// `handle` is live and used by no other thread now.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn plan(
    handle: sys::cudnnHandle_t,
    ty: sys::cudnnDataType_t,
    x: ([i64; 5], [i64; 5]),
    w: ([i64; 5], [i64; 5]),
    y: ([i64; 5], [i64; 5]),
    pads: [i64; 3],
    steps: [i64; 3],
    numerics: Numerics,
    max_workspace: usize,
    x_align: u64,
) -> Result<GraphPlan, String> {
    let tensor = |uid: i64, dims: [i64; 5], strides: [i64; 5]| -> Result<Desc, String> {
        let align = if uid == 1 { x_align.min(16) as i64 } else { 16 };
        let t = Desc::new(D::CUDNN_BACKEND_TENSOR_DESCRIPTOR)?;
        t.set(A::CUDNN_ATTR_TENSOR_DATA_TYPE, T::CUDNN_TYPE_DATA_TYPE, &[ty])?;
        t.set(A::CUDNN_ATTR_TENSOR_DIMENSIONS, T::CUDNN_TYPE_INT64, &dims)?;
        t.set(A::CUDNN_ATTR_TENSOR_STRIDES, T::CUDNN_TYPE_INT64, &strides)?;
        t.set(A::CUDNN_ATTR_TENSOR_UNIQUE_ID, T::CUDNN_TYPE_INT64, &[uid])?;
        t.set(A::CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, T::CUDNN_TYPE_INT64, &[align])?;
        t.finalize()
    };
    let tx = tensor(1, x.0, x.1)?;
    let tw = tensor(2, w.0, w.1)?;
    let ty_ = tensor(3, y.0, y.1)?;

    let conv = Desc::new(D::CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR)?;
    conv.set(A::CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, T::CUDNN_TYPE_INT64, &[3i64])?;
    conv.set(A::CUDNN_ATTR_CONVOLUTION_COMP_TYPE, T::CUDNN_TYPE_DATA_TYPE, &[sys::cudnnDataType_t::CUDNN_DATA_FLOAT])?;
    conv.set(A::CUDNN_ATTR_CONVOLUTION_CONV_MODE, T::CUDNN_TYPE_CONVOLUTION_MODE, &[sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION])?;
    conv.set(A::CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, T::CUDNN_TYPE_INT64, &pads)?;
    conv.set(A::CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, T::CUDNN_TYPE_INT64, &pads)?;
    conv.set(A::CUDNN_ATTR_CONVOLUTION_DILATIONS, T::CUDNN_TYPE_INT64, &[1i64; 3])?;
    conv.set(A::CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, T::CUDNN_TYPE_INT64, &steps)?;
    let conv = conv.finalize()?;

    let op = Desc::new(D::CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR)?;
    op.desc(A::CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, &tx)?;
    op.desc(A::CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, &tw)?;
    op.desc(A::CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, &ty_)?;
    op.desc(A::CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, &conv)?;
    // Float scalars for a float compute type.
    op.set(A::CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, T::CUDNN_TYPE_FLOAT, &[1.0f32])?;
    op.set(A::CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, T::CUDNN_TYPE_FLOAT, &[0.0f32])?;
    let op = op.finalize()?;

    let graph = Desc::new(D::CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR)?;
    graph.set(A::CUDNN_ATTR_OPERATIONGRAPH_HANDLE, T::CUDNN_TYPE_HANDLE, &[handle])?;
    graph.set(A::CUDNN_ATTR_OPERATIONGRAPH_OPS, T::CUDNN_TYPE_BACKEND_DESCRIPTOR, &[op.0])?;
    let graph = graph.finalize()?;

    let heur = Desc::new(D::CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR)?;
    heur.desc(A::CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, &graph)?;
    heur.set(A::CUDNN_ATTR_ENGINEHEUR_MODE, T::CUDNN_TYPE_HEUR_MODE, &[sys::cudnnBackendHeurMode_t::CUDNN_HEUR_MODE_INSTANT])?;
    let heur = heur.finalize()?;
    const MAX_CONFIGS: usize = 32;
    let configs: Vec<Desc> = (0..MAX_CONFIGS).map(|_| Desc::new(D::CUDNN_BACKEND_ENGINECFG_DESCRIPTOR)).collect::<Result<_, _>>()?;
    let mut raw: Vec<sys::cudnnBackendDescriptor_t> = configs.iter().map(|d| d.0).collect();
    let mut count = 0i64;
    check(
        "engine heuristics",
        sys::cudnnBackendGetAttribute(
            heur.0,
            A::CUDNN_ATTR_ENGINEHEUR_RESULTS,
            T::CUDNN_TYPE_BACKEND_DESCRIPTOR,
            MAX_CONFIGS as i64,
            &mut count,
            raw.as_mut_ptr() as *mut c_void,
        ),
    )?;
    let verbose = std::env::var("SANA_CUDNN_VERBOSE").is_ok_and(|v| v == "1");
    let mut why = Vec::new();
    for (i, cfg) in configs.into_iter().take(count.clamp(0, MAX_CONFIGS as i64) as usize).enumerate() {
        let engine = Desc::new(D::CUDNN_BACKEND_ENGINE_DESCRIPTOR)?;
        let mut n = 0i64;
        let mut engine_raw = engine.0;
        check(
            "engine of a configuration",
            sys::cudnnBackendGetAttribute(
                cfg.0,
                A::CUDNN_ATTR_ENGINECFG_ENGINE,
                T::CUDNN_TYPE_BACKEND_DESCRIPTOR,
                1,
                &mut n,
                &mut engine_raw as *mut _ as *mut c_void,
            ),
        )?;
        let mut notes = [sys::cudnnBackendNumericalNote_t::CUDNN_NUMERICAL_NOTE_TENSOR_CORE; 16];
        let mut n_notes = 0i64;
        check(
            "numerical notes",
            sys::cudnnBackendGetAttribute(
                engine.0,
                A::CUDNN_ATTR_ENGINE_NUMERICAL_NOTE,
                T::CUDNN_TYPE_NUMERICAL_NOTE,
                notes.len() as i64,
                &mut n_notes,
                notes.as_mut_ptr() as *mut c_void,
            ),
        )?;
        let notes = &notes[..n_notes.clamp(0, 16) as usize];
        let mut index = -1i64;
        let _ = sys::cudnnBackendGetAttribute(engine.0, A::CUDNN_ATTR_ENGINE_GLOBAL_INDEX, T::CUDNN_TYPE_INT64, 1, &mut n, &mut index as *mut i64 as *mut c_void);
        if !numerics.allows(notes) {
            if verbose {
                eprintln!("cuDNN graph: configuration {i} (engine {index}) skipped, notes {notes:?} against {numerics:?}");
            }
            why.push(format!("engine {index}: notes {notes:?}"));
            continue;
        }
        let built = (|| -> Result<(Desc, usize), String> {
            let plan = Desc::new(D::CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR)?;
            plan.set(A::CUDNN_ATTR_EXECUTION_PLAN_HANDLE, T::CUDNN_TYPE_HANDLE, &[handle])?;
            plan.desc(A::CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, &cfg)?;
            let plan = plan.finalize()?;
            let mut ws = 0i64;
            let mut n = 0i64;
            check(
                "workspace size",
                sys::cudnnBackendGetAttribute(plan.0, A::CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, T::CUDNN_TYPE_INT64, 1, &mut n, &mut ws as *mut i64 as *mut c_void),
            )?;
            let ws = usize::try_from(ws).map_err(|_| format!("workspace {ws}"))?;
            if ws > max_workspace {
                return Err(format!("workspace {} MiB over the limit", ws >> 20));
            }
            Ok((plan, ws))
        })();
        match built {
            Ok((plan, workspace)) => {
                if verbose {
                    eprintln!("cuDNN graph: configuration {i} (engine {index}, notes {notes:?}) chosen, workspace {workspace} B");
                }
                return Ok(GraphPlan { plan, workspace, engine: index, align: x_align.min(16), _keep: vec![cfg, engine, heur, graph, op, conv, tx, tw, ty_] });
            }
            Err(e) => {
                if verbose {
                    eprintln!("cuDNN graph: configuration {i} (engine {index}) does not build: {e}");
                }
                why.push(format!("engine {index}: {e}"));
            }
        }
    }
    Err(format!("none of the heuristic's {count} engine configurations fits ({})", why.join("; ")))
}

/// Runs `plan` on the handle's current stream: `ptr` the addresses of x, w, y, workspace.
///
/// # Safety
/// The pointers address live buffers of the planned sizes; `handle` is used by this thread only.
pub(super) unsafe fn execute(handle: sys::cudnnHandle_t, plan: &GraphPlan, x: u64, w: u64, y: u64, workspace: u64) -> Result<(), String> {
    if x % plan.align != 0 || w % 16 != 0 || y % 16 != 0 {
        return Err(format!("cuDNN graph conv: a buffer is less aligned than planned ({} bytes for the input, 16 for the others)", plan.align));
    }
    let pack = Desc::new(D::CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR)?;
    let ptrs: [*mut c_void; 3] = [x as *mut c_void, w as *mut c_void, y as *mut c_void];
    pack.set(A::CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, T::CUDNN_TYPE_INT64, &[1i64, 2, 3])?;
    pack.set(A::CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, T::CUDNN_TYPE_VOID_PTR, &ptrs)?;
    pack.set(A::CUDNN_ATTR_VARIANT_PACK_WORKSPACE, T::CUDNN_TYPE_VOID_PTR, &[workspace as *mut c_void])?;
    let pack = pack.finalize()?;
    check("cudnnBackendExecute", sys::cudnnBackendExecute(handle, plan.plan.0, pack.0))
}
