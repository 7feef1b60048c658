"""Static int8 PTQ of a trained checkpoint with measured per-layer fp32 fallback.

1. Calibrate the whole model with the target backend's quantizer and the chosen observer.
2. If its top-1 agreement with fp32 on the validation split is below the target, measure each
   block's sensitivity: how much the logits' mean squared error to fp32 falls when only that
   block stays in fp32 (a continuous score: agreement on a few hundred clips moves in steps).
3. Keep the most sensitive blocks in fp32, one at a time, until the target is met (or
   ``max_fallback`` blocks are float), then report accuracy on the test split.

The result is what ``edge`` exports with ``--int8-skip`` (same quantizer, same blocks kept float),
so what is measured here is what ships.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from trainer.common.io import EgoedgeError
from trainer.common.progress import Progress, no_progress
from trainer.quantize.observers import OBSERVERS
from trainer.quantize.pt2e import QUANTIZERS, SkipBlocks, quantize_pt2e

STATIC_BACKENDS = ("xnnpack", "litert")  # the quantizers whose int8 graphs the exporters ship


@dataclass(frozen=True)
class PTQConfig:
    """Which quantizer and observer, how much data, and when to stop falling back to fp32."""

    backend: str = "xnnpack"
    observer: str = "histogram"
    calibration: int = 256
    val_samples: int = 160  # validation clips scored per candidate block
    target_agreement: float = 99.0  # % top-1 agreement with fp32 on the validation split
    max_fallback: int = 4
    skip: tuple[str, ...] = field(default_factory=tuple)  # blocks forced to fp32 from the start
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
    """Candidate fallback units: each stage block of the encoder, its stem and final conv, and the head.

    Example: ``['encoder.stem', 'encoder.stages.0.0', ..., 'encoder.final_conv', 'pool', 'head']``.
    """
    out = []
    for name, module in model.named_modules():
        parts = name.split(".")
        is_block = len(parts) == 4 and parts[:2] == ["encoder", "stages"]
        is_top = (len(parts) == 2 and parts[0] == "encoder" and parts[1] not in ("stages", "head")) or (
            len(parts) == 1 and name and parts[0] != "encoder")
        if (is_block or is_top) and next(module.parameters(), None) is not None:
            out.append(name)
    return out


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(100.0 * (a.argmax(-1) == b.argmax(-1)).mean())


def _logits(model: torch.nn.Module, inputs: torch.Tensor, batch: int = 32) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([model(inputs[i:i + batch]) for i in range(0, len(inputs), batch)]).numpy()


def run_ptq(model: torch.nn.Module, calibration: torch.Tensor, val_inputs: torch.Tensor,
            cfg: PTQConfig = PTQConfig(), progress: Progress = no_progress) -> dict:
    """Quantize ``model`` per ``cfg``; returns ``{"model", "skip", "val_agreement", "steps", "sensitivity"}``.

    ``calibration`` and ``val_inputs`` are preprocessed clips ``(N, T, 3, H, W)``; ``steps`` records
    agreement and logit MSE after each fallback try, ``sensitivity`` the MSE each block removes.
    """
    model = model.eval()
    if cfg.max_fallback < 0 or not 0 < cfg.target_agreement <= 100:
        raise EgoedgeError("max_fallback must be >= 0 and target_agreement in (0, 100]")
    known = blocks_of(model)
    unknown = [b for b in cfg.skip if b not in known]
    if unknown:
        raise EgoedgeError(f"unknown block(s) {unknown}; valid: {', '.join(known)}")
    calib = [(calibration[i:i + 1],) for i in range(len(calibration))]
    example = (calibration[:1].clone(),)
    reference = _logits(model, val_inputs)

    def score(skip: tuple[str, ...]) -> tuple[torch.nn.Module, float, float]:
        q = quantize_pt2e(model, example, calib, quantizer_for(cfg.backend, cfg.observer, skip))
        out = _logits(q, val_inputs)
        return q, _agreement(reference, out), float(((out - reference) ** 2).mean())

    skip = tuple(cfg.skip)
    progress("PTQ calibrate", 0, 1, {})
    best, agreement, mse = score(skip)
    progress("PTQ calibrate", 1, 1, {"agreement": agreement})
    steps = [{"skip": list(skip), "val_agreement": agreement, "logit_mse": mse}]
    sensitivity: dict[str, float] = {}
    if agreement < cfg.target_agreement and cfg.max_fallback > len(skip):
        candidates = [b for b in known if b not in skip]
        for i, block in enumerate(candidates):
            sensitivity[block] = mse - score(skip + (block,))[2]  # error removed by keeping it fp32
            progress("PTQ sensitivity", i + 1, len(candidates), {"block": block})
        for block in sorted(sensitivity, key=sensitivity.get, reverse=True):
            if agreement >= cfg.target_agreement or len(skip) >= cfg.max_fallback or sensitivity[block] <= 0:
                break
            q, a, m = score(skip + (block,))
            steps.append({"skip": list(skip + (block,)), "val_agreement": a, "logit_mse": m})
            if a >= agreement and m < mse:  # keep a block float only when it measurably helps
                skip, best, agreement, mse = skip + (block,), q, a, m
    return {"model": best, "skip": list(skip), "val_agreement": agreement, "steps": steps,
            "sensitivity": {k: float(f"{v:.4g}") for k, v in sensitivity.items()}}


def load_program(path: str | Path) -> torch.nn.Module:
    """A saved int8 program (``*_int8.pt2``) as a runnable module, in any process."""
    import torchao.quantization.pt2e.quantize_pt2e  # noqa: F401  (registers the quantized_decomposed ops it calls)

    return torch.export.load(path).module()


def quantize_checkpoint(path, out_dir, cfg: PTQConfig = PTQConfig(), progress: Progress = no_progress) -> dict:
    """PTQ a student checkpoint; writes ``<stem>_int8.pt2`` and ``<stem>_int8.json`` into ``out_dir``.

    Returns the report: settings, blocks kept fp32, sensitivity, and fp32 vs int8 test accuracy.

    Example::

        report = quantize_checkpoint("runs/quick/student.pt", "runs/quick", PTQConfig(observer="percentile"))
        report["int8"]["top1"], report["skip"]
    """
    import io
    import time

    from trainer.checkpoint import load_model
    from trainer.common.io import write_bytes_atomic, write_json_atomic
    from trainer.data import DataConfig, load_split, to_model_input
    from trainer.data.calibration import calibration_inputs
    from trainer.train import topk_accuracy

    path, out_dir = Path(path), Path(out_dir)
    if cfg.observer not in OBSERVERS:
        raise EgoedgeError(f"unknown observer '{cfg.observer}'; valid: {', '.join(OBSERVERS.keys())}")
    if cfg.backend not in STATIC_BACKENDS:
        raise EgoedgeError(f"unknown PTQ backend '{cfg.backend}'; valid: {', '.join(STATIC_BACKENDS)}")
    if cfg.val_samples < 1:
        raise EgoedgeError("val_samples must be >= 1")
    t0 = time.perf_counter()
    model, ckpt = load_model(path)
    data_cfg, preprocess = DataConfig(**ckpt["config"]["data"]), ckpt["preprocess"]
    calib = torch.from_numpy(calibration_inputs(data_cfg, preprocess, cfg.calibration, cfg.seed))
    val = load_split(data_cfg, "val")
    val_inputs = to_model_input(val.clips[:cfg.val_samples], preprocess)
    result = run_ptq(model, calib, val_inputs, cfg, progress)
    test = load_split(data_cfg, "test")
    test_inputs = to_model_input(test.clips, preprocess)
    fp32, int8 = _logits(model, test_inputs), _logits(result["model"], test_inputs)
    example = (calib[:1].clone(),)  # a view would drag the whole calibration set into the .pt2's sample inputs
    program = torch.export.export(result["model"], example, strict=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    artifact = out_dir / f"{path.stem}_int8.pt2"
    buffer = io.BytesIO()  # torch.export.save wants a .pt2 name or a buffer, not our temp file
    torch.export.save(program, buffer)
    write_bytes_atomic(artifact, buffer.getvalue())
    report = {"source": path.name, "artifact": artifact.name, "config": dataclasses.asdict(cfg),
              "skip": result["skip"], "val_agreement": result["val_agreement"], "steps": result["steps"],
              "sensitivity": result["sensitivity"], "fp32": topk_accuracy(fp32, test.labels),
              "int8": topk_accuracy(int8, test.labels), "test_agreement": _agreement(fp32, int8),
              "wall_s": round(time.perf_counter() - t0, 1)}
    write_json_atomic(out_dir / f"{path.stem}_int8.json", report)
    return report
