"""Native benchmark binaries run over ``adb shell``: how to call each one and read its output."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from egoedge.bench.devices.on_device.parsers import parse_benchmark_model, parse_executor_runner
from egoedge.bench.host_bench import BenchConfig
from egoedge.bench.measure import MIN_BUDGET_ITERATIONS
from egoedge.trainer.common.registry import Registry

NATIVE_TOOLS: Registry = Registry("native benchmark tool")


@dataclass(frozen=True)
class BenchmarkModel:
    """LiteRT's ``benchmark_model`` for .tflite files."""

    name: str = "benchmark_model"
    runtime: str = "litert-benchmark_model"

    def command(self, binary: str, model: str, cfg: BenchConfig) -> str:
        xnnpack = (cfg.options.get("tflite") or {}).get("xnnpack", True)
        runs = (f"--num_runs={MIN_BUDGET_ITERATIONS} --min_secs={cfg.budget_s:g}" if cfg.budget_s
                else f"--num_runs={cfg.iterations} --min_secs=0")
        return (f"{shlex.quote(binary)} --graph={shlex.quote(model)} --num_threads={cfg.threads} "
                f"--warmup_runs={cfg.warmup} --warmup_min_secs=0 {runs} --use_xnnpack={str(xnnpack).lower()}")

    def parse(self, text: str, cfg: BenchConfig) -> dict:
        return parse_benchmark_model(text)


@dataclass(frozen=True)
class ExecutorRunner:
    """ExecuTorch's ``executor_runner`` (built with the XNNPACK backend) for .pte files.

    It has no warm-up flag, so it runs ``warmup + iterations`` times and the parser drops the first ones.
    """

    name: str = "executor_runner"
    runtime: str = "executorch-executor_runner"

    def command(self, binary: str, model: str, cfg: BenchConfig) -> str:
        return (f"{shlex.quote(binary)} --model_path={shlex.quote(model)} "
                f"--num_executions={cfg.warmup + cfg.iterations} --cpu_threads={cfg.threads}")

    def parse(self, text: str, cfg: BenchConfig) -> dict:
        return parse_executor_runner(text, cfg.warmup)


NATIVE_TOOLS.register("tflite")(BenchmarkModel())
NATIVE_TOOLS.register("executorch")(ExecutorRunner())
