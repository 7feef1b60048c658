"""One int8 path: the PT2E program every backend's static int8 artifact comes from, and how it is chosen.

A recipe is a quantized program (XNNPACK's symmetric int8 scheme, calibrated once), the modules it
keeps fp32 and the calibration set. ExecuTorch, LiteRT and Core ML W8A8 lower that program itself;
ONNX Runtime, whose int8 is its own QDQ format, quantizes with the same modules kept fp32 and the
same calibration samples. A recipe comes from one of three places:

- ``egoedge export NAME_int8.pt2``: the program ``egoedge quantize`` wrote, as it is;
- ``--int8-keep-float pool,head``: the user's choice of fp32 modules, calibrated here;
- neither: the fewest layers fp32 that pass the parity gate. Everything is quantized first; if the
  PyTorch int8 program already flips more test predictions than the gate allows, single layers (the
  worst of the per-layer gap) are kept fp32 one at a time by measured sensitivity per MAC
  (:func:`trainer.quantize.ptq.run_ptq`), and if
  an exported artifact still misses the gate, the search goes on aimed higher by the gap between the
  program's agreement and the artifact's (:meth:`Int8Recipe.widened`).

The program is saved beside the artifacts as ``<stem>_int8.pt2`` with its ``.json``: the export's
int8 student, which ``egoedge export`` takes back as it is. Its per-layer numeric gap against the
float model (``Int8Recipe.gap``) goes into that ``.json`` and each artifact lowered from it gets
``NAME.gap.json`` (:mod:`edge.gap`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from egoedge.trainer.common.io import write_json_atomic
from egoedge.trainer.common.progress import Progress, no_progress
from egoedge.trainer.quantize.program import load_program, read_ptq, save_program
from egoedge.trainer.quantize.ptq import (
    MOSTLY_FLOAT_BELOW,
    OutputMatch,
    PTQConfig,
    int8_mac_share,
    run_ptq,
)

QUANTIZER, OBSERVER = "xnnpack", "histogram"  # the scheme every PT2E backend lowers (see trainer.quantize.pt2e)
# The activation observers a recipe is calibrated with; the program keeps the closest on the gate's inputs. A
# histogram clips outliers, min-max keeps the whole range: finer steps where activations are clamped (ReLU6).
OBSERVERS_TRIED = ("histogram", "minmax")
MAX_FALLBACK = 6  # at most this many modules kept fp32 by the automatic choice


@dataclass
class Int8Recipe:
    """A PT2E int8 program with the modules it keeps fp32 and the samples it was calibrated on."""

    program: torch.nn.Module
    keep_float: tuple[str, ...]
    calibration: list[tuple[torch.Tensor, ...]]
    calib_info: dict
    chosen_by: str  # "program" (a PTQ file), "user" (--int8-keep-float) or "gate" (the automatic choice)
    search: dict = field(default_factory=dict)  # sensitivity, MAC shares, every step tried
    file: str | None = None  # the program's file, relative to the export folder
    # Continues the gate's search from ``keep`` to a higher simulated agreement, keeping at least a given number of
    # units fp32 (``None``: the choice is fixed).
    searcher: Callable[[tuple[str, ...], float, int], dict] | None = None
    quantizer: str = QUANTIZER
    observer: str = OBSERVER
    gap: list[dict] = field(default_factory=list)  # the program's per-layer numeric gap (trainer.quantize.gap)
    bias_correction: bool = False  # whether biases take back int8 weights' mean shift (ONNX Runtime's int8 follows)

    def block(self) -> dict:
        """The manifest's ``int8`` block: what stayed fp32, why, and what calibrated it."""
        # The model's own float modules (a space-to-depth stem's rearrangement) run float whatever was chosen.
        share = int8_mac_share(self.search.get("macs") or {}, (*self.keep_float, *self.search.get("float_modules", ())))
        return {"program": self.file, "quantizer": self.quantizer, "observer": self.observer,
                "bias_correction": self.bias_correction,
                "keep_float": list(self.keep_float), "chosen_by": self.chosen_by,
                "calibration": self.calib_info, **self.search,
                **({"macs_int8_pct": share} if share is not None else {})}

    def widened(self, worst: float, target: float, refused: str = "an exported artifact") -> Int8Recipe:
        """A recipe keeping more fp32, after an exported artifact agreed on only ``worst`` % (its ``keep_float``
        unchanged: no more); ``refused`` names the artifacts that missed, for the record.

        A runtime's int8 arithmetic is not PyTorch's to the last rounding, so an artifact can flip
        more clips than the program did. The search goes on in PyTorch, aimed higher by that gap:
        what the program must reach for the artifact to reach ``target``, and keeps at least one
        more unit fp32 (a program already at 100 % has no agreement left to aim at). A widening that
        would leave the program mostly float (under ``MOSTLY_FLOAT_BELOW`` % of its MACs in int8) is
        not taken: the recipe comes back unchanged but for a step saying why.
        """
        if self.searcher is None or len(self.keep_float) >= MAX_FALLBACK:
            return self
        simulated = self.search.get("test_agreement", target)
        aim = min(100.0, max(target + simulated - worst, simulated + 1e-6))
        result = self.searcher(self.keep_float, aim, len(self.keep_float) + 1)
        keep = tuple(result["skip"])
        if keep == self.keep_float:
            return self
        why = f"{refused} agreed on {worst:.2f}%: aiming the program at {aim:.2f}%"
        share = int8_mac_share(self.search.get("macs") or {}, (*keep, *self.search.get("float_modules", ())))
        if share is not None and share < MOSTLY_FLOAT_BELOW:
            # An artifact that passes mostly float is no int8 (it cannot be the one to ship): the refused one stays
            # refused and the rest keep the faster program.
            return dataclasses.replace(self, search={**self.search, "steps": [*self.search.get("steps", []), {
                "skip": list(keep), "val_agreement": result["val_agreement"],
                "why": f"{why}; not taken: it leaves {share:.1f}% of MACs in int8 (mostly float)"}]})
        steps = [*self.search.get("steps", []), *({**step, "why": why} for step in result["steps"])]
        search = {**self.search, "test_agreement": result["val_agreement"], "steps": steps,
                  "sensitivity": {**self.search.get("sensitivity", {}), **result["sensitivity"]}}
        return dataclasses.replace(self, program=result["model"], keep_float=keep, search=search, file=None,
                                   gap=result["gap"],
                                   bias_correction=result.get("bias_correction", self.bias_correction))


