//! f32 matmul on CubeCL devices through cubek's `SimpleUnit` routine (no TF32).

use burn::backend::{backend_extension, cubecl::dtype_to_storage_type, tensor::FloatTensor, Backend, Dispatch};
use burn::tensor::{DType, Shape, Tensor as BTensor};
use burn_cubecl::{kernel::into_contiguous, ops::numeric::empty_device_dtype, tensor::CubeTensor, CubeBackend};
use cubek::matmul::{
    definition::{MatmulElems, MatmulGlobalElems},
    launch::launch_ref,
    multi_level,
    strategy::Strategy,
};
use cubek::std::InputBinding;

#[backend_extension(Cube)]
pub trait ExactMatmul: Backend {
    fn matmul_f32_exact(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl ExactMatmul for CubeBackend {
    fn matmul_f32_exact(lhs: CubeTensor, rhs: CubeTensor) -> CubeTensor {
        assert!(lhs.dtype == DType::F32 && rhs.dtype == DType::F32, "matmul_f32_exact: f32 operands only");
        let (lhs, rhs) = (into_contiguous(lhs), into_contiguous(rhs));
        let ls = lhs.meta.shape().clone();
        let rs = rhs.meta.shape().clone();
        let rank = ls.num_dims();
        assert_eq!(rank, rs.num_dims(), "matmul_f32_exact: ranks differ");
        assert_eq!(ls[rank - 1], rs[rank - 2], "matmul_f32_exact: inner dims differ");
        let mut out_dims: Vec<usize> = ls.iter().copied().collect();
        out_dims[rank - 1] = rs[rank - 1];
        let client = lhs.client.clone();
        let out = empty_device_dtype(client.clone(), lhs.device.clone(), Shape::from(out_dims), DType::F32);
        let f32_ty = dtype_to_storage_type(DType::F32);
        let mut elems = MatmulElems::from_globals(&MatmulGlobalElems { lhs: f32_ty, rhs: f32_ty, out: f32_ty });
        let strategy = Strategy::MultiLevel(multi_level::Strategy::SimpleUnit(Default::default()));
        launch_ref(
            &strategy,
            &client,
            InputBinding::new(lhs.binding(), f32_ty),
            InputBinding::new(rhs.binding(), f32_ty),
            out.clone().binding(),
            &mut elems,
        )
        .unwrap_or_else(|e| panic!("f32 unit matmul could not launch: {e:?}"));
        out
    }
}

pub fn matmul_f32<const D: usize>(a: BTensor<D>, b: BTensor<D>) -> BTensor<D> {
    BTensor::from_dispatch(<Dispatch as ExactMatmul>::matmul_f32_exact(a.into_dispatch(), b.into_dispatch()))
}
