//! The CubeCL dequantisation kernels: one thread per packed i32 (four FP8 or eight NVFP4
//! weights out), the products in f32 in the reference's order, then the storage dtype.

use burn::backend::{backend_extension, tensor::FloatTensor, tensor::IntTensor, Backend, Dispatch};
use burn::tensor::{DType, Int, Shape, Tensor as BTensor};
use burn_cubecl::{cubecl, kernel::into_contiguous, ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor, CubeBackend};
use cubecl::ir::ElemType;

use crate::{dtype_code, elem_type, DTYPES};
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

#[cube(launch, address_type = "dynamic")]
fn dequant_nvfp4_kernel<F: Float>(
    codes: &Tensor<i32>,
    blocks: &Tensor<i32>,
    global: &Tensor<f32>,
    e2m1: &Tensor<f32>,
    e4m3: &Tensor<f32>,
    out: &mut Tensor<F>,
    #[define(F)] _dtype: ElemType,
) {
    if ABSOLUTE_POS >= codes.len() {
        terminate!();
    }
    let groups = codes.shape(1);
    let row = ABSOLUTE_POS / groups;
    let col = (ABSOLUTE_POS % groups) * 8;
    let block_row = (row / 16) * blocks.shape(1);
    let word = u32::cast_from(codes[ABSOLUTE_POS]);
    let g = global[0];
    #[unroll]
    for k in 0..8usize {
        let code = usize::cast_from((word >> (4 * k as u32)) & 15u32);
        let o = col + k;
        let bword = u32::cast_from(blocks[block_row + o / 4]);
        let bcode = usize::cast_from((bword >> (8 * (o % 4) as u32)) & 255u32);
        out[ABSOLUTE_POS * 8 + k] = F::cast_from(e2m1[code] * e4m3[bcode] * g);
    }
}

/// The CubeCL half of the backend trait: the same body serves WGSL, SPIR-V and CUDA.
#[backend_extension(Cube)]
pub trait DequantKernels: Backend {
    /// `dtype`: 0 f32, 1 f16, 2 bf16 (an integer crosses the extension's dispatch).
    fn dequant_fp8(packed: IntTensor<Self>, scale: FloatTensor<Self>, lut: FloatTensor<Self>, dtype: u8) -> FloatTensor<Self>;
    fn dequant_nvfp4(
        codes: IntTensor<Self>,
        blocks: IntTensor<Self>,
        global: FloatTensor<Self>,
        e2m1: FloatTensor<Self>,
        e4m3: FloatTensor<Self>,
        dtype: u8,
    ) -> FloatTensor<Self>;
}

impl DequantKernels for CubeBackend {
    fn dequant_fp8(packed: CubeTensor, scale: CubeTensor, lut: CubeTensor, dtype: u8) -> CubeTensor {
        let dtype = DTYPES[dtype as usize];
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

    fn dequant_nvfp4(codes: CubeTensor, blocks: CubeTensor, global: CubeTensor, e2m1: CubeTensor, e4m3: CubeTensor, dtype: u8) -> CubeTensor {
        let dtype = DTYPES[dtype as usize];
        assert!(codes.dtype == DType::I32 && blocks.dtype == DType::I32, "dequant_nvfp4: codes must be i32");
        let [codes, blocks, global, e2m1, e4m3] = [codes, blocks, global, e2m1, e4m3].map(into_contiguous);
        let dims = codes.meta.shape().clone();
        let (inp, groups) = (dims[0], dims[1]);
        let client = codes.client.clone();
        let out = empty_device_contiguous_dtype(client.clone(), codes.device.clone(), Shape::new([inp, 8 * groups]), dtype);
        let n = inp * groups;
        let cube_dim = CubeDim::new(&client, n);
        let cube_count = calculate_cube_count_elemwise(&client, n, cube_dim);
        let address = [codes.required_address_type(), out.required_address_type()].into_iter().max().unwrap_or_default();
        dequant_nvfp4_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            address,
            codes.into_tensor_arg(),
            blocks.into_tensor_arg(),
            global.into_tensor_arg(),
            e2m1.into_tensor_arg(),
            e4m3.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            elem_type(dtype),
        );
        out
    }
}

pub fn dequant_nvfp4(
    codes: BTensor<2, Int>,
    blocks: BTensor<2, Int>,
    global: BTensor<1>,
    e2m1: BTensor<1>,
    e4m3: BTensor<1>,
    dtype: DType,
) -> BTensor<2> {
    BTensor::from_dispatch(<Dispatch as DequantKernels>::dequant_nvfp4(
        codes.into_dispatch(),
        blocks.into_dispatch(),
        global.into_dispatch(),
        e2m1.into_dispatch(),
        e4m3.into_dispatch(),
        dtype_code(dtype),
    ))
}

pub fn dequant_fp8(packed: BTensor<2, Int>, scale: BTensor<2>, lut: BTensor<1>, dtype: DType) -> BTensor<2> {
    BTensor::from_dispatch(<Dispatch as DequantKernels>::dequant_fp8(packed.into_dispatch(), scale.into_dispatch(), lut.into_dispatch(), dtype_code(dtype)))
}
