// CSR sparse x dense products on CPU: out[i, :] = sum (or max) over the entries k of row i of
// values[k] * x[col[k], :] (values all ones when none are given).
//
// The product of a message-passing layer is bound by the gather of random rows of x, not by
// arithmetic. This kernel (1) keeps a 256-byte slice of the output row in registers while it
// walks the row's entries, (2) prefetches the x rows of the entries `distance` positions ahead,
// so that several cache misses are in flight at once, and (3) splits the rows into chunks of
// equal entry counts, so that threads get equal work on skewed degree distributions.
// Results equal a sequential sum in entry order (no atomics, deterministic).
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <ATen/SparseCsrTensorImpl.h>

#include <algorithm>
#include <atomic>
#include <limits>
#include <memory>
#include <vector>

namespace {

constexpr int kSliceBytes = 256;
// Rows ahead whose entry arrays (col, values) the row-subset product prefetches: the selected
// rows may lie anywhere in the CSR, so their entries are not read in one stream.
constexpr int64_t kRowsAhead = 16;

// acc[0..width) += v * row[0..width): the one accumulation step of every sum product here, so
// that the whole-graph and the row-subset kernels round alike (bit-identical rows).
template <typename scalar_t, int W>
__attribute__((always_inline)) inline void accumulate(scalar_t (&acc)[W], scalar_t v,
                                                      const scalar_t* row, int64_t width) {
  if (width == W) {
#pragma omp simd
    for (int j = 0; j < W; ++j) acc[j] += v * row[j];
  } else {
    for (int64_t j = 0; j < width; ++j) acc[j] += v * row[j];
  }
}

template <typename scalar_t, typename index_t, int W, bool kSelf>
void rows_slice(const index_t* rowptr, const index_t* col, const scalar_t* values,
                const scalar_t* x, const scalar_t* self_weight, scalar_t* out, int64_t begin,
                int64_t end, int64_t num_cols, int64_t offset, int64_t width, int64_t nnz,
                int64_t distance) {
  // `W` is the compile-time slice width; `width <= W` the features actually in this slice.
  // With `kSelf` (square A), row i also adds self_weight[i] * x[i] after its entries.
  for (int64_t i = begin; i < end; ++i) {
    scalar_t acc[W];
    for (int j = 0; j < W; ++j) acc[j] = scalar_t(0);
    const int64_t stop = rowptr[i + 1];
    for (int64_t k = rowptr[i]; k < stop; ++k) {
      if (k + distance < nnz) {
        const char* ahead = reinterpret_cast<const char*>(x + col[k + distance] * num_cols + offset);
        for (int64_t b = 0; b < width * int64_t(sizeof(scalar_t)); b += 64)
          __builtin_prefetch(ahead + b, 0, 1);
      }
      const scalar_t v = values ? values[k] : scalar_t(1);
      const scalar_t* row = x + col[k] * num_cols + offset;
      accumulate<scalar_t, W>(acc, v, row, width);
    }
    if (kSelf) {
      const scalar_t v = self_weight[i];
      const scalar_t* row = x + i * num_cols + offset;
      accumulate<scalar_t, W>(acc, v, row, width);
    }
    scalar_t* target = out + i * num_cols + offset;
    for (int64_t j = 0; j < width; ++j) target[j] = acc[j];
  }
}

// The selected rows' entries, walked `distance` entries ahead of the product to prefetch the
// x rows it will read. Row i of the selection spans CSR positions [starts[i], starts[i] +
// entries[i + 1] - entries[i]) (both arrays built once per call: sequential reads here).
struct AheadCursor {
  const int64_t* starts;
  const int64_t* entries;
  int64_t end, row, k, stop;

