// A CPU emulation of the slice of the CUDA execution model that conv_ext's
// kernels use, so that the device code of csrc/cuda/ runs, unchanged, on
// machines without a GPU. Each CUDA thread of a block is a fiber (ucontext)
// on one OS thread; __syncthreads() and the warp exchanges behind
// __shfl_down_sync are barriers at which a fiber yields until every
// participant has arrived; __shared__ is a static variable (blocks run one
// after another, so one copy serves every block).
//
// It checks what a GPU would not report: a barrier that not every thread of
// the block reaches (a __syncthreads() in divergent code) stops all fibers,
// which the scheduler detects and reports. Between barriers each fiber runs
// alone, fibers resume in a random order and some warps run slowly, so a
// missing barrier usually shows as a wrong result (removing the main loop's
// barrier in gemm_tile.cuh, or block_sum's second one, does). It does not
// model memory ordering or the timing of a GPU: compute-sanitizer's
// racecheck on a GPU remains the real test for races.
//
// The tensor-core instructions that csrc/cuda/tensorop/ptx.cuh wraps (mma,
// ldmatrix, cp.async) are modelled in ptx_emulated.h on top of the warp
// exchange, the per-block dynamic shared memory and the per-thread cp.async
// queues defined here. Dynamic shared memory starts as 0xFF bytes (NaN in
// every floating type) in each block, so a read of a never-written element
// shows in the result.
#pragma once

// Device code that needs an emulated form (ptx.cuh) tests this macro.
#ifndef CONV_EXT_CUDA_EMULATOR
#define CONV_EXT_CUDA_EMULATOR 1
#endif

#include <ucontext.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <numeric>
#include <random>
#include <type_traits>
#include <vector>

struct EmuDim3 {
  unsigned x = 0, y = 0, z = 0;
};

// One OS thread runs every fiber, so these are plain globals that the
// scheduler sets before resuming a fiber.
inline EmuDim3 threadIdx;
inline EmuDim3 blockIdx;
inline EmuDim3 blockDim;
inline EmuDim3 gridDim;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))

namespace emu {

class Barrier;

struct Scheduler {
  ucontext_t main;
  std::vector<ucontext_t> contexts;
  std::vector<std::unique_ptr<char[]>> stacks;
  std::vector<char> done;
  // The barrier each fiber waits at (nullptr: runnable) and the generation
  // it waits to pass; the scheduler does not resume it before then.
  std::vector<const Barrier*> waiting_at;
  std::vector<uint64_t> waiting_for;
  int current = -1;
  void (*body)(const void*) = nullptr;
  const void* params = nullptr;
};

inline Scheduler*& scheduler() {
  static Scheduler* s = nullptr;
  return s;
}

inline void yield() {
  Scheduler* s = scheduler();
  swapcontext(&s->contexts[s->current], &s->main);
}

class Barrier {
 public:
  explicit Barrier(int count) : count_(count) {}

  // Returns true in the thread that arrived last: it runs on before any
  // other participant resumes.
  bool arrive_and_wait() {
    Scheduler* s = scheduler();
    const uint64_t generation = generation_;
    if (++arrived_ == count_) {
      arrived_ = 0;
      ++generation_;
      return true;
    }
    s->waiting_at[s->current] = this;
    s->waiting_for[s->current] = generation;
    while (generation == generation_) {
      yield();
    }
    s->waiting_at[s->current] = nullptr;
    return false;
  }

  uint64_t generation() const {
    return generation_;
  }

 private:
  int count_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
};

// Bytes each lane deposits in a warp exchange: room for an mma's fragments
// (4 + 2 registers of A and B, 4 floats of C).
constexpr size_t kWarpSlotBytes = 64;

// Two sets of slots, used by alternate collectives (the parity of the
// barrier's generation): a lane that has left one collective and entered
// the next writes the other set, while lanes still in the first read
// theirs, so one barrier per collective suffices.
struct Warp {
  Barrier barrier{32};
  alignas(16) unsigned char slots[2][32][kWarpSlotBytes];
  // Which warp-collective instruction each lane is in, so that lanes that
  // diverged into different collectives are reported, not paired up.
  const char* collective[2][32] = {};
};

// One thread's cp.async copies: the source is read at issue, the
// destination written when a wait retires the copy's group (or, at the
// latest, when the thread exits, as a GPU would still land it).
struct CpAsyncCopy {
  void* dst;
  int bytes;
  alignas(16) unsigned char data[16];
};

struct CpAsyncQueue {
  std::vector<CpAsyncCopy> uncommitted;
  std::deque<std::vector<CpAsyncCopy>> groups;  // oldest first

