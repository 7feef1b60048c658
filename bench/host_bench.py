"""Benchmark targets side by side on the host CPU: same inputs, same threads, one process."""

from __future__ import annotations

import multiprocessing
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from egoedge.bench.machine import machine_info
from egoedge.bench.measure import PeakRSS, time_calls, time_in_turns
from egoedge.bench.peak import add_throughput, measure_peaks
from egoedge.bench.profile import profile_target
from egoedge.bench.runtimes import RUNTIMES
from egoedge.edge.artifact import run_session
from egoedge.edge.exporters import EXPORTERS, Session
from egoedge.edge.gap import read_gap
from egoedge.edge.streaming import (
    FrameRunner,
    StepRunner,
    StreamRunner,
    head_threads,
    sliding_accuracy,
    step_roles,
    stream_of,
)
from egoedge.trainer.checkpoint import load_model, read_checkpoint
from egoedge.trainer.common.arrays import read_arrays
from egoedge.trainer.common.complexity import count_macs, count_params
from egoedge.trainer.common.io import EgoedgeError, path_bytes, sha256_path
from egoedge.trainer.common.progress import Progress, no_progress
from egoedge.trainer.quantize.gap import worst
from egoedge.trainer.tasks import Evaluation, Task, task_of
from egoedge.trainer.tasks.base import Arrays


@dataclass(frozen=True)
class BenchConfig:
    """How long to measure, with how many threads, and how targets are kept apart."""

    warmup: int = 5
    iterations: int = 30
    threads: int = 2
    accuracy: bool = True
    budget_s: float | None = None  # time each target for this long instead of ``iterations`` calls
    isolate: bool = False  # one fresh process per target: its own peak memory, and a crash stays contained
    options: dict = field(default_factory=dict)  # runtime options per format, e.g. {"tflite": {"xnnpack": False}}
    device_timeout_s: float = 600.0  # the longest one artifact may take on a phone before it counts as hung
    profile_runs: int = 0  # > 0: also profile each host target's ops over this many calls (after the timing)
    more_threads: tuple[int, ...] = ()  # host: time every target again at each of these thread counts


def parse_threads(text: str) -> tuple[int, ...]:
    """``"2"`` -> ``(2,)``, ``"1,all"`` -> ``(1, cores)``: thread counts to bench at, the first one in full.

    Example: ``parse_threads("2,1")`` -> ``(2, 1)``
    """
    import os

    counts: list[int] = []
    for part in (p.strip() for p in str(text).split(",")):
        if part == "all":
            n = os.cpu_count() or 1
        elif part.isdigit() and int(part) >= 1:
            n = int(part)
        else:
            raise EgoedgeError(f"--threads takes counts >= 1 or 'all', comma-separated (e.g. 1,2); got '{text}'")
        if n not in counts:
            counts.append(n)
    return tuple(counts)


DELEGATION_KEYS = ("delegated_subgraphs", "delegated_nodes", "portable_nodes")


@dataclass(frozen=True)
class StreamPair:
    """How a streaming target is fed (the manifest's ``streaming`` block): a pair's other half, or ``head=None``
    for a fused step, whose state the runner carries."""

    head: Path | None
    window: int
    dim: int
    clip: str  # the name of the clip artifact of the same backend and precision, for the ratio
    names: tuple[str, ...]  # encoder and head artifact names (a step: its own)
    frame_shape: tuple[int, ...]  # the encoder's input, batch 1
    roles: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())  # a step's input and output roles (step_roles)
    clip_file: Path | None = None  # the clip artifact, timed in turns with the stream for the ratio


@dataclass
class Target:
    """One thing to measure: an eager model or an exported artifact."""

    name: str
    format: str
    precision: str
    target: torch.nn.Module | Path
    size_bytes: int
    params: int | None
    macs: int | None
    compare_to_reference: bool  # derived from the reference model: report agreement and parity
    refused: str | None = None  # the export's parity-gate verdict: measured, but reported as failed
    path: Path | None = None  # a file a fresh process can load ``target`` from
    delegation: dict | None = None  # ExecuTorch: delegated subgraphs/nodes and portable nodes, from the manifest
    variant: object = None  # which form of the test inputs it reads (the task's ``input_variant``)
    io: dict | None = None  # an artifact's manifest ``inputs``/``outputs`` specs (names, dtypes, scale, zero point)
    damaged: str | None = None  # why the file on disk is not the one the manifest describes: never loaded
    stream: StreamPair | None = None  # a streaming artifact: ``target`` is its step or frame encoder, this the rest
    reference: str | None = None  # the target whose outputs this one is compared with (None: the first reference)
    int8: dict | None = None  # an int8 artifact's recipe from the manifest: modules kept fp32, MAC share, numeric gap

    @property
    def loadable(self) -> torch.nn.Module | Path:
        return self.path if self.path is not None else self.target


