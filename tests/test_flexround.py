"""FlexRound and AdaRound: the properties the method relies on, and the reconstruction loop."""
from __future__ import annotations

import json

import pytest
import torch

from flexround_mcu.cli import main
from flexround_mcu.quant.rounding import AdaRound, FlexRound, RoundToNearest


def weights(seed=0, shape=(8, 6, 3, 3)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * torch.linspace(0.05, 1.0, shape[0]).reshape(-1, 1, 1, 1)


@pytest.mark.parametrize("bits", [8, 4, 3, 2])
@pytest.mark.parametrize("per_channel", [False, True])
def test_step_zero_is_round_to_nearest(bits, per_channel):
    w = weights()
    fr, rtn = FlexRound(w, bits, per_channel), RoundToNearest(w, bits, per_channel)
    assert torch.equal(fr.integers(w), rtn.integers(w))
    assert torch.equal(fr(w), rtn(w))
    assert torch.allclose(fr.scale, rtn.scale, rtol=1e-6, atol=0)


def test_reciprocal_rule_at_step_zero():
    """dL/dlog S2 = -dL/dW_hat * W (in-range weights): proportional to the weight itself."""
    w = weights(1)
    fr = FlexRound(w, 4, per_channel=False)
    c = torch.randn(w.shape, generator=torch.Generator().manual_seed(2))  # L = sum(c * W_hat), so dL/dW_hat = c
    (c * fr(w)).sum().backward()
    in_range = (torch.round(w / fr.scale).abs() <= fr.qmax).float()
    expected = -c * w * in_range
    assert torch.allclose(fr.log_s2.grad, expected, atol=1e-6)
    # numerically too: a small step in log S2 of one in-range weight changes L as the gradient says (the
    # straight-through round makes this the derivative of the unrounded product)
    i = tuple(int(k) for k in torch.nonzero(in_range)[0])
    assert fr.log_s2.grad[i] == pytest.approx(-float(c[i]) * float(w[i]), rel=1e-5)
    # s3 and s4 gradients are sums of the element gradients over their slices
    assert torch.allclose(fr.log_s3.grad.reshape(-1), expected.sum(dim=(1, 2, 3)), atol=1e-5)
    assert torch.allclose(fr.log_s4.grad.reshape(-1), expected.sum(dim=(0, 2, 3)), atol=1e-5)


def test_large_weights_can_move_more_than_one_step():
    w = weights(3)
    fr = FlexRound(w, 4, per_channel=False)
    with torch.no_grad():
        fr.log_s2.add_(-0.4)  # divisor shrinks by e^-0.4: |W/S| grows by 49%, most for the largest |W|
    moved = (fr.integers(w) - RoundToNearest(w, 4, False).integers(w)).abs()
    big = w.abs() > w.abs().median()
    assert moved.max() >= 2
    assert moved[big].float().mean() > moved[~big].float().mean()


def test_adaround_starts_at_the_float_weight_and_hardens_to_floor_or_ceil():
    w = weights(4)
    ar = AdaRound(w, 4, per_channel=True)
    s = ar.scale_like(w)
    inside = (w / s).abs() < ar.qmax - 1
    assert torch.allclose(ar(w)[inside], w[inside], atol=1e-4)
    ar.harden()
    q = ar.integers(w)
    assert torch.all((q == torch.floor(w / s)) | (q == torch.floor(w / s) + 1) | (q.abs() == ar.qmax))
    assert torch.equal(ar(w), q * s)
    assert ar.regularization(0.1) == 0.0  # warm-up: no rounding loss
    ar.soft = True
    assert float(ar.regularization(0.5)) > 0


# ------------------------------------------------------------------------- reconstruction on ResNet-8
@pytest.fixture(scope="module")
def resnet8_parts(tmp_path_factory):
    import os
    from pathlib import Path
    root = Path(os.environ.get("FLEXROUND_MCU_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
    if not (root / "mlperf_tiny/ic/pretrainedResnet.h5").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"shared data missing at {root}")
        pytest.skip("shared data missing")
    os.environ["FLEXROUND_MCU_DATA"] = str(root)
    from flexround_mcu.data import load_dataset
    from flexround_mcu.frontends.zoo_graph import resnet8_to_graph
    from flexround_mcu.zoo import build
    from flexround_mcu.zoo.resnet8 import to_nchw
    model, _ = build("resnet8")
    calib = to_nchw(load_dataset("cifar10-calib", limit=96).x)
    return resnet8_to_graph(model), calib


def _quantize(graph, calib, method, iters, seed=0):
    from flexround_mcu.quant.fakequant import quantize_model
    from flexround_mcu.quant.reconstruct import reconstruct
    qm = quantize_model(graph, [calib], method=method, wbits=3)
    logs = reconstruct(qm, calib, iters=iters, batch_size=16, seed=seed) if iters else []
    return qm, logs


def test_reconstruction_lowers_block_loss_and_is_deterministic(resnet8_parts):
    graph, calib = resnet8_parts
    qm_rtn, _ = _quantize(graph, calib, "rtn", 0)
    qm1, logs1 = _quantize(graph, calib, "flexround", 30)
    qm2, logs2 = _quantize(graph, calib, "flexround", 30)
    assert [l.block for l in logs1] == ["s1_add", "s2_add", "s3_add"]
    # step 0 of FlexRound is RTN: the first block's starting loss is the RTN model's block loss
    from flexround_mcu.quant.graph import GraphModule
    from flexround_mcu.quant.reconstruct import block_loss, partition, run_block
    block = partition(graph)[1]
    with torch.no_grad():
        x = qm_rtn.module(calib, upto="conv0")
        target = GraphModule(graph)(calib, upto=block.output)
        rtn_loss = float(block_loss(run_block(qm_rtn.module, block, x), target))
    assert logs1[0].loss_start == rtn_loss  # exactly: same integers, same grid, same arithmetic
    assert all(l.loss_end < l.loss_start for l in logs1)
    for name in ("s1_conv1", "s2_conv2", "s3_short"):
        assert torch.equal(qm1.weight_integers(name), qm2.weight_integers(name))
    assert not torch.equal(qm1.weight_integers("s2_conv2"), qm_rtn.weight_integers("s2_conv2"))


def test_head_with_last_block_reconstructs_on_the_logits(resnet8_parts):
    """partition(head_with_last_block=True): the last conv block, the pooling and the classifier are one block
    whose output is the logits; the blocks before it are untouched, and that block learns on the logits."""
    from flexround_mcu.quant.fakequant import quantize_model
    from flexround_mcu.quant.reconstruct import partition, reconstruct
    graph, calib = resnet8_parts
    plain, merged = partition(graph), partition(graph, head_with_last_block=True)
    assert [b.nodes for b in merged[:3]] == [b.nodes for b in plain[:3]]  # conv0, s1, s2
    head = merged[3]
    assert head.output == graph.logits and head.input == plain[3].input == "s2_add"
    assert head.nodes == [n for b in plain[3:7] for n in b.nodes]  # s3's convs and add, pool, flatten, fc
    assert [b.nodes for b in merged[4:]] == [b.nodes for b in plain[7:]] == [["softmax"]]
    qm = quantize_model(graph, [calib], method="flexround", wbits=2)
    logs = reconstruct(qm, calib, iters=20, batch_size=16, head_with_last_block=True)
    assert [l.block for l in logs] == ["s1_add", "s2_add", graph.logits]
    assert logs[-1].loss_end < logs[-1].loss_start


def test_adaround_reconstruction_runs_and_hardens(resnet8_parts):
    graph, calib = resnet8_parts
    qm, logs = _quantize(graph, calib, "adaround", 20)
    assert len(logs) == 3
    q = qm.quantizer("s2_conv1")
    assert not q.soft
    assert qm.weight_integers("s2_conv1").abs().max() <= 3


@pytest.mark.parametrize("argv, fragment", [
    (["--iters", "0"], "--iters"),
    (["--calib-size", "5000"], "--calib-size"),
    (["--method", "rtn", "--restarts", "2"], "--restarts is for a learned rounding"),
])
def test_bad_settings(shared_data, capsys, tmp_path, argv, fragment):
    code = main(["export", "resnet8", "--out", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err


def test_restarts_keep_the_one_closest_to_float_on_held_out_images(shared_data, capsys, tmp_path):
    """--restarts 2: two reconstructions, each on its own draw of 64 calibration images, the kept one has the least
    mean KL on the images neither drew; at 2 bits the default is 3 restarts with LSQ activation steps."""
    out = tmp_path / "r2"
    code = main(["export", "resnet8", "--wbits", "4", "--restarts", "2", "--iters", "5", "--calib-size", "64",
                 "--eval-size", "64", "--test-inputs", "2", "--logits-loss", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    rec = json.loads((out / "report.json").read_text())["reconstruction"]
    runs = rec["restarts"]["runs"]
    assert [r["seed"] for r in runs] == [0, 1] and sum(r["chosen"] for r in runs) == 1
    kept = next(r for r in runs if r["chosen"])
    assert kept["selection_kl"] == min(r["selection_kl"] for r in runs) and rec["act_lr"] is None
    assert rec["head_with_last_block"] is True and [b["block"] for b in rec["blocks"]][-1] == "fc"  # --logits-loss
    held = int(rec["restarts"]["on"].split()[0])
    assert 4000 - 2 * 64 <= held < 4000 - 64  # the pool less the union of the two draws

    out2 = tmp_path / "w2"
    code = main(["export", "resnet8", "--wbits", "2", "--iters", "3", "--calib-size", "32", "--eval-size", "32",
                 "--test-inputs", "2", "--out", str(out2)])
    assert code == 0, capsys.readouterr().err
    rec = json.loads((out2 / "report.json").read_text())["reconstruction"]
    assert rec["restarts"]["count"] == 3 and rec["act_lr"] == 1e-3


def test_reconstruction_defaults_by_bits():
    """LSQ, the logits loss and the restarts follow the lowest bits where the options leave them open; --act-lr 0
    turns LSQ off even at 2 bits, and a method that does not learn gets one run."""
    from flexround_mcu.workflow import ExportOptions, reconstruction_defaults

    opt, iters2, restarts = reconstruction_defaults(ExportOptions(model="resnet8", wbits=2), 2)
    assert opt.act_lr == 1e-3 and opt.head_with_last_block is True and restarts == 3
    opt, iters4, restarts = reconstruction_defaults(ExportOptions(model="resnet8", wbits=4), 4)
    assert opt.act_lr is None and restarts == 1 and iters4 < iters2
    opt, _, _ = reconstruction_defaults(ExportOptions(model="resnet8", wbits=2, act_lr=0.0), 2)
    assert opt.act_lr is None
    opt, _, restarts = reconstruction_defaults(ExportOptions(model="resnet8", wbits=2, method="rtn"), 2)
    assert restarts == 1 and opt.act_lr is None
