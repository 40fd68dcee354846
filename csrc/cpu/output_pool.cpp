// The CPU output pool (see output_pool.h) and its dsconv::_cpu_cache_* ops.
#include "output_pool.h"

#include <ATen/EmptyTensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/Allocator.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <list>
#include <mutex>
#include <new>

#if defined(__linux__)
#include <pthread.h>
#include <sys/mman.h>
#endif

namespace dsconv {
namespace {

constexpr size_t kMinPooledBytes = size_t(4) << 20;  // smaller blocks: glibc reuses them already
constexpr size_t kAlign = size_t(2) << 20;           // huge-page aligned
constexpr size_t kRound = size_t(64) << 10;          // sizes rounded up to 64 KiB
constexpr int64_t kDefaultLimitMb = 1024;

bool env_huge_pages() {
  const char* e = std::getenv("DSCONV_HUGE_PAGES");
  return !(e && e[0] == '0');
}

int64_t env_limit_mb() {
  const char* e = std::getenv("DSCONV_CPU_CACHE_MB");
  if (!e || !*e) return kDefaultLimitMb;
  char* end = nullptr;
  const long long v = std::strtoll(e, &end, 10);
  TORCH_CHECK(end && *end == '\0' && v >= 0, "dsconv: DSCONV_CPU_CACHE_MB must be a whole number of MiB >= 0, got '",
              e, "'");
  return v;
}

struct Block {
  void* ptr;
  size_t bytes;
};

// Never destroyed: tensors freed during interpreter shutdown still return their blocks here.
struct Pool {
  std::mutex mu;
  std::list<Block*> free_blocks;  // most recently freed first
  size_t cached_bytes = 0;
  int64_t limit_bytes = -1;       // -1: not read from the environment yet
  int64_t hits = 0, misses = 0;

  static Pool& get() {
    static Pool* p = [] {
      auto* pool = new Pool();
#if defined(__linux__)
      // A fork (DataLoader workers) copies the pool; its mutex may be held by another thread of
      // the parent at that moment, so the child starts with a fresh one.
      pthread_atfork(nullptr, nullptr, [] { new (&Pool::get().mu) std::mutex(); });
#endif
      return pool;
    }();
    return *p;
  }

  int64_t limit_locked() {
    if (limit_bytes < 0) limit_bytes = env_limit_mb() << 20;
    return limit_bytes;
  }

