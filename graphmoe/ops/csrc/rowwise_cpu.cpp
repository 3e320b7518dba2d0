// Row-wise softmax and variance of narrow rows (a few class scores per node) on CPU.
//
// ATen reduces along a row of 2-8 entries one row at a time, which costs ~0.4 ms per operation
// on [100000, 5] (graphmoe/ops/rowwise.py). Here each row is handled in registers: the softmax
// shifts by the row maximum in one pass, takes ATen's vectorised exp over the whole tensor, and
// scales each row by the reciprocal of its sum in a second pass; the variance is two passes over the row (mean,
// then squared deviations). Rows are split among threads. Bound into the extension of
// spmm_cpu.cpp.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <limits>

namespace {

constexpr int64_t kGrain = 4096;  // rows per task

void check_rows(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous() && x.size(1) > 0,
              "expects a contiguous 2-D tensor with at least one column");
  TORCH_CHECK(x.scalar_type() == torch::kFloat || x.scalar_type() == torch::kDouble,
              "expects float32 or float64");
}

}  // namespace

// softmax(x, dim=-1): exp(x - max) / sum(exp(x - max)), NaN rows stay NaN (as the composite
// formula in rowwise.py gives them).
torch::Tensor narrow_softmax(torch::Tensor x) {
  check_rows(x);
  auto out = torch::empty_like(x);
  const int64_t rows = x.size(0), cols = x.size(1);
  if (rows == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "narrow_softmax_shift", [&] {
    const scalar_t* in = x.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, rows, kGrain, [&](int64_t first, int64_t last) {
      for (int64_t i = first; i < last; ++i) {
        const scalar_t* row = in + i * cols;
        // the maximum as a branch-free max (a compare-and-branch per entry mispredicts on
        // random scores: 4x slower), NaN tracked aside so that it wins, as in amax
        scalar_t top = row[0];
        bool nan = row[0] != row[0];
        for (int64_t j = 1; j < cols; ++j) {
          top = row[j] > top ? row[j] : top;
          nan |= row[j] != row[j];
        }
        if (nan) top = std::numeric_limits<scalar_t>::quiet_NaN();
        for (int64_t j = 0; j < cols; ++j) o[i * cols + j] = row[j] - top;
      }
    });
  });
  out.exp_();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "narrow_softmax_normalize", [&] {
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, rows, kGrain, [&](int64_t first, int64_t last) {
      for (int64_t i = first; i < last; ++i) {
        scalar_t* row = o + i * cols;
        scalar_t total = 0;
        for (int64_t j = 0; j < cols; ++j) total += row[j];
        const scalar_t scale = scalar_t(1) / total;  // one division per row
        for (int64_t j = 0; j < cols; ++j) row[j] *= scale;
      }
    });
  });
  return out;
}

// var(x, dim=-1, unbiased=False) in two passes: mean, then the mean squared deviation.
torch::Tensor narrow_variance(torch::Tensor x) {
  check_rows(x);
  const int64_t rows = x.size(0), cols = x.size(1);
  auto out = torch::empty({rows}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "narrow_variance", [&] {
    const scalar_t* in = x.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, rows, kGrain, [&](int64_t first, int64_t last) {
      for (int64_t i = first; i < last; ++i) {
        const scalar_t* row = in + i * cols;
        scalar_t mean = 0;
        for (int64_t j = 0; j < cols; ++j) mean += row[j];
        mean /= scalar_t(cols);
        scalar_t squares = 0;
        for (int64_t j = 0; j < cols; ++j) squares += (row[j] - mean) * (row[j] - mean);
        o[i] = squares / scalar_t(cols);
      }
    });
  });
  return out;
}
