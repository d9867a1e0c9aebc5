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
// which the scheduler detects and reports. It does not model memory ordering
// or the timing of a GPU: a missing barrier may go unnoticed here, and
// compute-sanitizer's racecheck on a GPU is the real test for races.
#pragma once

#include <ucontext.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
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

struct Scheduler {
  ucontext_t main;
  std::vector<ucontext_t> contexts;
  std::vector<std::unique_ptr<char[]>> stacks;
  std::vector<char> done;
  int current = -1;
  uint64_t events = 0;  // arrivals, completed barriers, finished fibers
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
    ++s->events;
    const uint64_t generation = generation_;
    if (++arrived_ == count_) {
      arrived_ = 0;
      ++generation_;
      return;
    }
    while (generation == generation_) {
      yield();
    }
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
  ++s->events;
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
  constexpr size_t kStack = 256 * 1024;
  for (auto& st : s.stacks) {
    st.reset(new char[kStack]);  // untouched pages cost nothing
  }
  Scheduler* saved = scheduler();
  scheduler() = &s;
  gridDim = {blocks, 1, 1};
  blockDim = {static_cast<unsigned>(threads), 1, 1};

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
    int alive = threads;
    while (alive > 0) {
      const uint64_t before = s.events;
      for (int t = 0; t < threads; ++t) {
        if (s.done[t]) {
          continue;
        }
        s.current = t;
        threadIdx = {static_cast<unsigned>(t), 0, 0};
        swapcontext(&s.main, &s.contexts[t]);
        if (s.done[t]) {
          --alive;
        }
      }
      if (alive > 0 && s.events == before) {
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