  void commit() {
    groups.push_back(std::move(uncommitted));
    uncommitted.clear();
  }
  // cp.async.wait_group n: the oldest groups land until at most n remain.
  void wait(size_t pending) {
    while (groups.size() > pending) {
      for (const CpAsyncCopy& c : groups.front()) {
        std::memcpy(c.dst, c.data, c.bytes);
      }
      groups.pop_front();
    }
  }
  void land_everything() {
    commit();
    wait(0);
  }
};

// Where a cp.async destination stands between issue and wait. kStale (the
// default) leaves the old bytes, so a read before the wait sees stale data;
// kPoisoned fills it with 0xFF at issue, so that also a thread still reading
// the previous contents of a stage that another thread is already refilling
// (a missing barrier before the refill) reads NaN.
enum class CpAsyncPending { kStale, kPoisoned };

inline CpAsyncPending& cp_async_pending() {
  static CpAsyncPending mode = CpAsyncPending::kStale;
  return mode;
}

// Shared-memory bank conflicts of ldmatrix, counted as a GPU serves them:
// each 8x8 matrix is one 128-byte wavefront when its eight 16-byte rows
// fall in distinct groups of four banks ((address / 16) % 8), and one more
// wavefront for each further distinct row in the most crowded group. Tests
// reset the counters, run a kernel, and require extra_wavefronts == 0 of a
// layout meant to be conflict-free (padded or swizzled).
struct SharedMemoryStats {
  uint64_t ldmatrix_matrices = 0;
  uint64_t ldmatrix_extra_wavefronts = 0;
};

inline SharedMemoryStats& shared_memory_stats() {
  static SharedMemoryStats stats;
  return stats;
}

// The shared-memory limit of one block on sm_90 (227 KiB).
constexpr size_t kMaxDynamicSmemBytes = 227 * 1024;

struct FreeDeleter {
  void operator()(void* p) const {
    std::free(p);
  }
};

struct Block {
  Block(int threads, size_t dynamic_smem_bytes)
      : sync(threads),
        warps(threads / 32),
        cp_async(threads),
        dynamic_smem_bytes(dynamic_smem_bytes) {
    if (dynamic_smem_bytes > 0) {
      // Exactly the requested size rounded to 16 bytes, so AddressSanitizer
      // builds report reads and writes past it.
      const size_t rounded = (dynamic_smem_bytes + 15) / 16 * 16;
      dynamic_smem.reset(static_cast<unsigned char*>(std::aligned_alloc(16, rounded)));
      std::memset(dynamic_smem.get(), 0xFF, rounded);
    }
  }
  Barrier sync;
  std::vector<Warp> warps;
  std::vector<CpAsyncQueue> cp_async;  // one per thread
  size_t dynamic_smem_bytes;
  std::unique_ptr<unsigned char, FreeDeleter> dynamic_smem;
};

inline Block*& current_block() {
  static Block* block = nullptr;
  return block;
}

inline void fiber_entry() {
  Scheduler* s = scheduler();
  s->body(s->params);
  current_block()->cp_async[s->current].land_everything();
  s->done[s->current] = 1;
  // Returning resumes uc_link, the scheduler.
}

// Runs kernel(params) over a 1-D grid of `blocks` blocks of `threads`, each
// block with a fresh buffer of `dynamic_smem_bytes` (dynamic_smem<T>()).
template <class Params>
void launch(
    void (*kernel)(Params),
    unsigned blocks,
    int threads,
    const Params& params,
    size_t dynamic_smem_bytes = 0) {
  if (threads % 32 != 0) {
    std::fprintf(stderr, "cuda emulator: block of %d threads is not whole warps\n", threads);
    std::abort();
  }
  if (dynamic_smem_bytes > kMaxDynamicSmemBytes) {
    std::fprintf(
        stderr,
        "cuda emulator: %zu bytes of dynamic shared memory exceed the %zu "
        "bytes a block may have on sm_90\n",
        dynamic_smem_bytes, kMaxDynamicSmemBytes);
    std::abort();
  }
  struct Closure {
    void (*kernel)(Params);
    const Params* params;
  } closure{kernel, &params};

  Scheduler s;
  s.body = [](const void* c) {
    const Closure* cl = static_cast<const Closure*>(c);
    cl->kernel(*cl->params);
  };
  s.params = &closure;
  s.contexts.resize(threads);
  s.stacks.resize(threads);
  s.done.resize(threads);
  s.waiting_at.assign(threads, nullptr);
  s.waiting_for.assign(threads, 0);
  constexpr size_t kStack = 256 * 1024;
  for (auto& st : s.stacks) {
    st.reset(new char[kStack]);  // untouched pages cost nothing
  }
  Scheduler* saved = scheduler();
  scheduler() = &s;
  gridDim = {blocks, 1, 1};
  blockDim = {static_cast<unsigned>(threads), 1, 1};

  // Fibers resume in a fresh random order every round, so that code which
  // relies on an order of threads that no barrier enforces sees different
  // orders (and different results) from round to round.
  std::vector<int> order(threads);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937 rng(0x5eed + blocks);
  for (unsigned b = 0; b < blocks; ++b) {
    Block block(threads, dynamic_smem_bytes);
    current_block() = &block;
    blockIdx = {b, 0, 0};
    for (int t = 0; t < threads; ++t) {
      s.done[t] = 0;
      getcontext(&s.contexts[t]);
      s.contexts[t].uc_stack.ss_sp = s.stacks[t].get();
      s.contexts[t].uc_stack.ss_size = kStack;
      s.contexts[t].uc_link = &s.main;
      makecontext(&s.contexts[t], fiber_entry, 0);
    }
    // Warp b % warps of block b, and about one other in four, run slowly:
    // resumed on every kSlowEvery-th round only, so the other warps can run
    // several barrier phases (warp exchanges) ahead of them.
    constexpr uint64_t kSlowEvery = 16;
    std::vector<char> slow(threads);
    for (int w = 0; w < threads / 32; ++w) {
      const char is_slow =
          w == static_cast<int>(b % (threads / 32)) || rng() % 4 == 0;
      for (int lane = 0; lane < 32; ++lane) {
        slow[w * 32 + lane] = is_slow;
      }
    }
    int alive = threads;
    for (uint64_t round = 0; alive > 0; ++round) {
      const bool everyone = round % kSlowEvery == 0;
      bool runnable = false;
      std::shuffle(order.begin(), order.end(), rng);
      for (int t : order) {
        if (s.done[t] ||
            (s.waiting_at[t] != nullptr &&
             s.waiting_at[t]->generation() == s.waiting_for[t])) {
          continue;
        }
        runnable = true;
        if (slow[t] && !everyone) {
          continue;
        }
        s.current = t;
        threadIdx = {static_cast<unsigned>(t), 0, 0};
        swapcontext(&s.main, &s.contexts[t]);
        if (s.done[t]) {
          --alive;
        }
      }
      if (alive > 0 && !runnable) {
        std::fprintf(
            stderr,
            "cuda emulator: block %u deadlocked with %d of %d threads waiting "
            "at a barrier the others never reach\n",
            b, alive, threads);
        std::abort();
      }
    }
    current_block() = nullptr;
  }
  scheduler() = saved;
}

}  // namespace emu

