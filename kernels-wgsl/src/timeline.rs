//! GPU timestamps on CubeCL's CUDA stream, for profiling without syncs (`SANA_PROFILE_MODE=
//! timeline`). A [`Stamp`] is a CUDA event recorded on the calling thread's stream in order
//! with CubeCL's launches (a task on CubeCL's device thread, as the cuBLASLt GEMMs are), so
//! the time between two stamps is what the GPU took between those two points of the issued
//! work, idle gaps included. Comparing it with the host's clock at the same points shows where
//! the GPU waited for the host. On devices other than CUDA there are no stamps.

/// An event on the GPU's timeline; meaningful once the device has finished the work queued
/// before it.
pub struct Stamp {
    #[cfg(feature = "cuda")]
    inner: cuda::Event,
}

/// Whether `device` takes stamps (a CUDA device in a build with CUDA).
pub fn available(device: &burn::tensor::Device) -> bool {
    #[cfg(feature = "cuda")]
    {
        cuda::cuda_device(device).is_some()
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = device;
        false
    }
}

/// Records a stamp on `device`'s stream, or `None` where the device is not CUDA (or the event
/// could not be made).
pub fn stamp(device: &burn::tensor::Device) -> Option<Stamp> {
    #[cfg(feature = "cuda")]
    {
        cuda::record(device).map(|inner| Stamp { inner })
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = device;
        None
    }
}

/// Seconds of GPU time from `a` to `b`; `None` until both have been reached on the device
/// (sync it first) or when the driver cannot tell.
pub fn seconds_between(a: &Stamp, b: &Stamp) -> Option<f64> {
    #[cfg(feature = "cuda")]
    {
        cuda::between(&a.inner, &b.inner)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (a, b);
        None
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use std::sync::{Arc, Mutex};

    use cubecl_common::device::Device as _;
    use cubecl_common::device_handle::DeviceHandle;
    use cubecl_environment::stream::StreamId;
    use cubecl_server::stream::{ExecuteScope, WriteScoped};
    use cudarc::driver::{result as drv, sys as dsys};

    use crate::cuda_task::CudaServer;

    /// The event, filled in by the device-thread task that records it (`None` if that failed).
    pub struct Event {
        slot: Arc<Mutex<Option<usize>>>,
        device: DeviceHandle<CudaServer>,
    }

    pub(super) use crate::cuda_device;

    pub fn record(device: &burn::tensor::Device) -> Option<Event> {
        let dev = cuda_device(device)?;
        let handle = DeviceHandle::<CudaServer>::new(dev.to_id());
        let slot = Arc::new(Mutex::new(None));
        let filled = slot.clone();
        let stream_id = StreamId::current();
        handle.submit(move |server: &mut CudaServer| {
            let _ = ExecuteScope::over(server, stream_id, vec![]).execute(|server| {
                let Some(stream) = server.write_streams().try_stream_mut(&stream_id).map(|s| s.sys) else {
                    return Ok(());
                };
                // SAFETY: a fresh event recorded on a live stream of this device's context.
                unsafe {
                    if let Ok(ev) = drv::event::create(dsys::CUevent_flags::CU_EVENT_DEFAULT) {
                        if drv::event::record(ev, stream).is_ok() {
                            if let Ok(mut s) = filled.lock() {
                                *s = Some(ev as usize);
                            }
                        } else {
                            let _ = drv::event::destroy(ev);
                        }
                    }
                }
                Ok(())
            });
        });
        Some(Event { slot, device: handle })
    }

    pub fn between(a: &Event, b: &Event) -> Option<f64> {
        let ea = (*a.slot.lock().ok()?)?;
        let eb = (*b.slot.lock().ok()?)?;
        // On the device thread, whose context is current.
        let ms = a
            .device
            .submit_blocking(move |_server: &mut CudaServer| {
                // SAFETY: both events were created and recorded by `record` and are live.
                unsafe { drv::event::elapsed(ea as dsys::CUevent, eb as dsys::CUevent) }.ok()
            })
            .ok()??;
        Some(ms as f64 / 1e3)
    }

    impl Drop for Event {
        fn drop(&mut self) {
            let slot = self.slot.clone();
            self.device.submit(move |_server: &mut CudaServer| {
                if let Some(ev) = slot.lock().ok().and_then(|mut s| s.take()) {
                    // SAFETY: made by `record`, destroyed once (the slot is emptied).
                    unsafe {
                        let _ = drv::event::destroy(ev as dsys::CUevent);
                    }
                }
            });
        }
    }
}
