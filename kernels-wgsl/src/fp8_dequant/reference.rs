//! FP8 dequantisation as plain tensor ops (any burn device).

use burn::tensor::{DType, Int, Tensor};

pub fn dequant_fp8(packed: Tensor<2, Int>, scale: Tensor<2>, lut: Tensor<1>, dtype: DType) -> Tensor<2> {
    let [inp, groups] = packed.dims();
    // Unpack the four codes of each i32 (an arithmetic shift may bring in sign bits; the
    // mask drops them), look each code up, scale per output channel.
    let bytes: Vec<Tensor<2, Int>> = (0..4).map(|k| packed.clone().bitwise_right_shift_scalar(8 * k as i64).bitwise_and_scalar(255)).collect();
    let codes = Tensor::stack::<3>(bytes, 2).reshape([inp * groups * 4]);
    let values = lut.select(0, codes).reshape([inp, groups * 4]) * scale;
    if values.dtype() == dtype {
        values
    } else {
        values.cast(burn::tensor::FloatDType::from(dtype))
    }
}
