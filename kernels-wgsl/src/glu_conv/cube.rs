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
use cubecl::{calculate_cube_count_elemwise, prelude::*};

#[cube]
fn silu_f32(x: f32) -> f32 {
    x / (1.0 + f32::exp(-x))
}

#[cube(launch, address_type = "dynamic")]
fn silu_kernel<F: Float>(x: &Tensor<F>, out: &mut Tensor<F>, #[define(F)] _dtype: ElemType) {
    if ABSOLUTE_POS >= out.len() {
        terminate!();
    }
    out[ABSOLUTE_POS] = F::cast_from(silu_f32(f32::cast_from(x[ABSOLUTE_POS])));
}

/// One binding only: WebGPU refuses a buffer bound both read-only and read-write.
#[cube(launch, address_type = "dynamic")]
fn silu_inplace_kernel<F: Float>(x: &mut Tensor<F>, #[define(F)] _dtype: ElemType) {
    if ABSOLUTE_POS >= x.len() {
        terminate!();
    }
    x[ABSOLUTE_POS] = F::cast_from(silu_f32(f32::cast_from(x[ABSOLUTE_POS])));
}

/// `s` is `SiLU(h)` `[M, H, W, 2C]`.
#[cube(launch, address_type = "dynamic")]
fn glu_depthwise_kernel<F: Float>(
    s: &Tensor<F>,
    taps: &Tensor<F>,
    bias: &Tensor<F>,
    out: &mut Tensor<F>,
    #[define(F)] _dtype: ElemType,
) {
    let hh = out.shape(1);
    let ww = out.shape(2);
    let c = out.shape(3);
    if ABSOLUTE_POS >= out.shape(0) * hh * ww * c {
        terminate!();
    }
    let ch = ABSOLUTE_POS % c;
    let x = (ABSOLUTE_POS / c) % ww;
    let y = (ABSOLUTE_POS / (c * ww)) % hh;
    let m = ABSOLUTE_POS / (c * ww * hh);
    let c2 = 2 * c;
    let mut a = f32::cast_from(bias[ch]);
    let mut g = f32::cast_from(bias[ch + c]);
    // Neighbour (y + dy - 1, x + dx - 1), written with unsigned indices shifted by one.
    #[unroll]
    for dy in 0..3usize {
        let yp = y + dy;
        if yp >= 1 && yp <= hh {
            #[unroll]
            for dx in 0..3usize {
                let xp = x + dx;
                if xp >= 1 && xp <= ww {
                    let base = ((m * hh + yp - 1) * ww + xp - 1) * c2;
                    let t = (dy * 3 + dx) * c2;
                    a += f32::cast_from(taps[t + ch]) * f32::cast_from(s[base + ch]);
                    g += f32::cast_from(taps[t + ch + c]) * f32::cast_from(s[base + ch + c]);
                }
            }
        }
    }
    out[ABSOLUTE_POS] = F::cast_from(a * silu_f32(g));
}

/// The CubeCL half of the backend trait: the same body serves WGSL, SPIR-V and CUDA.
#[backend_extension(Cube)]
pub trait GluConvKernels: Backend {
    fn glu_depthwise3x3(h: FloatTensor<Self>, taps: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self>;
}


impl GluConvKernels for CubeBackend {
    fn glu_depthwise3x3(h: CubeTensor, taps: CubeTensor, bias: CubeTensor) -> CubeTensor {
        let dtype = h.dtype;
        assert!(taps.dtype == dtype && bias.dtype == dtype, "glu_depthwise3x3: h, taps and bias dtypes differ");
        // The kernel indexes row-major buffers; the FFN's activations already are.
        let (h, taps, bias) = (into_contiguous(h), into_contiguous(taps), into_contiguous(bias));
        let dims = h.meta.shape().clone();
        let (m, hh, ww, c) = (dims[0], dims[1], dims[2], dims[3] / 2);
        let client = h.client.clone();
        // SiLU in place when this is the only handle on the buffer (the usual case: the
        // inverted conv's fresh output), else into a new one.
        let n = dims.num_elements();
        let cube_dim = CubeDim::new(&client, n);
        let cube_count = calculate_cube_count_elemwise(&client, n, cube_dim);
        let address = h.required_address_type();
        let s = if h.can_mut() {
            silu_inplace_kernel::launch(&client, cube_count, cube_dim, address, h.clone().into_tensor_arg(), elem_type(dtype));
            h
        } else {
            let s = empty_device_contiguous_dtype(client.clone(), h.device.clone(), dims.clone(), dtype);
            silu_kernel::launch(&client, cube_count, cube_dim, address, h.into_tensor_arg(), s.clone().into_tensor_arg(), elem_type(dtype));
            s
        };
        let out = empty_device_contiguous_dtype(client.clone(), s.device.clone(), Shape::new([m, hh, ww, c]), dtype);
        let threads = m * hh * ww * c;
        let cube_dim = CubeDim::new(&client, threads);
        let cube_count = calculate_cube_count_elemwise(&client, threads, cube_dim);
        let address = [s.required_address_type(), out.required_address_type()].into_iter().max().unwrap_or_default();
        glu_depthwise_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            address,
            s.into_tensor_arg(),
            taps.into_tensor_arg(),
            bias.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            elem_type(dtype),
        );
        out
    }
}

pub fn glu_depthwise3x3(h: BTensor<4>, taps: BTensor<2>, bias: BTensor<1>) -> BTensor<4> {
    BTensor::from_dispatch(<Dispatch as GluConvKernels>::glu_depthwise3x3(
        h.into_dispatch(),
        taps.into_dispatch(),
        bias.into_dispatch(),
    ))
}