def checkpoint_target(path: Path, name: str, compare_to_reference: bool, ckpt: dict | None = None) -> Target:
    """An eager PyTorch target from a checkpoint file of any task (``ckpt``: the file, if already read)."""
    ckpt = ckpt if ckpt is not None else read_checkpoint(path)
    model, _ = load_model(path, ckpt=ckpt)
    macs = count_macs(model, model.example_inputs())
    return Target(name, "pytorch", "fp32", model, path.stat().st_size, count_params(model), macs,
                  compare_to_reference, path=path, variant=task_of(ckpt).input_variant(ckpt))


def program_target(path: Path, name: str, example: tuple) -> Target:
    """The eager reference of your own model's export: its ``source.pt2`` program, run by PyTorch."""
    import torch

    from egoedge.trainer.quantize.program import load_program

    module = load_program(path)
    inputs = tuple(torch.from_numpy(x) for x in example)
    # The runtime loads the program from its path (an exported module cannot be switched to eval mode).
    return Target(name, "pytorch", "fp32", path, path.stat().st_size, count_params(module),
                  count_macs(module, inputs), True, path=path)


def manifest_targets(export_dir: Path, manifest: dict, params: int | None, macs: int | None,
                     host_only: bool = True) -> list[Target]:
    """Targets for every artifact on disk (``host_only``: whose format this host can run).

    An artifact the parity gate refused is still measured (its size and speed are facts about
    the backend) but its row is reported as failed, with the gate's reason. A streaming pair
    (frame encoder + temporal head) is one target, timed per new frame.
    """
    out = []
    by_name = {a["name"]: a for a in manifest["artifacts"]}
    for a in manifest["artifacts"]:
        role = a.get("role", "clip")
        runnable = a["format"] in RUNTIMES and RUNTIMES.get(a["format"]).available() is None
        if not a["file"] or not (runnable or not host_only) or role == "temporal_head":
            continue
        refused = None if a["status"] == "ok" else (a["reason"] or "failed at export")
        backend = a.get("backend") or {}
        delegation = {k: backend[k] for k in DELEGATION_KEYS if k in backend} or None
        target = Target(a["name"], a["format"], a["precision"], export_dir / a["file"], a["bytes"],
                        params, macs, True, refused, delegation=delegation,
                        int8=int8_recipe(manifest, a["precision"], backend.get("int8_weights_pct"),
                                         worst_layers(export_dir, a)),
                        io={"inputs": a["inputs"], "outputs": a["outputs"]},
                        damaged=integrity_error(export_dir / a["file"], a))
        streaming = manifest.get("streaming") or {}
        if role == "stream_step":
            if not streaming:
                continue  # a step without its window size cannot run; the manifest check reports the gap
            target.macs = streaming.get("frame_macs")
            clip = a["name"].replace("_step_", "_", 1)
            target.stream = StreamPair(None, streaming["window"], streaming["embedding_dim"], clip, (a["name"],),
                                       tuple(a["inputs"][0]["shape"]),
                                       step_roles(streaming, [t["name"] for t in a["inputs"]],
                                                  [t["name"] for t in a["outputs"]]),
                                       intact_file(export_dir, by_name.get(clip)))
        if role == "frame_encoder":
            head = by_name.get(a.get("pair"))
            if head is None or not head["file"] or not streaming:
                continue  # an encoder without its head cannot run; the manifest check reports the gap
            target.name = stream_name(a["name"])
            target.size_bytes = a["bytes"] + head["bytes"]
            target.macs = streaming.get("frame_macs")
            target.damaged = target.damaged or integrity_error(export_dir / head["file"], head)
            clip = a["name"].replace("_frame_encoder_", "_", 1)
            target.stream = StreamPair(export_dir / head["file"], streaming["window"], streaming["embedding_dim"],
                                       clip, (a["name"], head["name"]), tuple(a["inputs"][0]["shape"]),
                                       clip_file=intact_file(export_dir, by_name.get(clip)))
        out.append(target)
    return out


