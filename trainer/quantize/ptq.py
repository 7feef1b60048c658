"""Static int8 PTQ of a trained checkpoint with measured per-layer fp32 fallback.

1. Calibrate the whole model with the target backend's quantizer and the chosen observer, and
   measure its per-layer numeric gap to float (:mod:`trainer.quantize.gap`).
2. If its top-1 agreement with fp32 on the validation split is below the target, take the layers
   that lose the most SQNR themselves per share of the MACs (the gap's worst) and measure each
   one's sensitivity: how much the logits' mean squared error to fp32 falls when only that layer
   computes in fp32 (a continuous score: agreement on a few hundred clips moves in steps).
   One quantized graph serves every layer: its quantize/dequantize pairs inside the layer are
   bypassed, so a layer costs one pass over the validation clips, not a new calibration.
3. Keep layers fp32, one at a time, in order of error removed per share of the model's MACs
   (a layer kept float gives up its int8 speed-up in proportion to its MACs), each only if it
   measurably helps, until the target is met or ``max_fallback`` layers are float (each try
   bypasses the layer in the same calibrated graph; the chosen set is calibrated once at the
   end); then report accuracy on the test split. When no set of single layers reaches the target, the coarser
   blocks (:func:`blocks_of`) are tried the same way; a model that names its own units
   (``ptq_units()``) falls back by those alone.

``egoedge export`` lowers the resulting program itself (:mod:`trainer.quantize.program`), and
``egoedge export CKPT --int8`` runs the same search when its artifacts miss the parity gate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.common.modules import in_modules
from egoedge.trainer.common.progress import Progress, no_progress
from egoedge.trainer.data.calibration import as_samples
from egoedge.trainer.quantize.gap import float_reference, is_dequantize, is_quantize, program_gap
from egoedge.trainer.quantize.observers import OBSERVERS
from egoedge.trainer.quantize.pt2e import (
    QUANTIZERS,
    SkipBlocks,
    fold_weights,
    node_in_modules,
    quantize_pt2e,
    undo_bias_correction,
)

STATIC_BACKENDS = ("xnnpack", "litert")  # the quantizers whose int8 graphs the exporters ship


@dataclass(frozen=True)
class PTQConfig:
    """Which quantizer and observer, how much data, and when to stop falling back to fp32."""

    backend: str = "xnnpack"
    observer: str = "histogram"
    # More activation observers to calibrate with; the program keeps the one closest to fp32 on the validation
    # inputs, as it keeps bias correction or not (a network whose activations are clamped has no outliers
    # for a histogram's clipping to remove, only steps to lose).
    observers: tuple[str, ...] = ()
    calibration: int = 256
    val_samples: int = 320  # validation clips each candidate is scored on (the gate counts flips in hundreds)
    target_agreement: float = 99.0  # % top-1 agreement with fp32 on the validation split
    max_fallback: int = 4
    skip: tuple[str, ...] = field(default_factory=tuple)  # blocks forced to fp32 from the start
    min_fallback: int = 0  # keep searching until this many units are fp32, even past the target
    seed: int = 0


def quantizer_for(backend: str, observer: str, skip: Sequence[str] = ()):
    """The backend's static int8 quantizer with ``observer`` on activations, leaving ``skip`` blocks float."""
    if backend not in STATIC_BACKENDS:
        raise EgoedgeError(f"unknown PTQ backend '{backend}'; valid: {', '.join(STATIC_BACKENDS)}")
    base = QUANTIZERS.get(backend)()
    obs = OBSERVERS.get(observer)()
    config = base.global_config
    act = dataclasses.replace(config.input_activation, observer_or_fake_quant_ctr=obs.with_args(eps=2**-12)
                              if hasattr(obs, "with_args") else _with_args(obs, eps=2**-12))
    base.set_global(dataclasses.replace(config, input_activation=act, output_activation=act))
    return SkipBlocks(base, tuple(skip)) if skip else base


def _with_args(ctor, **kwargs):
    from torchao.quantization.pt2e.observer import _with_args as with_args

    return with_args(ctor, **kwargs)


