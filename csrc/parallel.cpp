// How many threads at::parallel_for gives the shim's kernels. at::parallel_for is a header
// template, compiled into the shim itself: built without OpenMP it silently runs every loop on
// one thread (as this project's kernels did until build.rs passed -fopenmp), so a test asks.
#include <ATen/Parallel.h>

#include <atomic>
#include <cstdint>

extern "C" {

// Runs a parallel loop over `n` items, each taking long enough that every thread gets a share,
// and returns the number of distinct threads that ran part of it.
int64_t il_parallel_threads(int64_t n) {
  std::atomic<uint64_t> seen{0};
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    seen.fetch_or(uint64_t{1} << (at::get_thread_num() % 64));
    volatile double sink = 0.0;
    for (int64_t i = begin; i < end; i++) {
      for (int k = 0; k < 100000; k++) sink = sink + 1.0;
    }
  });
  return __builtin_popcountll(seen.load());
}
}
