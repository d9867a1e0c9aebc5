"""Known-answer tests of the tensor-core instructions the CUDA emulator
models (tests/cuda_emulator/ptx_emulated.h, the CPU form of
csrc/cuda/tensorop/ptx.cuh): cvt.rna.tf32, mma.sync (tf32, bf16, f16),
ldmatrix (.x1/.x2/.x4, .trans), cp.async with its groups and waits, and
dynamic shared memory.

Every expected value here is written out from the PTX ISA's figures by a
formula of this file (checked itself against hand-copied lanes), never
taken from the emulator's layout code, so the emulator cannot agree with a
kernel by sharing its mistake. Misuse that the emulator must refuse aborts
the process, so those tests run in a subprocess.

The last test compiles the same kernels with nvcc for sm_90 and reads their
SASS (cuobjdump) for the instructions each wrapper must become; it is
skipped where nvcc or cuobjdump is missing.

CONV_EXT_EMULATOR_ASAN=1 builds the module with AddressSanitizer, as for
tests/test_cuda_emulated.py (preload the runtime; see there).
"""
import functools
import glob
import math
import os
import re
import shutil
import struct
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMULATOR = os.path.join(ROOT, "tests", "cuda_emulator")

pytestmark = pytest.mark.skipif(
    os.environ.get("CONV_EXT_SKIP_EMULATION") == "1", reason="CONV_EXT_SKIP_EMULATION=1")


@functools.lru_cache(maxsize=None)
def known_answers():
    from torch.utils.cpp_extension import load

    asan = os.environ.get("CONV_EXT_EMULATOR_ASAN") == "1"
    sanitize = ["-g", "-fsanitize=address", "-fno-omit-frame-pointer"] if asan else []
    return load(
        name="conv_ext_ptx_known_answers" + ("_asan" if asan else ""),
        sources=[os.path.join(EMULATOR, "ptx_known_answers.cpp")],
        extra_include_paths=[os.path.join(ROOT, "csrc"), EMULATOR],
        extra_cflags=["-O1", "-Wno-unknown-pragmas", *sanitize],
        extra_ldflags=["-fsanitize=address"] if asan else [],
    )


def run_aborting(call):
    """Runs `known_answers().<call>` in a fresh interpreter (the module is
    already built, so it loads from the cache); returns (returncode, stderr)."""
    known_answers()
    code = (
        "import sys; sys.path.insert(0, {tests!r}); import test_emulator_ptx as t; "
        "t.known_answers().{call}"
    ).format(tests=os.path.join(ROOT, "tests"), call=call)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    return done.returncode, done.stderr


# --- The PTX ISA's fragment figures, as formulas (g = lane // 4, t = lane % 4)