def blocks_of(model: torch.nn.Module) -> list[str]:
    """Coarse units: each stage block of the encoder, its stem and final conv, and the head (the search's units
    only for a model that names its own, ``ptq_units()``; others fall back layer by layer).

    A model that names its own units (``ptq_units()``, e.g. the NLQ span models) is asked instead.
    Example: ``['encoder.stem', 'encoder.stages.0.0', ..., 'encoder.final_conv', 'pool', 'head']``.
    """
    if hasattr(model, "ptq_units"):
        return list(model.ptq_units())
    out = []
    for name, module in model.named_modules():
        parts = name.split(".")
        is_block = len(parts) == 4 and parts[:2] == ["encoder", "stages"]
        is_top = (len(parts) == 2 and parts[0] == "encoder" and parts[1] not in ("stages", "head")) or (
            len(parts) == 1 and name and parts[0] != "encoder")
        if (is_block or is_top) and next(module.parameters(), None) is not None:
            out.append(name)
    return [unit for top in out for unit in _units(model.get_submodule(top), top)]


def _params(module: torch.nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def _block_list(module: torch.nn.Module) -> bool:
    """A list of blocks (each item a container of layers with weights): a backbone, not a conv + norm pair."""
    return isinstance(module, torch.nn.ModuleList | torch.nn.Sequential) and sum(
        1 for c in module if _params(c) and any(_params(g) for g in c.children())) > 1


def _units(module: torch.nn.Module, name: str) -> list[str]:
    """The unit itself, or, if it holds a list of blocks anywhere (``_blocks``, a transformer's ``encoder.layer``),
    that list's items and the unit's other parts: a backbone is never one unit, since keeping it fp32 would keep
    the whole model fp32. Example: ``encoder.bert`` -> ``encoder.bert.embeddings``, ``...encoder.layer.0``, ..."""
    if _block_list(module):
        return [f"{name}.{i}" for i, child in enumerate(module) if _params(child)]
    if not any(_block_list(m) for m in module.modules()):
        return [name]
    return [unit for child_name, child in module.named_children() if _params(child)
            for unit in _units(child, f"{name}.{child_name}")]


def top1_agreement(a: np.ndarray, b: np.ndarray, inputs: tuple = ()) -> float:
    """% of rows whose argmax over the last axis is the same in ``a`` and ``b``."""
    return float(100.0 * (a.argmax(-1) == b.argmax(-1)).mean())


def mean_squared_error(a: np.ndarray, b: np.ndarray, inputs: tuple = ()) -> float:
    """Mean squared difference of two output arrays."""
    return float(((a - b) ** 2).mean())


# (reference outputs, candidate outputs, the inputs both came from) -> a number
Comparison = Callable[[np.ndarray, np.ndarray, tuple], float]


@dataclass(frozen=True)
class OutputMatch:
    """How int8 outputs are compared with fp32: ``agreement`` in %, ``error`` (lower is closer).

    Both see the inputs too, so a task can read e.g. which steps of a sequence are valid.
    """

    agreement: Comparison = top1_agreement
    error: Comparison = mean_squared_error


def outputs_of(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...], batch: int = 32) -> np.ndarray:
    """The model's outputs on ``inputs`` in batches; several outputs stack on axis 1 (``(N, k, ...)``)."""
    with torch.no_grad():
        outs = [model(*(x[i:i + batch] for x in inputs)) for i in range(0, len(inputs[0]), batch)]
    if isinstance(outs[0], tuple | list):
        return np.stack([torch.cat(parts).numpy() for parts in zip(*outs, strict=True)], 1)
    return torch.cat(outs).numpy()


def module_macs(model: torch.nn.Module, example: tuple[torch.Tensor, ...]) -> dict[str, float]:
    """Each module's own share of the model's multiply-accumulates on ``example`` (0 to 1), its children's left out.

    The shares of all modules add up to the whole model, so any set of modules kept fp32 sums
    without counting a MAC twice. ``""`` is the model's own forward (ops outside any child).
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(*example)
    root = type(model).__name__
    counts = {("" if name == root else name.removeprefix(root + ".")): sum(ops.values())
              for name, ops in counter.get_flop_counts().items() if name == root or name.startswith(root + ".")}
    total = counts.get("") or sum(counts.values()) or 1
    own = {}
    for name, count in counts.items():
        inside = [c for c in counts if c != name and c.startswith(f"{name}." if name else "")]
        # The nearest counted modules inside: a container that is never called (a ModuleList) has no count
        # of its own, so its members are the children that carry the work.
        children = [c for c in inside if not any(c.startswith(d + ".") for d in inside)]
        mine = count - sum(counts[c] for c in children)
        if mine > 0:
            own[name] = mine / total
    return own


def unit_macs(macs: dict[str, float], units: Sequence[str]) -> dict[str, float]:
    """Each unit's share of the MACs: the own shares of every module inside it (from :func:`module_macs`)."""
    return {u: sum(v for m, v in macs.items() if in_modules(m, (u,))) for u in units}


