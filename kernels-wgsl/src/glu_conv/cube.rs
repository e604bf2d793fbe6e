//! CubeCL kernels of the fused GLU depth-wise conv, f32 arithmetic whatever the storage
//! dtype (f32, f16, bf16): SiLU in place over the input (once per element: computing it
//! inside the conv would take nine exponentials per input, which bounded the first version
//! by the GPU's special-function units), then one thread per output element reading its
//! neighbours straight from the un-padded input (out-of-image taps skipped).

use burn::backend::{backend_extension, tensor::FloatTensor, Backend, Dispatch};
use burn::tensor::{Shape, Tensor as BTensor};
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
#[cube(launch, address_type = "dynamic")]
fn glu_depthwise_kernel<F: Float, N: Size>(
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
    #[define(F)] _dtype: ElemType,
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
    let zero = Vector::<F, N>::new(F::new(0.0));
    let mut j = UNIT_POS as usize;
    while j < cv {
        let mut ta = Array::<Vector<F, N>>::new(9usize);
        let mut tg = Array::<Vector<F, N>>::new(9usize);
        #[unroll]
        for t in 0..9usize {
            ta[t] = taps[t * c2v + j];
            tg[t] = taps[t * c2v + j + cv];
        }
        // The window, wa[dy·3 + dx] for the neighbour (y + dy - 1, x + dx - 1); columns 1
        // and 2 start as x0 - 1 and x0 and slide to 0 and 1 before each output.
        let mut wa = Array::<Vector<F, N>>::new(9usize);
        let mut wg = Array::<Vector<F, N>>::new(9usize);
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
                    wa[dy * 3 + c] = load(s, base, silu_on_load);
                    wg[dy * 3 + c] = load(s, base + cv, silu_on_load);
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
                    wa[dy * 3 + 2] = load(s, base, silu_on_load);
                    wg[dy * 3 + 2] = load(s, base + cv, silu_on_load);
                }
            }
            let mut a = Vector::<f32, N>::cast_from(bias[j]);
            let mut g = Vector::<f32, N>::cast_from(bias[j + cv]);
            #[unroll]
            for t in 0..9usize {
                a += Vector::<f32, N>::cast_from(ta[t]) * Vector::<f32, N>::cast_from(wa[t]);
                g += Vector::<f32, N>::cast_from(tg[t]) * Vector::<f32, N>::cast_from(wg[t]);
            }
            out[(row * ww + x) * cv + j] = Vector::<F, N>::cast_from(a * silu_f32::<N>(g));
            i += 1;
        }
        j += CUBE_DIM as usize;
    }
}

