// Automatic mixed precision for image-learner: the part of libtorch's C++ API that tch does not
// expose. Entering a region does what Python's `torch.autocast(device, dtype)` does on entry
// (enable autocast for the device with the dtype, count one nesting level) and leaving it what
// it does on exit (restore the previous state; at the outermost level drop the cache of weights
// cast to the lower precision, which would otherwise be stale after the optimizer step).
// Autocast state is per thread, like Python's.
#include <ATen/autocast_mode.h>

namespace {
at::DeviceType device_of(int device) { return device == 1 ? at::kCUDA : at::kCPU; }
at::ScalarType dtype_of(int dtype) { return dtype == 1 ? at::kHalf : at::kBFloat16; }
}  // namespace

extern "C" {

// Returns the previous state as (enabled << 8) | previous dtype code, or -1 on error.
int il_autocast_enter(int device, int dtype) {
  try {
    auto d = device_of(device);
    int previous = (at::autocast::is_autocast_enabled(d) ? 1 << 8 : 0) |
                   (at::autocast::get_autocast_dtype(d) == at::kHalf ? 1 : 0);
    at::autocast::set_autocast_enabled(d, true);
    at::autocast::set_autocast_dtype(d, dtype_of(dtype));
    at::autocast::increment_nesting();
    return previous;
  } catch (...) {
    return -1;
  }
}

int il_autocast_exit(int device, int previous) {
  try {
    auto d = device_of(device);
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(d, (previous >> 8) & 1);
    at::autocast::set_autocast_dtype(d, dtype_of(previous & 1));
    return 0;
  } catch (...) {
    return -1;
  }
}

int il_autocast_is_enabled(int device) {
  try {
    return at::autocast::is_autocast_enabled(device_of(device)) ? 1 : 0;
  } catch (...) {
    return -1;
  }
}
}
