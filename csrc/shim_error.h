// How the shim's C entry points report a libtorch error: the message into the caller's buffer
// `err` of `err_len` bytes, cut to fit and NUL-terminated (read back by src/error.rs).
#pragma once
#include <cstddef>
#include <cstdio>

inline void il_write_error(char* err, size_t err_len, const char* what) {
  if (err != nullptr && err_len > 0) {
    std::snprintf(err, err_len, "%s", what);
  }
}
