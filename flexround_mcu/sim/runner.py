"""Run a QGraph on a batch of int8 inputs with the numpy kernels.

TFLM's prepare/invoke split: `Simulator(graph)` prepares every op once (weight matrices, offsets, padding);
`run()` then invokes the ops in order on a batch (N, ...) and can keep every intermediate tensor. A large batch is
cut into chunks that stay in cache and run on a small thread pool (numpy and BLAS release the GIL).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from ..errors import UserError
from ..fixedpoint import Requantizer
from ..ir import OpKind, QGraph
from .convolve import (convolve_s8_prepared, depthwise_conv_s8, fully_connected_s8_prepared, prepare_filter)
from .elementwise import add_prepared
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
            if op.kind == OpKind.CONV_2D:
                prep = prepare_filter(w.data.reshape(w.shape[0], -1), bias, in_offset)
                fn = lambda a: convolve_s8_prepared(a, prep, requant, w.shape[1:3], in_offset, p.stride,
                                                    p.dilation, p.padding)
            elif op.kind == OpKind.DEPTHWISE_CONV_2D:
                fn = lambda a: depthwise_conv_s8(a, w.data, bias, in_offset, out_offset, p.stride, p.dilation,
                                                 p.padding, p.act_min, p.act_max, p.multiplier, p.shift,
                                                 p.depth_multiplier)
            else:
                prep = prepare_filter(w.data, bias, in_offset)
                fn = lambda a: fully_connected_s8_prepared(a, prep, requant)
            return out, (op.inputs[0],), fn
        if op.kind == OpKind.ADD:
            a, b = t[op.inputs[0]], t[op.inputs[1]]
            off1, off2 = -int(a.zero_point[0]), -int(b.zero_point[0])
            rq1 = Requantizer(p.input1_multiplier, p.input1_shift, 0, -128, 127)
            rq2 = Requantizer(p.input2_multiplier, p.input2_shift, 0, -128, 127)
            rq_out = Requantizer(p.output_multiplier, p.output_shift, out_offset, p.act_min, p.act_max)
            fn = lambda u, v: add_prepared(u, v, off1, off2, p.left_shift, rq1, rq2, rq_out)
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

    def run(self, x: np.ndarray, keep_all: bool = False, chunk: int = 16, threads: int | None = None,
            progress: Callable[[int], None] | None = None) -> dict[int, np.ndarray]:
        """Whole batch in chunks; `progress(n)` is called with the number of inputs done in each chunk."""
        x = self.check_input(x)
        starts = list(range(0, len(x), chunk)) or [0]
        threads = threads or min(2, os.cpu_count() or 1)

        def work(s):
            res = self.invoke(x[s:s + chunk], keep_all)
            if progress:
                progress(min(chunk, len(x) - s))
            return res

        # One BLAS thread per worker: OpenBLAS's own threading loses on these narrow (C_out <= 64) products.
        with threadpool_limits(1, user_api="blas"):
            if threads > 1 and len(starts) > 1:
                with ThreadPoolExecutor(threads) as pool:
                    parts = list(pool.map(work, starts))
            else:
                parts = [work(s) for s in starts]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def predict(self, x: np.ndarray, **kw) -> np.ndarray:
        """The first graph output for the whole batch."""
        return self.run(x, **kw)[self.graph.outputs[0]]
