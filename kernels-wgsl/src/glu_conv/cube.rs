//! CubeCL kernels of the fused GLU depth-wise conv, f32 arithmetic whatever the storage
//! dtype (f32, f16, bf16): SiLU in place over the input (once per element: computing it
//! inside the conv would take nine exponentials per input, which bounded the first version
//! by the GPU's special-function units), then one thread per output element reading its
//! neighbours straight from the un-padded input (out-of-image taps skipped).

use burn::backend::{backend_extension, tensor::FloatTensor, Backend, Dispatch};
use burn::tensor::{DType, Shape, Tensor as BTensor};
use burn_cubecl::{cubecl, kernel::into_contiguous, ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor, CubeBackend};
use cubecl::ir::ElemType;

use crate::elem_type;
use crate::rows::cube_grid;
use cubecl::{calculate_cube_count_elemwise, prelude::*};

#[cube]
fn silu_f32<N: Size>(x: Vector<f32, N>) -> Vector<f32, N> {
    x / (Vector::<f32, N>::new(1.0) + Vector::exp(-x))
}

#[cube(launch, address_type = "dynamic")]
fn silu_kernel<F: Float, N: Size>(x: &Tensor<Vector<F, N>>, out: &mut Tensor<Vector<F, N>>, #[define(F)] _dtype: ElemType) {
    if ABSOLUTE_POS >= out.len() {
        terminate!();
    }
    out[ABSOLUTE_POS] = Vector::<F, N>::cast_from(silu_f32::<N>(Vector::<f32, N>::cast_from(x[ABSOLUTE_POS])));
}

/// One binding only: WebGPU refuses a buffer bound both read-only and read-write.
#[cube(launch, address_type = "dynamic")]
fn silu_inplace_kernel<F: Float, N: Size>(x: &mut Tensor<Vector<F, N>>, #[define(F)] _dtype: ElemType) {
    if ABSOLUTE_POS >= x.len() {
        terminate!();
    }
    x[ABSOLUTE_POS] = Vector::<F, N>::cast_from(silu_f32::<N>(Vector::<f32, N>::cast_from(x[ABSOLUTE_POS])));
}

/// An input vector, through SiLU when the kernel reads the pre-activation itself.
#[cube]
fn load<F: Float, N: Size>(s: &Tensor<Vector<F, N>>, at: usize, #[comptime] silu: bool) -> Vector<F, N> {
    if silu {
        Vector::<F, N>::cast_from(silu_f32::<N>(Vector::<f32, N>::cast_from(s[at])))
    } else {
        s[at]
    }
}