# Added to every block's MAC share when ranking: a float island costs conversions at its borders
# even when it computes little.
ISLAND_COST = 0.01
MOSTLY_FLOAT_BELOW = 50.0  # % of MACs in int8 under which an "int8" artifact is called mostly float


def int8_mac_share(macs: dict[str, float], keep_float: Sequence[str]) -> float | None:
    """Percent of the model's MACs that run in int8, from each unit's MAC share and the modules kept fp32
    (a kept module covers every unit inside it); ``None`` when the shares were not measured.

    Example: ``int8_mac_share({"stem": 0.6, "blocks.0": 0.3, "head": 0.1}, ["head"])`` is ``90.0``.
    """
    total = sum(macs.values())
    if not macs or total <= 0:
        return None
    kept = sum(v for u, v in macs.items() if in_modules(u, keep_float))
    return round(100.0 * (1.0 - kept / total), 2)


def bypass(graph: torch.fx.GraphModule, block: str | Sequence[str]) -> torch.fx.GraphModule:
    """A copy of an unfolded int8 graph whose ops inside ``block`` (one module or several) read float inputs
    (weights and activations).

    Each quantize -> dequantize pair feeding an op of the block is skipped for that op: what keeping
    the block fp32 does, without calibrating again. A bias corrected for int8 weights gets its correction back:
    the op now computes with float weights, as it would in a program calibrated with the block fp32.
    """
    blocks = (block,) if isinstance(block, str) else tuple(block)
    import copy

    graph = copy.deepcopy(graph)
    for node in list(graph.graph.nodes):
        if (node.op != "call_function" or is_dequantize(node) or is_quantize(node)
                or not node_in_modules(node, blocks)):
            continue
        for arg in node.all_input_nodes:
            q = arg.args[0] if is_dequantize(arg) and arg.args else None
            if isinstance(q, torch.fx.Node) and is_quantize(q) and q.args:
                node.replace_input_with(arg, q.args[0])
        undo_bias_correction(graph, node)
    graph.graph.eliminate_dead_code()
    graph.recompile()
    return graph


GAP_SAMPLES = 32  # calibration samples the per-layer gap is measured on
GAP_CANDIDATES = 8  # layers, the gap's worst, whose fp32 copy the search measures
SENSITIVITY_SAMPLES = 96  # validation samples each candidate's sensitivity is measured on


def gap_candidates(gap: list[dict], shares: dict[str, float], leaves: set[str],
                   count: int = GAP_CANDIDATES) -> list[str]:
    """The layers worth trying in fp32: those that lose the most SQNR per share of the MACs.

    ``gap`` is :func:`trainer.quantize.gap.program_gap`'s rows. A row's loss is the layer's own
    int8 arithmetic or the quantizing of its output, which its readers ask for: both the layer and
    its readers are candidates. A layer is a module without children (an op written in a bigger
    module's forward, a residual add, cannot be kept alone).
    """
    lost: dict[str, float] = {}
    for row in gap:
        if not row["int8"]:
            continue
        for layer in (row["layer"], *row.get("read_by", ())):
            if layer in leaves:
                lost[layer] = max(lost.get(layer, -1e9), row["lost_db"])
    worth = {m: 10 ** (db / 10) / (shares.get(m, 0.0) + ISLAND_COST) for m, db in lost.items() if db > 0}
    return sorted(worth, key=worth.get, reverse=True)[:count]


def check_observers(cfg: PTQConfig) -> tuple[str, ...]:
    """The activation observers ``cfg`` calibrates with (``observer`` first); one line naming an unknown one."""
    observers = tuple(dict.fromkeys((cfg.observer, *cfg.observers)))
    for name in observers:
        if name not in OBSERVERS:
            raise EgoedgeError(f"unknown observer '{name}'; valid: {', '.join(OBSERVERS.keys())}")
    return observers


