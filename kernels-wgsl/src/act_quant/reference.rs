//! The host reference of the per-token FP8 quantisation: the values read back, encoded by
//! [`super::encode_rows`], the codes and scales uploaded.

use burn::tensor::{DType, Int, Tensor, TensorData};

pub fn quantize_fp8_rows(x: Tensor<2>) -> (Tensor<2, Int>, Tensor<1>) {
    let [rows, cols] = x.dims();
    let device = x.device();
    // After the cast the data is f32, so reading it as f32 cannot fail.
    let values = x.cast(burn::tensor::FloatDType::F32).into_data().try_to_vec::<f32>().expect("f32 data after a cast to f32");
    let (codes, scales) = super::encode_rows(&values, rows, cols);
    (
        Tensor::from_data(TensorData::new(codes, [rows, cols / 4]), (&device, DType::I32)),
        Tensor::from_data(TensorData::new(scales, [rows]), (&device, DType::F32)),
    )
}
