//! FP8 (e4m3) weights held on the device as codes, dequantised just before their product
//! (W8A16, issue 9): four codes packed per i32 (WGSL has no 8-bit type), `[in, out/4]`,
//! one f32 scale per output channel, and the 256-entry e4m3 table.
//!
//! ```text
//! w[i, 4g + k] = dtype( lut[(packed[i, g] >> 8k) & 255] · scale[4g + k] )
//! ```
//!
//! As tensor ops that is four shifts and masks into full-size i32 tensors, a stack, a gather
//! and a multiply: some thirty bytes moved per weight. The kernel reads one and writes
//! the weight once, so dequantising costs about what reading a bf16 weight does.

#[cfg(feature = "cube")]
pub mod cube;
pub mod reference;

use burn::tensor::{DType, Int, Tensor};

use crate::Impl;

/// `packed` `[in, out/4]` i32, `scale` `[1, out]` f32, `lut` `[256]` f32; returns the
/// `[in, out]` weight in `dtype`.
pub fn dequant_fp8(packed: Tensor<2, Int>, scale: Tensor<2>, lut: Tensor<1>, dtype: DType, which: Impl) -> Tensor<2> {
    let [_, groups] = packed.dims();
    assert_eq!(scale.dims(), [1, 4 * groups], "dequant_fp8: scale must be [1, {}]", 4 * groups);
    assert_eq!(lut.dims(), [256], "dequant_fp8: lut must be [256]");
    if which == Impl::Auto && crate::is_cube_device(&packed.device()) {
        #[cfg(feature = "cube")]
        return cube::dequant_fp8(packed, scale, lut, dtype);
    }
    reference::dequant_fp8(packed, scale, lut, dtype)
}
