"""The fast (_dsp) kernels on the host, bit for bit against the numpy twins and the portable C kernels.

On the host the fast kernels run the C versions of the DSP instructions (frk_dsp_support.h); they are built with
every other kernel file into one shared library (tests/c_kernels.py, host gcc, strict flags) and called with the
data the export computes (flexround_mcu/codegen/kernels.py choose_kernel: the filter in the fast layout,
kernel_bias, the scratch size, ADD's table and input order; the pooling kernels take the portable ones'
arguments). The cases come from tests/dsp_cases.py (seeded numpy RNG, a fixed schedule of categories per kernel:
every stride x padding pattern, 1x1 / 3x3 / 5x5 / 10x4 / dilated / 64-tap filters, odd channel and pixel counts,
batch > 1, offsets at the int8 extremes, per-tensor and per-channel requantization, activation clamps, tie-heavy
cases; for pooling global, 2x2 / 3x3, SAME, 255- and 272-tap windows, C % 4 == 0 and not, exact halves). Only
cases the export would give a fast kernel are run (choose_kernel says fast, so _bounds_reason passed); other
tests check that the export refuses the rest.

The same cases run on the Cortex-M4 and M7 under QEMU, with the real DSP instructions, in
tests/test_dsp_firmware.py.
"""
from __future__ import annotations

import itertools
import os
import shutil

import numpy as np
import pytest

from flexround_mcu.codegen.kernels import (INT4_LANE_SCALE, _bounds_reason, _kernel_bias, choose_kernel,
                                           depthwise_filter_layout, gemm_filter_layout, mve_gemm_filter_layout)
from flexround_mcu.prepare import add_params
from flexround_mcu.sim.elementwise import elementwise_add_s8

from tests import c_kernels as ck
from tests import dsp_cases as dc

POOL_FAST = {"avgpool": "frk_avgpool_s8_dsp", "maxpool": "frk_max_pool_s8_dsp"}
HOST_SEED = 20261201  # the QEMU image uses another seed: the two suites draw different cases
HOST_REPEAT = 2       # each kernel's schedule twice: ~220 conv, ~180 depthwise, ~80 FC, ~80 ADD, ~125 pooling cases


def _gcc() -> str:
    """The host gcc: skip when it is missing, but fail on CI (CI set), as tests/test_c_kernels.py does."""
    path = shutil.which("gcc")
    if path is None:
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail("gcc not found on PATH")
        pytest.skip("gcc not found on PATH")
    return path


@pytest.fixture(scope="module")
def dsp(tmp_path_factory) -> ck.DspKernels:
    return ck.DspKernels(ck.build_dsp_library(tmp_path_factory.mktemp("frk_dsp"), _gcc()))


@pytest.fixture(scope="module")
def dsp_broken(tmp_path_factory) -> ck.DspKernels:
    """The same library with -DFRK_TEST_BREAK_DSP_ROUNDING: the epilogue rounds negative ties toward +inf."""
    return ck.DspKernels(ck.build_dsp_library(tmp_path_factory.mktemp("frk_dsp_broken"), _gcc(),
                                              defines=("FRK_TEST_BREAK_DSP_ROUNDING",), name="libfrk_dsp_broken.so"))


@pytest.fixture(scope="module")
def host_cases() -> list[dc.DspCase]:
    return dc.make_cases(HOST_SEED, repeat=HOST_REPEAT)


# --------------------------------------------------------------------------------------------------- calls
def run_fast(k: ck.DspKernels, case: dc.DspCase) -> np.ndarray:
    a, ch = case.args, case.choice
    if case.is_pool:  # the export's call: the portable arguments, nothing from choose_kernel but the name
        assert ch.name in (POOL_FAST[case.kind], POOL_FAST[case.kind].replace("_dsp", "_mve")), ch.name
        return k._pool(getattr(k.lib, ch.name), **a)
    if case.kind == "add" and ch.table is None:  # the Helium ADD: the portable arguments
        return k.elementwise_add_s8(**a, name=ch.name)
    if case.kind == "add":
        half, other = (a["x2"], a["x1"]) if ch.swap_inputs else (a["x1"], a["x2"])
        rest = {n: v for n, v in a.items() if n not in ("x1", "x2")}
        return k.elementwise_add_dsp(half, other, ch.table, **rest)
    q = dict(input_offset=a["input_offset"], output_offset=a["output_offset"], act_min=a["act_min"],
             act_max=a["act_max"], multiplier=a["multiplier"], shift=a["shift"], scratch_bytes=ch.scratch_bytes,
             decoy_seed=case.decoy_seed)
    suffix = ch.name[ch.name.rindex("_"):]  # _dsp or _mve
    if case.family == "fc":
        return k.fully_connected_dsp(case.bits, a["x"], ch.filter_values, a["w"].shape[0], ch.kernel_bias, **q,
                                     suffix=suffix)
    conv = dict(q, stride=a["stride"], dilation=a["dilation"], padding=a["padding"])
    if case.family == "dw":
        return k.depthwise_conv_dsp(case.bits, a["x"], ch.filter_values, a["w"].shape, ch.kernel_bias, **conv,
                                    suffix=suffix)
    return k.convolve_dsp(case.bits, a["x"], ch.filter_values, a["w"].shape, ch.kernel_bias, **conv, suffix=suffix)


