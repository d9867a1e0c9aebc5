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
#pragma once

#include <ucontext.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
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

  void arrive_and_wait() {
    Scheduler* s = scheduler();
    const uint64_t generation = generation_;
    if (++arrived_ == count_) {
      arrived_ = 0;
      ++generation_;
      return;
    }
    s->waiting_at[s->current] = this;
    s->waiting_for[s->current] = generation;
    while (generation == generation_) {
      yield();
    }
    s->waiting_at[s->current] = nullptr;
  }

  uint64_t generation() const {
    return generation_;
  }

 private:
  int count_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
};

struct Warp {
  Barrier barrier{32};
  unsigned char slots[32][16];
};

struct Block {
  explicit Block(int threads) : sync(threads), warps(threads / 32) {}
  Barrier sync;
  std::vector<Warp> warps;
};

inline Block*& current_block() {
  static Block* block = nullptr;
  return block;
}

inline void fiber_entry() {
  Scheduler* s = scheduler();
  s->body(s->params);
  s->done[s->current] = 1;
  // Returning resumes uc_link, the scheduler.
}

// Runs kernel(params) over a 1-D grid of `blocks` blocks of `threads`.
template <class Params>
void launch(void (*kernel)(Params), unsigned blocks, int threads, const Params& params) {
  if (threads % 32 != 0) {
    std::fprintf(stderr, "cuda emulator: block of %d threads is not whole warps\n", threads);
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
    Block block(threads);
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

template <typename T>
T __shfl_down_sync(unsigned mask, T value, int delta) {
  static_assert(sizeof(T) <= 16, "slot size");
  if (mask != 0xffffffffu) {
    std::fprintf(stderr, "cuda emulator: only full-warp shuffles are modelled\n");
    std::abort();
  }
  emu::Warp& warp = emu::current_block()->warps[threadIdx.x / 32];
  const unsigned lane = threadIdx.x % 32;
  std::memcpy(warp.slots[lane], &value, sizeof(T));
  warp.barrier.arrive_and_wait();
  T out = value;
  if (lane + delta < 32) {
    std::memcpy(&out, warp.slots[lane + delta], sizeof(T));
  }
  warp.barrier.arrive_and_wait();
  return out;
}