/// The default launch. `h` is the pre-activation `[images·H rows, W, 2C]` in vectors of `N`
/// channels (`cv = C / N` per half). One cube per (image, tile of `tx` columns, `cvt` channel
/// vectors) slides down the image keeping three input rows in shared memory, each loaded from
/// memory once and through SiLU once (the strips read each input about four times, from L2,
/// and needed the SiLU in a pass of its own: 2x the memory traffic); unit `u` computes output
/// column `u / cvt`, channel vector `u % cvt`, with its 18 taps in registers. Same arithmetic
/// and order as the strips: SiLU in f32 rounded to the storage dtype, then the taps in f32.
#[cube(launch, address_type = "dynamic")]
#[allow(clippy::too_many_arguments)]
fn glu_depthwise_tiled_kernel<F: Float, N: Size>(
    h: &Tensor<Vector<F, N>>,
    taps: &Tensor<Vector<F, N>>,
    bias: &Tensor<Vector<F, N>>,
    out: &mut Tensor<Vector<F, N>>,
    images: u32,
    hh: u32,
    ww: u32,
    cv: u32,
    #[comptime] tx: usize,
    #[comptime] cvt: usize,
    #[define(F)] _dtype: ElemType,
) {
    let (hh, ww, cv) = (hh as usize, ww as usize, cv as usize);
    let tiles = ww.div_ceil(tx);
    let chunks = cv.div_ceil(cvt);
    let cube = CUBE_POS;
    // The same for every unit of a cube: no unit leaves before another's barrier.
    if cube >= images as usize * tiles * chunks {
        terminate!();
    }
    let m = cube / (tiles * chunks);
    let x0 = (cube / chunks % tiles) * tx;
    let j0 = (cube % chunks) * cvt;
    let entries = comptime!((tx + 2) * 2 * cvt);
    let mut rows = Shared::<[Vector<F, N>]>::new_slice(comptime!(3 * (tx + 2) * 2 * cvt));

    let u = UNIT_POS as usize;
    let (xo, jv) = (u / cvt, u % cvt);
    let active = xo < tx && x0 + xo < ww && j0 + jv < cv;
    let j = j0 + jv;
    let c2v = 2 * cv;
    let zero = Vector::<F, N>::new(F::new(0.0));
    let mut ta = Array::<Vector<F, N>>::new(9usize);
    let mut tg = Array::<Vector<F, N>>::new(9usize);
    let mut ba = zero;
    let mut bg = zero;
    if active {
        #[unroll]
        for t in 0..9usize {
            ta[t] = taps[t * c2v + j];
            tg[t] = taps[t * c2v + j + cv];
        }
        ba = bias[j];
        bg = bias[j + cv];
    } else {
        #[unroll]
        for t in 0..9usize {
            ta[t] = zero;
            tg[t] = zero;
        }
    }

    // Tile row r is image row r - 1 (zeros outside the image and past the last channel
    // vector), through SiLU rounded to the storage dtype as the separate pass rounds it, in
    // slot r % 3: (tx + 2) positions (the tile and one each side) of both halves' vectors.
    // Once rows r - 2 .. r are in, output row r - 2 follows. (One loop: CubeCL 0.11 cannot
    // pass shared memory to a helper.)
    // Each unit's entries of a row (e = u + k·units), fetched one row ahead into registers
    // so the loads of row r + 1 are in flight while row r - 2's outputs are computed.
    let units = comptime!(tx * cvt);
    let per_unit = comptime!(entries.div_ceil(tx * cvt));
    let mut ahead = Array::<Vector<F, N>>::new(per_unit);
    let mut valid = Array::<bool>::new(per_unit);
    #[unroll]
    for k in 0..per_unit {
        // Tile row 0 is image row -1: zeros.
        ahead[k] = zero;
        valid[k] = false;
    }
    let mut r = 0usize;
    while r < hh + 2 {
        #[unroll]
        for k in 0..per_unit {
            let e = u + k * units;
            if e < entries {
                let mut v = zero;
                if valid[k] {
                    v = Vector::<F, N>::cast_from(silu_f32::<N>(Vector::<f32, N>::cast_from(ahead[k])));
                }
                rows[(r % 3) * entries + e] = v;
            }
        }
        // Fetch tile row r + 1 (image row r): zeros outside the image and past the last
        // channel vector.
        #[unroll]
        for k in 0..per_unit {
            let e = u + k * units;
            let (ev, half, col) = (e % cvt, (e / cvt) % 2, e / (2 * cvt));
            valid[k] = e < entries && r < hh && x0 + col >= 1 && x0 + col <= ww && j0 + ev < cv;
            if valid[k] {
                ahead[k] = h[((m * hh + r) * ww + x0 + col - 1) * c2v + half * cv + j0 + ev];
            }
        }
        sync_cube();
        if active && r >= 2 {
            let y = r - 2;
            let mut a = Vector::<f32, N>::cast_from(ba);
            let mut g = Vector::<f32, N>::cast_from(bg);
            #[unroll]
            for dy in 0..3usize {
                let base = ((y + dy) % 3) * entries + xo * 2 * cvt + jv;
                #[unroll]
                for dx in 0..3usize {
                    let at = base + dx * 2 * cvt;
                    a += Vector::<f32, N>::cast_from(ta[dy * 3 + dx]) * Vector::<f32, N>::cast_from(rows[at]);
                    g += Vector::<f32, N>::cast_from(tg[dy * 3 + dx]) * Vector::<f32, N>::cast_from(rows[at + cvt]);
                }
            }
            out[((m * hh + y) * ww + x0 + xo) * cv + j] = Vector::<F, N>::cast_from(a * silu_f32::<N>(g));
        }
        // The next row overwrites the slot this output row read first.
        sync_cube();
        r += 1;
    }
}