  AheadCursor(const int64_t* starts_, const int64_t* entries_, int64_t begin, int64_t end_,
              int64_t distance)
      : starts(starts_), entries(entries_), end(end_), row(begin - 1), k(0), stop(0) {
    settle();
    for (int64_t step = 0; step < distance && valid(); ++step) advance();
  }
  bool valid() const { return row < end; }
  void settle() {
    while (k >= stop && ++row < end) {
      k = starts[row];
      stop = k + entries[row + 1] - entries[row];
    }
  }
  void advance() {
    ++k;
    settle();
  }
};

// `rows_slice` on the rows `rows[begin..end)`, x row `x_index[col[k]]` (or `col[k]`) for entry
// k: the same accumulation, entry by entry in the same order, so every row equals the one
// `rows_slice` computes. An entry whose x row falls outside [0, x_rows) is skipped and flagged.
// The row loop is written out again rather than shared (only `accumulate` is): with the row
// loop in a common helper (the prefetch passed as a lambda) GCC kept `acc` out of registers and
// the whole-graph kernel ran 2.3x slower (13 -> 30 ms on 100k x 64, 1M edges).
template <typename scalar_t, typename index_t, int W, bool kIndexed>
void subset_rows_slice(const int64_t* starts, const int64_t* entries, const index_t* col,
                       const scalar_t* values, const scalar_t* x, const scalar_t* self_weight,
                       const int64_t* rows, const int64_t* x_index, int64_t x_rows,
                       scalar_t* out, int64_t begin, int64_t end, int64_t num_cols,
                       int64_t offset, int64_t width, int64_t distance, std::atomic<bool>* bad) {
  AheadCursor ahead(starts, entries, begin, end, distance);
  for (int64_t i = begin; i < end; ++i) {
    if (i + kRowsAhead < end) {  // the row's entry arrays, wherever the row lies in the CSR
      __builtin_prefetch(col + starts[i + kRowsAhead], 0, 1);
      if (values) __builtin_prefetch(values + starts[i + kRowsAhead], 0, 1);
    }
    scalar_t acc[W];
    for (int j = 0; j < W; ++j) acc[j] = scalar_t(0);
    const int64_t stop = starts[i] + entries[i + 1] - entries[i];
    for (int64_t k = starts[i]; k < stop; ++k) {
      if (ahead.valid()) {
        const int64_t next = kIndexed ? x_index[col[ahead.k]] : int64_t(col[ahead.k]);
        const char* p = reinterpret_cast<const char*>(x + next * num_cols + offset);
        for (int64_t b = 0; b < width * int64_t(sizeof(scalar_t)); b += 64)
          __builtin_prefetch(p + b, 0, 1);
        ahead.advance();
      }
      const scalar_t v = values ? values[k] : scalar_t(1);
      const int64_t source = kIndexed ? x_index[col[k]] : int64_t(col[k]);
      if (kIndexed && static_cast<uint64_t>(source) >= static_cast<uint64_t>(x_rows)) {
        bad->store(true, std::memory_order_relaxed);
        continue;
      }
      const scalar_t* row = x + source * num_cols + offset;
      accumulate<scalar_t, W>(acc, v, row, width);
    }
    const int64_t self = kIndexed ? x_index[rows[i]] : rows[i];
    if (self_weight && kIndexed && static_cast<uint64_t>(self) >= static_cast<uint64_t>(x_rows)) {
      bad->store(true, std::memory_order_relaxed);
    } else if (self_weight) {
      const scalar_t v = self_weight[rows[i]];
      const scalar_t* row = x + self * num_cols + offset;
      accumulate<scalar_t, W>(acc, v, row, width);
    }
    scalar_t* target = out + i * num_cols + offset;
    for (int64_t j = 0; j < width; ++j) target[j] = acc[j];
  }
}

// Row boundaries of `chunks` pieces with (nearly) equal numbers of entries.
template <typename ptr_t>
std::vector<int64_t> balanced_rows(const ptr_t* rowptr, int64_t num_rows, int64_t chunks) {
  std::vector<int64_t> bounds(chunks + 1, num_rows);
  bounds[0] = 0;
  const int64_t nnz = rowptr[num_rows];
  for (int64_t c = 1; c < chunks; ++c) {
    const int64_t target = nnz * c / chunks;
    bounds[c] = std::lower_bound(rowptr, rowptr + num_rows + 1, ptr_t(target)) - rowptr;
    bounds[c] = std::max(bounds[c], bounds[c - 1]);
  }
  return bounds;
}

template <typename scalar_t, typename index_t, int W>
void rows_slice_max(const index_t* rowptr, const index_t* col, const scalar_t* values,
                    const scalar_t* x, scalar_t* out, int32_t* source_t, int64_t begin,
                    int64_t end, int64_t num_rows, int64_t num_cols, int64_t offset,
                    int64_t width, int64_t nnz, int64_t distance) {
  // out[i, f] = max_k values[k] * x[col[k], f]; source_t[f, i] = the col[k] of the first
  // maximum in entry order (a NaN wins and stays). Rows without entries: 0 and source 0.
  for (int64_t i = begin; i < end; ++i) {
    scalar_t best[W];
    int32_t source[W];
    for (int j = 0; j < W; ++j) {
      best[j] = -std::numeric_limits<scalar_t>::infinity();
      source[j] = 0;
    }
    const int64_t start = rowptr[i], stop = rowptr[i + 1];
    for (int64_t k = start; k < stop; ++k) {
      if (k + distance < nnz) {
        const char* ahead = reinterpret_cast<const char*>(x + col[k + distance] * num_cols + offset);
        for (int64_t b = 0; b < width * int64_t(sizeof(scalar_t)); b += 64)
          __builtin_prefetch(ahead + b, 0, 1);
      }
      const scalar_t v = values ? values[k] : scalar_t(1);
      const int32_t j_source = static_cast<int32_t>(col[k]);
      const scalar_t* row = x + col[k] * num_cols + offset;
      for (int64_t j = 0; j < width; ++j) {
        const scalar_t candidate = v * row[j];
        const bool take = (candidate > best[j]) | ((candidate != candidate) & (best[j] == best[j]));
        best[j] = take ? candidate : best[j];
        source[j] = take ? j_source : source[j];
      }
    }
    scalar_t* target = out + i * num_cols + offset;
    const bool empty = start == stop;
    for (int64_t j = 0; j < width; ++j) target[j] = empty ? scalar_t(0) : best[j];
    if (source_t)
      for (int64_t j = 0; j < width; ++j) source_t[(offset + j) * num_rows + i] = source[j];
  }
}

template <typename scalar_t, typename index_t>
void spmm_impl(const torch::Tensor& rowptr, const torch::Tensor& col, const torch::Tensor& values,
               const torch::Tensor& x, torch::Tensor& out, int32_t* source_t, bool max,
               int64_t distance, const torch::Tensor& self_weight = torch::Tensor()) {
  constexpr int W = kSliceBytes / sizeof(scalar_t);
  const index_t* rp = rowptr.data_ptr<index_t>();
  const index_t* c = col.data_ptr<index_t>();
  const scalar_t* v = values.numel() ? values.data_ptr<scalar_t>() : nullptr;
  const scalar_t* sw = self_weight.defined() && self_weight.numel()
                           ? self_weight.data_ptr<scalar_t>() : nullptr;
  const scalar_t* xp = x.data_ptr<scalar_t>();
  scalar_t* op = out.data_ptr<scalar_t>();
  const int64_t num_rows = rowptr.numel() - 1, num_cols = x.size(1), nnz = col.numel();
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(num_rows, 8 * at::get_num_threads()));
  const std::vector<int64_t> bounds = balanced_rows(rp, num_rows, chunks);
  at::parallel_for(0, chunks, 1, [&](int64_t first, int64_t last) {
    for (int64_t chunk = first; chunk < last; ++chunk) {
      for (int64_t offset = 0; offset < num_cols; offset += W) {
        const int64_t width = std::min<int64_t>(W, num_cols - offset);
        if (max)
          rows_slice_max<scalar_t, index_t, W>(rp, c, v, xp, op, source_t, bounds[chunk],
                                               bounds[chunk + 1], num_rows, num_cols, offset,
                                               width, nnz, distance);
        else if (sw)
          rows_slice<scalar_t, index_t, W, true>(rp, c, v, xp, sw, op, bounds[chunk],
                                                 bounds[chunk + 1], num_cols, offset, width, nnz,
                                                 distance);
        else
          rows_slice<scalar_t, index_t, W, false>(rp, c, v, xp, nullptr, op, bounds[chunk],
                                                  bounds[chunk + 1], num_cols, offset, width,
                                                  nnz, distance);
      }
    }
  });
}