def run_portable(k: ck.Kernels, case: dc.DspCase) -> np.ndarray:
    name = {"conv": "convolve", "dw": "depthwise_conv", "fc": "fully_connected"}.get(case.family)
    if case.kind == "add":
        return k.elementwise_add_s8(**case.args)
    if case.is_pool:
        return {"avgpool": k.avgpool_s8, "maxpool": k.max_pool_s8}[case.kind](**case.args)
    return getattr(k, f"{name}_s{case.bits}")(**case.twin_args(), decoy_seed=case.decoy_seed)


def first_difference(got: np.ndarray, want: np.ndarray) -> str:
    i = int(np.flatnonzero(got.reshape(-1) != want.reshape(-1))[0])
    return f"{int((got != want).sum())} of {want.size} differ, first at {i}: {int(got.reshape(-1)[i])} != " \
           f"{int(want.reshape(-1)[i])}"


def mismatches(k: ck.DspKernels, cases) -> list[str]:
    out = []
    for case in cases:
        got = run_fast(k, case)
        assert got.shape == case.expected.shape, case.name
        if not np.array_equal(got, case.expected):
            out.append(f"{case.name}: {first_difference(got, case.expected)}")
    return out


# --------------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("kind", dc.KINDS)
def test_fast_kernel_matches_twin_and_portable(dsp, host_cases, kind):
    """Every case: fast kernel == numpy twin == portable C kernel, every output byte (guarded buffers, two
    pre-fills, guarded scratch, decoy per-channel pairs after a per-tensor one)."""
    cases = [c for c in host_cases if c.kind == kind]
    assert len(cases) >= 70
    bad = mismatches(dsp, cases)
    assert not bad, f"{len(bad)} of {len(cases)} {kind} cases differ from the twin:\n" + "\n".join(bad[:20])
    for case in cases:
        portable = run_portable(dsp, case)
        assert np.array_equal(portable, case.expected), f"{case.name}: the portable kernel differs from the twin"


def test_cases_cover_the_issue_list(host_cases):
    """The schedule's promises, checked on the drawn cases (the QEMU image's cases are checked the same way)."""
    assert dc.coverage_problems(host_cases) == []


