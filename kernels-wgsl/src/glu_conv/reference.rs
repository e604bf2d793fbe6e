//! Plain tensor-op reference of the fused GLU depth-wise conv (any burn device).

use burn::tensor::{activation::silu, Tensor};

pub fn glu_depthwise3x3(h: Tensor<4>, taps: Tensor<2>, bias: Tensor<1>) -> Tensor<4> {
    let [m, hh, ww, c2] = h.dims();
    let (device, dtype) = (h.device(), h.dtype());
    let x = silu(h);
    // Zero padding of one row and one column on each side.
    let zr = Tensor::<4>::zeros([m, 1, ww, c2], (&device, dtype));
    let x = Tensor::cat(vec![zr.clone(), x, zr], 1);
    let zc = Tensor::<4>::zeros([m, hh + 2, 1, c2], (&device, dtype));
    let x = Tensor::cat(vec![zc.clone(), x, zc], 2);
    let mut y = bias.reshape([1, 1, 1, c2]);
    for dy in 0..3 {
        for dx in 0..3 {
            let tap = taps.clone().narrow(0, dy * 3 + dx, 1).reshape([1, 1, 1, c2]);
            y = y + x.clone().narrow(1, dy, hh).narrow(2, dx, ww) * tap;
        }
    }
    let c = c2 / 2;
    let a = y.clone().narrow(3, 0, c);
    let g = y.narrow(3, c, c);
    a * silu(g)
}
