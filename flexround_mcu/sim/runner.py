"""Run a QGraph on a batch of int8 inputs with the numpy kernels.

TFLM's prepare/invoke split: `Simulator(graph)` prepares every op once (weight matrices, offsets, padding;
int4 and int2 filters are packed as the firmware holds them and go through the s4 / s2 twins, which unpack
them here);
`run()` then invokes the ops in order on a batch (N, ...) and can keep every intermediate tensor. A large batch is
cut into chunks that stay in cache and run on a small thread pool (numpy and BLAS release the GIL).
"""
from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from ..errors import UserError
from ..fixedpoint import Requantizer
from ..ir import OpKind, QGraph
from ..packing import PACKED_BITS, pack_filter
from .convolve import (convolve_s8_prepared, depthwise_conv_s8_prepared, fully_connected_s8_prepared,
                       prepare_depthwise_filter, prepare_filter, prepare_packed_depthwise_filter,
                       prepare_packed_filter)
from .elementwise import add_prepared, input_rescale_table
from .pooling import avgpool_s8, max_pool_s8
from .softmax import softmax_s8


class Simulator:
    def __init__(self, graph: QGraph):
        self.graph = graph
        self.steps: list[tuple[int, tuple[int, ...], Callable]] = [self._prepare(op) for op in graph.ops]

    # --------------------------------------------------------------------------------------------- prepare
    def _prepare(self, op):
        g, p = self.graph, op.params
        t = g.tensors
        out = op.outputs[0]
        y = t[out]
        out_offset = int(y.zero_point[0])
        if op.kind in (OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D, OpKind.FULLY_CONNECTED):
            x, w = t[op.inputs[0]], t[op.inputs[1]]
            bias = t[op.inputs[2]].data if op.inputs[2] != -1 else None
            in_offset = -int(x.zero_point[0])
            requant = Requantizer(p.multiplier, p.shift, out_offset, p.act_min, p.act_max)
            if w.dtype in PACKED_BITS:
                # The s4 / s2 twins, on the filter packed as the firmware stores it (the QGraph holds the values
                # unpacked): their prepare step unpacks it here, once; their invoke is the s8 one.
                packed, bits = pack_filter(w.data, w.dtype), PACKED_BITS[w.dtype]
                if op.kind == OpKind.DEPTHWISE_CONV_2D:
                    prep = prepare_packed_depthwise_filter(packed, w.shape, bias, in_offset, bits)
                else:
                    prep = prepare_packed_filter(packed, w.shape, bias, in_offset, bits)
            elif op.kind == OpKind.DEPTHWISE_CONV_2D:
                prep = prepare_depthwise_filter(w.data, bias, in_offset)
            else:
                prep = prepare_filter(w.data.reshape(w.shape[0], -1), bias, in_offset)
            if op.kind == OpKind.CONV_2D:
                fn = lambda a: convolve_s8_prepared(a, prep, requant, w.shape[1:3], in_offset, p.stride,
                                                    p.dilation, p.padding)
            elif op.kind == OpKind.DEPTHWISE_CONV_2D:
                fn = lambda a: depthwise_conv_s8_prepared(a, prep, requant, in_offset, p.stride, p.dilation,
                                                          p.padding, p.depth_multiplier)
            else:
                fn = lambda a: fully_connected_s8_prepared(a, prep, requant)
            return out, (op.inputs[0],), fn
        if op.kind == OpKind.ADD:
            a, b = t[op.inputs[0]], t[op.inputs[1]]
            off1, off2 = -int(a.zero_point[0]), -int(b.zero_point[0])
            table1 = input_rescale_table(off1, p.left_shift, p.input1_multiplier, p.input1_shift)
            table2 = input_rescale_table(off2, p.left_shift, p.input2_multiplier, p.input2_shift)
            rq_out = Requantizer(p.output_multiplier, p.output_shift, out_offset, p.act_min, p.act_max)
            fn = lambda u, v: add_prepared(u, v, table1, table2, rq_out)
            return out, tuple(op.inputs[:2]), fn
        if op.kind == OpKind.AVERAGE_POOL_2D:
            return out, (op.inputs[0],), lambda a: avgpool_s8(a, p.filter, p.stride, p.padding, p.act_min, p.act_max)
        if op.kind == OpKind.MAX_POOL_2D:
            return out, (op.inputs[0],), lambda a: max_pool_s8(a, p.filter, p.stride, p.padding, p.act_min,
                                                                p.act_max)
        if op.kind == OpKind.RESHAPE:
            shape = y.shape[1:]
            return out, (op.inputs[0],), lambda a: a.reshape((a.shape[0],) + shape)
        if op.kind == OpKind.SOFTMAX:
            return out, (op.inputs[0],), lambda a: softmax_s8(a, p)
        raise NotImplementedError(op.kind)  # unreachable: QGraph.validate admits only the kinds above

    # ---------------------------------------------------------------------------------------------- invoke
    def check_input(self, x: np.ndarray, index: int = 0) -> np.ndarray:
        t = self.graph.tensors[self.graph.inputs[index]]
        x = np.asarray(x)
        if x.dtype != np.int8:
            raise UserError(f"input {index} ({t.name}) must be int8, got {x.dtype}")
        if x.ndim != len(t.shape) or tuple(x.shape[1:]) != t.shape[1:]:
            raise UserError(f"input {index} ({t.name}) must have shape (N, {', '.join(map(str, t.shape[1:]))}), "
                            f"got {tuple(x.shape)}")
        return x

    def invoke(self, x: np.ndarray, keep_all: bool = False) -> dict[int, np.ndarray]:
        """One batch, no chunking: returns {tensor index: array} for the outputs (or every activation)."""
        g = self.graph
        values = {g.inputs[0]: x}
        last_use = {}
        for k, (_, ins, _) in enumerate(self.steps):
            for i in ins:
                last_use[i] = k
        for k, (out, ins, fn) in enumerate(self.steps):
            values[out] = fn(*(values[i] for i in ins))
            if not keep_all:  # free what no later op reads
                for i in ins:
                    if last_use[i] == k and i not in g.outputs:
                        values.pop(i, None)
        if keep_all:
            return values
        return {o: values[o] for o in g.outputs}

    def run(self, x: np.ndarray, keep_all: bool = False, chunk: int = 64, workers: int | None = None,
            progress: Callable[[int], None] | None = None) -> dict[int, np.ndarray]:
        """Whole batch in chunks of `chunk` inputs on `workers` cores; `progress(n)` is told of each chunk done.

        Outputs only: the chunks go to forked worker processes (numpy's many short calls hold the GIL often
        enough that threads reach only ~1.3x on two cores; processes ~1.8x). keep_all: threads, because every
        intermediate tensor would otherwise be copied back through a pipe.
        """
        x = self.check_input(x)
        starts = list(range(0, len(x), chunk)) or [0]
        workers = max(1, workers or min(2, os.cpu_count() or 1))
        if len(starts) == 1:
            workers = 1
        # One BLAS thread per worker: OpenBLAS's own threading loses on these narrow (C_out <= 64) products.
        with threadpool_limits(1, user_api="blas"):
            if workers > 1 and not keep_all and "fork" in mp.get_all_start_methods():
                with mp.get_context("fork").Pool(workers, initializer=_worker_init, initargs=(self,)) as pool:
                    parts = []
                    for part in pool.imap(_worker_invoke, (x[s:s + chunk] for s in starts)):
                        parts.append(part)
                        if progress:
                            progress(len(part[self.graph.outputs[0]]))
            else:
                def work(s):
                    res = self.invoke(x[s:s + chunk], keep_all)
                    if progress:
                        progress(min(chunk, len(x) - s))
                    return res

                if workers > 1:
                    with ThreadPoolExecutor(workers) as pool:
                        parts = list(pool.map(work, starts))
                else:
                    parts = [work(s) for s in starts]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def predict(self, x: np.ndarray, **kw) -> np.ndarray:
        """The first graph output for the whole batch."""
        return self.run(x, **kw)[self.graph.outputs[0]]


# Forked workers inherit the prepared Simulator (nothing is pickled but the input chunks and the outputs).
_worker_sim: Simulator | None = None
_worker_limits = None


def _worker_init(sim: Simulator) -> None:
    global _worker_sim, _worker_limits
    _worker_sim = sim
    _worker_limits = threadpool_limits(1, user_api="blas")


def _worker_invoke(x: np.ndarray) -> dict[int, np.ndarray]:
    return _worker_sim.invoke(x)