  // Frees cached blocks, oldest first, until at most `keep` bytes stay cached.
  void trim_locked(size_t keep) {
    while (cached_bytes > keep && !free_blocks.empty()) {
      Block* b = free_blocks.back();
      free_blocks.pop_back();
      cached_bytes -= b->bytes;
      std::free(b->ptr);
      delete b;
    }
  }
};

void release(void* ctx) {
  auto* b = static_cast<Block*>(ctx);
  Pool& pool = Pool::get();
  {
    std::lock_guard<std::mutex> lock(pool.mu);
    const int64_t limit = pool.limit_locked();
    if (static_cast<int64_t>(b->bytes) <= limit) {
      pool.trim_locked(static_cast<size_t>(limit) - b->bytes);
      pool.free_blocks.push_front(b);
      pool.cached_bytes += b->bytes;
      return;
    }
  }
  std::free(b->ptr);
  delete b;
}

// A cached block of at least `bytes`, wasting at most a quarter of it, or nullptr.
Block* take_cached(size_t bytes) {
  Pool& pool = Pool::get();
  std::lock_guard<std::mutex> lock(pool.mu);
  auto best = pool.free_blocks.end();
  for (auto it = pool.free_blocks.begin(); it != pool.free_blocks.end(); ++it)
    if ((*it)->bytes >= bytes && (*it)->bytes <= bytes + bytes / 4 &&
        (best == pool.free_blocks.end() || (*it)->bytes < (*best)->bytes))
      best = it;
  if (best == pool.free_blocks.end()) {
    ++pool.misses;
    return nullptr;
  }
  Block* b = *best;
  pool.free_blocks.erase(best);
  pool.cached_bytes -= b->bytes;
  ++pool.hits;
  return b;
}

// posix_memalign, not aligned_alloc: C11 wants the size a multiple of the alignment (AddressSanitizer
// enforces it), and rounding 4-6 MB blocks up to 2 MiB would waste up to a third of them.
void* aligned_block(size_t bytes) {
  void* p = nullptr;
  return posix_memalign(&p, kAlign, bytes) == 0 ? p : nullptr;
}

void* allocate_fresh(size_t bytes) {
  void* p = aligned_block(bytes);
  if (!p) {  // give the cache back to the system and try once more
    {
      Pool& pool = Pool::get();
      std::lock_guard<std::mutex> lock(pool.mu);
      pool.trim_locked(0);
    }
    p = aligned_block(bytes);
  }
  TORCH_CHECK_WITH(OutOfMemoryError, p, "dsconv: CPU out of memory: could not allocate ", bytes, " bytes for an output");
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  // The block is faulted in once and then reused, so huge pages (fewer faults, fewer TLB misses)
  // cost their compaction at most once.
  static const bool huge = env_huge_pages();
  if (huge) (void)madvise(p, bytes, MADV_HUGEPAGE);
#endif
  return p;
}

struct PoolAllocator final : c10::Allocator {
  c10::DataPtr allocate(size_t n) override {
    const size_t bytes = (std::max<size_t>(n, 1) + kRound - 1) / kRound * kRound;
    Block* b = take_cached(bytes);
    if (!b) b = new Block{allocate_fresh(bytes), bytes};
    return {b->ptr, b, &release, c10::Device(c10::DeviceType::CPU)};
  }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }
};

PoolAllocator& pool_allocator() {
  static PoolAllocator* a = new PoolAllocator();
  return *a;
}

bool pool_enabled() {
  Pool& pool = Pool::get();
  std::lock_guard<std::mutex> lock(pool.mu);
  return pool.limit_locked() > 0;
}

// ---- ops for dsconv_ext.cpu_cache_info / empty_cpu_cache / set_cpu_cache_limit ----

// [cached bytes, cached blocks, limit bytes, hits, misses]
std::vector<int64_t> cache_stats() {
  Pool& pool = Pool::get();
  std::lock_guard<std::mutex> lock(pool.mu);
  return {static_cast<int64_t>(pool.cached_bytes), static_cast<int64_t>(pool.free_blocks.size()),
          pool.limit_locked(), pool.hits, pool.misses};
}

void cache_empty() {
  Pool& pool = Pool::get();
  std::lock_guard<std::mutex> lock(pool.mu);
  pool.trim_locked(0);
}

// Sets the limit in bytes (0: off) and returns the previous one; trims to the new limit.
int64_t cache_set_limit(int64_t bytes) {
  TORCH_CHECK(bytes >= 0, "dsconv: the CPU cache limit must be >= 0 bytes, got ", bytes);
  Pool& pool = Pool::get();
  std::lock_guard<std::mutex> lock(pool.mu);
  const int64_t prev = pool.limit_locked();
  pool.limit_bytes = bytes;
  pool.trim_locked(static_cast<size_t>(bytes));
  return prev;
}

}  // namespace

at::Tensor empty_output(c10::IntArrayRef sizes, const at::TensorOptions& opts) {
  if (opts.device().is_cpu()) {
    int64_t numel = 1;
    for (const int64_t s : sizes) numel *= s;
    const size_t bytes = static_cast<size_t>(numel) * c10::elementSize(c10::typeMetaToScalarType(opts.dtype()));
    if (bytes >= kMinPooledBytes && pool_enabled())
      return at::detail::empty_generic(sizes, &pool_allocator(), c10::DispatchKeySet(c10::DispatchKey::CPU),
                                       c10::typeMetaToScalarType(opts.dtype()), opts.memory_format_opt());
  }
  return at::empty(sizes, opts);
}

}  // namespace dsconv

TORCH_LIBRARY_FRAGMENT(dsconv, m) {
  m.def("_cpu_cache_stats() -> int[]", &dsconv::cache_stats);
  m.def("_cpu_cache_empty() -> ()", &dsconv::cache_empty);
  m.def("_cpu_cache_set_limit(int limit_bytes) -> int", &dsconv::cache_set_limit);
}
