// The libtorch version this binary was compiled against (it runs on that same libtorch, found by
// rpath), for the report's Software line.
#include <torch/version.h>

extern "C" {

const char* il_torch_version() { return TORCH_VERSION; }
}