/// How the conv is launched. `Tiled` (the default) reads each input once from memory and
/// applies its SiLU once; `Strips` is the first version (a separate in-place SiLU pass, then
/// register windows), kept to compare on a GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GluLaunch {
    /// Tiles at most `max_width` positions wide sliding down the image (see
    /// [`glu_depthwise_tiled_kernel`]).
    Tiled { max_width: usize },
    /// Units per strip at most (each strides over the strip's channel vectors), positions per
    /// strip, the widest channel vector, and whether SiLU is applied as the conv reads
    /// instead of in a separate pass.
    Strips { units: usize, strip: usize, vector: usize, silu_on_load: bool },
}

impl Default for GluLaunch {
    fn default() -> Self {
        GluLaunch::Tiled { max_width: 16 }
    }
}

/// `SANA_GLU` (read once): unset or `tile` the default; `tile,W` tiles at most W positions
/// wide (1..=64); `units,strip,vector,silu` the strips (e.g. `128,8,4,0`, their best
/// setting on an H200). Anything else is reported and the default kept.
pub fn settings() -> GluLaunch {
    static S: std::sync::OnceLock<GluLaunch> = std::sync::OnceLock::new();
    *S.get_or_init(|| {
        let Ok(v) = std::env::var("SANA_GLU") else { return GluLaunch::default() };
        parse_settings(&v).unwrap_or_else(|| {
            eprintln!("warning: SANA_GLU={v:?} is not `tile`, `tile,W` (W in 1..=64) or `units,strip,vector,silu`; using the default");
            GluLaunch::default()
        })
    })
}

fn parse_settings(v: &str) -> Option<GluLaunch> {
    let parts: Vec<&str> = v.split(',').map(str::trim).collect();
    if parts[0] == "tile" {
        return match parts[1..] {
            [] => Some(GluLaunch::default()),
            [w] => w.parse().ok().filter(|w| (1..=64).contains(w)).map(|max_width| GluLaunch::Tiled { max_width }),
            _ => None,
        };
    }
    let p: Vec<usize> = parts.iter().map(|x| x.parse().ok()).collect::<Option<_>>()?;
    match p[..] {
        [u, s, v, silu] if u.is_power_of_two() && (32..=1024).contains(&u) && (1..=64).contains(&s) && [1, 2, 4, 8].contains(&v) => {
            Some(GluLaunch::Strips { units: u, strip: s, vector: v, silu_on_load: silu != 0 })
        }
        _ => None,
    }
}

/// WebGPU's guaranteed workgroup storage (`maxComputeWorkgroupStorageSize`) and invocations.
const SHARED_BYTES: usize = 16 * 1024;
const MAX_UNITS: usize = 256;

/// The tiled launch's shape: tile width `tx` (`W` split into equal tiles of at most
/// `max_width`) and channel vectors per cube `cvt` (a power of two: as many as fit three
/// rows of `tx + 2` positions, both halves, in [`SHARED_BYTES`], with `tx·cvt` units at most
/// [`MAX_UNITS`]).
pub fn tile_shape(ww: usize, cv: usize, entry_bytes: usize, max_width: usize) -> (usize, usize) {
    let tx = ww.div_ceil(ww.div_ceil(max_width.max(1)));
    let mut cvt = cv.next_power_of_two().min((MAX_UNITS / tx).max(1).next_power_of_two());
    while cvt > 1 && (tx * cvt > MAX_UNITS || 3 * (tx + 2) * 2 * cvt * entry_bytes > SHARED_BYTES) {
        cvt /= 2;
    }
    (tx, cvt)
}

/// The CubeCL half of the backend trait: the same body serves WGSL, SPIR-V and CUDA.
#[backend_extension(Cube)]
pub trait GluConvKernels: Backend {
    fn glu_depthwise3x3(h: FloatTensor<Self>, taps: FloatTensor<Self>, bias: FloatTensor<Self>, launch: GluLaunch) -> FloatTensor<Self>;
}