def int8_program_target(folder: Path, manifest: dict, source: Target) -> list[Target]:
    """The int8 program every int8 artifact of ``manifest`` was lowered from, as a PyTorch row (``NAME_int8``)."""
    program = (manifest.get("int8") or {}).get("program")
    if not program:
        return []
    path = folder / program
    return [Target(f"{source.name}_int8", "pytorch", "int8", path, path_bytes(path) if path.is_file() else None,
                   source.params, source.macs, True, path=path, int8=int8_recipe(manifest, "int8"),
                   damaged=None if path.is_file() else f"{DAMAGED}: {program} is missing")]


def worst_layers(export_dir: Path, artifact: dict, count: int = 5) -> list[dict] | None:
    """An int8 artifact's ``count`` layers that lose the most SQNR themselves, from its gap file (if it has one)."""
    if not artifact.get("gap"):
        return None
    try:
        gap = read_gap(export_dir / artifact["gap"])
    except EgoedgeError:
        return None
    keys = ("layer", "op", "sqnr_db", "lost_db", "max_abs")
    return [{k: r[k] for k in keys} | {"measured": gap["measured"]} for r in worst(gap["layers"], count)]


def int8_recipe(manifest: dict, precision: str, weights_pct: float | None = None,
                worst_rows: list[dict] | None = None) -> dict | None:
    """What an int8 artifact's report row says of its recipe: the modules kept fp32, the share of MACs that run
    in int8, the share of its stored weights that are 8-bit (``weights_pct``, what the backend really lowered,
    where the exporter measured it), each module's numeric gap (what quantizing it alone costs) and the layers
    losing the most SQNR (``worst_rows``, from the artifact's gap file)."""
    int8 = manifest.get("int8")
    if precision != "int8" or not int8:
        return None
    from egoedge.trainer.quantize.ptq import MOSTLY_FLOAT_BELOW, int8_mac_share

    macs = int8.get("macs") or {}
    keep = list(int8.get("keep_float") or [])
    out = {"keep_float": keep, "chosen_by": int8.get("chosen_by"), "observer": int8.get("observer")}
    share = int8.get("macs_int8_pct", int8_mac_share(macs, keep))  # older manifests: computed here
    if share is not None:
        out["macs_int8_pct"] = share
    if weights_pct is not None:
        out["weights_int8_pct"] = weights_pct
    # The MACs that run in int8 decide. Stored weights catch a backend that did not lower a program meant to be
    # all int8; with modules kept fp32 on purpose a big fp32 classifier can hold half the weights and few MACs.
    shares = [s for s in (share, None if keep else weights_pct) if s is not None]
    if shares:
        out["mostly_float"] = min(shares) < MOSTLY_FLOAT_BELOW
    if macs:
        out["module_macs"] = macs
    if int8.get("sensitivity"):
        out["sensitivity"] = int8["sensitivity"]
    if worst_rows:
        out["worst_layers"] = worst_rows
    return out


def stream_name(encoder_name: str) -> str:
    """A streaming pair's report name from its encoder's.

    Example: ``stream_name("student_frame_encoder_onnx_int8")`` is ``"student_stream_onnx_int8"``.
    """
    return encoder_name.replace("_frame_encoder_", "_stream_", 1)


DAMAGED = "modified or truncated after export"


def integrity_error(path: Path, artifact: dict) -> str | None:
    """Why ``path`` is not the artifact the manifest describes (size, then sha256), or ``None`` when it is."""
    if not path.exists():
        return f"{DAMAGED}: {path.name} is missing"
    size = path_bytes(path)
    if size != artifact["bytes"]:
        return f"{DAMAGED}: {path.name} has {size} bytes, the manifest says {artifact['bytes']}"
    if sha256_path(path) != artifact["sha256"]:
        return f"{DAMAGED}: {path.name}'s sha256 differs from the manifest's"
    return None


def intact_file(export_dir: Path, artifact: dict | None) -> Path | None:
    """An artifact's file when it is on disk as the manifest describes it, else ``None``."""
    if artifact is None or not artifact["file"]:
        return None
    return None if integrity_error(export_dir / artifact["file"], artifact) else export_dir / artifact["file"]


