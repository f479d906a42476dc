// The optimiser step of image-learner's Adam and AdamW: libtorch's fused kernels
// (`at::_fused_adam_`, `at::_fused_adamw_`, what `torch.optim.Adam(fused=True)` calls), which tch
// does not expose. One pass over each parameter, where the unfused update makes about ten.
//
// The CPU kernel walks parameter, gradient and both moments as flat arrays, so all four must
// share one dense memory layout: a gradient whose strides differ from its parameter's is copied
// into the parameter's layout first, and a parameter that is not dense is refused.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "shim_error.h"

#include <vector>

namespace {
const at::Tensor& tensor_at(const void* const* list, int i) {
  return *static_cast<const at::Tensor*>(list[i]);
}
}  // namespace

extern "C" {

// Drops the gradients of `params` (PyTorch's `zero_grad(set_to_none=True)`): the next backward
// pass then stores fresh gradients, laid out as their parameters, without a zeroing pass.
void il_grads_to_none(const void* const* params, int n) {
  for (int i = 0; i < n; i++) {
    const_cast<at::Tensor&>(tensor_at(params, i)).mutable_grad().reset();
  }
}

// One Adam (adamw == 0) or AdamW (adamw == 1) step over the parameters that have a gradient;
// `steps` are float scalars on each parameter's device, counted up here as PyTorch does before
// its fused call. Returns 0, or -1 with the reason in `err`.
int il_fused_adam_step(const void* const* params, const void* const* exp_avgs, const void* const* exp_avg_sqs,
                       const void* const* steps, int n, double lr, double beta1, double beta2,
                       double weight_decay, double eps, int adamw, char* err, size_t err_len) {
  try {
    at::NoGradGuard no_grad;
    std::vector<at::Tensor> p, g, m, v, s;
    for (int i = 0; i < n; i++) {
      const at::Tensor& param = tensor_at(params, i);
      at::Tensor grad = param.grad();
      if (!grad.defined()) {
        continue;  // frozen, or not reached by this loss: left as it is, as PyTorch does
      }
      const at::Tensor& exp_avg = tensor_at(exp_avgs, i);
      const at::Tensor& exp_avg_sq = tensor_at(exp_avg_sqs, i);
      if (!param.is_non_overlapping_and_dense() || exp_avg.strides() != param.strides() ||
          exp_avg_sq.strides() != param.strides()) {
        il_write_error(err, err_len, "a parameter is not dense, or its Adam moments are laid out differently");
        return -1;
      }
      if (grad.strides() != param.strides()) {
        grad = at::empty_like(param).copy_(grad);
      }
      p.push_back(param);
      g.push_back(grad);
      m.push_back(exp_avg);
      v.push_back(exp_avg_sq);
      s.push_back(tensor_at(steps, i));
    }
    if (p.empty()) {
      return 0;
    }
    at::_foreach_add_(s, 1);
    if (adamw != 0) {
      at::_fused_adamw_(p, g, m, v, {}, s, lr, beta1, beta2, weight_decay, eps, false, false);
    } else {
      at::_fused_adam_(p, g, m, v, {}, s, lr, beta1, beta2, weight_decay, eps, false, false);
    }
    return 0;
  } catch (const std::exception& e) {
    il_write_error(err, err_len, e.what());
    return -1;
  }
}
}
