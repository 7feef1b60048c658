"""``egoedge quantize``: PTQ of a checkpoint of any task, saved as a ``torch.export`` program with its report.

The task of the checkpoint supplies the job (model, calibration, validation and test data, how
outputs are compared and scored); :func:`trainer.quantize.ptq.run_ptq` does the rest. The model
is quantized in its export-ready form, so ``egoedge export NAME_int8.pt2`` lowers this very program.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from egoedge.trainer.checkpoint import read_checkpoint
from egoedge.trainer.common.io import EgoedgeError, sha256_file, write_json_atomic
from egoedge.trainer.common.lock import locks_folder
from egoedge.trainer.common.progress import Progress, no_progress
from egoedge.trainer.models.exportable import int8_ready
from egoedge.trainer.quantize.program import save_program
from egoedge.trainer.quantize.ptq import STATIC_BACKENDS, PTQConfig, check_observers, outputs_of, run_ptq
from egoedge.trainer.tasks import task_of


@locks_folder("out_dir", "egoedge quantize")
def quantize_checkpoint(path, out_dir, cfg: PTQConfig = PTQConfig(), progress: Progress = no_progress,
                        data: str | None = None) -> dict:
    """PTQ a student checkpoint; writes ``<stem>_int8.pt2`` and ``<stem>_int8.json`` into ``out_dir``.

    Clip classifiers and NLQ span models alike (the checkpoint says which). Returns the report:
    settings, blocks kept fp32, sensitivity, and fp32 vs int8 test accuracy. ``data``: a ``--data``
    spec to calibrate and score on instead of the checkpoint's own dataset.

    Example::

        report = quantize_checkpoint("runs/quick/student.pt", "runs/quick", PTQConfig(observer="percentile"))
        report["int8"]["top1"], report["skip"]
    """
    path, out_dir = Path(path), Path(out_dir)
    check_observers(cfg)  # before the checkpoint is read
    if cfg.backend not in STATIC_BACKENDS:
        raise EgoedgeError(f"unknown PTQ backend '{cfg.backend}'; valid: {', '.join(STATIC_BACKENDS)}")
    if cfg.val_samples < 1:
        raise EgoedgeError("val_samples must be >= 1")
    t0 = time.perf_counter()
    ckpt = read_checkpoint(path)  # read once: it says the task, and the task's job builds from it
    task = task_of(ckpt)
    if data:
        ckpt = task.with_data(ckpt, data)
    job = task.ptq_job(path, cfg, ckpt)
    model = int8_ready(job.model)
    result = run_ptq(model, job.calibration, job.val_inputs, cfg, progress, job.match)
    fp32, int8 = outputs_of(model, job.test_inputs), outputs_of(result["model"], job.test_inputs)
    out_dir.mkdir(parents=True, exist_ok=True)
    artifact = out_dir / f"{path.stem}_int8.pt2"
    # The checkpoint is named relative to the program: the two travel together.
    record = {"task": task.name, "source": Path(os.path.relpath(path.resolve(), out_dir.resolve())).as_posix(),
              "source_sha256": sha256_file(path), "quantizer": cfg.backend, "observer": result["observer"],
              "keep_float": result["skip"], "data": data,
              "calibration": {"source": f"{job.source}/train", "samples": len(job.calibration), "seed": cfg.seed}}
    example = tuple(x.clone() for x in job.calibration[0])  # a view would drag the calibration set into the .pt2
    digest = save_program(result["model"], example, artifact, record)
    report = {**record, "artifact": artifact.name, "artifact_sha256": digest, "config": dataclasses.asdict(cfg),
              "skip": result["skip"], "val_agreement": result["val_agreement"], "steps": result["steps"],
              "sensitivity": result["sensitivity"], "macs": result["macs"], "gap": result["gap"],
              "float_modules": result["float_modules"], "bias_correction": result["bias_correction"],
              "fp32": job.score(fp32),
              "int8": job.score(int8), "test_agreement": job.match.agreement(fp32, int8, job.test_inputs),
              "wall_s": round(time.perf_counter() - t0, 1)}
    write_json_atomic(out_dir / f"{path.stem}_int8.json", report)
    return report