def measure(format: str, target: torch.nn.Module | Path, inputs: Arrays, cfg: BenchConfig,
            progress: Progress = no_progress, stage: str = "", stream: StreamPair | None = None) -> dict:
    """Load one target, time it on the first sample, then run every sample for accuracy.

    ``inputs`` holds one ``(N, ...)`` array per model input. Returns ``load_ms`` (load plus the
    first call, where lazy allocation happens), ``latency_ms`` statistics, ``peak_rss_mb`` of this
    process while loading and timing, ``outputs`` (one array per model output), and with
    ``cfg.profile_runs`` a top-ops ``profile`` (recorded after the timing, so it cannot slow it).
    A streaming pair is timed per new frame instead (:func:`measure_stream`).
    """
    if stream is not None:
        return measure_stream(format, target, stream, inputs, cfg)
    first = [x[:1] for x in inputs]
    session, out = time_session(lambda: RUNTIMES.get(format).open(target, cfg.threads, cfg.options.get(format)),
                                first, cfg)
    out["outputs"] = run_session(session, inputs, progress, stage) if cfg.accuracy else None
    if cfg.profile_runs:
        out["profile"] = profile_target(format, target, first, cfg.threads, cfg.profile_runs)
    return out


def measure_stream(format: str, encoder: Path, stream: StreamPair, inputs: Arrays, cfg: BenchConfig) -> dict:
    """A streaming artifact: the steady-state cost of one new frame (a pair's encoder + head, or one fused step, on
    a full window), then accuracy.

    The test clips are played back to back through the pair once: the logits at each clip's
    last frame are its clip prediction (the window then holds exactly that clip), and every step's
    logits come back as ``stream_logits`` for the sliding-window score.
    """
    clips = inputs[0]
    runner: FrameRunner | None = None

    def open_pair() -> Session:
        nonlocal runner
        runner, _ = open_runner(format, encoder, stream, cfg, clips[0])
        return lambda sample: [runner.step(sample[0])]

    _, out = time_session(open_pair, [clips[0, :1]], cfg)
    if cfg.accuracy:
        steps = runner.frames(stream_of(clips, len(clips)))
        out["outputs"] = (np.ascontiguousarray(steps[stream.window - 1::stream.window]),)
        out["stream_logits"] = steps
    else:
        out["outputs"] = None
    return out


def open_runner(format: str, encoder: Path, stream: StreamPair, cfg: BenchConfig, clip: np.ndarray,
                beside: Path | None = None) -> tuple[FrameRunner, Session | None]:
    """A streaming target's runner, its window filled from ``clip`` (the steady state of a live camera).

    With ``beside``, that artifact is opened too, for running in turns with the runner in this
    process (``open_in_turns``: sharing the runtime's threads where it can); its session comes second.
    """
    runtime_of = RUNTIMES.get(format)
    opts = cfg.options.get(format)
    # The encoder first: a process-wide pool is sized by it.
    sessions = (runtime_of.open_in_turns([encoder, beside], cfg.threads, opts) if beside is not None
                else [runtime_of.open(encoder, cfg.threads, opts), None])
    if stream.head is None:
        runner: FrameRunner = StepRunner(sessions[0], stream.window, stream.dim, runtime_of.runtime)
    else:
        head = runtime_of.open(stream.head, head_threads(EXPORTERS.get(format).process_threads), opts)
        runner = StreamRunner(sessions[0], head, stream.window, stream.dim, runtime_of.runtime)
    for t in range(stream.window - 1):
        runner.step(clip[t:t + 1])
    return runner, sessions[1]


def measure_turns(format: str, encoder: Path, stream: StreamPair, inputs: Arrays, cfg: BenchConfig) -> dict:
    """One new frame and one whole clip of the stream's clip artifact, timed in turns in one process.

    ``{"frame_ms", "clip_ms"}``: latency statistics of each (:func:`time_in_turns`). A change of
    the machine's speed between two rows timed apart then cannot move their ratio.
    """
    clips = inputs[0]
    runner, clip_session = open_runner(format, encoder, stream, cfg, clips[0], beside=stream.clip_file)
    frame, first = clips[0, :1], [x[:1] for x in inputs]
    frame_ms, clip_ms = time_in_turns([lambda: runner.step(frame), lambda: clip_session(first)],
                                      cfg.warmup, cfg.iterations, cfg.budget_s)
    return {"frame_ms": frame_ms, "clip_ms": clip_ms}


