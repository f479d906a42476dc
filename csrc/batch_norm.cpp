// Training-mode batch norm fused with the activation that follows it (none, ReLU or ReLU6, the
// ones torchvision's and timm's ResNet, MobileNet and EfficientNet blocks use), for float32
// channels-last tensors on the CPU. libtorch runs it as separate operations: two passes over the
// input for the batch statistics, one to normalise, one for the in-place activation, then three
// passes for the activation's gradient and five for the norm's: about a quarter of
// EfficientNet-Lite0's training step on this CPU (`perf`). Here the forward pass reads the input
// twice and writes once, and the backward pass reads the gradient and the input twice and writes
// once. The activation's mask is recomputed from the input and the batch statistics, exactly as
// the forward pass computed it, so nothing more is kept for the backward pass than the norm's
// input. Other devices, dtypes, layouts, autocast and evaluation mode are left to the caller's
// ordinary batch norm.
//
// In channels-last memory an N x C x H x W tensor is N*H*W rows of C channels. The rows are cut
// into blocks whose size depends on C alone; each block's per-channel sums are taken in double
// and the blocks' sums are added in block order, so the result does not depend on the number of
// threads.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/custom_function.h>

#include "shim_error.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

// The backward pass recomputes the activation's input x * a + b to decide where its gradient
// passes: it must round as the forward pass did, so neither is contracted into a fused
// multiply-add. Without trapping math GCC may compare whole vectors at once (the values are the
// same; only floating-point exception flags could differ), so the masked loops vectorise.
#pragma GCC optimize("fp-contract=off", "no-trapping-math")