void check_inputs(const torch::Tensor& rowptr, const torch::Tensor& col,
                  const torch::Tensor& values, const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous(), "expects a contiguous 2-D x");
  TORCH_CHECK(rowptr.dim() == 1 && col.dim() == 1, "expects 1-D rowptr and col");
  TORCH_CHECK(values.numel() == 0 || values.numel() == col.numel(),
              "expects values of the same length as col, or none (all ones)");
  TORCH_CHECK(rowptr.scalar_type() == col.scalar_type(), "rowptr and col must share a dtype");
  TORCH_CHECK(values.numel() == 0 || values.scalar_type() == x.scalar_type(),
              "values and x must share a dtype");
  TORCH_CHECK(rowptr.is_contiguous() && col.is_contiguous() && values.is_contiguous(),
              "expects contiguous CSR arrays");
}

}  // namespace

// The arrays of a sparse CSR tensor, read from its impl: `crow_indices()` & co. would create
// views, which PyTorch refuses for arrays made under inference mode (a CSR cached during
// `trainer.test`) when the product runs outside it.
std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> csr_arrays(const torch::Tensor& adj) {
  TORCH_CHECK(adj.layout() == torch::kSparseCsr, "expects a torch.sparse_csr adjacency");
  const auto* impl = static_cast<const at::SparseCsrTensorImpl*>(adj.unsafeGetTensorImpl());
  return {impl->compressed_indices(), impl->plain_indices(), impl->values()};
}