inline void __syncthreads() {
  emu::current_block()->sync.arrive_and_wait();
}

namespace emu {

[[noreturn]] inline void fail_in_thread(const char* what) {
  std::fprintf(
      stderr, "cuda emulator: %s (thread %u of block %u)\n", what, threadIdx.x,
      blockIdx.x);
  std::abort();
}

// A warp-collective instruction: every lane of the calling thread's warp
// deposits `in`; the lane that arrives last, while every other lane is
// still inside the instruction, runs
//   compute(const In (&ins)[32], Out (&outs)[32])
// once for the warp, as a GPU executes it once for the converged warp (so
// shared memory that compute reads cannot have been changed by a lane that
// already went on); each lane then returns its outs[lane]. All 32 lanes must
// call it (a lane that never arrives deadlocks the block, which the
// scheduler reports), and all with the same `name`, the instruction's.
template <class Out, class In, class Compute>
Out warp_collective(const char* name, const In& in, Compute&& compute) {
  static_assert(sizeof(In) <= kWarpSlotBytes && sizeof(Out) <= kWarpSlotBytes, "warp slot size");
  static_assert(std::is_trivially_copyable_v<In> && std::is_trivially_copyable_v<Out>,
                "deposits are copied bytes");
  Warp& warp = current_block()->warps[threadIdx.x / 32];
  const unsigned lane = threadIdx.x % 32;
  const int set = static_cast<int>(warp.barrier.generation() % 2);
  auto& slots = warp.slots[set];
  std::memcpy(slots[lane], &in, sizeof(In));
  warp.collective[set][lane] = name;
  if (warp.barrier.arrive_and_wait()) {
    for (int l = 0; l < 32; ++l) {
      if (std::strcmp(warp.collective[set][l], name) != 0) {
        std::fprintf(
            stderr,
            "cuda emulator: lanes of warp %u of block %u are in different "
            "warp-collective instructions (lane %u in %s, lane %d in %s)\n",
            threadIdx.x / 32, blockIdx.x, lane, name, l, warp.collective[set][l]);
        std::abort();
      }
    }
    In ins[32];
    Out outs[32];
    for (int l = 0; l < 32; ++l) {
      std::memcpy(&ins[l], slots[l], sizeof(In));
    }
    compute(ins, outs);
    for (int l = 0; l < 32; ++l) {
      std::memcpy(slots[l], &outs[l], sizeof(Out));
    }
  }
  Out out;
  std::memcpy(&out, slots[lane], sizeof(Out));
  return out;
}

}  // namespace emu

// A warp barrier (full warps only, like every warp exchange here).
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  if (mask != 0xffffffffu) {
    emu::fail_in_thread("only full-warp __syncwarp is modelled");
  }
  emu::warp_collective<char>("bar.warp.sync", '\0', [](auto&, auto&) {});
}

template <typename T>
T __shfl_down_sync(unsigned mask, T value, int delta) {
  if (mask != 0xffffffffu) {
    emu::fail_in_thread("only full-warp shuffles are modelled");
  }
  struct Deposit {
    T value;
    int delta;
  };
  return emu::warp_collective<T>(
      "shfl.sync.down", Deposit{value, delta},
      [](const Deposit (&ins)[32], T (&outs)[32]) {
        for (int l = 0; l < 32; ++l) {
          const int from = l + ins[l].delta;
          outs[l] = from < 32 ? ins[from].value : ins[l].value;
        }
      });
}