def tf32_a_position(lane, i):
    """mma.m16n8k8 .tf32, A (16 x 8, row): a0 (g, t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4)."""
    g, t = lane // 4, lane % 4
    return g + 8 * (i % 2), t + 4 * (i // 2)


def tf32_b_position(lane, i):
    """mma.m16n8k8 .tf32, B (8 x 8, col): b0 (k=t, n=g), b1 (k=t+4, n=g)."""
    g, t = lane // 4, lane % 4
    return t + 4 * i, g


def b16_a_positions(lane, i):
    """mma.m16n8k16 .bf16/.f16, A (16 x 16): register i holds two elements,
    the low half first: a0 (g, 2t..2t+1), a1 (g+8, ..), a2 (g, 2t+8..), a3 (g+8, 2t+8..)."""
    g, t = lane // 4, lane % 4
    row, col = g + 8 * (i % 2), 2 * t + 8 * (i // 2)
    return (row, col), (row, col + 1)


def b16_b_positions(lane, i):
    """mma.m16n8k16, B (16 x 8): b0 (k=2t..2t+1, n=g), b1 (k=2t+8..2t+9, n=g)."""
    g, t = lane // 4, lane % 4
    k = 2 * t + 8 * i
    return (k, g), (k + 1, g)


def d_position(lane, i):
    """C and D (16 x 8) of both shapes: d0 (g, 2t), d1 (g, 2t+1), d2 (g+8, 2t), d3 (g+8, 2t+1)."""
    g, t = lane // 4, lane % 4
    return g + 8 * (i // 2), 2 * t + i % 2


def test_fragment_formulas_match_hand_copied_lanes():
    # Lane 13 (g = 3, t = 1) and lane 30 (g = 7, t = 2), copied from the
    # figures by hand.
    assert [tf32_a_position(13, i) for i in range(4)] == [(3, 1), (11, 1), (3, 5), (11, 5)]
    assert [tf32_b_position(13, i) for i in range(2)] == [(1, 3), (5, 3)]
    assert [b16_a_positions(13, i) for i in range(4)] == [
        ((3, 2), (3, 3)), ((11, 2), (11, 3)), ((3, 10), (3, 11)), ((11, 10), (11, 11))]
    assert [b16_b_positions(13, i) for i in range(2)] == [((2, 3), (3, 3)), ((10, 3), (11, 3))]
    assert [d_position(13, i) for i in range(4)] == [(3, 2), (3, 3), (11, 2), (11, 3)]
    assert [tf32_a_position(30, i) for i in range(4)] == [(7, 2), (15, 2), (7, 6), (15, 6)]
    assert [d_position(30, i) for i in range(4)] == [(7, 4), (7, 5), (15, 4), (15, 5)]
    # Every element of each operand is held by exactly one (lane, register).
    assert sorted(tf32_a_position(l, i) for l in range(32) for i in range(4)) == [
        (m, k) for m in range(16) for k in range(8)]
    assert sorted(p for l in range(32) for i in range(4) for p in b16_a_positions(l, i)) == [
        (m, k) for m in range(16) for k in range(16)]
    assert sorted(p for l in range(32) for i in range(2) for p in b16_b_positions(l, i)) == [
        (k, n) for k in range(16) for n in range(8)]
    assert sorted(d_position(l, i) for l in range(32) for i in range(4)) == [
        (m, n) for m in range(16) for n in range(8)]


# --- helpers on bits


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def f32_from_bits(b):
    return struct.unpack("<f", struct.pack("<I", b & 0xFFFFFFFF))[0]


def as_int32(u):
    """A 32-bit pattern as the int32 a tensor holds."""
    u &= 0xFFFFFFFF
    return u - (1 << 32) if u >= 1 << 31 else u


def b16_bits(values, dtype):
    """The 16-bit patterns of `values` (a float tensor, exact in `dtype`)."""
    return (values.to(dtype).view(torch.int16).to(torch.int64) & 0xFFFF)


# --- cvt.rna.tf32.f32

TF32_CASES = [
    # (input bits, expected bits), worked by hand: the 13 low bits go, half a
    # unit (0x1000) rounds the magnitude up, ties away from zero.
    (0x3F800000, 0x3F800000),  # 1.0
    (0x3F800FFF, 0x3F800000),  # just below half a unit: down
    (0x3F801000, 0x3F802000),  # exactly half, even below: away from zero (RNE would go down)
    (0x3F803000, 0x3F804000),  # exactly half, odd below: up
    (0x3F801001, 0x3F802000),  # above half: up
    (0xBF801000, 0xBF802000),  # negative tie: away from zero, magnitude up
    (0xBF800FFF, 0xBF800000),  # negative below half: toward zero
    (0x3FFFF000, 0x40000000),  # carry into the exponent: 1.99951171875 -> 2.0
    (0x7F7FEFFF, 0x7F7FE000),  # largest TF32 value stays
    (0x7F7FFFFF, 0x7F800000),  # FLT_MAX rounds to infinity
    (0xFF7FF000, 0xFF800000),  # and -FLT_MAX-ish to -infinity
    (0x00001000, 0x00002000),  # subnormal tie: away from zero
    (0x00000FFF, 0x00000000),  # tiny subnormal: to zero
    (0x007FF000, 0x00800000),  # largest subnormals round to the smallest normal
    (0x00000000, 0x00000000),  # +0
    (0x80000000, 0x80000000),  # -0
    (0x7F800000, 0x7F800000),  # +inf unchanged
    (0xFF800000, 0xFF800000),  # -inf unchanged
    (0x7FC00000, 0x7FC00000),  # quiet NaN stays NaN
    (0xFFC01234, 0xFFC00000),  # NaN: sign and top payload kept, low 13 bits cleared
    (0x7F800001, 0x7F800000),  # NaN with payload only in the low bits: infinity, as sm_90 does
]


def test_to_tf32_hand_computed_cases():
    x = torch.tensor([as_int32(b) for b, _ in TF32_CASES], dtype=torch.int32).view(torch.float32)
    got = known_answers().to_tf32(x.contiguous())
    for (bits, expected), g in zip(TF32_CASES, got.tolist()):
        assert g & 0xFFFFFFFF == expected, f"to_tf32({bits:#010x}) = {g & 0xFFFFFFFF:#010x}, expected {expected:#010x}"


def tf32_reference(x):
    """Round a finite float to TF32 by arithmetic on its value: the nearest
    multiple of the TF32 quantum at its binade, ties away from zero."""
    if x == 0:
        return x
    _, e = math.frexp(abs(x))  # |x| = f * 2^e, 0.5 <= f < 1
    quantum = 2.0 ** (max(e - 1, -126) - 10)
    n = math.floor(abs(x) / quantum + 0.5)
    r = math.copysign(n * quantum, x)
    return r if abs(r) < 2.0 ** 128 else math.copysign(math.inf, x)


def test_to_tf32_matches_rounding_by_value():
    g = torch.Generator().manual_seed(13)
    # Random bit patterns over every finite exponent, plus values built to
    # sit on and next to ties.
    bits = torch.randint(0, 1 << 31, (4000,), generator=g, dtype=torch.int64)
    bits = bits | (torch.randint(0, 2, (4000,), generator=g) << 31)
    ties = (torch.randint(0, 255, (300,), generator=g) << 23) | (
        torch.randint(0, 1 << 10, (300,), generator=g) << 13) | 0x1000
    patterns = [int(b) for b in torch.cat([bits, ties, ties + 1, ties - 1]).tolist()]
    patterns = [p for p in patterns if (p >> 23) & 0xFF != 0xFF]
    x = torch.tensor([as_int32(p) for p in patterns], dtype=torch.int32).view(torch.float32)
    got = known_answers().to_tf32(x.contiguous()).tolist()
    for p, r in zip(patterns, got):
        want = f32_bits(tf32_reference(f32_from_bits(p)))
        assert r & 0xFFFFFFFF == want, f"to_tf32({p:#010x}) = {r & 0xFFFFFFFF:#010x}, expected {want:#010x}"


# --- mma.sync


def small_integers(shape, generator, low=-8, high=9):
    return torch.randint(low, high, shape, generator=generator).to(torch.float64)


def tf32_fragments(a_bits, b_bits):
    """Per-lane registers of 16x8 A and 8x8 B given as 32-bit patterns."""
    a = [[as_int32(int(a_bits[tf32_a_position(l, i)])) for i in range(4)] for l in range(32)]
    b = [[as_int32(int(b_bits[tf32_b_position(l, i)])) for i in range(2)] for l in range(32)]
    return torch.tensor(a, dtype=torch.int32), torch.tensor(b, dtype=torch.int32)


def b16_fragments(a_bits, b_bits):
    """Per-lane registers of 16x16 A and 16x8 B given as 16-bit patterns."""
    def pack(bits, positions):
        lo, hi = positions
        return as_int32(int(bits[lo]) | int(bits[hi]) << 16)

    a = [[pack(a_bits, b16_a_positions(l, i)) for i in range(4)] for l in range(32)]
    b = [[pack(b_bits, b16_b_positions(l, i)) for i in range(2)] for l in range(32)]
    return torch.tensor(a, dtype=torch.int32), torch.tensor(b, dtype=torch.int32)


def c_fragments(c):
    return torch.tensor([[c[d_position(l, i)] for i in range(4)] for l in range(32)], dtype=torch.float32)


def check_d(d, expected, what):
    for lane in range(32):
        for i in range(4):
            want = float(expected[d_position(lane, i)])
            got = float(d[lane, i])
            assert got == want, f"{what}: lane {lane} d[{i}] = {got}, expected D{d_position(lane, i)} = {want}"


def test_mma_tf32_every_lane():
    g = torch.Generator().manual_seed(1)
    a, b, c = small_integers((16, 8), g), small_integers((8, 8), g), small_integers((16, 8), g, -50, 51)
    a_bits = torch.tensor([[f32_bits(v) for v in row] for row in a.tolist()], dtype=torch.int64)
    b_bits = torch.tensor([[f32_bits(v) for v in row] for row in b.tolist()], dtype=torch.int64)
    ra, rb = tf32_fragments(a_bits, b_bits)
    d = known_answers().mma(ra, rb, c_fragments(c), 0, 1)
    check_d(d, a @ b + c, "tf32 D = A B + C")
    # D fed back as C: D = 2 A B + C (d and c are the same registers).
    d2 = known_answers().mma(ra, rb, c_fragments(c), 0, 2)
    check_d(d2, 2 * (a @ b) + c, "tf32 chained")


def test_mma_tf32_ignores_the_low_13_bits_of_its_operands():
    # 1.0 with all 13 low bits set (1.000976...) is read as 1.0: truncation,
    # not the rounding to_tf32 would do (to 1 + 2^-10), so a kernel that
    # forgets to_tf32 shows in a test against correctly rounded inputs.
    g = torch.Generator().manual_seed(2)
    a, b = small_integers((16, 8), g), small_integers((8, 8), g)
    low = torch.randint(0, 1 << 13, (16, 8), generator=g)
    a_bits = torch.tensor([[f32_bits(v) for v in row] for row in a.tolist()], dtype=torch.int64) | low
    a_bits[0, 0] = 0x3F801FFF  # 1.0 with the low bits set
    a[0, 0] = 1.0
    b_bits = torch.tensor([[f32_bits(v) for v in row] for row in b.tolist()], dtype=torch.int64)
    b_bits[:, 0] |= 0x1FFF  # B's low bits as well
    ra, rb = tf32_fragments(a_bits, b_bits)
    zero = torch.zeros(16, 8, dtype=torch.float64)
    check_d(known_answers().mma(ra, rb, c_fragments(zero), 0, 1), a @ b, "tf32 with low bits set")


@pytest.mark.parametrize("dtype,kind", [(torch.bfloat16, 1), (torch.float16, 2)])
def test_mma_m16n8k16_every_lane(dtype, kind):
    g = torch.Generator().manual_seed(3 + kind)
    a, b, c = small_integers((16, 16), g), small_integers((16, 8), g), small_integers((16, 8), g, -50, 51)
    # A fraction only the 16-bit format holds exactly, so a mix-up of
    # bf16 and f16 decoding shows: 1 + 2^-9 is exact in f16, not in bf16.
    if dtype == torch.float16:
        a[5, 9] = 1 + 2.0 ** -9
    else:
        a[5, 9] = 1 + 2.0 ** -7
    ra, rb = b16_fragments(b16_bits(a, dtype), b16_bits(b, dtype))
    d = known_answers().mma(ra, rb, c_fragments(c), kind, 1)
    check_d(d, a @ b + c, f"{dtype} D = A B + C")


def test_mma_rounds_once_per_instruction():
    # C = 2^24 and eight products of 1: a float sum in k order would stay
    # at 2^24 (each +1 rounds back); the emulator sums an instruction's
    # products and C in double and rounds once, to 2^24 + 8.
    a = torch.ones(16, 8, dtype=torch.float64)
    b = torch.ones(8, 8, dtype=torch.float64)
    c = torch.full((16, 8), 2.0 ** 24, dtype=torch.float64)
    ra, rb = tf32_fragments(torch.full((16, 8), f32_bits(1.0)), torch.full((8, 8), f32_bits(1.0)))
    check_d(known_answers().mma(ra, rb, c_fragments(c), 0, 1), a @ b + c, "one rounding")


# --- ldmatrix

LDMATRIX = {"x1": (0, 1, False), "x2": (1, 2, False), "x4": (2, 4, False),
            "x2.trans": (3, 2, True), "x4.trans": (4, 4, True)}


def ldmatrix_value(matrix, row, col):
    """Element (row, col) of matrix `matrix`: distinct, and none zero."""
    return 0x100 + 64 * matrix + 8 * row + col


def ldmatrix_expected(lane, matrix, trans):
    """The PTX figure: lane l holds row l/4, columns 2(l%4) and 2(l%4)+1,
    low half first; .trans the same position of the transposed matrix."""
    r, c = lane // 4, 2 * (lane % 4)
    if trans:
        return ldmatrix_value(matrix, c, r) | ldmatrix_value(matrix, c + 1, r) << 16
    return ldmatrix_value(matrix, r, c) | ldmatrix_value(matrix, r, c + 1) << 16


def test_ldmatrix_expected_by_hand():
    # Lane 6 (row 1, columns 4 and 5), matrix 2; transposed: rows 4 and 5 of column 1.
    assert ldmatrix_expected(6, 2, False) == (0x100 + 128 + 8 + 4) | (0x100 + 128 + 8 + 5) << 16
    assert ldmatrix_expected(6, 2, True) == (0x100 + 128 + 32 + 1) | (0x100 + 128 + 40 + 1) << 16


@pytest.mark.parametrize("clobber", [False, True])
@pytest.mark.parametrize("name", list(LDMATRIX))
def test_ldmatrix_every_lane(name, clobber):
    variant, matrices, trans = LDMATRIX[name]
    rows = torch.tensor([[ldmatrix_value(j // 8, j % 8, c) for c in range(8)] for j in range(32)],
                        dtype=torch.int16)
    # Rows scattered over the buffer in a shuffled order: only the lanes'
    # addresses say which row is where. Lanes past the matrices read pass
    # a misaligned address, which must be ignored. With `clobber`, each lane
    # zeroes its row right after the instruction, which must not reach what
    # the other lanes received.
    slots = torch.randperm(32, generator=torch.Generator().manual_seed(variant)).to(torch.int32)
    out = known_answers().ldmatrix(rows, slots, variant, -1, clobber)
    for lane in range(32):
        for i in range(4):
            want = ldmatrix_expected(lane, i, trans) if i < matrices else 0
            got = int(out[lane, i]) & 0xFFFFFFFF
            assert got == want, f"ldmatrix.{name}: lane {lane} r[{i}] = {got:#010x}, expected {want:#010x}"


def extra_wavefronts(slots, matrices):
    """Bank conflicts of an ldmatrix whose row j sits in 16-byte slot
    slots[j]: per matrix, the most distinct rows sharing one group of four
    banks (slot % 8), less one; a row read twice is one read."""
    extra = 0
    for i in range(matrices):
        groups = [slot % 8 for slot in set(slots[8 * i:8 * i + 8])]
        extra += max(groups.count(b) for b in groups) - 1
    return extra


@pytest.mark.parametrize("name", ["x1", "x4", "x2.trans"])
def test_ldmatrix_counts_bank_conflicts(name):
    variant, matrices, _ = LDMATRIX[name]
    rows = torch.zeros(32, 8, dtype=torch.int16)
    layouts = {  # row r of matrix i (j = 8 i + r) in slot:
        "contiguous": [j for j in range(32)],                       # 8 groups: none
        "pitch 64 bytes": [4 * (j % 8) + j // 8 for j in range(32)],   # 2 groups of 4: 3 extra
        "pitch 128 bytes": [8 * (j % 8) + j // 8 for j in range(32)],  # 1 group: 7 extra
        "padded pitch 80 bytes": [5 * (j % 8) + j // 8 for j in range(32)],  # none
        "rows read twice": [j // 2 + 8 * (j // 8) for j in range(32)],    # broadcast: none
        "shuffled": torch.randperm(64, generator=torch.Generator().manual_seed(11)).tolist()[:32],
    }
    assert [extra_wavefronts(layouts[k], 4) for k in list(layouts)[:5]] == [0, 12, 28, 0, 0]
    m = known_answers()
    m.ldmatrix_conflicts()
    for layout, slots in layouts.items():
        m.ldmatrix(rows, torch.tensor(slots, dtype=torch.int32), variant, -1, False)
        assert m.ldmatrix_conflicts() == [matrices, extra_wavefronts(slots, matrices)], layout


def test_ldmatrix_misaligned_row_aborts():
    rc, err = run_aborting(
        "ldmatrix(__import__('torch').zeros(32, 8, dtype=__import__('torch').int16), "
        "__import__('torch').arange(32, dtype=__import__('torch').int32), 2, 3, False)")
    assert rc != 0
    assert "ldmatrix.x4: lane 3 gives row address" in err and "not 16-byte aligned" in err, err


# --- cp.async and dynamic shared memory

POISON = as_int32(0xFFFFFFFF)
OLD = [0x100 + j for j in range(16)]


def cp_async_expected(src, poisoned):
    """The six logs of cp_async_kernel (see ptx_known_answer_kernels.cuh)
    for one thread whose new words are `src`."""
    new = list(src)
    stale = POISON if poisoned else None

    def words(landed, pending):
        out = []
        for j in range(16):
            if j in landed:
                out.append(landed[j])
            elif j in pending and stale is not None:
                out.append(stale)
            else:
                out.append(OLD[j])
        return out

    g1 = {j: new[j] for j in range(0, 4)}
    g2 = {j: new[j] for j in range(4, 7)}
    g3 = {j: 0 for j in range(8, 12)}
    last = {12: new[12]}
    return [
        [POISON] * 16,                                                    # never written: 0xFF bytes
        words({}, set(g1)),                                               # group 1 issued only
        words(g1, set(g2) | set(g3) | set(last)),                         # wait_group 2
        words({**g1, **g2}, set(g3) | set(last)),                         # wait_group 1
        words({**g1, **g2, **g3}, set(last)),                             # wait_group 0: uncommitted stays
        words({**g1, **g2, **g3, **last}, set()),                         # wait_all
    ]


@pytest.mark.parametrize("poisoned", [False, True])
def test_cp_async_lands_at_the_wait_of_its_group(poisoned):
    g = torch.Generator().manual_seed(7)
    src = torch.randint(-(1 << 31), 1 << 31, (2, 64, 16), generator=g, dtype=torch.int64).to(torch.int32)
    log = known_answers().cp_async(src, poisoned, 0, 0, 0)
    for block in range(2):  # block 1 gets a fresh, unwritten buffer too
        for t in range(64):
            want = cp_async_expected(src[block, t].tolist(), poisoned)
            got = log[block, t].tolist()
            for step in range(6):
                assert got[step] == want[step], f"block {block} thread {t} log {step}: {got[step]} != {want[step]}"


@pytest.mark.parametrize("size,shared,global_,shown", [
    (16, 8, 0, "shared"), (8, 0, 4, "global"), (4, 2, 0, "shared")])
def test_cp_async_misaligned_aborts(size, shared, global_, shown):
    rc, err = run_aborting(
        f"cp_async(__import__('torch').zeros(1, 32, 16, dtype=__import__('torch').int32), False, "
        f"{size}, {shared}, {global_})")
    assert rc != 0
    name = "cp.async.cg" if size == 16 else "cp.async.ca"
    assert f"{name} of {size} bytes needs both addresses {size}-byte aligned" in err, err
    # The message gives both addresses; the misaligned one ends off the size.
    addresses = dict(re.findall(r"(shared|global) (0x[0-9a-f]+)", err))
    assert int(addresses[shown], 16) % size != 0, err


def test_syncwarp_orders_the_lanes_of_a_warp():
    want = [0x100 + (lane + 1) % 32 for lane in range(32)]
    assert known_answers().syncwarp(True).tolist() == want
    # Without the barrier some lane runs before its neighbour has written
    # (dynamic shared memory starts as 0xFF bytes): the emulator shows it.
    assert known_answers().syncwarp(False).tolist() != want


@pytest.mark.parametrize("which,message", [
    (0, "different warp-collective instructions"),
    (1, "deadlocked"),
    (2, "launched without dynamic shared memory"),
])
def test_misuse_aborts(which, message):
    rc, err = run_aborting(f"misuse({which})")
    assert rc != 0
    assert message in err, err


# --- the GPU side: the same kernels through nvcc, read back as SASS


def find_cuobjdump():
    if os.environ.get("CUOBJDUMP"):
        return os.environ["CUOBJDUMP"]
    found = shutil.which("cuobjdump")
    if found:
        return found
    cuda_home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    if os.path.exists(os.path.join(cuda_home, "bin", "cuobjdump")):
        return os.path.join(cuda_home, "bin", "cuobjdump")
    # The CUDA build of torch brings one inside triton (.ci/build_cuda.sh's .venv-cuda).
    for venv in [os.path.join(ROOT, ".venv-cuda"), os.path.join(os.path.dirname(sys.executable), "..")]:
        hits = glob.glob(os.path.join(venv, "lib", "python3*", "site-packages", "triton", "backends",
                                      "nvidia", "bin", "cuobjdump"))
        if hits:
            return hits[0]
    return None


SASS_EXPECTED = {
    "mma_kernel": ["HMMA.1688.F32.TF32", "HMMA.16816.F32.BF16", "HMMA.16816.F32 "],
    "ldmatrix_kernel": ["LDSM.16.M88 ", "LDSM.16.M88.2", "LDSM.16.M88.4", "LDSM.16.MT88.2", "LDSM.16.MT88.4"],
    "cp_async_kernel": ["LDGSTS.E.BYPASS.128", "LDGSTS.E.64", "LDGSTS.E ", "LDGDEPBAR",
                        "DEPBAR.LE SB0, 0x2", "DEPBAR.LE SB0, 0x1", "DEPBAR.LE SB0, 0x0"],
}


def test_wrappers_compile_to_tensor_core_sass(tmp_path):
    nvcc = os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc")
    cuobjdump = find_cuobjdump()
    if not os.path.exists(nvcc) or cuobjdump is None:
        pytest.skip("needs nvcc and cuobjdump")
    cubin = str(tmp_path / "kat.cubin")
    build = subprocess.run(
        [nvcc, "-std=c++17", "-arch=sm_90", "-cubin", "-O3", "-Xptxas", "-v",
         "-I", os.path.join(ROOT, "csrc"), "-I", EMULATOR, "-o", cubin,
         os.path.join(EMULATOR, "ptx_known_answers_sass.cu")],
        capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    # No kernel may touch local memory (a stack frame or spills).
    frames = re.findall(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads",
                        build.stderr)
    entries = re.findall(r"Compiling entry function", build.stderr)
    assert len(frames) == len(entries) >= 5 and all(f == ("0", "0", "0") for f in frames), build.stderr
    sass = subprocess.run([cuobjdump, "--dump-sass", cubin], capture_output=True, text=True, timeout=600)
    assert sass.returncode == 0, sass.stderr
    # cuobjdump prints "Function : <mangled name>" before each kernel's code.
    kernels = {}
    for chunk in sass.stdout.split("Function : ")[1:]:
        name, _, code = chunk.partition("\n")
        kernels[name.strip()] = code
    for kernel, instructions in SASS_EXPECTED.items():
        (code,) = [c for n, c in kernels.items() if kernel in n]
        for instruction in instructions:
            assert instruction in code, f"{kernel}: no {instruction.strip()} in its SASS"
        assert not re.search(r"\b(LDL|STL)\b", code), f"{kernel} uses local memory"
    # The emulator's to_tf32 copies how ptxas lowers cvt.rna.tf32.f32 for
    # sm_90: add 0x1000 unless |x| >= inf (or NaN), then clear 13 bits. If a
    # compiler lowers it differently, the model must be derived again.
    (code,) = [c for n, c in kernels.items() if "to_tf32_kernel" in n]
    lowering = ["FSETP.GEU.AND", "+INF", "0x1000", "LOP3.LUT", "0xffffe000"]
    assert all(part in code for part in lowering), "cvt.rna.tf32.f32 lowers differently:\n" + code