// A self term for square products: row i adds self_weight[i] * x[i] (none if empty).
void check_self_weight(const torch::Tensor& self_weight, const torch::Tensor& x,
                       int64_t num_rows, int64_t num_cols) {
  if (self_weight.numel() == 0) return;
  TORCH_CHECK(self_weight.dim() == 1 && self_weight.is_contiguous() &&
                  self_weight.numel() == num_rows && self_weight.scalar_type() == x.scalar_type(),
              "self_weight must be a contiguous 1-D tensor of x's dtype with one entry per row");
  TORCH_CHECK(num_rows == num_cols, "a self term needs a square adjacency");
}

torch::Tensor spmm_sum(torch::Tensor adj, torch::Tensor x, int64_t distance,
                       torch::Tensor self_weight) {
  auto [rowptr, col, values] = csr_arrays(adj);
  check_inputs(rowptr, col, values, x);
  check_self_weight(self_weight, x, rowptr.numel() - 1, adj.size(1));
  auto out = torch::empty({rowptr.numel() - 1, x.size(1)}, x.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "spmm_sum", [&] {
    AT_DISPATCH_INDEX_TYPES(rowptr.scalar_type(), "spmm_sum_index", [&] {
      spmm_impl<scalar_t, index_t>(rowptr, col, values, x, out, nullptr, false, distance,
                                   self_weight);
    });
  });
  return out;
}

std::tuple<torch::Tensor, torch::Tensor> spmm_max(torch::Tensor adj, torch::Tensor x,
                                                  bool with_source, int64_t distance) {
  auto [rowptr, col, values] = csr_arrays(adj);
  check_inputs(rowptr, col, values, x);
  TORCH_CHECK(x.size(0) <= std::numeric_limits<int32_t>::max(), "too many source rows for int32");
  const int64_t num_rows = rowptr.numel() - 1;
  auto out = torch::empty({num_rows, x.size(1)}, x.options());
  auto source_t = torch::empty({with_source ? x.size(1) : 0, num_rows},
                               x.options().dtype(torch::kInt32));
  if (out.numel() == 0) return {out, source_t};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "spmm_max", [&] {
    AT_DISPATCH_INDEX_TYPES(rowptr.scalar_type(), "spmm_max_index", [&] {
      spmm_impl<scalar_t, index_t>(rowptr, col, values, x, out,
                                   with_source ? source_t.data_ptr<int32_t>() : nullptr, true,
                                   distance);
    });
  });
  return {out, source_t};
}

