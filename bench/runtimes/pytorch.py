"""PyTorch eager fp32: the baseline every artifact is measured against."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from egoedge.bench.runtimes.registry import RUNTIMES
from egoedge.edge.exporters import Session
from egoedge.trainer.checkpoint import load_model
from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.quantize.program import load_program


class PyTorchRuntime:
    format = "pytorch"
    runtime = "torch-eager"
    # The registered models are built from timm's blocks; an int8 program needs torchao's quantized ops.
    runtime_modules = ("timm", "torchao.quantization.pt2e.quantize_pt2e")

    def available(self) -> str | None:
        return None

    def open(self, target: torch.nn.Module | Path, threads: int, options: dict | None = None) -> Session:
        if options:
            raise EgoedgeError(f"pytorch runtime takes no options {sorted(options)}")
        torch.set_num_threads(threads)
        if isinstance(target, Path):  # a checkpoint, or a torch.export program (the PTQ int8 student)
            model = load_program(target) if target.suffix == ".pt2" else load_model(target)[0].eval()
        else:
            model = target.eval()

        def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
            with torch.inference_mode():
                out = model(*[torch.from_numpy(x) for x in inputs])
            # A classifier returns logits; a span model (NLQ) returns start and end logits.
            return [t.numpy() for t in (out if isinstance(out, tuple | list) else (out,))]

        return run

    def open_in_turns(self, targets: list[torch.nn.Module | Path], threads: int,
                      options: dict | None = None) -> list[Session]:
        return [self.open(t, threads, options) for t in targets]  # torch's intra-op pool is the process's


RUNTIMES.register("pytorch")(PyTorchRuntime())