namespace {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr int64_t kBlockElements = 16384;

struct Rows {
  int64_t rows, channels, per_block, blocks;
  explicit Rows(const at::Tensor& x) {
    channels = x.size(1);
    rows = x.numel() / channels;
    per_block = std::max<int64_t>(1, kBlockElements / channels);
    blocks = (rows + per_block - 1) / per_block;
  }
  int64_t count(int64_t block) const { return std::min(per_block, rows - block * per_block); }
};

// The activation's gradient passes where its input z is strictly inside (lo, hi), as libtorch's
// threshold_backward (ReLU) and hardtanh_backward (ReLU6) decide it: a NaN passes.
inline bool passes(float z, float lo, float hi) { return !(z <= lo || z >= hi); }

// Per-channel sum and sum of squares of `rows` rows.
__attribute__((target_clones("avx512f", "avx2", "default")))
void stats_block(const float* x, int64_t rows, int64_t c, double* sum, double* sq) {
  std::fill(sum, sum + c, 0.0);
  std::fill(sq, sq + c, 0.0);
  for (int64_t r = 0; r < rows; r++) {
    const float* row = x + r * c;
    for (int64_t j = 0; j < c; j++) {
      const double v = row[j];
      sum[j] += v;
      sq[j] += v * v;
    }
  }
}

// y = clamp(x * a + b, lo, hi) per channel; a NaN stays NaN, as in libtorch's relu and hardtanh.
__attribute__((target_clones("avx512f", "avx2", "default")))
void apply_block(const float* x, float* y, int64_t rows, int64_t c, const float* a, const float* b, float lo,
                 float hi) {
  for (int64_t r = 0; r < rows; r++) {
    const float* xr = x + r * c;
    float* yr = y + r * c;
    for (int64_t j = 0; j < c; j++) {
      float z = xr[j] * a[j] + b[j];
      z = z < lo ? lo : z;
      yr[j] = z > hi ? hi : z;
    }
  }
}

// Per-channel sums of the activation's gradient gz and of gz * (x - mean).
template <bool Clamped>
__attribute__((always_inline)) inline void grad_sums_rows(const float* x, const float* g, int64_t rows, int64_t c,
                                                          const float* a, const float* b, const float* mean,
                                                          float lo, float hi, double* sum_g, double* sum_gx) {
  std::fill(sum_g, sum_g + c, 0.0);
  std::fill(sum_gx, sum_gx + c, 0.0);
  for (int64_t r = 0; r < rows; r++) {
    const float* xr = x + r * c;
    const float* gr = g + r * c;
    for (int64_t j = 0; j < c; j++) {
      const float gv = gr[j];
      const float gz = (!Clamped || passes(xr[j] * a[j] + b[j], lo, hi)) ? gv : 0.f;
      sum_g[j] += gz;
      sum_gx[j] += static_cast<double>(gz) * (xr[j] - mean[j]);
    }
  }
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void grad_sums_block(bool clamped, const float* x, const float* g, int64_t rows, int64_t c, const float* a,
                     const float* b, const float* mean, float lo, float hi, double* sum_g, double* sum_gx) {
  if (clamped) {
    grad_sums_rows<true>(x, g, rows, c, a, b, mean, lo, hi, sum_g, sum_gx);
  } else {
    grad_sums_rows<false>(x, g, rows, c, a, b, mean, lo, hi, sum_g, sum_gx);
  }
}

// dx = a * (gz - mean_g - (x - mean) * k) per channel, where k = sum(gz * (x - mean)) * invstd^2 / rows.
template <bool Clamped>
__attribute__((always_inline)) inline void grad_input_rows(const float* x, const float* g, float* dx, int64_t rows,
                                                           int64_t c, const float* a, const float* b,
                                                           const float* mean, const float* mean_g, const float* k,
                                                           float lo, float hi) {
  for (int64_t r = 0; r < rows; r++) {
    const float* xr = x + r * c;
    const float* gr = g + r * c;
    float* dr = dx + r * c;
    for (int64_t j = 0; j < c; j++) {
      const float gv = gr[j];
      const float gz = (!Clamped || passes(xr[j] * a[j] + b[j], lo, hi)) ? gv : 0.f;
      dr[j] = a[j] * (gz - mean_g[j] - (xr[j] - mean[j]) * k[j]);
    }
  }
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void grad_input_block(bool clamped, const float* x, const float* g, float* dx, int64_t rows, int64_t c,
                      const float* a, const float* b, const float* mean, const float* mean_g, const float* k,
                      float lo, float hi) {
  if (clamped) {
    grad_input_rows<true>(x, g, dx, rows, c, a, b, mean, mean_g, k, lo, hi);
  } else {
    grad_input_rows<false>(x, g, dx, rows, c, a, b, mean, mean_g, k, lo, hi);
  }
}

// Runs `block(k, sums_a, sums_b)` for every block in parallel, each with its own two arrays of C
// doubles, then adds the blocks' arrays in block order into `total_a` and `total_b`.
template <typename F>
void block_sums(const Rows& s, std::vector<double>& total_a, std::vector<double>& total_b, const F& block) {
  const int64_t c = s.channels;
  std::vector<double> partial(static_cast<size_t>(s.blocks * c * 2));
  at::parallel_for(0, s.blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; k++) {
      block(k, partial.data() + k * c * 2, partial.data() + k * c * 2 + c);
    }
  });
  total_a.assign(static_cast<size_t>(c), 0.0);
  total_b.assign(static_cast<size_t>(c), 0.0);
  for (int64_t k = 0; k < s.blocks; k++) {
    const double* pa = partial.data() + k * c * 2;
    const double* pb = pa + c;
    for (int64_t j = 0; j < c; j++) {
      total_a[j] += pa[j];
      total_b[j] += pb[j];
    }
  }
}

struct BatchNormActFunction : public torch::autograd::Function<BatchNormActFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const at::Tensor& bias, const at::Tensor& running_mean, const at::Tensor& running_var,
                            double momentum, double eps, double lo, double hi) {
    const Rows s(x);
    const int64_t c = s.channels;
    const float* xp = x.const_data_ptr<float>();
    std::vector<double> sum, sq;
    block_sums(s, sum, sq, [&](int64_t k, double* a, double* b) {
      stats_block(xp + k * s.per_block * c, s.count(k), c, a, b);
    });
    // The batch statistics, and the scale a and shift b that normalise and apply the affine map.
    at::Tensor mean = at::empty({c}, x.options());
    at::Tensor invstd = at::empty({c}, x.options());
    at::Tensor a = at::empty({c}, x.options());
    at::Tensor b = at::empty({c}, x.options());
    float* mp = mean.mutable_data_ptr<float>();
    float* ip = invstd.mutable_data_ptr<float>();
    float* ap = a.mutable_data_ptr<float>();
    float* bp = b.mutable_data_ptr<float>();
    const float* wp = weight.const_data_ptr<float>();
    const float* biasp = bias.const_data_ptr<float>();
    float* rmp = running_mean.mutable_data_ptr<float>();
    float* rvp = running_var.mutable_data_ptr<float>();
    const double n = static_cast<double>(s.rows);
    const float m = static_cast<float>(momentum);
    for (int64_t j = 0; j < c; j++) {
      const double mu = sum[j] / n;
      const double var = std::max(sq[j] / n - mu * mu, 0.0);
      mp[j] = static_cast<float>(mu);
      ip[j] = static_cast<float>(1.0 / std::sqrt(var + eps));
      ap[j] = wp[j] * ip[j];
      bp[j] = biasp[j] - mp[j] * ap[j];
      // As libtorch: the running variance takes the unbiased estimate.
      rmp[j] = m * mp[j] + (1.f - m) * rmp[j];
      rvp[j] = m * static_cast<float>(var * n / (n - 1.0)) + (1.f - m) * rvp[j];
    }
    at::Tensor y = at::empty_like(x);  // channels-last, as x
    float* yp = y.mutable_data_ptr<float>();
    const float flo = static_cast<float>(lo), fhi = static_cast<float>(hi);
    at::parallel_for(0, s.blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; k++) {
        const int64_t off = k * s.per_block * c;
        apply_block(xp + off, yp + off, s.count(k), c, ap, bp, flo, fhi);
      }
    });
    ctx->save_for_backward({x, weight});
    ctx->saved_data["mean"] = mean;
    ctx->saved_data["invstd"] = invstd;
    ctx->saved_data["a"] = a;
    ctx->saved_data["b"] = b;
    ctx->saved_data["lo"] = lo;
    ctx->saved_data["hi"] = hi;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& weight = saved[1];
    const variable_list none(9);
    at::Tensor g = grads[0];
    if (!g.defined()) {
      return none;
    }
    if (g.scalar_type() != at::kFloat || g.strides() != x.strides() || g.sizes() != x.sizes()) {
      g = at::empty_like(x).copy_(g);
    }
    const at::Tensor mean = ctx->saved_data["mean"].toTensor();
    const at::Tensor invstd = ctx->saved_data["invstd"].toTensor();
    const at::Tensor a = ctx->saved_data["a"].toTensor();
    const at::Tensor b = ctx->saved_data["b"].toTensor();
    const double lo = ctx->saved_data["lo"].toDouble();
    const double hi = ctx->saved_data["hi"].toDouble();
    const bool clamped = std::isfinite(lo) || std::isfinite(hi);
    const float flo = static_cast<float>(lo), fhi = static_cast<float>(hi);
    const Rows s(x);
    const int64_t c = s.channels;
    const float* xp = x.const_data_ptr<float>();
    const float* gp = g.const_data_ptr<float>();
    const float* ap = a.const_data_ptr<float>();
    const float* bp = b.const_data_ptr<float>();
    const float* mp = mean.const_data_ptr<float>();
    const float* ip = invstd.const_data_ptr<float>();
    std::vector<double> sum_g, sum_gx;
    block_sums(s, sum_g, sum_gx, [&](int64_t k, double* pa, double* pb) {
      grad_sums_block(clamped, xp + k * s.per_block * c, gp + k * s.per_block * c, s.count(k), c, ap, bp, mp, flo,
                      fhi, pa, pb);
    });
    // dL/dbias = sum(gz), dL/dweight = sum(gz * xhat); the input's gradient removes from gz its
    // mean and its projection on xhat.
    const double n = static_cast<double>(s.rows);
    at::Tensor grad_weight = at::empty({c}, weight.options());
    at::Tensor grad_bias = at::empty({c}, weight.options());
    float* gwp = grad_weight.mutable_data_ptr<float>();
    float* gbp = grad_bias.mutable_data_ptr<float>();
    std::vector<float> mean_g(static_cast<size_t>(c)), proj(static_cast<size_t>(c));
    for (int64_t j = 0; j < c; j++) {
      gbp[j] = static_cast<float>(sum_g[j]);
      gwp[j] = static_cast<float>(sum_gx[j] * ip[j]);
      mean_g[j] = static_cast<float>(sum_g[j] / n);
      proj[j] = static_cast<float>(sum_gx[j] / n * ip[j] * ip[j]);
    }
    at::Tensor dx;
    if (ctx->needs_input_grad(0)) {
      dx = at::empty_like(x);
      float* dxp = dx.mutable_data_ptr<float>();
      at::parallel_for(0, s.blocks, 1, [&](int64_t begin, int64_t end) {
        for (int64_t k = begin; k < end; k++) {
          const int64_t off = k * s.per_block * c;
          grad_input_block(clamped, xp + off, gp + off, dxp + off, s.count(k), c, ap, bp, mp, mean_g.data(), proj.data(),
                           flo, fhi);
        }
      });
    }
    variable_list out(9);
    out[0] = dx;
    if (ctx->needs_input_grad(1)) out[1] = grad_weight;
    if (ctx->needs_input_grad(2)) out[2] = grad_bias;
    return out;
  }
};

