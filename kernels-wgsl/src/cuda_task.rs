//! A library call (cuBLASLt, cuDNN) as a task on CubeCL's CUDA device thread.
//!
//! CubeCL does not hand out its CUDA stream, but it runs tasks on its device thread with the
//! server in hand, in submission order with its own launches. [`enqueue`] is such a task: it
//! asks the server for the buffers' addresses and the stream of the calling thread's
//! [`StreamId`] (aligned with every stream that wrote them) and runs the call there, inside
//! CubeCL's write scope for the buffers it writes. So the call is ordered on the GPU like any
//! CubeCL kernel and the host never waits; an input carrying a failure, or a call that fails,
//! taints the outputs, and reading them reports the error as a failed kernel launch would.

use cubecl::cuda::CudaRuntime;
use cubecl_common::device_handle::DeviceHandle;
use cubecl_environment::backtrace::BackTrace;
use cubecl_environment::stream::StreamId;
use cubecl_runtime::runtime::Runtime;
use cubecl_runtime::server::{BufferBinding, ServerError, ServerStorage};
use cubecl_server::stream::{failed_writing, ExecuteScope, WriteScoped};
use cudarc::driver::sys as dsys;

pub(crate) type CudaServer = <CudaRuntime as Runtime>::Server;

/// Enqueues `call(stream_id, stream, addresses)` on `device`'s thread, `addresses` those of
/// `buffers` in order; `written` are the indices of the buffers the call writes.
pub(crate) fn enqueue<F>(device: &DeviceHandle<CudaServer>, buffers: Vec<BufferBinding>, written: Vec<usize>, call: F)
where
    F: FnOnce(StreamId, dsys::CUstream, &[u64]) -> Result<(), String> + Send + 'static,
{
    let stream_id = StreamId::current();
    device.submit(move |server: &mut CudaServer| {
        let outputs: Vec<BufferBinding> = written.iter().map(|&i| buffers[i].clone()).collect();
        let mut held = Vec::with_capacity(buffers.len());
        for b in &buffers {
            match server.get_resource(b.clone(), stream_id) {
                Ok(r) => held.push(r),
                Err(e) => return failed_writing(server, stream_id, outputs, e),
            }
        }
        let addresses: Vec<u64> = held.iter().map(|r| r.resource().ptr).collect();
        let _ = ExecuteScope::over(server, stream_id, outputs).execute(|server| {
            let generic = |reason: String| ServerError::Generic { reason, backtrace: BackTrace::capture() };
            let stream = server.write_streams().try_stream_mut(&stream_id).ok_or_else(|| generic("CubeCL has no stream for this thread".into()))?.sys;
            call(stream_id, stream, &addresses).map_err(generic)
        });
        // The resources are held until the call is enqueued; later reuse is ordered on this
        // stream.
        drop(held);
    });
}