/// `s` is `SiLU(h)` `[M·H rows, W, 2C]` (or `h` itself with `silu_on_load`, each input then
/// through SiLU as it is read: three times per value instead of one pass writing it back) in vectors of `N` channels (`cv = C / N` vectors
/// per half). One cube per strip of `XS` consecutive positions of one image row (`CUBE_POS`,
/// a 2-D grid past 65,535), its units striding over the channel vectors. Each unit keeps its
/// channels' taps and a 3x3 window of inputs in registers and slides it along the strip, so
/// an output costs six vector loads (the new column) instead of eighteen. Measured on an H200
/// (BENCHMARKS.md), the stage took the same time as with one cube per position and eighteen
/// loads (0.208 against 0.206 s per 480p forward), so loads from L2 are not what limits it.
/// `R` is the registers' type: the storage dtype (each tap and input converted to f32 at
/// every use, nine times for an input) or f32 (converted once, as loaded; more registers);
/// `taps_from_l1` leaves the taps out of registers (read at each use; fewer registers).
#[cube(launch, address_type = "dynamic")]
fn glu_depthwise_kernel<F: Float, R: Float, N: Size>(
    s: &Tensor<Vector<F, N>>,
    taps: &Tensor<Vector<F, N>>,
    bias: &Tensor<Vector<F, N>>,
    out: &mut Tensor<Vector<F, N>>,
    rows: u32,
    hh: u32,
    ww: u32,
    cv: u32,
    #[comptime] xs: usize,
    #[comptime] silu_on_load: bool,
    #[comptime] taps_from_l1: bool,
    #[define(F, R)] _dtypes: [ElemType; 2],
) {
    let (hh, ww, cv) = (hh as usize, ww as usize, cv as usize);
    let strips = ww.div_ceil(xs);
    let cube = CUBE_POS;
    if cube >= rows as usize * strips {
        terminate!();
    }
    let row = cube / strips;
    let x0 = (cube % strips) * xs;
    let y = row % hh;
    let c2v = 2 * cv;
    // Rows y - 1, y, y + 1 (dy = 0, 1, 2) inside the image.
    let mut row_ok = Array::<bool>::new(3usize);
    row_ok[0] = y >= 1;
    row_ok[1] = true;
    row_ok[2] = y + 1 < hh;
    let zero = Vector::<R, N>::new(R::new(0.0));
    let mut j = UNIT_POS as usize;
    while j < cv {
        let mut ta = Array::<Vector<R, N>>::new(9usize);
        let mut tg = Array::<Vector<R, N>>::new(9usize);
        #[unroll]
        for t in 0..9usize {
            if !taps_from_l1 {
                ta[t] = Vector::<R, N>::cast_from(taps[t * c2v + j]);
                tg[t] = Vector::<R, N>::cast_from(taps[t * c2v + j + cv]);
            }
        }
        // The window, wa[dy·3 + dx] for the neighbour (y + dy - 1, x + dx - 1); columns 1
        // and 2 start as x0 - 1 and x0 and slide to 0 and 1 before each output.
        let mut wa = Array::<Vector<R, N>>::new(9usize);
        let mut wg = Array::<Vector<R, N>>::new(9usize);
        #[unroll]
        for dy in 0..3usize {
            #[unroll]
            for c in 1..3usize {
                // Column x0 + c - 2, written shifted by one to stay unsigned.
                let xp = x0 + c - 1;
                wa[dy * 3 + c] = zero;
                wg[dy * 3 + c] = zero;
                if row_ok[dy] && xp >= 1 && xp <= ww {
                    let base = ((row + dy - 1) * ww + xp - 1) * c2v + j;
                    wa[dy * 3 + c] = Vector::<R, N>::cast_from(load(s, base, silu_on_load));
                    wg[dy * 3 + c] = Vector::<R, N>::cast_from(load(s, base + cv, silu_on_load));
                }
            }
        }
        let mut i = 0usize;
        while i < xs && x0 + i < ww {
            let x = x0 + i;
            #[unroll]
            for dy in 0..3usize {
                wa[dy * 3] = wa[dy * 3 + 1];
                wa[dy * 3 + 1] = wa[dy * 3 + 2];
                wg[dy * 3] = wg[dy * 3 + 1];
                wg[dy * 3 + 1] = wg[dy * 3 + 2];
                wa[dy * 3 + 2] = zero;
                wg[dy * 3 + 2] = zero;
                if row_ok[dy] && x + 1 < ww {
                    let base = ((row + dy - 1) * ww + x + 1) * c2v + j;
                    wa[dy * 3 + 2] = Vector::<R, N>::cast_from(load(s, base, silu_on_load));
                    wg[dy * 3 + 2] = Vector::<R, N>::cast_from(load(s, base + cv, silu_on_load));
                }
            }
            let mut a = Vector::<f32, N>::cast_from(bias[j]);
            let mut g = Vector::<f32, N>::cast_from(bias[j + cv]);
            #[unroll]
            for t in 0..9usize {
                if taps_from_l1 {
                    a += Vector::<f32, N>::cast_from(taps[t * c2v + j]) * Vector::<f32, N>::cast_from(wa[t]);
                    g += Vector::<f32, N>::cast_from(taps[t * c2v + j + cv]) * Vector::<f32, N>::cast_from(wg[t]);
                } else {
                    a += Vector::<f32, N>::cast_from(ta[t]) * Vector::<f32, N>::cast_from(wa[t]);
                    g += Vector::<f32, N>::cast_from(tg[t]) * Vector::<f32, N>::cast_from(wg[t]);
                }
            }
            out[(row * ww + x) * cv + j] = Vector::<F, N>::cast_from(a * silu_f32::<N>(g));
            i += 1;
        }
        j += CUBE_DIM as usize;
    }
}

/// Launch settings: units per strip at most (each strides over the strip's channel vectors),
/// positions per strip (one cube, slid along by each unit's window), the widest channel
/// vector (its window and taps live in registers), whether SiLU is applied as the conv
/// reads (no separate pass), and the registers (0: taps and window in the storage dtype, 1:
/// in f32, 2: the taps read from L1 at each use instead). Defaults 128, 8, 4, off, 1 (f32
/// registers: 0.074 against 0.077 s a 480p forward on an H200, BENCHMARKS.md ninth run);
/// `SANA_GLU=units,strip,vector,silu[,regs]` overrides them to compare on a GPU (read once;
/// without `regs`, the default's).
pub fn settings() -> [usize; 5] {
    const DEFAULT: [usize; 5] = [128, 8, 4, 0, 1];
    static S: std::sync::OnceLock<[usize; 5]> = std::sync::OnceLock::new();
    *S.get_or_init(|| {
        let parsed = std::env::var("SANA_GLU").ok().and_then(|v| {
            let p: Vec<usize> = v.split(',').map(|x| x.trim().parse().ok()).collect::<Option<_>>()?;
            let (u, s, v, silu, regs) = match p[..] {
                [u, s, v, silu] => (u, s, v, silu, DEFAULT[4]),
                [u, s, v, silu, regs] => (u, s, v, silu, regs),
                _ => return None,
            };
            let ok = u.is_power_of_two() && (32..=1024).contains(&u) && (1..=64).contains(&s) && [1, 2, 4, 8].contains(&v) && regs <= 2;
            ok.then_some([u, s, v, (silu != 0) as usize, regs])
        });
        if parsed.is_none() && std::env::var_os("SANA_GLU").is_some() {
            eprintln!("warning: SANA_GLU is not `units,strip,vector,silu[,regs]` (units a power of two in 32..=1024, strip 1..=64, vector 1, 2, 4 or 8, regs 0, 1 or 2); using the defaults");
        }
        parsed.unwrap_or(DEFAULT)
    })
}

