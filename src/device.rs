//! Device choice. libtorch_cuda.so is loaded only when CUDA is asked for (or `auto` probes it),
//! so a CPU run does not pay for the CUDA libraries.
use anyhow::Result;
use tch::Device;

use crate::bail_input;
use crate::config::DeviceChoice;

fn load_cuda_library() -> bool {
    let dir = env!("IMAGE_LEARNER_TORCH_LIB");
    let candidates = [format!("{dir}/libtorch_cuda.so"), "libtorch_cuda.so".to_string()];
    candidates.iter().filter(|p| !p.is_empty()).any(|path| {
        let Ok(c) = std::ffi::CString::new(path.as_str()) else { return false };
        // SAFETY: dlopen with a valid C string; the handle is kept open for the process lifetime.
        !unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) }.is_null()
    })
}

pub fn resolve(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto => {
            if load_cuda_library() && tch::Cuda::is_available() {
                Ok(Device::Cuda(0))
            } else {
                Ok(Device::Cpu)
            }
        }
        DeviceChoice::Cuda(n) => {
            if !load_cuda_library() {
                bail_input!("--device cuda: libtorch_cuda.so could not be loaded; use --device cpu");
            }
            let count = tch::Cuda::device_count() as usize;
            if count == 0 {
                bail_input!("--device cuda: no CUDA device is visible on this machine; use --device cpu or auto");
            }
            if n >= count {
                bail_input!("--device cuda:{n}: only {count} CUDA device(s) here (cuda:0..cuda:{})", count - 1);
            }
            Ok(Device::Cuda(n))
        }
    }
}

pub fn describe(d: Device) -> String {
    match d {
        Device::Cpu => format!("cpu ({} threads)", tch::get_num_threads()),
        Device::Cuda(n) => format!("cuda:{n}"),
        other => format!("{other:?}"),
    }
}
