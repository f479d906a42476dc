// Depthwise convolution (one filter per channel: EfficientNet, MobileNet, ConvNeXt, MetaFormer's
// separable convolutions) with its own weight gradient, for float32 channels-last tensors on the
// CPU. oneDNN computes that gradient with a generic kernel for every size but 3x3: on this
// project's models that one primitive took a tenth (CAFormer) to a fifth (EfficientNet-Lite0) of
// the training step; its 3x3 kernel is fast, so 3x3 stays with it. The forward pass and the input gradient stay with libtorch (oneDNN's
// depthwise kernels are fast there); other devices, dtypes, layouts and autocast are left to the
// caller's ordinary convolution. A bias is added after the convolution, outside this function.
//
// The weight gradient of channel c at tap (i, j) is the sum over images n and output positions
// (oh, ow) of grad[n, oh, ow, c] * x[n, oh * stride - pad + i, ow * stride - pad + j, c]. In
// channels-last memory the channels are the innermost axis, so a block of 16 channels is one
// vector: each thread takes whole blocks of channels, so every sum is taken in a fixed order
// whatever the number of threads.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/custom_function.h>

#include "shim_error.h"

#include <vector>

namespace {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr int kLanes = 16;       // channels per block
constexpr int64_t kMaxKernel = 11;

struct Geometry {
  int64_t n, h, w, c, oh, ow, k, stride, pad;
};

// 16 floats as one value (GCC's vector extension): one AVX-512 register in the avx512f build of
// the functions below, two AVX2 or four SSE registers in the others.
typedef float v16 __attribute__((vector_size(kLanes * sizeof(float))));

__attribute__((always_inline)) inline v16 load16(const float* p) {
  v16 v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}

// The taps (i, 0..K) of one row of output positions [lo, hi) whose input columns are all inside
// the image, for one full block of channels: K independent accumulators, kept in registers, so
// that the multiply-adds do not wait on each other.
template <int K>
__attribute__((always_inline)) inline void row_taps(const float* grow, const float* xrow, float* a, const Geometry& s,
                                                    int64_t lo, int64_t hi) {
  v16 r[K];
  for (int j = 0; j < K; j++) r[j] = load16(a + j * kLanes);
  const int64_t c = s.c, step = s.stride * s.c;
  const float* gp = grow + lo * c;
  const float* xp = xrow + (lo * s.stride - s.pad) * c;
  for (int64_t o = lo; o < hi; o++, gp += c, xp += step) {
    const v16 gv = load16(gp);
    for (int j = 0; j < K; j++) r[j] += gv * load16(xp + j * c);
  }
  for (int j = 0; j < K; j++) __builtin_memcpy(a + j * kLanes, &r[j], sizeof(v16));
}

// Weight gradient of the channels [c0, c0 + lanes) into `total` (taps x kLanes). Per image the
// products are summed in float, then added in double.
__attribute__((target_clones("avx512f", "avx2", "default")))
void weight_grad_block(const float* x, const float* g, double* total, float* acc, const Geometry& s, int64_t c0,
                       int lanes) {
  const int64_t k = s.k;
  // Output columns whose k input columns are all inside the image: [full_lo, full_hi).
  int64_t full_lo = (s.pad + s.stride - 1) / s.stride;
  int64_t full_hi = s.w - k + s.pad >= 0 ? (s.w - k + s.pad) / s.stride + 1 : 0;
  if (full_hi > s.ow) full_hi = s.ow;
  if (full_lo > full_hi) full_lo = full_hi;
  const bool fast = lanes == kLanes && (k == 5 || k == 7);
  for (int64_t t = 0; t < k * k * kLanes; t++) total[t] = 0.0;
  for (int64_t n = 0; n < s.n; n++) {
    for (int64_t t = 0; t < k * k * kLanes; t++) acc[t] = 0.f;
    for (int64_t oh = 0; oh < s.oh; oh++) {
      for (int64_t i = 0; i < k; i++) {
        const int64_t ih = oh * s.stride - s.pad + i;
        if (ih < 0 || ih >= s.h) continue;
        const float* grow = g + ((n * s.oh + oh) * s.ow) * s.c + c0;
        const float* xrow = x + ((n * s.h + ih) * s.w) * s.c + c0;
        float* a = acc + i * k * kLanes;
        if (fast) {
          if (k == 5) row_taps<5>(grow, xrow, a, s, full_lo, full_hi);
          if (k == 7) row_taps<7>(grow, xrow, a, s, full_lo, full_hi);
        }
        for (int64_t o = 0; o < s.ow; o++) {
          if (fast && o >= full_lo && o < full_hi) continue;
          const float* gp = grow + o * s.c;
          for (int64_t j = 0; j < k; j++) {
            const int64_t iw = o * s.stride - s.pad + j;
            if (iw < 0 || iw >= s.w) continue;
            const float* xp = xrow + iw * s.c;
            float* aj = a + j * kLanes;
            for (int l = 0; l < lanes; l++) aj[l] += gp[l] * xp[l];
          }
        }
      }
    }
    for (int64_t t = 0; t < k * k * kLanes; t++) total[t] += acc[t];
  }
}

at::Tensor weight_grad(const at::Tensor& x, const at::Tensor& g, const Geometry& s) {
  at::Tensor out = at::empty({s.c, 1, s.k, s.k}, x.options().memory_format(at::MemoryFormat::Contiguous));
  float* op = out.mutable_data_ptr<float>();
  const float* xp = x.const_data_ptr<float>();
  const float* gp = g.const_data_ptr<float>();
  const int64_t blocks = (s.c + kLanes - 1) / kLanes;
  const int64_t taps = s.k * s.k;
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<double> total(taps * kLanes);
    std::vector<float> acc(taps * kLanes);
    for (int64_t b = begin; b < end; b++) {
      const int64_t c0 = b * kLanes;
      const int lanes = static_cast<int>(std::min<int64_t>(kLanes, s.c - c0));
      weight_grad_block(xp, gp, total.data(), acc.data(), s, c0, lanes);
      for (int l = 0; l < lanes; l++) {
        for (int64_t t = 0; t < taps; t++) {
          op[(c0 + l) * taps + t] = static_cast<float>(total[t * kLanes + l]);
        }
      }
    }
  });
  return out;
}

