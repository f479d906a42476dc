// StarReLU (s * relu(x)^2 + b, MetaFormer's activation) as one autograd function with one pass
// forward and one pass backward, for float32 tensors on the CPU. Built from ATen ops, as timm
// writes it, it costs four passes forward and about eight backward (the ReLU, the square, the
// scale and the bias each with their own gradient): a quarter of CAFormer's training step on a
// CPU. Other devices and dtypes (CUDA, bf16 autocast) are left to the caller's ATen expression.
//
// The kernels walk input, output and gradients as flat arrays, so they run only on a dense
// input; a gradient laid out differently is copied into the input's layout first. The sums for
// the gradients of s and b are taken per block of fixed size and added in block order, so the
// result does not depend on the number of threads.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include "shim_error.h"

#include <vector>

namespace {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr int64_t kBlock = 16384;  // elements per block of the parallel loops and partial sums
constexpr int kLanes = 16;         // independent accumulators, so that the sums vectorise

// relu as PyTorch's: a NaN stays NaN.
inline float relu(float v) { return v < 0.f ? 0.f : v; }

__attribute__((target_clones("avx512f", "avx2", "default")))
void forward_block(const float* x, float* y, int64_t n, float s, float b) {
  for (int64_t i = 0; i < n; i++) {
    float r = relu(x[i]);
    y[i] = s * (r * r) + b;
  }
}

// grad_x = 2 s relu(x) g; returns sum(g relu(x)^2) and sum(g) for the gradients of s and b.
__attribute__((target_clones("avx512f", "avx2", "default")))
void backward_block(const float* x, const float* g, float* gx, int64_t n, float two_s, double* sum_gr2,
                    double* sum_g) {
  float acc_gr2[kLanes] = {0.f};
  float acc_g[kLanes] = {0.f};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; j++) {
      float r = relu(x[i + j]);
      float gg = g[i + j];
      gx[i + j] = two_s * r * gg;
      acc_gr2[j] += gg * r * r;
      acc_g[j] += gg;
    }
  }
  double total_gr2 = 0.0, total_g = 0.0;
  for (; i < n; i++) {
    float r = relu(x[i]);
    gx[i] = two_s * r * g[i];
    total_gr2 += static_cast<double>(g[i] * r * r);
    total_g += static_cast<double>(g[i]);
  }
  for (int j = 0; j < kLanes; j++) {
    total_gr2 += acc_gr2[j];
    total_g += acc_g[j];
  }
  *sum_gr2 = total_gr2;
  *sum_g = total_g;
}

int64_t blocks_of(int64_t n) { return (n + kBlock - 1) / kBlock; }

struct StarReluFunction : public torch::autograd::Function<StarReluFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& scale,
                            const at::Tensor& bias) {
    const float s = scale.item<float>();
    const float b = bias.item<float>();
    at::Tensor y = at::empty_like(x);  // the same strides as x: both are walked as flat arrays
    const float* xp = x.const_data_ptr<float>();
    float* yp = y.mutable_data_ptr<float>();
    const int64_t n = x.numel();
    at::parallel_for(0, blocks_of(n), 2, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; k++) {
        const int64_t start = k * kBlock;
        forward_block(xp + start, yp + start, std::min(kBlock, n - start), s, b);
      }
    });
    ctx->save_for_backward({x, scale});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& scale = saved[1];
    at::Tensor g = grads[0];
    if (!g.defined()) {
      return {at::Tensor(), at::Tensor(), at::Tensor()};
    }
    if (g.scalar_type() != at::kFloat || g.strides() != x.strides() || g.sizes() != x.sizes()) {
      g = at::empty_like(x).copy_(g);
    }
    const float two_s = 2.f * scale.item<float>();
    at::Tensor gx = at::empty_like(x);
    const float* xp = x.const_data_ptr<float>();
    const float* gp = g.const_data_ptr<float>();
    float* gxp = gx.mutable_data_ptr<float>();
    const int64_t n = x.numel();
    const int64_t blocks = blocks_of(n);
    std::vector<double> sums_gr2(blocks), sums_g(blocks);
    at::parallel_for(0, blocks, 2, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; k++) {
        const int64_t start = k * kBlock;
        backward_block(xp + start, gp + start, gxp + start, std::min(kBlock, n - start), two_s, &sums_gr2[k],
                       &sums_g[k]);
      }
    });
    double total_gr2 = 0.0, total_g = 0.0;
    for (int64_t k = 0; k < blocks; k++) {
      total_gr2 += sums_gr2[k];
      total_g += sums_g[k];
    }
    at::Tensor grad_scale, grad_bias;
    if (ctx->needs_input_grad(1)) {
      grad_scale = at::full(scale.sizes(), total_gr2, scale.options());
    }
    if (ctx->needs_input_grad(2)) {
      grad_bias = at::full(scale.sizes(), total_g, scale.options());
    }
    return {gx, grad_scale, grad_bias};
  }
};

bool applies(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& bias) {
  auto scalar = [](const at::Tensor& t) { return t.is_cpu() && t.scalar_type() == at::kFloat && t.numel() == 1; };
  return x.is_cpu() && x.scalar_type() == at::kFloat && x.is_non_overlapping_and_dense() && x.numel() > 0 &&
         scalar(scale) && scalar(bias) && scale.sizes() == bias.sizes();
}
}  // namespace

extern "C" {

// StarReLU of `x` with the one-element `scale` and `bias`, into `out` (a tensor handle that the
// caller owns). Returns 1 when done, 0 when this case is not handled here (not a dense float32
// CPU input: the caller computes it with ATen ops), -1 with the reason in `err`.
int il_star_relu(const void* x, const void* scale, const void* bias, void* out, char* err, size_t err_len) {
  try {
    const auto& xs = *static_cast<const at::Tensor*>(x);
    const auto& s = *static_cast<const at::Tensor*>(scale);
    const auto& b = *static_cast<const at::Tensor*>(bias);
    if (!applies(xs, s, b)) {
      return 0;
    }
    *static_cast<at::Tensor*>(out) = StarReluFunction::apply(xs, s, b);
    return 1;
  } catch (const std::exception& e) {
    il_write_error(err, err_len, e.what());
    return -1;
  }
}
}