def time_session(open_session: Callable[[], Session], sample: list[np.ndarray],
                 cfg: BenchConfig) -> tuple[Session, dict]:
    """Open a session and time batch-1 calls on ``sample`` (one array per model input).

    Returns the session and ``{"load_ms", "latency_ms", "peak_rss_mb"}``: load plus the first call
    (where lazy allocation happens), the timed calls' statistics, and this process's peak RSS meanwhile.
    """
    out: dict = {}
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        session = open_session()
        session(sample)
        out["load_ms"] = (time.perf_counter() - t0) * 1000.0
        out["latency_ms"] = time_calls(lambda: session(sample), cfg.warmup, cfg.iterations, cfg.budget_s)
    out["peak_rss_mb"] = round(rss.peak_mb, 1)
    return session, out


def _measure_child(format: str, target: torch.nn.Module | Path, inputs_path: str, cfg: BenchConfig,
                   stream: StreamPair | None = None, turns: bool = False) -> dict:
    """``measure`` (or with ``turns``, ``measure_turns``) in a fresh process; errors come back as text (not every
    runtime's exception pickles)."""
    import psutil

    try:
        arrays = read_arrays(inputs_path, "bench inputs")
        inputs = tuple(arrays[f"arr_{i}"] for i in range(len(arrays)))
        if turns:
            return measure_turns(format, target, stream, inputs, cfg)
        before = psutil.Process().memory_info().rss / 2**20
        out = measure(format, target, inputs, cfg, stream=stream)
        out["rss_added_mb"] = round(out["peak_rss_mb"] - before, 1)
        return out
    except Exception as e:  # noqa: BLE001 - reported in the row, the parent goes on
        return {"error": error_line(e)}


def isolated_context() -> multiprocessing.context.BaseContext:
    """Fresh processes forked from a server that imported the bench once.

    Each target still gets a process of its own (its memory, its crash), forked from a server that
    has loaded nothing but this module and what each runtime's ``open`` imports (its ``runtime_modules``);
    ``spawn`` paid the imports again for every target, seconds each, and a plain fork would inherit
    every earlier target's memory.
    """
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(preloaded_modules())
    return ctx


def preloaded_modules() -> list[str]:
    """What the bench's fork server imports: this module, then each host runtime's ``runtime_modules``."""
    runtimes = dict.fromkeys(m for f in RUNTIMES.keys() for m in getattr(RUNTIMES.get(f), "runtime_modules", ()))
    return [__name__, *runtimes]


def measure_isolated(tgt: Target, inputs_path: Path, cfg: BenchConfig, turns: bool = False) -> dict:
    """``measure`` (with ``turns``, ``measure_turns``) in a fresh process of its own, so memory and crashes stay
    with this target."""
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=isolated_context()) as pool:
            out = pool.submit(_measure_child, tgt.format, tgt.loadable, str(inputs_path), cfg,
                              tgt.stream, turns).result()
    except BrokenProcessPool:
        raise EgoedgeError(f"the {RUNTIMES.get(tgt.format).runtime} process died while running {tgt.name} "
                           "(crashed or was killed)") from None
    if "error" in out:
        raise EgoedgeError(out["error"])
    return out


def stream_fields(pair: StreamPair, frame_ms: dict | None, stream_logits: np.ndarray | None, ev: Evaluation,
                  turns: dict | None = None) -> dict:
    """A streaming row's ``streaming`` block.

    With ``turns`` (the frame and its clip artifact timed in turns, :func:`measure_turns`) the
    block's ``frame_ms``, ``clip_ms`` and ``ratio`` are theirs (``timed: "in turns"``); otherwise
    ``clip_ms`` and ``ratio`` come once the clip artifact's own row is timed (``add_stream_ratios``).
    """
    labels = ev.labels()
    sliding = (sliding_accuracy(stream_logits, labels, pair.window)
               if stream_logits is not None and labels is not None else None)
    block = {"form": "pair" if pair.head is not None else "step", "frame_ms": frame_ms, "clip_ms": None,
             "ratio": None, "clip": pair.clip, "window": pair.window,
             "artifacts": list(pair.names), "sliding": sliding}
    if turns and "error" not in turns:
        clip_ms = turns["clip_ms"]["median"]
        block.update(frame_ms=turns["frame_ms"], clip_ms=clip_ms, timed="in turns",
                     ratio=round(turns["frame_ms"]["median"] / clip_ms, 4))
    elif turns:
        block["turns_error"] = turns["error"]
    return block