/// The CubeCL half of the backend trait: the same body serves WGSL, SPIR-V and CUDA.
#[backend_extension(Cube)]
pub trait GluConvKernels: Backend {
    /// `launch`: [`settings`]' five values.
    fn glu_depthwise3x3(h: FloatTensor<Self>, taps: FloatTensor<Self>, bias: FloatTensor<Self>, launch: [usize; 5]) -> FloatTensor<Self>;
}


impl GluConvKernels for CubeBackend {
    fn glu_depthwise3x3(h: CubeTensor, taps: CubeTensor, bias: CubeTensor, launch: [usize; 5]) -> CubeTensor {
        let dtype = h.dtype;
        assert!(taps.dtype == dtype && bias.dtype == dtype, "glu_depthwise3x3: h, taps and bias dtypes differ");
        // The kernel indexes row-major buffers; the FFN's activations already are.
        let (h, taps, bias) = (into_contiguous(h), into_contiguous(taps), into_contiguous(bias));
        let dims = h.meta.shape().clone();
        let (m, hh, ww, c) = (dims[0], dims[1], dims[2], dims[3] / 2);
        let client = h.client.clone();
        // The widest vector that divides C (both halves start on one).
        let vector = crate::vector_width(&h, c);
        let [max_units, strip, max_vector, silu_on_load, regs] = launch;
        let silu_on_load = silu_on_load != 0;
        // SiLU in place when this is the only handle on the buffer (the usual case: the
        // inverted conv's fresh output), else into a new one.
        let n = dims.num_elements() / vector;
        let cube_dim = CubeDim::new(&client, n);
        let cube_count = calculate_cube_count_elemwise(&client, n, cube_dim);
        let address = h.required_address_type();
        let s = if silu_on_load {
            h
        } else if h.can_mut() {
            silu_inplace_kernel::launch(&client, cube_count, cube_dim, address, vector, h.clone().into_tensor_arg(), elem_type(dtype));
            h
        } else {
            let s = empty_device_contiguous_dtype(client.clone(), h.device.clone(), dims.clone(), dtype);
            silu_kernel::launch(&client, cube_count, cube_dim, address, vector, h.into_tensor_arg(), s.clone().into_tensor_arg(), elem_type(dtype));
            s
        };
        let out = empty_device_contiguous_dtype(client.clone(), s.device.clone(), Shape::new([m, hh, ww, c]), dtype);
        let vector = vector.min(max_vector);
        let address = [s.required_address_type(), out.required_address_type()].into_iter().max().unwrap_or_default();
        let units = (c / vector).next_multiple_of(32).min(max_units) as u32;
        glu_depthwise_kernel::launch(
            &client,
            cube_grid(m * hh * ww.div_ceil(strip)),
            CubeDim::new_1d(units),
            address,
            vector,
            s.into_tensor_arg(),
            taps.into_tensor_arg(),
            bias.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            (m * hh) as u32,
            hh as u32,
            ww as u32,
            (c / vector) as u32,
            strip,
            silu_on_load,
            regs == 2,
            [elem_type(dtype), elem_type(if regs == 1 { DType::F32 } else { dtype })],
        );
        out
    }
}

pub fn glu_depthwise3x3(h: BTensor<4>, taps: BTensor<2>, bias: BTensor<1>) -> BTensor<4> {
    glu_depthwise3x3_with(h, taps, bias, settings())
}

/// With explicit launch settings (`[units, strip, vector, silu on load, registers]`, see
/// [`settings`]).
pub fn glu_depthwise3x3_with(h: BTensor<4>, taps: BTensor<2>, bias: BTensor<1>, launch: [usize; 5]) -> BTensor<4> {
    BTensor::from_dispatch(<Dispatch as GluConvKernels>::glu_depthwise3x3(h.into_dispatch(), taps.into_dispatch(), bias.into_dispatch(), launch))
}
