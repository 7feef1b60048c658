"""PyTorch eager fp32: the baseline every artifact is measured against."""

from __future__ import annotations

import numpy as np
import torch

from bench.runners.registry import RUNNERS
from edge.exporters import Session


class PyTorchRunner:
    format = "pytorch"
    runtime = "torch-eager"

    def available(self) -> str | None:
        return None

    def open(self, target: torch.nn.Module, threads: int) -> Session:
        torch.set_num_threads(threads)
        model = target.eval()

        def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
            with torch.inference_mode():
                return [model(*[torch.from_numpy(x) for x in inputs]).numpy()]

        return run


RUNNERS.register("pytorch")(PyTorchRunner())