def stream_turns(tgt: Target, inputs_path: Path | None, cfg: BenchConfig) -> dict:
    """``measure_turns`` for a streaming target, in a fresh process of its own.

    ``{}`` when its clip artifact is not on disk or the bench runs in process (a runtime may share
    its threads between two sessions only in a process that made none before: ONNX Runtime's
    global pool); ``{"error": ...}`` when the two could not be timed in turns. Either way the
    ratio then comes from the two rows.
    """
    if tgt.stream is None or tgt.stream.clip_file is None or not cfg.isolate or inputs_path is None:
        return {}
    try:
        return measure_isolated(tgt, inputs_path, cfg, turns=True)
    except EgoedgeError as e:  # the row stands; its ratio falls back to the rows'
        return {"error": str(e)}


def add_stream_ratios(rows: list[dict]) -> None:
    """Each streaming row not timed in turns against the clip artifact of its backend and precision, from its row."""
    medians = {r["name"]: (r["latency_ms"] or {}).get("median") for r in rows if r["status"] == "ok"}
    for r in rows:
        block = r.get("streaming")
        if block and block.get("timed") != "in turns" and medians.get(block["clip"]) and block["frame_ms"]:
            block["clip_ms"] = medians[block["clip"]]
            block["ratio"] = round(block["frame_ms"]["median"] / block["clip_ms"], 4)
            block["timed"] = "apart"


def new_row(tgt: Target, name: str, device: str, runtime: str) -> dict:
    """A report row for ``tgt`` before measuring: every field present, status failed until it runs."""
    return {"name": name, "format": tgt.format, "precision": tgt.precision, "device": device, "runtime": runtime,
            "size_bytes": tgt.size_bytes, "params": tgt.params, "macs": tgt.macs, "load_ms": None,
            "latency_ms": None, "peak_rss_mb": None, "rss_added_mb": None, "accuracy": None,
            "top1_agreement": None, "tie_flips": None, "parity_max_abs": None, "status": "failed", "error": None}


def finish_row(row: dict, tgt: Target, outputs: Arrays | None, ev: Evaluation, inputs: Arrays,
               reference: Arrays | None, report_field: str | None = None) -> None:
    """Accuracy and parity from a measured target's outputs on ``inputs``; ok, unless the export's gate refused it.

    ``report_field``: where the row keeps the task's own figures (``score()``'s ``metrics``), if it has any.
    """
    if outputs is not None:
        scored = ev.score(outputs)
        row["accuracy"] = scored["accuracy"]
        if report_field and "metrics" in scored:
            row[report_field] = scored["metrics"]
        if reference is not None:
            parity = ev.parity(reference, outputs, inputs)
            row["top1_agreement"], row["parity_max_abs"] = parity["top1_agreement"], parity["max_abs"]
            row["tie_flips"] = parity.get("tie_flips")
    row["status"] = "ok"
    if tgt.refused:
        row["status"], row["error"] = "failed", f"refused by the parity gate: {tgt.refused}"


def error_line(e: BaseException) -> str:
    """One line for a report row: our own errors as written, others with their type."""
    text = str(e).splitlines()[0] if str(e) else ""
    return text if isinstance(e, EgoedgeError) else f"{type(e).__name__}: {text}"


