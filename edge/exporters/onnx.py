"""ONNX: ``.onnx`` (opset 18) via ``torch.onnx`` (dynamo), and int8 QDQ calibrated with onnxruntime.

ONNX Runtime is the reference runtime here: it runs everywhere, so its int8 accuracy is a
check on the calibration set that the mobile backends share.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from pathlib import Path

import numpy as np
import torch

from edge.exporters.base import CLIP_IO, Calibration, IONames, Session, check_precision, example_graph, lowering_error
from edge.exporters.registry import EXPORTERS
from trainer.common.io import atomic_write

OPSET = 18


def ort_session(path: Path, threads: int | None = None, profile_prefix: str | None = None):
    """A CPU ``onnxruntime.InferenceSession`` on ``threads`` intra-op threads, profiling to ``profile_prefix`` if given.

    The bench's timing and its op profiler both open sessions here, so a profile describes the
    session that was timed.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    if profile_prefix is not None:
        options.enable_profiling, options.profile_file_prefix = True, profile_prefix
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxExporter:
    format = "onnx"
    ext = "onnx"
    precisions = ("fp32", "int8")
    float_precisions = ("fp32",)
    int8_precisions = ("int8",)

    def export(self, model: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], path: Path,
               precision: str, calibration: Calibration, names: IONames = CLIP_IO) -> dict:
        import onnx

        check_precision(self, precision)
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = Path(tmp) / "model.onnx"
            try:
                # torch.onnx prints its progress to stdout; the CLI has its own.
                with contextlib.redirect_stdout(io.StringIO()):
                    torch.onnx.export(model, example_inputs, fp32, input_names=list(names.inputs),
                                      output_names=list(names.outputs),
                                      opset_version=OPSET, dynamo=True, external_data=False, verbose=False)
                onnx.checker.check_model(str(fp32))
            except Exception as e:  # noqa: BLE001  (the exporter raises from many layers)
                raise lowering_error(self.format, e, example_graph(model, example_inputs)) from e
            source = fp32 if precision == "fp32" else self._quantize(fp32, Path(tmp), calibration, names)
            atomic_write(path, lambda p: p.write_bytes(source.read_bytes()))
        graph = onnx.load(str(path)).graph
        ops = sorted({n.op_type for n in graph.node})
        return {"opset": OPSET, "ops": ops,
                "quantization": "static QDQ, per-channel int8 weights, uint8 activations (MinMax)"
                if precision == "int8" else None}

    def _quantize(self, fp32: Path, tmp: Path, calibration: Calibration, names: IONames) -> Path:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.samples = iter(calibration)

            def get_next(self) -> dict | None:
                sample = next(self.samples, None)
                return None if sample is None else {n: t.numpy() for n, t in zip(names.inputs, sample, strict=True)}

        pre, out = tmp / "pre.onnx", tmp / "int8.onnx"
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the quantizer logs a warning for every 1-D weight it skips
        try:
            quant_pre_process(str(fp32), str(pre))
            # uint8 activations x int8 weights (U8S8) is the pair ONNX Runtime's x86 kernels are fastest
            # at (VNNI's u8*s8 dot product); with int8 activations MobileViT-xxs ran 1.7x and
            # MobileNetV4 2.4x slower here.
            quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        except Exception as e:  # noqa: BLE001
            raise lowering_error(self.format, e) from e
        finally:
            root.setLevel(level)
        return out

    def unavailable(self) -> str | None:
        return None

    def load(self, path: Path, threads: int | None = None) -> Session:
        session = ort_session(path, threads)
        names = [i.name for i in session.get_inputs()]

        def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
            return session.run(None, dict(zip(names, inputs, strict=True)))

        return run


EXPORTERS.register("onnx")(OnnxExporter())
