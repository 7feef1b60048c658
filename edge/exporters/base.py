"""What every exporter provides: ``export`` (model -> artifact) and ``load`` (artifact -> callable)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.models.exportable import export_ready  # noqa: F401  (part of this module's API)

# A loaded artifact: float32 inputs in, float32 outputs out (quantisation handled inside).
Session = Callable[[list[np.ndarray]], list[np.ndarray]]
Calibration = Sequence[tuple[torch.Tensor, ...]]


@dataclass(frozen=True)
class IONames:
    """Names of an artifact's input and output tensors, in the order the model takes and returns them."""

    inputs: tuple[str, ...] = ("clip",)
    outputs: tuple[str, ...] = ("logits",)


CLIP_IO = IONames()


class Exporter(Protocol):
    """One backend: ``format`` is the manifest's format name, ``ext`` the artifact's extension.

    ``float_precisions`` are exported by default, ``int8_precisions`` as well with ``--int8``;
    ``precisions`` lists everything the backend can produce.
    """

    format: str
    ext: str
    runtime: str  # the bench's name for the host runtime that runs these artifacts
    # Whether ``load(threads=...)`` sizes one thread pool for the whole process (ExecuTorch) rather
    # than the session's own; a second session then opens with ``threads=None`` to leave it as is.
    process_threads: bool
    precisions: tuple[str, ...]
    float_precisions: tuple[str, ...]
    int8_precisions: tuple[str, ...]
    # Optional: ``program_precision`` names the precision for which ``export`` lowers a given int8 PT2E
    # ``program`` (ONNX Runtime has none: its int8 is its own QDQ format), so programs are made only for
    # those; ``recipe_precision`` a static int8 made from the recipe without its program (ONNX Runtime's);
    # ``runtime_modules`` names what ``load`` imports, which the bench's fork server imports once. A backend that
    # makes its int8 more than one way reports ``int8_choices`` in ``export``'s details and takes ``choice`` (0: the
    # fastest); ``export_artifact`` makes an artifact its gate refused again the next way.

    def export(self, model: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], path: Path,
               precision: str, calibration: Calibration, names: IONames = CLIP_IO,
               program: torch.nn.Module | None = None) -> dict:
        """Write the artifact to ``path`` with tensors named by ``names``; return backend details for the manifest.

        ``program`` is the int8 PT2E program (:mod:`edge.int8`) that a backend taking PT2E graphs
        lowers for its static int8 precision instead of quantizing ``model`` itself; a backend with
        its own int8 format (ONNX Runtime) quantizes ``model`` with the same modules kept float
        (``model.float_modules``) and the same ``calibration``.

        The details may carry ``inputs``/``outputs`` IO specs when the artifact's tensors are not
        plain float32 (a full-integer TFLite model takes int8 with a scale and zero point).
        """
        ...

    def unavailable(self) -> str | None:
        """Why this host cannot run the artifact (``None`` if it can)."""
        ...

    def load(self, path: Path, threads: int | None = None) -> Session:
        """Load the artifact for inference."""
        ...


class ExportError(EgoedgeError):
    """An artifact could not be produced; the message names the backend and the cause."""


def check_precision(exporter: Exporter, precision: str) -> None:
    """Raise a one-line error for a precision the backend does not produce."""
    if precision not in exporter.precisions:
        raise ExportError(f"{exporter.format}: precision '{precision}' is not supported; "
                          f"valid: {', '.join(exporter.precisions)}")


_OP = re.compile(r"\b(aten|prims)(?:\.|::)([a-z][a-z0-9_]*)")
_NODE = re.compile(r"Unsupported fx node (\w+)")  # coremltools names the graph node, not the op
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _module_path(node: torch.fx.Node) -> str | None:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return None
    path = list(stack.values())[-1][0]
    # Non-strict export writes "encoder.stages.1"; dynamo writes "L['self'].encoder.stages[1]".
    return re.sub(r"^L\['self'\]\.?", "", path).replace("[", ".").replace("]", "") or "<model>"


def _same_op(a: str, b: str) -> bool:
    # Decompositions rename ops (aten.erfinv becomes prims.erf_inv): compare without underscores.
    return a.replace("_", "") == b.replace("_", "")


def locate_op(graph: torch.fx.Graph | None, message: str) -> tuple[str | None, str | None]:
    """``(op, module_path)`` of the graph node an error message is about, as far as it can be told."""
    op_match, node_match = _OP.search(message), _NODE.search(message)
    op = f"{op_match.group(1)}.{op_match.group(2)}" if op_match else None
    if graph is None or (op is None and node_match is None):
        return op, None
    for node in graph.nodes:
        if node.op != "call_function":
            continue
        parts = str(node.target).split(".")
        name = parts[1] if len(parts) > 1 else parts[0]
        if (node_match and node.name == node_match.group(1)) or (op_match and _same_op(name, op_match.group(2))):
            return str(node.target).removesuffix(".default"), _module_path(node)
    return op, None


def lowering_error(backend: str, error: BaseException, graph: torch.fx.Graph | None = None) -> ExportError:
    """An ``ExportError`` naming the backend, the op that failed and where it sits in the model."""
    message = _ANSI.sub("", str(error)) or type(error).__name__
    op, where = locate_op(graph, message)
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    # The line that names the op explains more than a generic first line ("Failed to convert ...").
    detail = next((line for line in lines if _OP.search(line) or _NODE.search(line)), lines[0] if lines else "")
    if op:
        place = f" in module '{where}'" if where else ""
        return ExportError(f"{backend}: cannot lower op {op}{place}: {type(error).__name__}: {detail[:300]}")
    return ExportError(f"{backend}: export failed: {type(error).__name__}: {detail[:300]}")


def example_graph(model: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> torch.fx.Graph | None:
    """The exported ATen graph of ``model`` (for locating a failing op), or ``None`` if export fails."""
    try:
        return torch.export.export(model, example_inputs, strict=False).run_decompositions().graph
    except Exception:  # noqa: BLE001  (only used to improve an error message)
        return None


def int8_weight_share(elements: dict[str, int]) -> float | None:
    """Percent of an artifact's stored weight elements that are 8-bit, from element counts by kind
    (``{"int8": n, "float": m}``; int32 biases and the like are left out); ``None`` without weights.

    What a backend really lowered, beside the PT2E program's MAC share: a converter that keeps ops
    float stores their weights float.
    """
    total = elements.get("int8", 0) + elements.get("float", 0)
    return None if total == 0 else round(100.0 * elements.get("int8", 0) / total, 2)

