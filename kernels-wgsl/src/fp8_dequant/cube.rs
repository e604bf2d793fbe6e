//! The CubeCL FP8 dequantisation kernel: one thread per packed i32, four weights out,
//! the product with the scale in f32 (as the reference), then the storage dtype.

use burn::backend::{backend_extension, tensor::FloatTensor, tensor::IntTensor, Backend, Dispatch};
use burn::tensor::{DType, Int, Shape, Tensor as BTensor};
use burn_cubecl::{cubecl, kernel::into_contiguous, ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor, CubeBackend};
use cubecl::ir::ElemType;

use crate::elem_type;
use cubecl::{calculate_cube_count_elemwise, prelude::*};

#[cube(launch, address_type = "dynamic")]
fn dequant_fp8_kernel<F: Float>(
    packed: &Tensor<i32>,
    scale: &Tensor<f32>,
    lut: &Tensor<f32>,
    out: &mut Tensor<F>,
    #[define(F)] _dtype: ElemType,
) {
    if ABSOLUTE_POS >= packed.len() {
        terminate!();
    }
    let groups = packed.shape(1);
    let col = (ABSOLUTE_POS % groups) * 4;
    let word = u32::cast_from(packed[ABSOLUTE_POS]);
    #[unroll]
    for k in 0..4usize {
        let code = usize::cast_from((word >> (8 * k as u32)) & 255u32);
        out[ABSOLUTE_POS * 4 + k] = F::cast_from(lut[code] * scale[col + k]);
    }
}

/// The CubeCL half of the backend trait: the same body serves WGSL, SPIR-V and CUDA.
#[backend_extension(Cube)]
pub trait Fp8Kernels: Backend {
    /// `dtype`: 0 f32, 1 f16, 2 bf16 (an integer crosses the extension's dispatch).
    fn dequant_fp8(packed: IntTensor<Self>, scale: FloatTensor<Self>, lut: FloatTensor<Self>, dtype: u8) -> FloatTensor<Self>;
}

fn dtype_code(dtype: DType) -> u8 {
    match dtype {
        DType::F32 => 0,
        DType::F16 => 1,
        DType::BF16 => 2,
        other => panic!("dequant_fp8: unsupported dtype {other:?} (f32, f16 or bf16)"),
    }
}

impl Fp8Kernels for CubeBackend {
    fn dequant_fp8(packed: CubeTensor, scale: CubeTensor, lut: CubeTensor, dtype: u8) -> CubeTensor {
        let dtype = [DType::F32, DType::F16, DType::BF16][dtype as usize];
        assert!(packed.dtype == DType::I32, "dequant_fp8: codes must be i32, got {:?}", packed.dtype);
        assert!(scale.dtype == DType::F32 && lut.dtype == DType::F32, "dequant_fp8: scale and lut must be f32");
        let (packed, scale, lut) = (into_contiguous(packed), into_contiguous(scale), into_contiguous(lut));
        let dims = packed.meta.shape().clone();
        let (inp, groups) = (dims[0], dims[1]);
        let client = packed.client.clone();
        let out = empty_device_contiguous_dtype(client.clone(), packed.device.clone(), Shape::new([inp, 4 * groups]), dtype);
        let n = inp * groups;
        let cube_dim = CubeDim::new(&client, n);
        let cube_count = calculate_cube_count_elemwise(&client, n, cube_dim);
        let address = [packed.required_address_type(), out.required_address_type()].into_iter().max().unwrap_or_default();
        dequant_fp8_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            address,
            packed.into_tensor_arg(),
            scale.into_tensor_arg(),
            lut.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            elem_type(dtype),
        );
        out
    }
}

pub fn dequant_fp8(packed: BTensor<2, Int>, scale: BTensor<2>, lut: BTensor<1>, dtype: DType) -> BTensor<2> {
    BTensor::from_dispatch(<Dispatch as Fp8Kernels>::dequant_fp8(packed.into_dispatch(), scale.into_dispatch(), lut.into_dispatch(), dtype_code(dtype)))
}
