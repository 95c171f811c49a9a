"""Block-wise output reconstruction (BRECQ): learn each block's rounding so its output matches the float model.

Blocks are the stretches of the graph between points where a single tensor is alive: for a ResNet, each residual
block (convs, shortcut, add and ReLU) is one block and the stem, pooling and head are single layers. For each
block that holds a learnable weight quantizer, in order:
  inputs  = the block's input in the quantized model so far (earlier blocks hardened, activations fake-quantized),
  targets = the block's output in the float model, on the same calibration images,
  loss    = squared error summed over channels, averaged over batch and positions (+ the method's regularizer),
  Adam with a cosine decay to 0, random batches from the cached calibration tensors.
Activations stay fake-quantized at the integer graph's points throughout, so what is learned is what runs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .fakequant import QuantizedModel, set_activation_scale, set_double_rounding
from .graph import FloatGraph, GraphModule


def keep_freed_memory() -> dict | None:
    """Make glibc keep freed memory in the process (M_TRIM_THRESHOLD 1 GiB, M_MMAP_THRESHOLD 256 MiB).

    Reconstruction frees and reallocates the same large buffers every step; with glibc's defaults they go back
    to the kernel each time, and mapping and zeroing them again cost half the CPU time (0.36 s against 0.15 s per
    FlexRound iteration, measured by benchmarks/ptq_resnet8.py). Changes no result. None where not glibc."""
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(-1, 1 << 30) == 1 and libc.mallopt(-3, 1 << 28) == 1  # M_TRIM_, M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return None
    return {"M_TRIM_THRESHOLD": 1 << 30, "M_MMAP_THRESHOLD": 1 << 28} if ok else None


@dataclass
class Block:
    nodes: list[str]
    input: str

    @property
    def output(self) -> str:
        return self.nodes[-1]


def partition(graph: FloatGraph, head_with_last_block: bool = False) -> list[Block]:
    """Cut the node list wherever exactly one value is still needed by later nodes (or is the output).

    head_with_last_block: the blocks from the last one with a conv before the logits through the logits (for a
    CNN: its last conv block, the pooling and the classifier) are one block, so that block learns to match the
    float logits rather than its own output position by position: an error that global pooling averages away
    costs nothing there, and the classifier learns against the errors it is actually given."""
    last_use = {}
    for i, n in enumerate(graph.nodes):
        for x in n.inputs:
            last_use[x] = i
    blocks, current, block_input = [], [], "input"
    produced = {"input"}
    for i, n in enumerate(graph.nodes):
        current.append(n.name)
        produced.add(n.name)
        alive = {x for x in produced if last_use.get(x, -1) > i or x == graph.output}
        if alive <= {n.name}:
            blocks.append(Block(current, block_input))
            current, block_input = [], n.name
    if current:
        blocks.append(Block(current, block_input))
    if head_with_last_block:
        blocks = _merge_head(graph, blocks)
    return blocks


def _merge_head(graph: FloatGraph, blocks: list[Block]) -> list[Block]:
    head = next((i for i, b in enumerate(blocks) if graph.logits in b.nodes), None)
    if head is None:
        return blocks
    convs = [i for i in range(head) if any(graph.node(n).kind == "conv" for n in blocks[i].nodes)]
    if not convs:
        return blocks
    first = convs[-1]
    merged = Block([n for b in blocks[first:head + 1] for n in b.nodes], blocks[first].input)
    if merged.output != graph.logits:  # the logits node is not its block's last: leave the partition alone
        return blocks
    return blocks[:first] + [merged] + blocks[head + 1:]


def run_block(module: GraphModule, block: Block, x: torch.Tensor) -> torch.Tensor:
    values = {block.input: x}
    for name in block.nodes:
        n = module.graph.node(name)
        y = module.run_node(n, [values[i] for i in n.inputs])
        if name in module.act_quant:
            y = module.act_quant[name](y)
        values[name] = y
    return values[block.output]


def block_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((out - target) ** 2).sum(dim=1).mean()


@dataclass
class ReconstructionLog:
    block: str
    loss_start: float
    loss_end: float
    seconds: float


def reconstruct(qm: QuantizedModel, calib: torch.Tensor, iters: int = 500, lr: float = 1e-3,
                batch_size: int = 32, seed: int = 0, drop_prob: float = 0.0, act_lr: float | None = None,
                head_with_last_block: bool = False,
                progress: Callable[[str, int, int], None] | None = None) -> list[ReconstructionLog]:
    """Train every learnable weight quantizer of `qm` block by block on the calibration images `calib` (NCHW).

    drop_prob > 0 is QDrop: while a block learns, each of its activation quantizers passes every element
    unquantized with that probability (the block's inputs are left as the quantized model computes them).
    act_lr set is LSQ: the steps of the block's conv, linear and add outputs are learned too (in log space, zero
    points fixed, Adam at act_lr with the same cosine decay), then written into qm.qparams.
    head_with_last_block: the last conv block learns together with the pooling and classifier, on the logits
    (see partition).
    progress(block_name, iteration, iters) is called every 25 iterations."""
    import time

    if iters < 1:
        raise ValueError(f"iters must be at least 1, got {iters}")
    module, graph = qm.module, qm.graph
    float_module = GraphModule(graph).eval()
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # QDrop's random masks
    logs = []
    with torch.no_grad():
        x_q = module.input_quant(calib) if module.input_quant is not None else calib
        fp_values = float_module(calib, keep=True)
    for block in partition(graph, head_with_last_block):
        quantizers = [module.weight_fns[n] for n in block.nodes
                      if n in module.weight_fns and module.weight_fns[n].learnable]
        target = fp_values[block.output]
        if quantizers:
            t0 = time.perf_counter()
            groups = [{"params": g["params"], "lr": lr * g["lr_scale"]} for q in quantizers
                      for g in q.param_groups() if g["params"]]
            act_learned = [n for n in block.nodes if act_lr is not None and n in module.act_quant
                           and graph.node(n).kind in ("conv", "linear", "add")]
            if act_learned:
                groups.append({"params": [module.act_quant[n].learn_scale() for n in act_learned], "lr": act_lr})
            opt = torch.optim.Adam(groups, lr=lr)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5 * (1 + math.cos(math.pi * k / iters)))
            with torch.no_grad():
                loss_start = float(block_loss(run_block(module, block, x_q), target))
            droppers = [module.act_quant[n] for n in block.nodes if n in module.act_quant]
            for a in droppers:
                a.drop_prob = drop_prob
            for it in range(iters):
                idx = torch.randint(0, len(calib), (batch_size,), generator=gen)
                out = run_block(module, block, x_q[idx])
                loss = block_loss(out, target[idx])
                reg = sum(q.regularization(it / iters) for q in quantizers)
                opt.zero_grad(set_to_none=True)
                (loss + reg).backward()
                opt.step()
                sched.step()
                if progress and (it % 25 == 0 or it == iters - 1):
                    progress(block.output, it + 1, iters)
            for a in droppers:
                a.drop_prob = 0.0
            for q in quantizers:
                q.harden()
                for p in q.parameters():
                    p.requires_grad_(False)
            for n in act_learned:
                set_activation_scale(qm, n, module.act_quant[n].learned_scale())
            set_double_rounding(qm)  # a learned grid may have moved a layer's requantization shift
            with torch.no_grad():
                loss_end = float(block_loss(run_block(module, block, x_q), target))
            logs.append(ReconstructionLog(block.output, loss_start, loss_end, time.perf_counter() - t0))
        with torch.no_grad():
            x_q = run_block(module, block, x_q)
    return logs