def run_ptq(model: torch.nn.Module, calibration: torch.Tensor | Sequence[tuple[torch.Tensor, ...]],
            val_inputs: torch.Tensor | tuple[torch.Tensor, ...], cfg: PTQConfig = PTQConfig(),
            progress: Progress = no_progress, match: OutputMatch = OutputMatch()) -> dict:
    """Quantize ``model`` per ``cfg``; returns ``{"model", "skip", "val_agreement", "steps", "sensitivity", "macs",
    "ranked", "gap", "bias_correction", "observer", "float_modules"}`` (whether the program's biases were corrected
    and which activation observer calibrated it: the closest of those tried; the modules the model itself keeps
    float, besides ``skip``).

    ``calibration`` is a batch of preprocessed clips ``(N, T, 3, H, W)`` or a list of input tuples
    (multi-input models); ``val_inputs`` a batch or a tuple of batches. ``match`` says how outputs
    are compared (default: top-1 agreement and logit MSE). The fallback units are single layers,
    the worst of the per-layer gap (``gap``: :func:`trainer.quantize.gap.program_gap` of the
    returned program), or the model's own units if it names them (``ptq_units()``). ``steps``
    records agreement and error after each fallback try, then for the chosen set calibrated again
    (``calibrated``) and, when that landed lower, for the searched graph kept as the program
    (``program: "searched"``); ``sensitivity`` the error each candidate
    removes, ``macs`` each module's own share of the MACs, ``ranked`` the candidates not tried yet,
    best first (empty when no search ran).
    """
    model = model.eval()
    if cfg.max_fallback < 0 or not 0 <= cfg.target_agreement <= 100:
        raise EgoedgeError("max_fallback must be >= 0 and target_agreement in [0, 100]")
    observers = check_observers(cfg)
    modules = dict(model.named_modules())
    unknown = [b for b in cfg.skip if not b or b not in modules]
    if unknown:
        raise EgoedgeError(f"unknown module(s) {unknown}; e.g. {', '.join(blocks_of(model)[:6])}")
    calib = as_samples(calibration) if isinstance(calibration, torch.Tensor) else list(calibration)
    val_inputs = (val_inputs,) if isinstance(val_inputs, torch.Tensor) else tuple(val_inputs)
    example = tuple(x.clone() for x in calib[0])
    reference = outputs_of(model, val_inputs)
    float_graph = float_reference(model, example, calib)

    correct, observer = True, cfg.observer

    def quantize(skip: tuple[str, ...], fold: bool = True) -> torch.fx.GraphModule:
        return quantize_pt2e(model, example, calib, quantizer_for(cfg.backend, observer, skip), fold=fold,
                             correct_bias=correct)

    def measure(q: torch.nn.Module) -> tuple[float, float]:
        out = outputs_of(q, val_inputs)
        return match.agreement(reference, out, val_inputs), match.error(reference, out, val_inputs)

    # Sensitivity is a continuous error, ranked, not a verdict: a subset of the validation samples ranks as well.
    few = tuple(x[:SENSITIVITY_SAMPLES] for x in val_inputs)

    def probe_error(q: torch.nn.Module) -> tuple[float, float]:
        return 0.0, match.error(reference[:SENSITIVITY_SAMPLES], outputs_of(q, few), few)

    skip = tuple(cfg.skip)
    progress("PTQ calibrate", 0, 1, {})
    # Bias correction helps a pretrained network whose depthwise weights round with a bias and can cost a
    # small trained one a few flips: the program is calibrated both ways, with each observer, and the closest kept.
    tried = {}
    for observer in observers:
        for correct in (True, False):
            q = quantize(skip)
            tried[observer, correct] = (q, *measure(q))
    observer, correct = max(tried, key=lambda c: (tried[c][1], -tried[c][2]))
    best, agreement, mse = tried[observer, correct]
    gap = program_gap(float_graph, best, calib[:GAP_SAMPLES])
    progress("PTQ calibrate", 1, 1, {"agreement": agreement})

    def step(kept: tuple[str, ...], a: float, m: float, **how) -> dict:  # one measured program of the search
        return {"skip": list(kept), "val_agreement": a, "logit_mse": m, **how}

    steps = [step(skip, agreement, mse)]
    shares = module_macs(model, example)
    sensitivity: dict[str, float] = {}
    ranked: list[str] = []
    leaves = {n for n, m in modules.items() if n and next(m.children(), None) is None}
    # Single layers first (the gap's worst); blocks only when no set of those layers reaches the target.
    tiers = [lambda: blocks_of(model)] if hasattr(model, "ptq_units") else [
        lambda: gap_candidates(gap, unit_macs(shares, sorted(leaves)), leaves), lambda: blocks_of(model)]
    def done(kept: int) -> bool:
        return (agreement >= cfg.target_agreement and kept >= cfg.min_fallback) or kept >= cfg.max_fallback

    for tier in tiers:
        if done(len(skip)):
            break
        units = [u for u in tier() if not in_modules(u, skip) and u not in sensitivity]
        probe = quantize(skip, fold=False)
        found, order = rank_blocks(probe, units, probe_error(probe)[1], probe_error, unit_macs(shares, units),
                                   progress)
        sensitivity.update(found)
        ranked = list(order)
        # Each try keeps one more unit float in the same calibrated graph (bypassing its quantization, as a
        # recalibration without it would); only the chosen set is calibrated again, once.
        chosen: tuple[str, ...] = ()
        for block in order:
            if done(len(skip) + len(chosen)) or found[block] <= 0:
                break
            ranked.remove(block)
            a, m = measure(bypass(probe, chosen + (block,)))
            steps.append(step(skip + chosen + (block,), a, m))
            if a >= agreement and m < mse:  # keep a unit float only when it measurably helps
                chosen, agreement, mse = chosen + (block,), a, m
        if chosen:
            skip = tuple(k for k in skip if not in_modules(k, chosen)) + chosen  # a block covers its layers
            searched = (agreement, mse)  # what the bypassed graph of the chosen set measured
            best = quantize(skip)
            agreement, mse = measure(best)
            steps.append(step(skip, agreement, mse, calibrated=True))
            # Calibrating again moves every neighbour's ranges and can land below what the search measured
            # (it can land above too): the searched graph itself is then the program, folded as any other.
            if (agreement, -mse) < (searched[0], -searched[1]):
                best = fold_weights(bypass(probe, chosen))
                agreement, mse = measure(best)
                steps.append(step(skip, agreement, mse, program="searched"))
    if len(steps) > 1:
        gap = program_gap(float_graph, best, calib[:GAP_SAMPLES])
    return {"model": best, "skip": list(skip), "val_agreement": agreement, "steps": steps,
            "sensitivity": {k: float(f"{v:.4g}") for k, v in sensitivity.items()},
            "macs": {k: round(v, 4) for k, v in shares.items() if v >= 5e-5}, "ranked": ranked, "gap": gap,
            "bias_correction": correct, "observer": observer,
            "float_modules": list(getattr(model, "float_modules", ()))}


