"""``egoedge run --task nlq``: the NLQ flow on the embedded default, and its report.

Reads top to bottom: generate (or reuse) the dataset -> train the baselines (VSLBase, VSLNet,
VSLNet per FiLM mode) -> the DeepVSLNet teacher -> the LightVSLNet student with and without
distillation -> its CBKD-pruned copy -> the PTQ int8 student -> export the distilled student
(fp32 + int8 on every backend) -> benchmark every model and artifact side by side ->
``nlq_predictions.json``, ``nlq_metrics.json``, ``report.*``.
In the report, ``accuracy.top1``/``top5`` are Recall@1/@5 at IoU 0.3 and each row's ``nlq`` has
every official figure.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from egoedge.bench.host_bench import BenchConfig, Target, host_report, manifest_targets
from egoedge.bench.report import summarize
from egoedge.edge.export import ExportConfig, export_checkpoint
from egoedge.pipeline.base import CBKDRequest, Pipeline, RunRequest, RunResult
from egoedge.pipeline.common import RunLog, RunState, StageClock, cbkd_settings, check_out_dir, finish_run, once
from egoedge.pipeline.registry import PIPELINES
from egoedge.trainer.checkpoint import read_checkpoint
from egoedge.trainer.common.io import EgoedgeError, write_json_atomic
from egoedge.trainer.common.lock import locks_folder
from egoedge.trainer.common.progress import Progress, no_progress
from egoedge.trainer.config import to_dict
from egoedge.trainer.engine import TrainConfig
from egoedge.trainer.models.vslnet import FILM_MODES
from egoedge.trainer.nlq import metrics as nlq_metrics
from egoedge.trainer.nlq.compress import cbkd_nlq_checkpoint
from egoedge.trainer.nlq.dataset import NLQData, NLQDataSpec, load_data
from egoedge.trainer.nlq.loss import SpanLoss
from egoedge.trainer.nlq.synthetic import NLQDataConfig, generate
from egoedge.trainer.nlq.train import (
    build_for,
    complexity,
    evaluate_model,
    load_nlq_model,
    save_nlq_checkpoint,
    train_nlq,
)
from egoedge.trainer.prune.cbkd import CBKDConfig, stage_table
from egoedge.trainer.quantize.ptq import PTQConfig
from egoedge.trainer.quantize.quantize_checkpoint import quantize_checkpoint
from egoedge.trainer.tasks import task_of

_NLQ_STAGE = {"weight_decay": 0.01, "label_smoothing": 0.0}


@dataclass(frozen=True)
class NLQRunConfig:
    """Everything ``egoedge run --task nlq`` does, per preset."""

    preset: str = "quick"
    data: NLQDataConfig = field(default_factory=NLQDataConfig)
    max_pos_len: int = 128
    max_query_len: int = 20
    baselines: tuple[str, ...] = ("vslbase", "vslnet")
    film: tuple[str, ...] = ("inside_encoder:after_pos",)  # one extra VSLNet per FiLM mode
    teacher: str = "deepvslnet"
    student: str = "lightvslnet"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=12, batch_size=32, lr=1e-3,
                                                                   weight_decay=0.01, label_smoothing=0.0))
    teacher_epochs: int = 16
    loss: SpanLoss = field(default_factory=lambda: SpanLoss(temperature=1.0))
    # Only the feed-forward and head hidden widths are prunable (see trainer.nlq.compress): cut them hard.
    cbkd: CBKDConfig | None = field(default_factory=lambda: CBKDConfig(
        min_ratio=0.5, max_ratio=0.75, temperature=1.0, gamma=1.0,
        recover=TrainConfig(epochs=2, batch_size=32, lr=1e-3, **_NLQ_STAGE),
        finetune=TrainConfig(epochs=6, batch_size=32, lr=5e-4, **_NLQ_STAGE)))
    # The predictor is by far the most int8-sensitive unit (`egoedge quantize --max-fallback 2` measures
    # it; docs/nlq.md), so the quick run keeps it fp32 without the search.
    ptq: PTQConfig | None = field(default_factory=lambda: PTQConfig(calibration=128, val_samples=120,
                                                                    max_fallback=0, skip=("predictor",)))
    export: ExportConfig = field(default_factory=lambda: ExportConfig(
        formats=("executorch", "tflite", "onnx", "coreml"), int8=True, calibration=128, parity_samples=32))
    bench: BenchConfig = field(default_factory=lambda: BenchConfig(iterations=30, warmup=5, threads=2))

    def validate(self) -> None:
        """Raise ``EgoedgeError`` on an unknown FiLM mode or an impossible CBKD setting."""
        bad = [m for m in self.film if m not in FILM_MODES]
        if bad:
            raise EgoedgeError(f"unknown FiLM mode(s) {', '.join(bad)}; valid: {', '.join(FILM_MODES)}")
        if self.cbkd is not None:
            try:
                self.cbkd.validate()
            except (ValueError, KeyError) as e:
                raise EgoedgeError(str(e.args[0] if e.args else e)) from None


def film_modes(spec: str) -> tuple[str, ...]:
    """``--film`` of ``egoedge run --task nlq``: ``all`` (every mode but ``off``) or a comma-separated list."""
    if spec.strip() == "all":
        return tuple(m for m in FILM_MODES if m != "off")
    modes = tuple(m.strip() for m in spec.split(",") if m.strip())
    bad = [m for m in modes if m not in FILM_MODES]
    if bad or not modes:
        raise EgoedgeError(f"unknown FiLM mode(s) {', '.join(bad) or repr(spec)}; valid: all, {', '.join(FILM_MODES)}")
    return modes


def nlq_preset(name: str) -> NLQRunConfig:
    """The NLQ settings of a preset: ``mini`` (seconds, for tests), ``quick`` (2 CPU cores), ``full`` (GPU)."""
    if name == "quick":
        return NLQRunConfig()
    if name == "mini":
        return NLQRunConfig(preset="mini", data=NLQDataConfig(train_clips=24, val_clips=6, test_clips=6, queries=2,
                                                              min_seconds=20, max_seconds=60, dim=32),
                            max_pos_len=32, max_query_len=12,
                            train=TrainConfig(epochs=1, batch_size=16, label_smoothing=0.0), teacher_epochs=1,
                            cbkd=CBKDConfig(recover=TrainConfig(epochs=1, batch_size=16, label_smoothing=0.0),
                                            finetune=TrainConfig(epochs=1, batch_size=16, label_smoothing=0.0)),
                            ptq=PTQConfig(calibration=16, val_samples=8, max_fallback=0),
                            # ONNX alone, as the clip mini preset: ExecuTorch's NLQ lowering is tested on its own.
                            export=ExportConfig(formats=("onnx",), int8=True, calibration=8, parity_samples=4),
                            bench=BenchConfig(iterations=3, warmup=1, threads=2))
    if name == "full":
        return NLQRunConfig(preset="full", data=NLQDataConfig(train_clips=1200, val_clips=200, test_clips=300),
                            film=tuple(m for m in FILM_MODES if m != "off"),
                            train=TrainConfig(epochs=30, batch_size=32, lr=1e-3, weight_decay=0.01,
                                              label_smoothing=0.0), teacher_epochs=40)
    raise EgoedgeError(f"unknown preset '{name}'; valid: mini, quick, full")


@dataclass
class Trained:
    """One PyTorch model of the run (an int8 one is a ``torch.export`` program)."""

    name: str
    arch: str
    path: Path
    model: torch.nn.Module | Path  # a path: a saved int8 program, which the eager runtime loads itself
    metrics: dict
    cost: dict
    tokenizer: str = "words"
    precision: str = "fp32"


def _loaded(name: str, path: Path) -> Trained:
    model, ckpt = load_nlq_model(path)
    m = ckpt["metrics"]
    return Trained(name, ckpt["arch"], path, model, m, {"params": m["params"], "macs": m["macs"]}, model.tokenizer)


def _train_one(name: str, arch: str, data: NLQData, cfg: NLQRunConfig, out: Path, progress: Progress,
               log: RunLog, state: RunState, teacher: Trained | None = None, epochs: int | None = None,
               **overrides) -> Trained:
    """One model trained, scored and saved as ``nlq_NAME.pt``; taken from the run folder when it finished before."""
    stage, path = f"model {name}", out / f"nlq_{name}.pt"
    needs = (teacher.path, path) if teacher else (path,)  # a retrained teacher retrains its student
    if state.finished(stage, *needs):
        progress(f"train {name} (finished before)", 1, 1, {})
        log("reused", stage=stage)
        return _loaded(name, path)
    torch.manual_seed(cfg.train.seed)
    model = build_for(arch, data, **overrides)
    train_cfg = replace(cfg.train, epochs=epochs or cfg.train.epochs)
    t0 = time.perf_counter()
    history = train_nlq(model, data, train_cfg, cfg.loss, teacher.model if teacher else None, progress,
                        f"train {name}", resume=out / f"nlq_{name}.resume.pt",
                        log=lambda r: log("epoch", model=name, **r))
    seconds = round(time.perf_counter() - t0, 1)
    model.cpu().eval()
    _, val = evaluate_model(model, data, "val")
    _, test = evaluate_model(model, data, "test")
    cost = complexity(model)
    metrics = {"val": nlq_metrics.metrics_row(val), "test": nlq_metrics.metrics_row(test), **cost,
               "train_seconds": seconds, "history": history}
    path = save_nlq_checkpoint(path, arch, model, data, metrics,
                               {"train": asdict(train_cfg), "loss": asdict(cfg.loss),
                                "teacher": teacher.path.name if teacher else None})
    state.mark(stage, *needs)
    log("model", name=name, arch=arch, test=metrics["test"], params=cost["params"], macs=cost["macs"],
        seconds=seconds)
    return Trained(name, arch, path, model, metrics, cost, model.tokenizer)


@locks_folder("out", "egoedge run --task nlq")
def run_nlq(cfg: NLQRunConfig, out: str | Path, progress: Progress = no_progress) -> dict:
    """Run the NLQ flow into ``out``; returns the report (also written there)."""
    cfg.validate()
    out = Path(out)
    check_out_dir(out)
    t_start = time.perf_counter()
    clock = StageClock()
    log = RunLog(out / "log.jsonl")
    log("start", task="nlq", preset=cfg.preset)
    with clock("data"):
        progress("NLQ data", 0, 1, {})
        root = generate(cfg.data)
        data = load_data(NLQDataSpec(str(root), cfg.max_pos_len, cfg.max_query_len, cfg.data.fps))
        progress("NLQ data", 1, 1, {})
    log("data", root=str(root), **{s: len(v) for s, v in data.splits.items()}, vocab=len(data.vocab))
    # Whole-flow resume, as the clip flow's: every finished stage whose files are intact is reused.
    state = RunState(out, {"task": "nlq", **{k: v for k, v in to_dict(cfg).items() if k != "bench"}})

    models: list[Trained] = []
    with clock("baselines"):
        for arch in cfg.baselines:
            models.append(_train_one(arch, arch, data, cfg, out, progress, log, state))
        for mode in cfg.film:
            models.append(_train_one(f"vslnet_film-{mode.replace(':', '-')}", "vslnet", data, cfg, out, progress,
                                     log, state, film=mode))
    with clock("teacher"):
        teacher = _train_one("teacher", cfg.teacher, data, cfg, out, progress, log, state,
                             epochs=cfg.teacher_epochs)
    with clock("student"):
        plain = _train_one("student_nokd", cfg.student, data, cfg, out, progress, log, state)
        student = _train_one("student", cfg.student, data, cfg, out, progress, log, state, teacher=teacher)
    models += [teacher, plain, student]
    compressed, cbkd_info, ptq_info = student, None, None
    if cfg.cbkd is not None:
        path = out / "nlq_student_cbkd.pt"

        def compress() -> dict:
            _, summary = cbkd_nlq_checkpoint(student.path, path, cfg.cbkd, progress,
                                             lambda r: log("epoch", model="student_cbkd", **r))
            return {"summary": {"macs_cut": summary["macs_cut"], "params_cut": summary["params_cut"],
                                "stages": stage_table(summary)}}

        cbkd_info = once(state, clock, log, "cbkd", (student.path, path), compress)["summary"]
        compressed = _loaded("student_cbkd", path)
        models.append(compressed)
        log("cbkd", test=compressed.metrics["test"], macs_cut=cbkd_info["macs_cut"],
            params_cut=cbkd_info["params_cut"])
    if cfg.ptq is not None:  # the int8 student (of the CBKD student when there is one), as a PyTorch program
        program = out / f"{compressed.path.stem}_int8.pt2"
        ptq = once(state, clock, log, "ptq", (compressed.path, program),
                   lambda: {"report": quantize_checkpoint(compressed.path, out, cfg.ptq, progress)})["report"]
        log("ptq", source=compressed.name, **{k: ptq[k] for k in ("skip", "val_agreement", "fp32", "int8",
                                                                 "test_agreement")})
        ptq_info = {k: ptq[k] for k in ("source", "artifact", "skip", "val_agreement", "test_agreement")}
        path = out / ptq["artifact"]
        metrics = {"test": {k: v for k, v in ptq["int8"].items() if k not in ("top1", "top5")}}
        models.append(Trained(f"{compressed.name}_int8", compressed.arch, path, path, metrics, compressed.cost,
                              compressed.tokenizer, "int8"))

    preds, metrics = evaluate_model(student.model, data, "test")
    write_json_atomic(out / "nlq_predictions.json", nlq_metrics.submission(preds))
    write_json_atomic(out / "nlq_metrics.json", nlq_metrics.metrics_file(
        metrics, data.splits["test"].annotation_file, model=student.name,
        models={m.name: m.metrics["test"] for m in models}))

    manifest_path = out / "export" / "manifest.json"

    def export() -> dict:
        export_checkpoint(student.path, out / "export", cfg.export, progress)
        return {}  # nothing to keep beyond the manifest file itself

    once(state, clock, log, "export", (student.path, manifest_path), export)
    manifest = json.loads(manifest_path.read_text())  # its artifacts' hashes are checked by the bench
    log("export", artifacts=[{k: a[k] for k in ("name", "status", "reason", "parity")} for a in manifest["artifacts"]])
    # Every model is timed and scored on the test queries; the student is the reference for agreement.
    ckpt = read_checkpoint(student.path)
    task = task_of(ckpt)
    reference = models.index(student)
    targets = [Target(m.name, "pytorch", m.precision, m.model, m.path.stat().st_size, m.cost["params"],
                      m.cost["macs"], i >= reference, path=m.path, variant=m.tokenizer) for i, m in enumerate(models)]
    targets += manifest_targets(out / "export", manifest, student.cost["params"], student.cost["macs"])
    with clock("bench"):
        report = host_report(targets, task, task.evaluation(ckpt), cfg.bench, progress)
    report["run"] = {"preset": cfg.preset, "task": "nlq", "dataset": str(root), "wall_s": None,
                     "kd": asdict(cfg.loss), "cbkd": cbkd_info, "ptq": ptq_info}
    report["summary"] = summarize(report)
    report["summary"]["student R1@0.3 with / without KD"] = (
        f"{student.metrics['test']['R1@0.3']:.1f}% / {plain.metrics['test']['R1@0.3']:.1f}%")
    if cbkd_info is not None:
        report["summary"]["CBKD student"] = (
            f"MACs -{100 * cbkd_info['macs_cut']:.1f}%, params -{100 * cbkd_info['params_cut']:.1f}%, R1@0.3 "
            f"{compressed.metrics['test']['R1@0.3']:.1f}% (student {student.metrics['test']['R1@0.3']:.1f}%)")
    if ptq_info is not None:
        int8 = models[-1].metrics["test"]
        kept = ", ".join(ptq_info["skip"]) or "nothing"
        report["summary"]["int8 student (PyTorch)"] = (
            f"R1@0.3 {int8['R1@0.3']:.1f}% (fp32 {compressed.metrics['test']['R1@0.3']:.1f}%), top-1 window = "
            f"fp32's on {ptq_info['test_agreement']:.1f}% of test queries, kept fp32: {kept}")
    return finish_run(report, out, t_start, clock, log)


def run_request(request: RunRequest, progress: Progress = no_progress) -> RunResult:
    """``egoedge run --task nlq``: the preset's NLQ settings with ``--threads``/``--iterations``/``--film``."""
    request.refuse("config", "recipe", "student", "teacher", "teacher_weights", "alpha", "beta", "gamma", "temperature",
                   "videos", "max_bad")
    if request.data != "synthetic":
        raise EgoedgeError(f"egoedge run --task nlq runs on the generated queries; train on your own Ego4D "
                           f"features step by step: egoedge nlq train --data {request.data}")
    o = request.options
    cfg = nlq_preset(request.preset)
    bench = replace(cfg.bench, **{k: o[k] for k in ("threads", "iterations") if o.get(k) is not None})
    cfg = replace(cfg, bench=bench, film=cfg.film if o.get("film") is None else film_modes(o["film"]))
    out = request.out or Path("runs") / f"nlq-{request.preset}"
    report = run_nlq(cfg, out, progress)
    return RunResult(report, {name: out / name for name in ("nlq_predictions.json", "nlq_metrics.json",
                                                             "report.json", "report.md", "pareto.png",
                                                             "report.html")})


def cbkd_request(request: CBKDRequest, progress: Progress = no_progress) -> tuple[Path, dict]:
    """``egoedge train cbkd`` of an NLQ checkpoint: the preset's NLQ schedule with the flags, on its own data."""
    request.refuse("config", "data")
    cfg = cbkd_settings(nlq_preset(request.preset).cbkd or NLQRunConfig().cbkd, request.options)
    request.out.parent.mkdir(parents=True, exist_ok=True)
    log = RunLog(request.out.parent / "log.jsonl")
    log("train_cbkd", cbkd=to_dict(cfg), source=str(request.checkpoint))
    return cbkd_nlq_checkpoint(request.checkpoint, request.out, cfg, progress, lambda record: log("epoch", **record))


PIPELINES.register("nlq")(Pipeline(run_request, cbkd_request))
