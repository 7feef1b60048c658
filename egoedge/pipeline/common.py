"""Pieces every run pipeline shares: the run folder check, the event log and the resumable run state."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from egoedge.bench.report_files import write_report
from egoedge.trainer.common.io import EgoedgeError, sha256_path, write_json_atomic
from egoedge.trainer.prune.cbkd import CBKDConfig


class RunLog:
    """Append-only ``log.jsonl``: one JSON object per event, flushed as it happens."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.t0 = time.perf_counter()

    def __call__(self, event: str, **fields) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"t": round(time.perf_counter() - self.t0, 3), "event": event, **fields}) + "\n")


def check_out_dir(out: Path) -> None:
    """Create the run folder, or fail in one line if it cannot be written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EgoedgeError(f"cannot create run folder {out}: {e.strerror}; choose another --out") from None
    if not os.access(out, os.W_OK):
        raise EgoedgeError(f"run folder {out} is not writable; choose another --out")


def cbkd_settings(cfg: CBKDConfig, options: dict) -> CBKDConfig:
    """A task's CBKD schedule with ``--min-ratio``, ``--max-ratio`` and ``--finetune-epochs`` applied, checked."""
    from dataclasses import replace

    cfg = replace(cfg, **{k: options[k] for k in ("min_ratio", "max_ratio") if options.get(k) is not None})
    epochs = options.get("finetune_epochs")
    if epochs is not None:
        if epochs < 0:
            raise EgoedgeError(f"--finetune-epochs must be >= 0, got {epochs}")
        cfg = replace(cfg, finetune=replace(cfg.finetune, epochs=epochs))
    try:
        cfg.validate()
    except (ValueError, KeyError) as e:
        raise EgoedgeError(str(e.args[0] if e.args else e)) from None
    return cfg


class RunState:
    """``run_state.json``: the stages of a run that finished, with their files' hashes and the settings behind them.

    A rerun of ``egoedge run`` skips every finished stage whose files are still intact; a run
    folder holding another configuration's stages is refused instead of mixed.

    Example::

        state = RunState(out, to_dict(cfg))
        if not state.finished("teacher", out / "teacher.pt"):
            train_teacher(...); state.mark("teacher", out / "teacher.pt")
    """

    NAME = "run_state.json"

    def __init__(self, out: Path, config: dict) -> None:
        self.path = out / self.NAME
        self.config = json.loads(json.dumps(config, default=str))
        self.fingerprint = hashlib.sha256(json.dumps(self.config, sort_keys=True).encode()).hexdigest()
        self.done: dict[str, dict] = {}
        if not self.path.exists():
            return
        try:
            old = json.loads(self.path.read_text())
            fingerprint, done, old_config = old["fingerprint"], dict(old["done"]), old["config"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise EgoedgeError(f"{self.path}: unreadable ({type(e).__name__}); delete it to start this run over") \
                from None
        if fingerprint != self.fingerprint:
            diff = sorted(k for k in set(old_config) | set(self.config) if old_config.get(k) != self.config.get(k))
            raise EgoedgeError(f"{self.path.parent} holds a run of other settings ({', '.join(diff) or 'config'} "
                               f"differ); use another --out, or delete {self.path} to start over")
        self.done = done

    def finished(self, stage: str, *files: Path) -> bool:
        """Whether ``stage`` finished before and each of its files still has the recorded bytes."""
        rec = self.done.get(stage)
        if rec is None:
            return False
        hashes = rec.get("sha256", {})
        return all(f.exists() and hashes.get(str(f.relative_to(self.path.parent))) == sha256_path(f) for f in files)

    def mark(self, stage: str, *files: Path, **info) -> None:
        """Record ``stage`` as finished with its files' hashes (and any small ``info`` to reuse)."""
        self.done[stage] = {"sha256": {str(f.relative_to(self.path.parent)): sha256_path(f) for f in files}, **info}
        write_json_atomic(self.path, {"fingerprint": self.fingerprint, "config": self.config, "done": self.done})

    def info(self, stage: str) -> dict:
        """What :meth:`mark` kept for ``stage``."""
        return self.done.get(stage, {})


class StageClock:
    """Wall and CPU seconds of each stage of a run: report.json's ``stages`` and the terminal's breakdown.

    CPU time counts this process and the child processes it waited for, so ``cpu_s / wall_s`` near
    the core count means the stage kept every core busy. The bench's isolated targets run in children
    of its fork server, not of this process: the bench's CPU time leaves them out.

    Example::

        clock = StageClock()
        with clock("teacher"):
            train_teacher(...)
        clock.stages  # [{"name": "teacher", "wall_s": 181.2, "cpu_s": 352.0}]
    """

    def __init__(self) -> None:
        self.stages: list[dict] = []

    @staticmethod
    def _cpu() -> float:
        import resource

        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    def reused(self, name: str) -> None:
        """A stage a resumed run took from the run folder instead of running it."""
        self.stages.append({"name": name, "wall_s": 0.0, "cpu_s": 0.0, "reused": True})

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), self._cpu()
        try:
            yield
        finally:
            self.stages.append({"name": name, "wall_s": round(time.perf_counter() - wall, 1),
                                "cpu_s": round(self._cpu() - cpu, 1)})


def once(state: RunState, clock: StageClock, log: RunLog, stage: str, files: tuple[Path, ...],
         work: Callable[[], dict]) -> dict:
    """Run ``stage`` unless it finished before with ``files`` intact; returns what it recorded (``work()``'s result).

    Example: ``info = once(state, clock, log, "ptq", (src, program), lambda: {"report": quantize(...)})``
    """
    if state.finished(stage, *files):
        clock.reused(stage)
        log("reused", stage=stage)
        return state.info(stage)
    with clock(stage):
        info = work()
    state.mark(stage, *files, **info)
    return info


def finish_run(report: dict, out: Path, t_start: float, clock: StageClock, log: RunLog) -> dict:
    """Stamp the run's wall time and stages on ``report``, write report.json/md/png into ``out``, log the end."""
    report["run"]["wall_s"] = round(time.perf_counter() - t_start, 1)
    report["summary"]["run wall time"] = f"{report['run']['wall_s']:.0f} s"
    report["stages"] = clock.stages
    paths = write_report(report, out)
    log("done", wall_s=report["run"]["wall_s"], report={k: str(v) for k, v in paths.items()})
    return report