struct DepthwiseConvFunction : public torch::autograd::Function<DepthwiseConvFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight, int64_t stride,
                            int64_t pad) {
    const int64_t c = x.size(1);
    at::Tensor y = at::conv2d(x, weight, std::nullopt, {stride, stride}, {pad, pad}, {1, 1}, c);
    ctx->save_for_backward({x, weight});
    ctx->saved_data["stride"] = stride;
    ctx->saved_data["pad"] = pad;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& weight = saved[1];
    const int64_t stride = ctx->saved_data["stride"].toInt();
    const int64_t pad = ctx->saved_data["pad"].toInt();
    at::Tensor g = grads[0];
    if (!g.defined()) {
      return {at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    }
    g = g.contiguous(at::MemoryFormat::ChannelsLast);
    const int64_t c = x.size(1);
    at::Tensor grad_x, grad_w;
    if (ctx->needs_input_grad(0)) {
      grad_x = std::get<0>(at::convolution_backward(g, x, weight, std::nullopt, {stride, stride}, {pad, pad},
                                                    {1, 1}, false, {0, 0}, c, {true, false, false}));
    }
    if (ctx->needs_input_grad(1)) {
      Geometry s{x.size(0), x.size(2), x.size(3), c, g.size(2), g.size(3), weight.size(2), stride, pad};
      grad_w = weight_grad(x, g, s);
      if (grad_w.strides() != weight.strides()) {
        grad_w = at::empty_like(weight).copy_(grad_w);  // laid out as the weight, as autograd does
      }
    }
    return {grad_x, grad_w, at::Tensor(), at::Tensor()};
  }
};

bool applies(const at::Tensor& x, const at::Tensor& weight, const at::Tensor* bias, int64_t stride, int64_t pad) {
  if (!x.is_cpu() || x.scalar_type() != at::kFloat || x.dim() != 4 ||
      !x.is_contiguous(at::MemoryFormat::ChannelsLast) || at::autocast::is_autocast_enabled(at::kCPU)) {
    return false;
  }
  const int64_t c = x.size(1);
  const int64_t k = weight.size(-1);
  // 3x3 stays with oneDNN, whose own depthwise kernel covers that size well.
  if (!weight.is_cpu() || weight.scalar_type() != at::kFloat || weight.dim() != 4 || weight.size(0) != c ||
      weight.size(1) != 1 || weight.size(2) != k || k == 3 || k > kMaxKernel || stride < 1 || pad < 0 || pad >= k) {
    return false;
  }
  if (bias != nullptr && (!bias->is_cpu() || bias->scalar_type() != at::kFloat || bias->numel() != c)) {
    return false;
  }
  const int64_t oh = (x.size(2) + 2 * pad - k) / stride + 1;
  const int64_t ow = (x.size(3) + 2 * pad - k) / stride + 1;
  return x.numel() > 0 && oh > 0 && ow > 0;
}
}  // namespace

extern "C" {

// Depthwise convolution of `x` (N x C x H x W) with `weight` (C x 1 x k x k), square stride and
// padding, optional `bias` (null for none), into `out`. Returns 1 when done, 0 when the case is not
// handled here (the caller runs its ordinary convolution), -1 with the reason in `err`.
int il_depthwise_conv2d(const void* x, const void* weight, const void* bias, int64_t stride, int64_t pad, void* out,
                        char* err, size_t err_len) {
  try {
    const auto& xs = *static_cast<const at::Tensor*>(x);
    const auto& w = *static_cast<const at::Tensor*>(weight);
    const auto* b = static_cast<const at::Tensor*>(bias);
    if (!applies(xs, w, b, stride, pad)) {
      return 0;
    }
    at::Tensor y = DepthwiseConvFunction::apply(xs, w, stride, pad);
    if (b != nullptr) {
      y = y + b->view({1, -1, 1, 1});  // autograd takes the bias gradient (a sum over N, H, W)
    }
    *static_cast<at::Tensor*>(out) = y;
    return 1;
  } catch (const std::exception& e) {
    il_write_error(err, err_len, e.what());
    return -1;
  }
}
}