def gate_match(ev) -> OutputMatch:
    """How the search compares int8 outputs with fp32: the gate's own agreement, and mean squared error."""

    def split(stacked: np.ndarray) -> tuple[np.ndarray, ...]:
        return (stacked,) if len(ev.outputs) == 1 else tuple(stacked[:, k] for k in range(len(ev.outputs)))

    def agreement(ref: np.ndarray, got: np.ndarray, inputs: tuple) -> float:
        arrays = tuple(x.numpy() if isinstance(x, torch.Tensor) else x for x in inputs)
        return ev.parity(split(ref), split(got), arrays)["top1_agreement"]

    return OutputMatch(agreement=agreement)


def chosen_recipe(model: torch.nn.Module, calibration: list, calib_info: dict,
                  keep: tuple[str, ...], ev, target: float, progress: Progress = no_progress) -> Int8Recipe:
    """The user's modules kept fp32 (``keep``), or else the fewest the gate's agreement ``target`` needs.

    The automatic choice is measured on the test inputs, the ones the gate counts flips on, with
    the PyTorch int8 program: what an artifact computes, before paying for any export. The user's
    choice is calibrated the same way (with each of ``OBSERVERS_TRIED``, with or without bias
    correction, whichever is closest on those inputs), and stands.
    """
    test = tuple(torch.from_numpy(x) for x in ev.test_inputs())
    match = gate_match(ev)

    observer = OBSERVER

    def searcher(kept: tuple[str, ...], aim: float, at_least: int = 0, observers: tuple[str, ...] = ()) -> dict:
        tried = observers or (observer,)
        cfg = PTQConfig(backend=QUANTIZER, observer=tried[0], observers=tried[1:], target_agreement=aim,
                        max_fallback=len(keep) if keep else MAX_FALLBACK, skip=kept, min_fallback=at_least)
        return run_ptq(model, calibration, test, cfg, progress, match)

    result = searcher(keep, target, observers=OBSERVERS_TRIED)
    observer = result["observer"]  # a widened search keeps it (as fp32 modules are added, not re-chosen)
    search = {"test_agreement": result["val_agreement"], "sensitivity": result["sensitivity"],
              "macs": result["macs"], "steps": result["steps"], "float_modules": result["float_modules"]}
    return Int8Recipe(result["model"], tuple(result["skip"]), calibration, calib_info, "user" if keep else "gate",
                      search, searcher=None if keep else searcher, observer=observer, gap=result["gap"],
                      bias_correction=result["bias_correction"])


def program_recipe(path: Path, calibration_of: Callable[[int, int], list]) -> tuple[Int8Recipe, Path]:
    """The recipe of a PTQ program file (checked against its ``.json`` and checkpoint) and that checkpoint.

    ``calibration_of(count, seed)`` draws the calibration samples the program was made with, for the
    backends that quantize on their own.
    """
    report, source = read_ptq(path)
    record = report["record"]
    calib = record["calibration"]
    samples = calibration_of(calib["samples"], calib["seed"])
    search = {k: report[k] for k in ("sensitivity", "macs", "steps", "val_agreement", "float_modules") if k in report}
    recipe = Int8Recipe(load_program(path), tuple(record["keep_float"]), samples, calib, "program", search,
                        quantizer=record["quantizer"], observer=record["observer"], gap=report.get("gap", []),
                        bias_correction=report.get("bias_correction", False))
    return recipe, source


def save_recipe(recipe: Int8Recipe, out_dir: Path, stem: str, example: tuple[torch.Tensor, ...],
                source: dict) -> Int8Recipe:
    """Write the recipe's program as ``<stem>_int8.pt2`` (+ ``.json``) in ``out_dir``; the recipe naming it.

    ``source`` is the manifest's source block (``checkpoint`` relative to ``out_dir`` and its
    ``sha256``); without a checkpoint (your own model) the program names the export's ``source.pt2``.
    """
    path = out_dir / f"{stem}_int8.pt2"
    record = {"task": source.get("task"), "source": source["checkpoint"], "source_sha256": source["sha256"],
              "quantizer": recipe.quantizer, "observer": recipe.observer, "keep_float": list(recipe.keep_float),
              "data": source.get("data"), "calibration": recipe.calib_info}
    example = tuple(x.clone() for x in example)
    digest = save_program(recipe.program, example, path, record)
    write_json_atomic(path.with_suffix(".json"), {**record, "artifact": path.name, "artifact_sha256": digest,
                                                  "skip": list(recipe.keep_float), **recipe.search,
                                                  "gap": recipe.gap, "bias_correction": recipe.bias_correction})
    return dataclasses.replace(recipe, file=path.name)
