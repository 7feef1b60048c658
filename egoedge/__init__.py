"""egoedge: egocentric-video teachers -> distilled, pruned, int8 students -> phone-ready artifacts, measured.

The layers, each importing only the ones below it:

- ``egoedge.cli``, ``egoedge.pipeline``: the application (commands, and each task's run from data to report);
- ``egoedge.bench``: measurement (host and device benches, profiles, reports, comparisons);
- ``egoedge.edge``: export to ExecuTorch, Core ML, TFLite and ONNX, parity gates, app embedding;
- ``egoedge.trainer``: data, models, training, distillation, pruning, quantization.
"""