def rank_blocks(probe: torch.fx.GraphModule, candidates: list[str], error: float,
                measure: Callable[[torch.nn.Module], tuple[float, float]], shares: dict[str, float],
                progress: Progress = no_progress) -> tuple[dict[str, float], list[str]]:
    """Each candidate's sensitivity (the error removed by computing it in fp32) and the candidates ranked.

    ``probe`` is the int8 graph unfolded (float weights behind quantize nodes), ``error`` its
    error to fp32, ``measure`` a graph's (agreement, error). The rank is error removed per share
    of the MACs (plus :data:`ISLAND_COST`), most worth keeping fp32 first; blocks that remove no
    error come last.
    """
    sensitivity = {}
    for i, block in enumerate(candidates):
        sensitivity[block] = error - measure(bypass(probe, block))[1]
        progress("PTQ sensitivity", i + 1, len(candidates), {"block": block})
    ranked = sorted(candidates, key=lambda b: sensitivity[b] / (shares.get(b, 0.0) + ISLAND_COST), reverse=True)
    return sensitivity, ranked


@dataclass
class PTQJob:
    """What PTQ needs from a task's checkpoint: the model, its data and how its outputs are scored.

    ``score(outputs)`` turns test outputs into the report's accuracy block (``top1``/``top5``
    first, then any task figures).
    """

    model: torch.nn.Module
    calibration: list[tuple[torch.Tensor, ...]]
    val_inputs: tuple[torch.Tensor, ...]
    test_inputs: tuple[torch.Tensor, ...]
    score: Callable[[np.ndarray], dict]
    match: OutputMatch = field(default_factory=OutputMatch)
    source: str = "the checkpoint's dataset"  # where the data comes from, for the calibration record
