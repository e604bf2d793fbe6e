//! FP8 (e4m3) and NVFP4 weights held on the device as codes, dequantised just before their
//! product (W8A16 / W4A16, issue 9). WGSL has no 8-bit type, so codes are packed in i32s
//! along the output channels.
//!
//! FP8: four codes per i32, `[in, out/4]`, one f32 scale per output channel, the 256-entry
//! e4m3 table:
//!
//! ```text
//! w[i, 4g + k] = dtype( lut[(packed[i, g] >> 8k) & 255] · scale[4g + k] )
//! ```
//!
//! NVFP4: eight e2m1 codes per i32, `[in, out/8]`; the e4m3 code of each 16-value block along
//! `in`, four per i32, `[in/16, out/4]`; one global f32 scale; the 16-entry e2m1 table:
//!
//! ```text
//! w[i, 8g + k] = dtype( (e2m1[(codes[i, g] >> 4k) & 15] · e4m3[block code of (i/16, 8g + k)]) · global )
//! ```
//! (the host dequantiser's order of products, so the values are bit for bit the same).
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

/// `codes` `[in, out/8]` i32, `blocks` `[in/16, out/4]` i32, `global` `[1]` f32, `e2m1`
/// `[16]` and `e4m3` `[256]` f32 tables; returns the `[in, out]` weight in `dtype`.
pub fn dequant_nvfp4(codes: Tensor<2, Int>, blocks: Tensor<2, Int>, global: Tensor<1>, e2m1: Tensor<1>, e4m3: Tensor<1>, dtype: DType, which: Impl) -> Tensor<2> {
    let [inp, groups] = codes.dims();
    assert!(inp % 16 == 0, "dequant_nvfp4: {inp} input channels is not a multiple of 16");
    assert_eq!(blocks.dims(), [inp / 16, 2 * groups], "dequant_nvfp4: block codes must be [{}, {}]", inp / 16, 2 * groups);
    assert_eq!((global.dims(), e2m1.dims(), e4m3.dims()), ([1], [16], [256]), "dequant_nvfp4: global [1], tables [16] and [256]");
    if which == Impl::Auto && crate::is_cube_device(&codes.device()) {
        #[cfg(feature = "cube")]
        return cube::dequant_nvfp4(codes, blocks, global, e2m1, e4m3, dtype);
    }
    reference::dequant_nvfp4(codes, blocks, global, e2m1, e4m3, dtype)
}