bool applies(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, const at::Tensor& rm,
             const at::Tensor& rv) {
  if (!x.is_cpu() || x.scalar_type() != at::kFloat || x.dim() != 4 ||
      !x.is_contiguous(at::MemoryFormat::ChannelsLast) || at::autocast::is_autocast_enabled(at::kCPU)) {
    return false;
  }
  const int64_t c = x.size(1);
  // One value per channel cannot be normalised in training: libtorch raises that error.
  if (c == 0 || x.numel() / c <= 1) {
    return false;
  }
  for (const at::Tensor* t : {&weight, &bias, &rm, &rv}) {
    if (!t->defined() || !t->is_cpu() || t->scalar_type() != at::kFloat || t->dim() != 1 || t->size(0) != c ||
        !t->is_contiguous()) {
      return false;
    }
  }
  return !rm.requires_grad() && !rv.requires_grad();
}
}  // namespace

extern "C" {

// Training-mode batch norm of `x` followed by clamp(., lo, hi) (ReLU: 0, inf; ReLU6: 0, 6; none:
// -inf, inf), updating `running_mean` and `running_var` as libtorch does, into `out` (a tensor
// handle that the caller owns). Returns 1 when done, 0 when this case is not handled here (the
// caller runs libtorch's batch norm and activation), -1 with the reason in `err`.
int il_batch_norm_act(const void* x, const void* weight, const void* bias, const void* running_mean,
                      const void* running_var, double momentum, double eps, double lo, double hi, void* out,
                      char* err, size_t err_len) {
  try {
    const auto& xs = *static_cast<const at::Tensor*>(x);
    const auto& w = *static_cast<const at::Tensor*>(weight);
    const auto& b = *static_cast<const at::Tensor*>(bias);
    const auto& rm = *static_cast<const at::Tensor*>(running_mean);
    const auto& rv = *static_cast<const at::Tensor*>(running_var);
    if (!applies(xs, w, b, rm, rv)) {
      return 0;
    }
    *static_cast<at::Tensor*>(out) = BatchNormActFunction::apply(xs, w, b, rm, rv, momentum, eps, lo, hi);
    return 1;
  } catch (const std::exception& e) {
    il_write_error(err, err_len, e.what());
    return -1;
  }
}
}
