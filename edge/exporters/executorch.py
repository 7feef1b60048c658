"""ExecuTorch: ``.pte`` lowered to the XNNPACK delegate (fp32, or int8 via PT2E), run by its runtime bindings."""

from __future__ import annotations

import importlib
from importlib.metadata import version
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from egoedge.edge.delegate_rewrites import delegate_friendly, float_pads_stay_float
from egoedge.edge.exporters.base import (
    CLIP_IO,
    Calibration,
    IONames,
    Session,
    check_precision,
    example_graph,
    lowering_error,
)
from egoedge.edge.exporters.registry import EXPORTERS
from egoedge.trainer.common.io import write_bytes_atomic
from egoedge.trainer.quantize import QUANTIZERS, quantize_pt2e

_BINDINGS = "executorch.extension.pybindings._C"  # loaded after torch: it links against libtorch


class ExecuTorchExporter:
    format = "executorch"
    ext = "pte"
    runtime = "executorch-xnnpack"  # what the bench calls the host runtime of these artifacts
    process_threads = True  # XNNPACK runs on ExecuTorch's process-wide pool (set_threads)
    precisions = ("fp32", "int8")
    float_precisions = ("fp32",)
    int8_precisions = ("int8",)
    program_precision = "int8"  # the precision it lowers an int8 PT2E program for (edge.int8)
    # What load() imports: the bench's process server imports it once for all isolated targets.
    runtime_modules = ("torch", _BINDINGS)

    def export(self, model: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], path: Path,
               precision: str, calibration: Calibration, names: IONames = CLIP_IO,
               program: torch.nn.Module | None = None) -> dict:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.devtools.backend_debug import get_delegation_info
        from executorch.exir import to_edge_transform_and_lower

        check_precision(self, precision)
        try:
            if precision == "int8":
                model = program if program is not None else \
                    quantize_pt2e(model, example_inputs, calibration, QUANTIZERS.get("xnnpack")())
            exported, rewritten = delegate_friendly(torch.export.export(model, example_inputs, strict=False),
                                                    example_inputs)
            with float_pads_stay_float():
                edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
            info = get_delegation_info(edge.exported_program().graph_module)
            lowered = edge.to_executorch()
        except Exception as e:  # noqa: BLE001  (lowering errors come from many layers)
            raise lowering_error(self.format, e, example_graph(model, example_inputs)) from e
        write_bytes_atomic(path, lowered.buffer)
        # ``getitem`` reads a delegate's outputs: bookkeeping, not a kernel that runs between delegate calls.
        kernels = {op: b.non_delegated for op, b in info.delegation_by_operator.items() if b.non_delegated
                   and op != "getitem"}
        portable = sorted(kernels)
        # The app's AAR must be this runtime version or newer: `egoedge embed` compares the two.
        return {"exporter": f"executorch {version('executorch')}", "delegate": "xnnpack",
                "delegated_subgraphs": info.num_delegated_subgraphs,
                "delegated_nodes": info.num_delegated_nodes,
                "portable_nodes": sum(kernels.values()),
                "portable_ops": portable, "rewritten_ops": rewritten}

    def unavailable(self) -> str | None:
        return None

    def load(self, path: Path, threads: int | None = None) -> Session:
        runtime = bindings()
        set_threads(threads)
        # What executorch.runtime's Runtime.load_program(path).load_method("forward") does, without its import.
        program = runtime._load_program(str(path), program_verification=runtime.Verification.InternalConsistency)
        method = program.load_method("forward")

        def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
            outs = method([torch.from_numpy(np.ascontiguousarray(x)) for x in inputs])
            return [o.numpy() for o in outs]

        run.program = program  # the method runs on the program's buffers: kept as long as the session
        return run


def bindings() -> ModuleType:
    """ExecuTorch's runtime bindings, imported without its compiler.

    ``executorch.runtime`` reaches them through ``portable_lib``, which imports all of ``executorch.exir`` (the
    compiler, for one warning class): seconds in every process that only runs programs.
    """
    try:
        return importlib.import_module(_BINDINGS)
    except ImportError:  # a build that ships them otherwise: through the public module
        from executorch.extension.pybindings import portable_lib

        return portable_lib


def set_threads(threads: int | None) -> None:
    """Size ExecuTorch's process-wide thread pool (XNNPACK runs on it); ``None`` keeps it."""
    if threads:
        bindings()._unsafe_reset_threadpool(threads)


EXPORTERS.register("executorch")(ExecuTorchExporter())