impl GluConvKernels for CubeBackend {
    fn glu_depthwise3x3(h: CubeTensor, taps: CubeTensor, bias: CubeTensor, launch: GluLaunch) -> CubeTensor {
        let dtype = h.dtype;
        assert!(taps.dtype == dtype && bias.dtype == dtype, "glu_depthwise3x3: h, taps and bias dtypes differ");
        // The kernel indexes row-major buffers; the FFN's activations already are.
        let (h, taps, bias) = (into_contiguous(h), into_contiguous(taps), into_contiguous(bias));
        let dims = h.meta.shape().clone();
        let (m, hh, ww, c) = (dims[0], dims[1], dims[2], dims[3] / 2);
        let client = h.client.clone();
        // The widest vector that divides C (both halves start on one).
        let vector = crate::vector_width(&h, c);
        let (max_units, strip, max_vector, silu_on_load) = match launch {
            GluLaunch::Tiled { max_width } => {
                let out = empty_device_contiguous_dtype(client.clone(), h.device.clone(), Shape::new([m, hh, ww, c]), dtype);
                let cv = c / vector;
                let (tx, cvt) = tile_shape(ww, cv, vector * dtype.size(), max_width);
                let address = [h.required_address_type(), out.required_address_type()].into_iter().max().unwrap_or_default();
                glu_depthwise_tiled_kernel::launch(
                    &client,
                    cube_grid(m * ww.div_ceil(tx) * cv.div_ceil(cvt)),
                    CubeDim::new_1d((tx * cvt) as u32),
                    address,
                    vector,
                    h.into_tensor_arg(),
                    taps.into_tensor_arg(),
                    bias.into_tensor_arg(),
                    out.clone().into_tensor_arg(),
                    m as u32,
                    hh as u32,
                    ww as u32,
                    cv as u32,
                    tx,
                    cvt,
                    elem_type(dtype),
                );
                return out;
            }
            GluLaunch::Strips { units, strip, vector, silu_on_load } => (units, strip, vector, silu_on_load),
        };
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
        let units = (c / vector).next_multiple_of(32).min(max_units) as u32;
        let address = [s.required_address_type(), out.required_address_type()].into_iter().max().unwrap_or_default();
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
            elem_type(dtype),
        );
        out
    }
}

pub fn glu_depthwise3x3(h: BTensor<4>, taps: BTensor<2>, bias: BTensor<1>) -> BTensor<4> {
    glu_depthwise3x3_with(h, taps, bias, settings())
}

/// With explicit launch settings.
pub fn glu_depthwise3x3_with(h: BTensor<4>, taps: BTensor<2>, bias: BTensor<1>, launch: GluLaunch) -> BTensor<4> {
    BTensor::from_dispatch(<Dispatch as GluConvKernels>::glu_depthwise3x3(h.into_dispatch(), taps.into_dispatch(), bias.into_dispatch(), launch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse() {
        assert_eq!(parse_settings("tile"), Some(GluLaunch::Tiled { max_width: 16 }));
        assert_eq!(parse_settings("tile, 32"), Some(GluLaunch::Tiled { max_width: 32 }));
        assert_eq!(parse_settings("tile,0"), None);
        assert_eq!(parse_settings("128,8,4,0"), Some(GluLaunch::Strips { units: 128, strip: 8, vector: 4, silu_on_load: false }));
        assert_eq!(parse_settings("100,8,4,0"), None);
        assert_eq!(parse_settings("strips"), None);
    }

    #[test]
    fn tile_shapes_fit_webgpu_limits() {
        // 480p's 52 positions: four tiles of 13; bf16 vectors of 8 (16 bytes).
        assert_eq!(tile_shape(52, 840, 16, 16), (13, 8));
        assert_eq!(tile_shape(52, 1680, 8, 16), (13, 16));
        assert_eq!(tile_shape(1, 1, 4, 16), (1, 1));
        for (ww, cv, bytes, max) in [(52, 840, 16, 16), (80, 1680, 8, 64), (883, 1, 4, 16), (7, 3, 32, 16), (64, 4096, 32, 64)] {
            let (tx, cvt) = tile_shape(ww, cv, bytes, max);
            assert!(tx <= max && tx * ww.div_ceil(tx) >= ww && cvt.is_power_of_two());
            assert!(tx * cvt <= MAX_UNITS && 6 * (tx + 2) * cvt * bytes <= SHARED_BYTES, "{ww} {cv} {bytes} {max}");
        }
    }
}