def bench_targets(targets: list[Target], ev: Evaluation, cfg: BenchConfig, progress: Progress = no_progress,
                  report_field: str | None = None) -> list[dict]:
    """Measure every target on the task's test split; the first target with ``compare_to_reference`` is the reference.

    A target that fails to load or run gets ``status: "failed"`` and its error; the others go on.
    """
    reference: Arrays | None = ev.reference()  # a self-contained export's saved outputs, else the first measured
    outputs_by: dict[str, Arrays] = {}  # each measured target's outputs, for targets compared with a named one
    results = []
    with tempfile.TemporaryDirectory(prefix="egoedge-bench-") as tmp:
        saved: dict[object, Path] = {}
        for tgt in targets:
            inputs = ev.test_inputs(tgt.variant)
            row = new_row(tgt, tgt.name, "host", RUNTIMES.get(tgt.format).runtime)
            if cfg.options.get(tgt.format):
                row["runtime_options"] = cfg.options[tgt.format]
            if tgt.delegation:
                row["delegation"] = tgt.delegation
            if tgt.int8:
                row["int8"] = tgt.int8
            if tgt.stream is not None:  # marks the row as a pair's even if it fails
                row["streaming"] = stream_fields(tgt.stream, None, None, ev)
            if tgt.damaged:  # never load a file that is not the one that passed the gate
                row["error"] = tgt.damaged
                results.append(row)
                continue
            try:
                progress(f"{'process' if cfg.isolate else 'time'} {tgt.name}", 0, 1, {})
                if cfg.isolate:
                    if tgt.variant not in saved:
                        saved[tgt.variant] = Path(tmp) / f"inputs{len(saved)}.npz"
                        np.savez(saved[tgt.variant], *inputs)
                    out = measure_isolated(tgt, saved[tgt.variant], cfg)
                else:
                    out = measure(tgt.format, tgt.target, inputs, cfg, progress, f"accuracy {tgt.name}",
                                  tgt.stream)
                outputs = out.pop("outputs")
                stream_logits = out.pop("stream_logits", None)
                row.update(out)
                if tgt.stream is not None:
                    turns = stream_turns(tgt, saved.get(tgt.variant), cfg)
                    row["streaming"] = stream_fields(tgt.stream, row["latency_ms"], stream_logits, ev, turns)
                if outputs is not None and tgt.compare_to_reference and reference is None:
                    reference = outputs
                if outputs is not None:
                    outputs_by[tgt.name] = outputs
                own = outputs_by.get(tgt.reference) if tgt.reference else None
                if own is not None:
                    row["compared_with"] = tgt.reference
                finish_row(row, tgt, outputs, ev, inputs,
                           (own if own is not None else reference) if tgt.compare_to_reference else None, report_field)
            except Exception as e:  # noqa: BLE001 - a runtime's own error types (ORT's InvalidProtobuf ...): this row
                row["error"] = error_line(e)
            results.append(row)
    return results


ACCURACY_KEYS = ("accuracy", "top1_agreement", "tie_flips", "parity_max_abs")


def host_report(targets: list[Target], task: Task, ev: Evaluation, cfg: BenchConfig,
                progress: Progress = no_progress, peaks: bool = True) -> dict:
    """``{"task", "machine", "results"}``: the targets measured side by side on ``task``'s test split (``ev``).

    Each row is set against this CPU's GEMM peak.

    Every row carries its ``threads``. With ``cfg.more_threads`` each target is timed again at
    those counts (its accuracy is the first pass's: thread count does not change the
    predictions), so 1-thread and all-core numbers come from one command, each against the
    peak measured at its own thread count (``machine.peak_gmacs_by_threads``).
    """
    counts = (cfg.threads, *(t for t in cfg.more_threads if t != cfg.threads))
    copied = (*ACCURACY_KEYS, *filter(None, [task.report_field]))
    peaks_by: dict[str, dict | None] = {}
    results: list[dict] = []
    first: dict[str, dict] = {}
    for i, threads in enumerate(counts):
        run_cfg = cfg if i == 0 else replace(cfg, threads=threads, accuracy=False, profile_runs=0)
        progress(f"GEMM peak, {threads} threads", 0, 1, {})
        peaks_by[str(threads)] = measure_peaks(threads) if peaks else None
        progress(f"GEMM peak, {threads} threads", 1, 1, {})
        rows = bench_targets(targets, ev, run_cfg, progress, task.report_field)
        for row in rows:
            row["threads"] = threads
            if i == 0:
                first[row["name"]] = row
            elif row["name"] in first:
                row.update({k: first[row["name"]].get(k) for k in copied})
                if row.get("streaming") is not None:
                    row["streaming"]["sliding"] = first[row["name"]].get("streaming", {}).get("sliding")
        add_stream_ratios(rows)
        add_throughput(rows, peaks_by[str(threads)])
        results += rows
    machine = {**machine_info(cfg.threads), "peak_gmacs": peaks_by[str(cfg.threads)]}
    if len(counts) > 1:
        machine["thread_counts"] = list(counts)
        machine["peak_gmacs_by_threads"] = peaks_by
    return {"task": task.name, "machine": machine, "results": results}


def teacher_of(source: Path, ckpt: dict) -> Path | None:
    """The teacher checkpoint a student was distilled from, if it is still beside it."""
    config = ckpt.get("config") or {}
    names = config.get("teachers") or [config.get("teacher")]  # stored relative to the student's folder
    name = names[0]
    path = source.parent / name if isinstance(name, str) else None
    return path if path is not None and path.is_file() else None