// Rows `rows` of A X (the sum product of `spmm_sum`, with its self term), x row `x_index[j]`
// for node j when `x_index` is given (x then holds only the rows that are read). Each row is
// computed as `spmm_sum` computes it: same operations, same order.
torch::Tensor spmm_sum_rows(torch::Tensor adj, torch::Tensor x, torch::Tensor rows,
                            torch::Tensor x_index, int64_t distance, torch::Tensor self_weight) {
  auto [rowptr, col, values] = csr_arrays(adj);
  check_inputs(rowptr, col, values, x);
  check_self_weight(self_weight, x, rowptr.numel() - 1, adj.size(1));
  TORCH_CHECK(rows.dim() == 1 && rows.scalar_type() == torch::kLong && rows.is_contiguous(),
              "rows must be a contiguous 1-D int64 tensor");
  TORCH_CHECK(x_index.numel() == 0 || (x_index.dim() == 1 && x_index.is_contiguous() &&
                                       x_index.scalar_type() == torch::kLong &&
                                       x_index.numel() == adj.size(1)),
              "x_index must be a contiguous int64 tensor with one entry per column of adj");
  TORCH_CHECK(x_index.numel() || x.size(0) == adj.size(1),
              "without x_index, x needs one row per column of adj");
  const int64_t m = rows.numel(), num_rows = rowptr.numel() - 1, num_cols = x.size(1);
  auto out = torch::empty({m, num_cols}, x.options());
  if (out.numel() == 0) return out;
  const int64_t* r = rows.data_ptr<int64_t>();
  const int64_t* xi = x_index.numel() ? x_index.data_ptr<int64_t>() : nullptr;
  std::atomic<bool> bad{false};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "spmm_sum_rows", [&] {
    AT_DISPATCH_INDEX_TYPES(rowptr.scalar_type(), "spmm_sum_rows_index", [&] {
      constexpr int W = kSliceBytes / sizeof(scalar_t);
      const index_t* rp = rowptr.data_ptr<index_t>();
      // starts[i]: the CSR position of row rows[i]'s first entry; entries: the rows' entry
      // counts, cumulated. Uninitialised buffers, filled by all threads (then one prefix sum):
      // a sequential pass here cost ~0.3 ms per call on 50k rows, which two threads did not
      // divide.
      std::unique_ptr<int64_t[]> buffer(new int64_t[2 * m + 1]);
      int64_t* starts = buffer.get();
      int64_t* entries = starts + m;
      std::atomic<bool> outside{false};
      at::parallel_for(0, m, 1 << 13, [&](int64_t first, int64_t last) {
        bool any = false;
        for (int64_t i = first; i < last; ++i) {
          const bool inside = static_cast<uint64_t>(r[i]) < static_cast<uint64_t>(num_rows);
          const int64_t row = inside ? r[i] : 0;
          any |= !inside;
          starts[i] = rp[row];
          entries[i + 1] = rp[row + 1] - rp[row];
        }
        if (any) outside.store(true, std::memory_order_relaxed);
      });
      TORCH_CHECK(!outside.load(), "rows holds ids outside [0, ", num_rows, ")");
      entries[0] = 0;
      for (int64_t i = 0; i < m; ++i) entries[i + 1] += entries[i];
      const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(m, 8 * at::get_num_threads()));
      const std::vector<int64_t> bounds = balanced_rows(entries, m, chunks);
      const index_t* c = col.data_ptr<index_t>();
      const scalar_t* v = values.numel() ? values.data_ptr<scalar_t>() : nullptr;
      const scalar_t* sw = self_weight.numel() ? self_weight.data_ptr<scalar_t>() : nullptr;
      const scalar_t* xp = x.data_ptr<scalar_t>();
      scalar_t* op = out.data_ptr<scalar_t>();
      at::parallel_for(0, chunks, 1, [&](int64_t first, int64_t last) {
        for (int64_t chunk = first; chunk < last; ++chunk)
          for (int64_t offset = 0; offset < num_cols; offset += W) {
            const int64_t width = std::min<int64_t>(W, num_cols - offset);
            if (xi)
              subset_rows_slice<scalar_t, index_t, W, true>(
                  starts, entries, c, v, xp, sw, r, xi, x.size(0), op, bounds[chunk], bounds[chunk + 1],
                  num_cols, offset, width, distance, &bad);
            else
              subset_rows_slice<scalar_t, index_t, W, false>(
                  starts, entries, c, v, xp, sw, r, nullptr, x.size(0), op, bounds[chunk], bounds[chunk + 1],
                  num_cols, offset, width, distance, &bad);
          }
      });
    });
  });
  TORCH_CHECK(!bad.load(), "x_index maps a node read by the selected rows outside the ",
              x.size(0), " rows of x");
  return out;
}

// Graph traversal on the same CSR arrays (csrc/frontier_cpu.cpp).
torch::Tensor mark_columns(torch::Tensor rowptr, torch::Tensor col, torch::Tensor rows,
                           int64_t num_cols);
std::vector<torch::Tensor> frontier_levels(torch::Tensor rowptr, torch::Tensor col,
                                           torch::Tensor seeds, int64_t num_hops,
                                           double max_edges);
// Row-wise maps of narrow rows (csrc/rowwise_cpu.cpp).
torch::Tensor narrow_softmax(torch::Tensor x);
torch::Tensor narrow_variance(torch::Tensor x);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("spmm_sum_rows", &spmm_sum_rows, "rows of a CSR x dense sum product (CPU)");
  m.def("mark_columns", &mark_columns, "columns of the entries of some CSR rows (CPU)");
  m.def("frontier_levels", &frontier_levels, "nodes within some hops upstream of seeds (CPU)");
  m.def("narrow_softmax", &narrow_softmax, "softmax over narrow rows (CPU)");
  m.def("narrow_variance", &narrow_variance, "biased variance of narrow rows (CPU)");
  m.def("spmm_sum", &spmm_sum, "CSR x dense sum product (CPU)");
  m.def("spmm_max", &spmm_max, "CSR x dense max product and its arg-max sources (CPU)");
}