def test_choice_is_the_layout_functions(host_cases):
    """choose_kernel's data is gemm_filter_layout / depthwise_filter_layout / _kernel_bias of the filter, within
    bounds (_bounds_reason says ''), with the documented scratch sizes."""
    for case in host_cases:
        if case.kind == "add" or case.is_pool:
            continue
        a, ch = case.args, case.choice
        dtype = {8: "int8", 4: "int4", 2: "int2"}[case.bits]
        w = a["w"]
        cout = w.shape[-1] if case.family == "dw" else w.shape[0]
        rows = w.reshape(-1, cout).T if case.family == "dw" else w.reshape(cout, -1)
        bias = np.zeros(cout, np.int64) if a["bias"] is None else a["bias"].astype(np.int64)
        assert _bounds_reason(rows, bias, a["input_offset"], np.atleast_1d(a["shift"]), dtype) == "", case.name
        scale = INT4_LANE_SCALE if case.family == "dw" and case.bits == 4 else 1  # the int4 depthwise seed (6.2)
        np.testing.assert_array_equal(ch.kernel_bias, scale * _kernel_bias(rows, bias, a["input_offset"]))
        if case.family == "dw":
            np.testing.assert_array_equal(ch.filter_values, depthwise_filter_layout(w, dtype))
            assert ch.scratch_bytes == cout
        else:
            np.testing.assert_array_equal(ch.filter_values, gemm_filter_layout(rows, dtype))
            group = dc.GROUP[case.bits]
            assert ch.scratch_bytes == 2 * (-(-rows.shape[1] // group) * group)
        assert ch.name == {"conv": "frk_convolve", "dw": "frk_depthwise_conv",
                           "fc": "frk_fully_connected"}[case.family] + f"_s{case.bits}_dsp"


def test_deliberately_wrong_rounding_is_caught(dsp_broken, host_cases):
    """-DFRK_TEST_BREAK_DSP_ROUNDING (negative ties of the epilogue's rounding divide toward +inf): every kernel
    that uses the epilogue must show mismatches on these cases."""
    for kind in dc.EPILOGUE_KINDS:
        cases = [c for c in host_cases if c.kind == kind]
        bad = mismatches(dsp_broken, cases)
        assert bad, f"the broken rounding went unnoticed by all {len(cases)} {kind} cases"
        assert any("/ties" in b for b in bad)


def test_epilogue_matches_requantize_on_whole_ranges(tmp_path):
    """frk__output_stage_dsp against the twin's requantization (fixedpoint.Requantizer: requantize + offset +
    clamp) for every accumulator in [-3000, 3000] and random ones up to the export's bound |acc * 2^left| < 2^30,
    every shift in [-31, 30], edge and random multipliers, offsets at the extremes, clamps; spot checks against
    the portable C frk_requantize. The broken build (-DFRK_TEST_BREAK_DSP_ROUNDING) must differ, on ties only."""
    from flexround_mcu.fixedpoint import Requantizer

    gcc = _gcc()
    good = ck.build_dsp_internals(tmp_path, gcc)
    broken = ck.build_dsp_internals(tmp_path, gcc, defines=("FRK_TEST_BREAK_DSP_ROUNDING",))
    frk = ck.Kernels(ck.build_shared_library(tmp_path, gcc))
    rng = np.random.default_rng(8)
    small = np.arange(-3000, 3001)
    broken_differs = 0
    for shift in range(-31, 31):
        left = max(shift, 0)
        bound = (1 << 30 >> left) - 1
        accs = np.concatenate([small[np.abs(small) <= bound], rng.integers(-bound, bound + 1, 20000),
                               [bound, -bound]])
        for m in (0, 1 << 30, (1 << 30) + 1, 1518500250, 1610612736, 2**31 - 1, int(rng.integers(1 << 30, 2**31))):
            for offset, lo, hi in ((0, -128, 127), (-128, -128, 127), (127, -100, 127), (5, -20, 90)):
                want = Requantizer(m, shift, offset, lo, hi)(accs.astype(np.int64)[:, None]).reshape(-1)
                got = good.output_stage(accs, m, shift, offset, lo, hi)
                np.testing.assert_array_equal(got, want, err_msg=f"M={m} shift={shift} offset={offset}")
                if offset == 0:
                    for i in rng.integers(0, accs.size, 16):
                        a = int(accs[i])
                        assert got[i] == max(lo, min(hi, frk.requantize(a, m, shift))), (a, m, shift)
                if shift < 0:
                    bad = broken.output_stage(accs, m, shift, offset, lo, hi) != got
                    broken_differs += int(bad.sum())
                    # only where the portable rounding divide has a negative tie
                    x = np.array([frk.doubling_high_mult(int(a) << left, m) for a in accs[bad][:20]], np.int64)
                    assert np.all((x < 0) & ((x & ((1 << -shift) - 1)) == 1 << (-shift - 1))), (m, shift)
    assert broken_differs > 0


# ----------------------------------------------------------------------------------------- sweeps (host only)
def _conv_choice(kind, args):
    graph, op = dc.one_op_graph(kind, args, dc.conv_output_shape(kind, args))
    return choose_kernel(graph, op, "dsp")


@pytest.mark.parametrize("kind", ["conv_s8", "conv_s4", "dw_s8", "dw_s4"])
def test_every_padding_and_stride(dsp, kind):
    """All 81 paddings (top, left, bottom, right) in 0..2 x the 4 stride pairs, with and without dilation."""
    rng = np.random.default_rng(11)
    bits = 4 if kind.endswith("s4") else 8
    wmax = 7 if bits == 4 else 127
    cin = 3 if kind.startswith("conv") else 8
    cout = 5 if kind.startswith("conv") else cin
    x = rng.integers(-128, 128, (2, 5, 6, cin)).astype(np.int8)
    wshape = (cout, 3, 2, cin) if kind.startswith("conv") else (1, 3, 2, cout)
    w = rng.integers(-wmax, wmax + 1, wshape).astype(np.int8)
    bias = rng.integers(-2**14, 2**14, cout).astype(np.int32)
    m = rng.integers(2**30, 2**31, cout).astype(np.int32)
    s = rng.integers(-9, -5, cout).astype(np.int32) if bits == 8 else rng.integers(-6, -2, cout).astype(np.int32)
    bad = []
    for pad in itertools.product(range(3), repeat=4):
        for stride in dc.STRIDES:
            for dilation in ((1, 1), (2, 1)):
                args = dict(x=x, w=w, bias=bias, input_offset=128, output_offset=-7, stride=stride,
                            dilation=dilation, padding=pad, act_min=-128, act_max=127, multiplier=m, shift=s)
                if kind.startswith("dw"):
                    args["depth_multiplier"] = 1
                ch = _conv_choice(kind, args)
                assert ch.fast, ch.reason
                case = dc.DspCase(0, kind, "sweep", args, np.empty(0, np.int8), ch)
                case.expected = dc.twin(kind)(**case.twin_args())
                got = run_fast(dsp, case)
                if not np.array_equal(got, case.expected):
                    bad.append(f"pad {pad} stride {stride} dilation {dilation}: "
                               f"{first_difference(got, case.expected)}")
    assert not bad, "\n".join(bad[:20])


@pytest.mark.parametrize("swap", [False, True])
def test_add_every_input_pair(dsp, swap):
    """All 256 x 256 input pairs for TFLM parameters, with the half-scale input first or second in the graph."""
    q = np.arange(-128, 128, dtype=np.int8)
    x1, x2 = np.repeat(q, 256), np.tile(q, 256)
    s1, s2 = (0.05, 0.0173) if not swap else (0.0173, 0.05)
    args = dict(x1=x1, x2=x2, input1_offset=-17, input2_offset=128, output_offset=-128, act_min=-128, act_max=127,
                **add_params(s1, s2, 0.061))
    graph, op = dc.add_graph(args)
    ch = choose_kernel(graph, op, "dsp")
    assert ch.fast and ch.swap_inputs == swap
    case = dc.DspCase(0, "add", "pairs", args, elementwise_add_s8(**args), ch)
    got = run_fast(dsp, case)
    assert np.array_equal(got, case.expected), first_difference(got, case.expected)
    for act in ((-100, 127), (-128, 50), (3, 9)):  # the SSAT path (act_max 127) and the two-sided clamp
        a = dict(args, act_min=act[0], act_max=act[1])
        c = dc.DspCase(0, "add", "pairs", a, elementwise_add_s8(**a), choose_kernel(*dc.add_graph(a), "dsp"))
        got = run_fast(dsp, c)
        assert np.array_equal(got, c.expected), (act, first_difference(got, c.expected))


# ------------------------------------------------------------------------------------------------ pooling
def test_pool_choice_is_the_fast_kernel_with_no_data(host_cases):
    """choose_kernel on a pooling op of a dsp export: the _dsp kernel, fast, with no export-time data (the kernel
    takes the portable one's arguments and falls back to it itself); a portable export keeps the portable one."""
    pools = [c for c in host_cases if c.is_pool]
    assert pools
    for case in pools:
        ch = case.choice
        assert (ch.name, ch.fast, ch.reason) == (POOL_FAST[case.kind], True, ""), case.name
        assert ch.filter_values is None and ch.kernel_bias is None and ch.table is None and ch.scratch_bytes == 0
        assert not ch.swap_inputs
        graph, op = dc.pool_graph(case.kind, case.args)
        assert choose_kernel(graph, op, "portable").name == POOL_FAST[case.kind][:-4]


@pytest.mark.parametrize("kind", dc.POOL_KINDS)
def test_pool_every_padding_and_stride(dsp, kind):
    """A 3x3 window: all 81 paddings (top, left, bottom, right) in 0..2 x the 4 stride pairs, at C = 8 (the
    four-channel path) and C = 6 (the fallback), with and without a clamp: fast == twin == portable."""
    rng = np.random.default_rng(12)
    fast_fn = getattr(dsp, POOL_FAST[kind][4:])
    portable_fn = dsp.avgpool_s8 if kind == "avgpool" else dsp.max_pool_s8
    bad, n = [], 0
    for c in (8, 6):
        x = rng.integers(-128, 128, (2, 5, 6, c)).astype(np.int8)
        for pad in itertools.product(range(3), repeat=4):
            for stride, act in zip(dc.STRIDES, ((-128, 127), (-100, 120), (-128, 127), (-5, 40))):
                args = dict(x=x, filter_hw=(3, 3), stride=stride, padding=pad, act_min=act[0], act_max=act[1])
                want = dc.twin(kind)(**args)
                got = fast_fn(**args)
                n += 1
                if not np.array_equal(got, want):
                    bad.append(f"C {c} pad {pad} stride {stride} act {act}: {first_difference(got, want)}")
                elif not np.array_equal(portable_fn(**args), want):
                    bad.append(f"C {c} pad {pad} stride {stride} act {act}: the portable kernel differs")
    assert n == 2 * 81 * 4
    assert not bad, f"{len(bad)} of {n}:\n" + "\n".join(bad[:20])


def test_pool_wrong_expected_output_is_caught(dsp, host_cases):
    """The comparison is not idle for pooling: a case whose expected output is off by one in one element (on the
    four-channel path and on the fallback, for both kernels) is reported, with that element."""
    for kind in dc.POOL_KINDS:
        cases = [c for c in host_cases if c.kind == kind]
        assert not mismatches(dsp, cases)
        picks = [next(c for c in cases if c.args["x"].shape[3] % 4 == 0 and c.expected.size > 8),
                 next(c for c in cases if c.args["x"].shape[3] % 4 and c.expected.size > 8)]
        for case in picks:
            at = case.expected.size // 2 + 1
            wrong = case.expected.copy().reshape(-1)
            wrong[at] += 1 if wrong[at] < 127 else -1
            perturbed = dc.DspCase(case.index, case.kind, case.label, case.args, wrong.reshape(case.expected.shape),
                                   case.choice, case.decoy_seed)
            bad = mismatches(dsp, [case, perturbed])
            assert bad == [f"{case.name}: 1 of {case.expected.size} differ, first at {at}: "
                           f"{int(case.expected.reshape(-1)[at])} != {int(wrong[at])}"], bad


def _wrong_average(args, rule):
    """The average under a plausible bug (`rule`), from the window sums and counts of dsp_cases.pool_windows."""
    sums, counts = dc.pool_windows(args)
    kh, kw = args["filter_hw"]
    cnt = np.broadcast_to(counts[None, :, :, None], sums.shape)
    if rule == "halfword sums":  # the four-channel path without its 255-tap limit: int16 lanes wrap
        sums = (sums + 2**15) % 2**16 - 2**15
    if rule == "window size":    # dividing by the window's size instead of the taps inside the input
        cnt = np.full(sums.shape, kh * kw)
    if rule == "ties up":        # floor(mean + 1/2): negative ties toward +inf
        y = (2 * sums + cnt) // (2 * cnt)
    elif rule == "truncate":
        y = np.sign(sums) * (np.abs(sums) // cnt)
    else:
        y = np.sign(sums) * ((np.abs(sums) + cnt // 2) // cnt)
    lo, hi = (-128, 127) if rule == "no clamp" else (args["act_min"], args["act_max"])
    return np.clip(y, lo, hi).astype(np.int8)


def _wrong_maximum(args, rule):
    x = args["x"]
    if rule == "unsigned lanes":  # USUB8 / an unsigned compare instead of SSUB8: 0xFF (-1) wins over 0..127
        u = dc.twin("maxpool")(**dict(args, x=x.view(np.uint8).astype(np.int16), act_min=0, act_max=255))
        return np.clip(u.astype(np.int16).astype(np.uint8).view(np.int8), args["act_min"], args["act_max"])
    if rule == "start at 0":  # a running maximum starting at 0 instead of -128
        y = np.maximum(dc.twin("maxpool")(**dict(args, act_min=-128, act_max=127)), 0)
        return np.clip(y, args["act_min"], args["act_max"]).astype(np.int8)
    if rule == "padding is 0":  # padding taking part as the value 0
        pt, pl, pb, pr = args["padding"]
        xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
        return dc.twin("maxpool")(**dict(args, x=xp, padding=(0, 0, 0, 0)))
    assert rule == "no clamp"
    return dc.twin("maxpool")(**dict(args, act_min=-128, act_max=127))


@pytest.mark.parametrize("kind, rule", [("avgpool", r) for r in ("halfword sums", "window size", "ties up",
                                                                  "truncate", "no clamp")] +
                         [("maxpool", r) for r in ("unsigned lanes", "start at 0", "padding is 0", "no clamp")])
def test_pool_cases_catch_plausible_bugs(dsp, host_cases, kind, rule):
    """Each bug modelled in numpy gives outputs that differ from the kernels' on some cases where the four-channel
    path runs (and, for the ones the fallback could have, on the fallback too): the cases can tell."""
    wrong = _wrong_average if kind == "avgpool" else _wrong_maximum
    cases = [c for c in host_cases if c.kind == kind]
    caught = {}
    for case in cases:
        got = run_fast(dsp, case)
        assert np.array_equal(got, case.expected), case.name
        if not np.array_equal(got, wrong(case.args, rule)):
            path = "fast" if case.args["x"].shape[3] % 4 == 0 and (
                kind == "maxpool" or np.prod(case.args["filter_hw"]) <= 255) else "fallback"
            caught.setdefault(path, []).append(case.label)
    # halfword sums: the sums beyond int16 are where the kernel falls back for its tap limit (C % 4 == 0, more than
    # 255 taps), and these are the cases that would catch a four-channel path without the limit; an unsigned lane
    # compare is a bug of the four-channel path only
    want = {"halfword sums": {"fallback"}, "unsigned lanes": {"fast"}}.get(rule, {"fast", "fallback"})
    assert want <= set(caught), (rule, {k: len(v) for k, v in caught.items()})
    if rule == "ties up":
        assert "ties" in caught["fast"] and "ties" in caught["fallback"]


# -------------------------------------------------------------------------------------- what the export refuses
def _fc_args(w, bias, shift=-8, input_offset=128):
    cout = w.shape[0]
    x = np.full((1, w.shape[1]), -128, np.int8)
    return dict(x=x, w=w, bias=bias, input_offset=input_offset, output_offset=0, act_min=-128, act_max=127,
                multiplier=np.full(cout, 2**30, np.int32), shift=np.full(cout, shift, np.int32))


def test_bounds_reason_rejects_huge_weights_and_bias():
    """_bounds_reason (and so choose_kernel) refuses what the fast kernels cannot compute exactly."""
    w = np.full((2, 40000), 127, np.int8)  # 255 * sum|w| = 1.3e9 >= 2^30
    rows = w.astype(np.int64)
    zero = np.zeros(2, np.int64)
    assert "2^30" in _bounds_reason(rows, zero, 128, np.array([-20]), "int8")
    assert _bounds_reason(rows[:, :30000], zero, 128, np.array([-20]), "int8") == ""
    assert "2^30" in _bounds_reason(rows[:, :30000], zero, 128, np.array([1]), "int8")  # x 2^left
    huge_bias = np.array([2**30, 0], np.int64)
    assert "2^30" in _bounds_reason(rows[:, :10], huge_bias, 0, np.array([-5]), "int8")
    assert "2^30" in _bounds_reason(rows[:, :10], np.array([-2**30 + 100, 0]), 0, np.array([-5]), "int8")
    w4 = np.full((1, 600), 7, np.int64)  # 4096 * 128 * sum|w| >= 2^31 while 255 * sum|w| < 2^30
    assert "4096*128" in _bounds_reason(w4, np.zeros(1, np.int64), 0, np.array([-20]), "int4")
    assert _bounds_reason(w4[:, :580], np.zeros(1, np.int64), 0, np.array([-20]), "int4") == ""  # 4060*128*4096 < 2^31
    assert _bounds_reason(w4, np.zeros(1, np.int64), 0, np.array([-20]), "int8") == ""
    # 2-bit rows use -2 too, so a K = 576 row (ResNet-8's 3x3x64) can reach sum|w| = 1152: 16384*128*sum|w| >= 2^31
    w2 = np.full((1, 576), -2, np.int64)
    assert "16384*128" in _bounds_reason(w2, np.zeros(1, np.int64), 0, np.array([-20]), "int2")
    assert _bounds_reason(w2[:, :511], np.zeros(1, np.int64), 0, np.array([-20]), "int2") == ""  # 1022 < 1024
    # through the export's choice: the portable kernel, with the reason
    for kind, w_, bias in (("fc_s8", np.full((2, 40000), 127, np.int8), None),
                           ("fc_s8", np.ones((2, 8), np.int8), np.array([2**30, 5], np.int32)),
                           ("fc_s4", np.full((1, 600), 7, np.int8), None),
                           ("fc_s2", np.full((1, 576), -2, np.int8), None)):
        args = _fc_args(w_, bias)
        graph, op = dc.one_op_graph(kind, args, (1, w_.shape[0]))
        ch = choose_kernel(graph, op, "dsp")
        assert not ch.fast and ch.reason and ch.name == f"frk_fully_connected_s{kind[-1]}"


def test_the_bound_matters(dsp):
    """On a layer _bounds_reason refuses, forcing the fast kernel gives wrong outputs: the check is not idle."""
    w = np.ones((2, 8), np.int8)
    bias = np.array([2**30 - 1, -(2**30) + 1], np.int32)  # |acc| > 2^30: 2 * acc overflows int32 in the epilogue
    args = dict(_fc_args(w, bias, shift=-24, input_offset=0), x=np.full((1, 8), 100, np.int8))
    rows = w.astype(np.int64)
    assert _bounds_reason(rows, bias.astype(np.int64), 0, args["shift"], "int8")
    want = dc.twin("fc_s8")(**args)
    got = dsp.fully_connected_dsp(8, args["x"], gemm_filter_layout(rows, "int8"), 2,
                                  _kernel_bias(rows, bias.astype(np.int64), 0), 0, 0, -128, 127, args["multiplier"],
                                  args["shift"], 2 * 8)
    assert not np.array_equal(got, want), (got, want)


def test_depthwise_layers_the_fast_kernel_does_not_cover():
    rng = np.random.default_rng(5)

    def choice(c, dm, kh, kw):
        args = dict(x=rng.integers(-128, 128, (1, 9, 9, c)).astype(np.int8),
                    w=rng.integers(-5, 6, (1, kh, kw, c * dm)).astype(np.int8), bias=None, input_offset=3,
                    output_offset=0, stride=(1, 1), dilation=(1, 1), padding=(0, 0, 0, 0), act_min=-128,
                    act_max=127, multiplier=np.array([2**30], np.int32), shift=np.array([-6], np.int32),
                    depth_multiplier=dm)
        return _conv_choice("dw_s8", args)

    assert choice(8, 1, 3, 3).fast
    assert not choice(6, 1, 3, 3).fast and "multiple of 4" in choice(6, 1, 3, 3).reason
    assert not choice(4, 2, 3, 3).fast and "multiplier" in choice(4, 2, 3, 3).reason
    assert choice(4, 1, 8, 8).fast and not choice(4, 1, 9, 8).fast  # 64 taps at most


def test_add_parameters_the_export_runs_portable():
    """left_shift != 20, no input at the real multiplier 0.5, or an output shift the fast epilogue cannot fold:
    the export picks frk_elementwise_add_s8 (with a reason); the fast kernel is never called on them."""
    cases = dc.make_portable_add_cases(HOST_SEED)
    assert len(cases) >= 12
    for case in cases:
        assert not case.choice.fast and case.choice.name == "frk_elementwise_add_s8" and case.choice.reason, case.name
    labels = {c.label for c in cases}
    assert labels == {"left-shift", "out-shift", "no-half"}


def test_add_tie_cases_have_negative_ties(host_cases):
    """The epilogue switch does not reach ADD (frk_elementwise_add_dsp.c has its own rounding divide), and random
    ADD data almost never hits a tie of its output RDBPOT (e is ~19): the "ties" cases (equal input scales, output
    scale twice theirs) must hold many unclamped negative ties, where rounding them toward +inf would change the
    output. This checks the data, through the twin's fixed point (no kernel involved)."""
    from flexround_mcu.fixedpoint import doubling_high_mult, requantize, rounding_divide_by_pot

    ties = [c for c in host_cases if c.kind == "add" and c.label == "ties"]
    assert ties
    for case in ties:
        a = case.args
        e = -a["output_shift"]
        caught = 0
        for q1, q2 in zip(a["x1"].tolist(), a["x2"].tolist()):
            s = requantize((q1 + a["input1_offset"]) << 20, a["input1_multiplier"], a["input1_shift"]) + \
                requantize((q2 + a["input2_offset"]) << 20, a["input2_multiplier"], a["input2_shift"])
            x = doubling_high_mult(s, a["output_multiplier"])
            right = min(max(rounding_divide_by_pot(x, e) + a["output_offset"], a["act_min"]), a["act_max"])
            wrong = min(max(((x + (1 << (e - 1))) >> e) + a["output_offset"], a["act_min"]), a["act_max"])
            caught += right != wrong
        assert caught >= min(20, a["x1"].size // 8), (case.name, caught)


def test_add_fast_path_with_a_left_shift_on_the_other_input(dsp):
    """Minimal case: one element, x1 = -120, x2 = 127, zero points -128 (offsets 128), input1 at 0.5 (2^30, 0),
    input2 at (2^31 - 1, shift 2) (real ~4.0: TFLM never makes it, but QGraph.validate and _add_choice accept it,
    and requantize((127 + 128) << 20, M, 2) = 1069547520 fits int32, so the portable kernel and the twin agree):
    2 * (a + b) = 8 * 2^20 + 2 * 1069547520 >= 2^31 wraps in table + x1 * 2^20, and the fast kernel gives -128
    where the twin gives 127."""
    args = dict(x1=np.array([-120], np.int8), x2=np.array([127], np.int8), input1_offset=128, input2_offset=128,
                output_offset=0, left_shift=20, input1_multiplier=1 << 30, input1_shift=0,
                input2_multiplier=2**31 - 1, input2_shift=2, output_multiplier=1 << 30, output_shift=-22,
                act_min=-128, act_max=127)
    ch = choose_kernel(*dc.add_graph(args), "dsp")
    want = elementwise_add_s8(**args)
    assert np.array_equal(dsp.elementwise_add_s8(**args), want)  # the portable kernel agrees with the twin
    # the export refuses the fast kernel here (the doubled sum can reach 2^31) and keeps the portable one
    assert not ch.fast and "2^31" in ch.reason
    forced = choose_kernel(*dc.add_graph(dict(args, input2_shift=-1)), "dsp")
    assert forced.fast  # the same ADD with a TFLM-like (right) shift takes the fast kernel


# ----------------------------------------------------------------------------------------------- Helium (mve)
MVE_KINDS = tuple(k for k in dc.KINDS if k not in dc.S2_KINDS)  # every other kind has an _mve kernel


@pytest.fixture(scope="module")
def mve_host_cases() -> list[dc.DspCase]:
    return dc.make_cases(HOST_SEED + 1, kinds=MVE_KINDS, kernels="mve")


def test_mve_kernels_match_twin_on_the_host(dsp, mve_host_cases):
    """The _mve kernels' C versions (the layouts, im2col, pixel blocks and tails of frk_convolve_mve.c) with
    the export's mve data: every output byte equals the numpy twin. Under QEMU on the M55 the same kernels run
    the MVE code (tests/test_dsp_firmware.py)."""
    assert {c.choice.name for c in mve_host_cases} == {f"frk_{f}_s{b}_mve" for f in ("convolve", "fully_connected")
                                                        for b in (8, 4)} | {"frk_depthwise_conv_s4_mve",
                                                                            "frk_depthwise_conv_s8_mve",
                                                                            "frk_elementwise_add_s8_mve",
                                                                            "frk_avgpool_s8_mve",
                                                                            "frk_max_pool_s8_mve"}
    bad = mismatches(dsp, mve_host_cases)
    assert not bad, f"{len(bad)} of {len(mve_host_cases)} cases differ from the twin:\n" + "\n".join(bad[:20])


def test_mve_choice_is_its_layout():
    """choose_kernel(..., "mve") on conv / FC: the mve layout, 16 * kernel_bias for int4, 3 columns of scratch;
    depthwise, ADD and pooling take the dsp kernels."""
    rng = np.random.default_rng(3)
    for bits, k in ((8, 27), (8, 48), (4, 27), (4, 64), (4, 144)):
        w = rng.integers(-8, 8, (3, k)).astype(np.int8)
        args = _fc_args(w, rng.integers(-1000, 1000, 3).astype(np.int32))
        graph, op = dc.one_op_graph(f"fc_s{bits}", args, (1, 3))
        ch = choose_kernel(graph, op, "mve")
        dtype = "int8" if bits == 8 else "int4"
        assert ch.name == f"frk_fully_connected_s{bits}_mve" and ch.fast
        np.testing.assert_array_equal(ch.filter_values, mve_gemm_filter_layout(w.astype(np.int64), dtype))
        assert ch.scratch_bytes == 3 * ((k + 15) // 16 * 16)
        kb = _kernel_bias(w.astype(np.int64), args["bias"].astype(np.int64), args["input_offset"])
        np.testing.assert_array_equal(ch.kernel_bias, (16 if bits == 4 else 1) * kb)
    rows = np.stack([np.arange(-8, 40) % 16 - 8, -np.arange(48) % 16 - 8])  # two rows of 48 int4 values
    layout = mve_gemm_filter_layout(rows, "int4")
    assert layout.size == 2 * 32  # per row 16 bytes of 32 packed values and a tail of 16, interleaved by 16 bytes
    for r in range(2):
        b = layout[16 * r:16 * (r + 1)].astype(np.int16)
        np.testing.assert_array_equal(((b & 15) ^ 8) - 8, rows[r, :16])  # low nibbles: k 0..15
        np.testing.assert_array_equal(((b >> 4) ^ 8) - 8, rows[r, 16:32])  # high nibbles: k 16..31
        tail = layout[32 + 16 * r:32 + 16 * (r + 1)].view(np.int8)
        np.testing.assert_array_equal(tail, 16 * rows[r, 32:])  # k 32..47 as int8 bytes 16 * w
