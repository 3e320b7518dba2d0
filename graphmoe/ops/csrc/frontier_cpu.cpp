// Graph traversal on a CSR's arrays (row = target, its entries = the sources of its in-edges):
// the sources of some rows, and the nodes within some hops upstream of seeds, level by level.
// Bound into the extension of spmm_cpu.cpp (one module, built by graphmoe/ops/cpu_kernels.py).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cstdint>
#include <vector>

namespace {

// reached[col[k]] = 1 for every entry k of the rows `rows[begin..end)`, rows split among threads.
// Threads may store 1 into the same byte; relaxed atomic stores make that well defined.
// The pointers are copied into the task: captured by reference, they were reloaded after every
// (atomic) store. The entries of the row 16 ahead are prefetched (the rows lie anywhere).
template <typename index_t>
void mark_sources(const index_t* rowptr, const index_t* col, const int64_t* rows, int64_t begin,
                  int64_t end, uint8_t* reached) {
  at::parallel_for(begin, end, 1024, [rowptr, col, rows, reached](int64_t first, int64_t last) {
    for (int64_t i = first; i < last; ++i) {
      if (i + 16 < last) __builtin_prefetch(col + rowptr[rows[i + 16]], 0, 1);
      const index_t start = rowptr[rows[i]], stop = rowptr[rows[i] + 1];
      for (index_t k = start; k < stop; ++k)
        __atomic_store_n(reached + col[k], uint8_t(1), __ATOMIC_RELAXED);
    }
  });
}

void check_csr_arrays(const torch::Tensor& rowptr, const torch::Tensor& col) {
  TORCH_CHECK(rowptr.dim() == 1 && col.dim() == 1 && rowptr.is_contiguous() &&
                  col.is_contiguous() && rowptr.scalar_type() == col.scalar_type(),
              "expects contiguous 1-D rowptr and col of one dtype");
}

}  // namespace

// Bool mask over the columns: true for the column of every entry of the rows `rows`.
torch::Tensor mark_columns(torch::Tensor rowptr, torch::Tensor col, torch::Tensor rows,
                           int64_t num_cols) {
  check_csr_arrays(rowptr, col);
  TORCH_CHECK(rows.dim() == 1 && rows.scalar_type() == torch::kLong && rows.is_contiguous(),
              "rows must be a contiguous 1-D int64 tensor");
  auto mask = torch::zeros({num_cols}, rows.options().dtype(torch::kBool));
  const int64_t* r = rows.data_ptr<int64_t>();
  const int64_t num_rows = rowptr.numel() - 1;
  for (int64_t i = 0; i < rows.numel(); ++i)
    TORCH_CHECK(r[i] >= 0 && r[i] < num_rows, "rows[", i, "] = ", r[i],
                " is out of range for a CSR with ", num_rows, " rows");
  AT_DISPATCH_INDEX_TYPES(rowptr.scalar_type(), "mark_columns", [&] {
    mark_sources(rowptr.data_ptr<index_t>(), col.data_ptr<index_t>(), r, 0, rows.numel(),
                 reinterpret_cast<uint8_t*>(mask.data_ptr<bool>()));
  });
  return mask;
}

// The nodes within `num_hops` hops upstream of the bool mask `seeds` on a square CSR, by hop:
// {nodes, sizes, in_edges, position}, where nodes[:sizes[k]] are the nodes within k hops, sorted
// by distance then id; in_edges[k] the number of in-edges of those nodes (k < num_hops);
// position[nodes[j]] = j (other entries unset). Each hop marks the sources of the last level's
// in-edges (rows split among threads), then one sequential pass over the nodes keeps those not
// seen before, in id order. Returns no tensors as soon as in_edges[k] >= max_edges (checked
// before each hop; a negative max_edges never stops).
std::vector<torch::Tensor> frontier_levels(torch::Tensor rowptr, torch::Tensor col,
                                           torch::Tensor seeds, int64_t num_hops,
                                           double max_edges) {
  check_csr_arrays(rowptr, col);
  TORCH_CHECK(seeds.dim() == 1 && seeds.scalar_type() == torch::kBool && seeds.is_contiguous(),
              "seeds must be a contiguous 1-D bool tensor");
  const int64_t n = seeds.numel();
  TORCH_CHECK(rowptr.numel() == n + 1, "seeds needs one entry per row of a square CSR");
  TORCH_CHECK(num_hops >= 0, "num_hops must be >= 0");
  auto options = seeds.options().dtype(torch::kLong);
  auto nodes = torch::empty({n + 1}, options);  // one spare slot for the branch-free appends
  auto position = torch::empty({n}, options);
  std::vector<int64_t> sizes, in_edges;
  std::vector<uint8_t> seen(n), reached(n, 0);
  int64_t* out = nodes.data_ptr<int64_t>();
  const bool* seed = seeds.data_ptr<bool>();
  int64_t count = 0;
  for (int64_t i = 0; i < n; ++i) {
    seen[i] = seed[i];
    out[count] = i;
    count += seed[i];
  }
  sizes.push_back(count);
  bool over = false;
  AT_DISPATCH_INDEX_TYPES(rowptr.scalar_type(), "frontier_levels", [&] {
    const index_t* rp = rowptr.data_ptr<index_t>();
    const index_t* c = col.data_ptr<index_t>();
    int64_t begin = 0, edges = 0;
    for (int64_t hop = 0; hop < num_hops; ++hop) {
      for (int64_t j = begin; j < count; ++j) edges += rp[out[j] + 1] - rp[out[j]];
      in_edges.push_back(edges);
      if (max_edges >= 0 && double(edges) >= max_edges) {
        over = true;
        return;
      }
      mark_sources(rp, c, out, begin, count, reached.data());
      begin = count;
      for (int64_t i = 0; i < n; ++i) {  // keep the newly reached, in id order
        const uint8_t fresh = reached[i] & (seen[i] ^ 1);
        seen[i] |= reached[i];
        reached[i] = 0;
        out[count] = i;
        count += fresh;
      }
      sizes.push_back(count);
    }
  });
  if (over) return {};
  int64_t* place = position.data_ptr<int64_t>();
  for (int64_t j = 0; j < count; ++j) place[out[j]] = j;
  return {nodes.narrow(0, 0, count), torch::tensor(sizes, options), torch::tensor(in_edges, options),
          position};
}
