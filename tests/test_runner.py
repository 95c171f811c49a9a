"""The graph runner: chunking, worker processes and threads give the same integers as one plain invoke."""
from __future__ import annotations

import numpy as np

from flexround_mcu.frontends.tflite import load_tflite
from flexround_mcu.sim.runner import Simulator


def test_workers_and_chunks_agree_with_one_invoke(shared_data):
    graph = load_tflite(shared_data / "mlperf_tiny/kws/kws_ref_model.tflite")
    sim = Simulator(graph)
    x = np.load(shared_data / "mlperf_tiny/kws/kws01_perf_samples.npz")["features"][:150].reshape(-1, 49, 10, 1)
    reference = sim.invoke(x, keep_all=True)
    out = graph.outputs[0]
    done = []
    by_processes = sim.run(x, chunk=32, workers=2, progress=done.append)
    assert sum(done) == len(x) and len(done) == 5
    assert np.array_equal(by_processes[out], reference[out])
    by_threads = sim.run(x, chunk=32, workers=2, keep_all=True)
    assert set(by_threads) == set(reference)
    for t in reference:
        assert np.array_equal(by_threads[t], reference[t]), t
    serial = sim.run(x, chunk=7, workers=1)
    assert np.array_equal(serial[out], reference[out])
    assert len(np.unique(reference[out].argmax(axis=1))) > 3  # a real model on real data: varied predictions
