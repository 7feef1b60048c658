"""End to end through the CLI on the 'mini' preset, plus the CLI's one-line errors."""

import json
import os

import pytest
from conftest import assert_one_line_error
from typer.testing import CliRunner

from egoedge.bench.report import validate_report
from egoedge.cli import app
from egoedge.trainer.checkpoint import read_checkpoint
from egoedge.trainer.common.io import EgoedgeError

runner = CliRunner()


@pytest.mark.slow
def test_run_writes_the_run_folder(mini_run):
    out, output = mini_run
    for name in ("teacher.pt", "student.pt", "export/manifest.json", "export/sample_input.npy",
                 "export/sample_output.npy", "export/student_onnx_fp32.onnx", "export/student_int8.pt2",
                 "export/student_int8.json", "export_cbkd/manifest.json", "export_cbkd/student_cbkd_onnx_int8.onnx",
                 "export_cbkd/student_cbkd_int8.pt2", "report.json", "report.md", "pareto.png", "log.jsonl",
                 "student_cbkd.pt", "run_config.yaml", "student_cbkd_stages/cbkd_state.json"):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.resume.pt"))
    report = json.loads((out / "report.json").read_text())
    validate_report(report)
    names = [r["name"] for r in report["results"]]
    # Both students are exported fp32 + int8; the one that ships (CBKD) also as fused steps (no pairs, as in the
    # quick preset).
    assert names == ["teacher", "student", "student_cbkd", "student_int8", "student_onnx_fp32", "student_onnx_int8",
                     "student_cbkd_int8", "student_cbkd_onnx_fp32", "student_cbkd_onnx_int8",
                     "student_cbkd_step_onnx_fp32", "student_cbkd_step_onnx_int8"]
    assert all(r["status"] == "ok" for r in report["results"])
    by = {r["name"]: r for r in report["results"]}
    for step in ("student_cbkd_step_onnx_fp32", "student_cbkd_step_onnx_int8"):  # timed per frame
        assert by[step]["streaming"]["clip_ms"] and by[step]["streaming"]["ratio"]
    assert by["student_cbkd_step_onnx_fp32"]["top1_agreement"] == 100.0
    assert not list((out / "export_cbkd").glob("*frame_encoder*")) and not list((out / "export").glob("*_step_*"))
    teacher, student, cbkd, int8 = (by[n] for n in ("teacher", "student", "student_cbkd", "student_cbkd_int8"))
    assert (int8["format"], int8["precision"]) == ("pytorch", "int8") and int8["accuracy"] is not None
    assert cbkd["macs"] < student["macs"] and cbkd["params"] < student["params"] and int8["params"] == cbkd["params"]
    stages = report["run"]["cbkd"]["stages"]
    assert [s["stage"] for s in stages] == ["start", "1", "2", "finetune"] and stages[1]["block"] == "stages.1"
    for name in ("student_onnx_fp32", "student_cbkd_onnx_fp32"):  # each against its own fp32 PyTorch model
        assert by[name]["parity_max_abs"] <= 1e-4 and by[name]["top1_agreement"] == 100.0
    assert by["student_cbkd_onnx_fp32"]["compared_with"] == "student_cbkd"
    assert teacher["params"] > student["params"]
    ship = report["ship"]
    fastest = min((r for r in report["results"] if r["format"] != "pytorch" and not r.get("streaming")),
                  key=lambda r: r["latency_ms"]["median"])
    assert ship["name"] == fastest["name"] and ship["export"] == ("export_cbkd" if "cbkd" in ship["name"] else "export")
    assert "artifact to ship" in output and f"| {ship['name']} |" in (out / "report.md").read_text()
    # Where the time went: every stage that ran, in order, in report.json, report.md and the terminal.
    # Two cores or more: the two students export at once, each recorded as finished for a resumed run.
    exports = (["exports of student and student_cbkd, side by side"] if (os.cpu_count() or 1) >= 2
               else ["export", "export student_cbkd"])
    assert [s["name"] for s in report["stages"]] == ["data", "teacher", "student", "cbkd", *exports, "bench"]
    assert {"export", "export student_cbkd"} <= set(json.loads((out / "run_state.json").read_text())["done"])
    assert all(s["wall_s"] >= 0 and s["cpu_s"] >= 0 for s in report["stages"])
    assert "## Where the run's time went" in (out / "report.md").read_text() and "stages:" in output
    # Every int8 ONNX artifact's five worst layers, from its gap file, in its report row and report.md.
    for name in ("student_onnx_int8", "student_cbkd_onnx_int8"):
        assert (out / ("export_cbkd" if "cbkd" in name else "export") / f"{name}.gap.json").is_file()
        worst = by[name]["int8"]["worst_layers"]
        assert 1 <= len(worst) <= 5 and all(w["measured"] == "runtime" for w in worst)
        assert f"| {name} | {worst[0]['layer']} | {worst[0]['op']} |" in (out / "report.md").read_text()
    assert "## int8: worst layers" in (out / "report.md").read_text()
    events = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert events[0]["event"] == "start" and events[-1]["event"] == "done"
    assert [e["student"] for e in events if e["event"] == "export"] == ["student", "student_cbkd"]
    for name in ("report.json", "report.md", "pareto.png"):
        assert f"{name}: {out / name}" in output


@pytest.mark.slow
def test_bench_command_on_run_export(mini_run, tmp_path):
    out, _ = mini_run
    # A baseline in which only the eager student was (impossibly) fast: --compare must flag that row alone.
    baseline = json.loads((out / "report.json").read_text())
    # The run's CBKD student is not in this export folder: a baseline row the bench cannot measure would
    # count as missing (a regression), so the baseline holds only what bench measures.
    baseline["results"] = [r for r in baseline["results"] if not r["name"].startswith("student_cbkd")]
    for r in baseline["results"]:
        r["latency_ms"]["median"] *= 1e-6 if r["name"] == "student" else 1e6
    (tmp_path / "baseline").mkdir()
    (tmp_path / "baseline/report.json").write_text(json.dumps(baseline))
    result = runner.invoke(app, ["bench", str(out / "export"), "--out", str(tmp_path), "--iterations", "2",
                                 "--warmup", "0", "--threads", "2,1", "--compare", str(tmp_path / "baseline")])
    assert result.exit_code == 1, result.output
    message = " ".join(result.output.split())
    # Only the 2-thread rows have a counterpart in the baseline.
    assert "1 regression(s) against the baseline (slower by more than 10%, failed or missing): student:" \
        in message, message
    report = json.loads((tmp_path / "report.json").read_text())
    # The teacher the student came from is found beside it and timed as the baseline, the int8 program the
    # int8 artifacts were lowered from beside the eager student; then all again at 1 thread.
    names = [("teacher", "pytorch"), ("student", "pytorch"), ("student_int8", "pytorch"),
             ("student_onnx_fp32", "onnx"), ("student_onnx_int8", "onnx")]
    assert [(r["name"], r["format"], r["threads"]) for r in report["results"]] == [
        *((n, f, 2) for n, f in names), *((n, f, 1) for n, f in names)]
    assert report["machine"]["thread_counts"] == [2, 1] and report["machine"]["threads"] == 2
    for peak in (report["machine"]["peak_gmacs"], *report["machine"]["peak_gmacs_by_threads"].values()):
        assert peak["fp32"] > 0 and peak["int8"] > 0
    assert all(r["peak_pct"] > 0 for r in report["results"])
    two, one = (next(r for r in report["results"] if r["name"] == "student" and r["threads"] == t) for t in (2, 1))
    assert one["accuracy"] == two["accuracy"] and one["latency_ms"] != two["latency_ms"]
    assert "fastest artifact vs eager student" in report["summary"] and report["ship"]["export"] == "export"
    md = (tmp_path / "report.md").read_text()
    assert "- fastest artifact at 1 thread: " in md and "- fastest artifact at 2 threads: " in md
    assert "| name | format | precision | runtime | threads |" in md


def test_bench_refuses_a_missing_baseline_before_benching(tmp_path):
    result = runner.invoke(app, ["bench", str(tmp_path), "--compare", str(tmp_path / "nothing")])
    assert_one_line_error(result, "no report.json at")


@pytest.mark.slow
def test_export_command_table_and_gate_exit_code(mini_run, tmp_path):
    out, _ = mini_run
    args = ["export", str(out / "student.pt"), "--to", "onnx", "--int8", "--calib", "16", "--parity-samples", "8",
            "--out", str(tmp_path), "--fp32-tol", "1e-12", "--int8-agreement", "0", "--int8-drop", "100"]
    result = runner.invoke(app, args)
    assert_one_line_error(result, "1 artifact(s) failed: student_onnx_fp32")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [(a["precision"], a["status"]) for a in manifest["artifacts"]] == [("fp32", "failed"), ("int8", "ok")]
    assert manifest["calibration"]["samples"] == 16
    result = runner.invoke(app, args + ["--allow-failed"])
    assert result.exit_code == 0, result.output
    for column in ("format", "precision", "MB", "top-1 %", "agree %", "status"):
        assert column in result.output
    int8 = manifest["int8"]  # the caption says how the recipe was calibrated: the observer it kept, bias or not
    assert int8["observer"] in ("histogram", "minmax")
    assert f"{int8['observer']} observer" in " ".join(result.output.split())


@pytest.mark.parametrize("args,message", [
    (["run", "--preset", "huge"], "'huge' is not one of"),
    (["run", "--preset", "mini", "--data", "/nowhere"], "unknown data source '/nowhere'; use one of: "),
    (["run", "--preset", "mini", "--threads", "0"], "--threads must be >= 1"),
    (["run", "--preset", "mini", "--student", "giant", "--out", "{tmp}/x"], "valid: micro, tiny, xxs, xs, s"),
    (["run", "--preset", "mini", "--out", "/proc/egoedge-run"], "cannot create run folder"),
    (["export", "{tmp}/missing.pt"], "checkpoint not found"),
    (["export", "{tmp}/missing.pt", "--to", "tensorrt"], "unknown backend 'tensorrt'"),
    (["export", "{tmp}/missing.pt", "--calib-file", "{tmp}/none.npy"], "--calib-file"),
    (["export", "{ckpt}", "--to", "onnx", "--precision", "int4"], "onnx cannot produce precision 'int4'"),
    (["export", "{ckpt}", "--to", "onnx", "--int8", "--calib", "4"], "calibration set of 4 samples is too small"),
    (["export", "{ckpt}", "--to", "onnx", "--int8", "--calib", "5000"], "exceeds the 32 training clips"),
    (["bench", "{tmp}"], "no manifest.json"),
    (["bench", "{tmp}", "--device", "phone"], "unknown device 'phone'"),
    (["bench", "{tmp}", "--device", "host,host"], "names a device twice"),
    (["bench", "{tmp}", "--tool", "tensorrt=x"], "no native tool for 'tensorrt'"),
    (["bench", "{tmp}", "--tool", "tflite"], "--tool takes FORMAT=PATH"),
    (["bench", "{tmp}", "--budget-s", "0"], "--budget-s > 0"),
    (["bench", "{tmp}", "--threads", "0"], "--threads takes counts >= 1 or 'all'"),
    (["bench", "{tmp}", "--threads", "1,two"], "got '1,two'"),
    (["bench", "{tmp}", "--device", "ios:0000-NOPE"], "ios"),
    (["train", "teacher", "--preset", "mini", "--arch", "vgg", "--out", "{tmp}/t"], "unknown model 'vgg'"),
    (["train", "teacher", "--preset", "mini", "--arch", "minilm", "--out", "{tmp}/t"], "--task anticipation"),
    (["train", "teacher", "--preset", "mini", "--task", "forecast"], "'forecast' is not one of"),
])
def test_bad_input_gives_one_clear_line(args, message, tmp_path, mini_data_cfg, micro_ckpt):
    if "{ckpt}" in args:
        micro_ckpt(tmp_path / "student.pt", mini_data_cfg)
    args = [a.replace("{tmp}", str(tmp_path)).replace("{ckpt}", str(tmp_path / "student.pt")) for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    assert message in result.output
    # egoedge's own one-line error (exit 1) or Typer's usage error (exit 2), never an uncaught exception.
    assert isinstance(result.exception, SystemExit), f"uncaught {type(result.exception).__name__}"


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("run", "export", "bench", "devices", "report"):
        assert cmd in result.output


@pytest.mark.parametrize("preset", ["mini", "quick", "full"])
def test_every_preset_builds_its_models(preset):
    from egoedge.pipeline.clips import resolve_config
    from egoedge.trainer.stages import build

    cfg = resolve_config(preset)
    teacher, _ = build(cfg.teacher, cfg.data, 16)
    student, _ = build(cfg.student, cfg.data, 16)
    assert sum(p.numel() for p in teacher.parameters()) > sum(p.numel() for p in student.parameters())


def test_teacher_stage_is_seeded(tmp_path, mini_data_cfg):
    import torch

    from egoedge.trainer.checkpoint import read_checkpoint
    from egoedge.trainer.engine import TrainConfig
    from egoedge.trainer.stages import ModelChoice, load_splits, teacher_stage

    splits = load_splits(mini_data_cfg)
    states = []
    for name in ("a.pt", "b.pt"):
        torch.manual_seed(len(name) + len(states))  # whatever came before must not matter
        teacher_stage(ModelChoice("mobilevit", "micro"), splits, TrainConfig(epochs=1, batch_size=16), tmp_path / name)
        states.append(read_checkpoint(tmp_path / name)["state_dict"])
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key


def test_teacher_and_task_overrides():
    from egoedge.pipeline.clips import resolve_config

    assert resolve_config("mini", teacher_arch="flow_cnn").teacher.variant == "test"  # mini: test sizes
    assert resolve_config("mini", teacher_arch="minilm").teacher.variant == "l6"  # it has no test size
    assert resolve_config("quick", teacher_arch="box_transformer").teacher.variant == "small"  # builder default
    assert resolve_config("quick", teacher_variant="base").teacher.spec == "clip_vit:base"
    assert resolve_config("quick", task="anticipation").data.task == "anticipation"
    with pytest.raises(EgoedgeError, match="unknown clip task 'forecast'; valid: anticipation, recognition"):
        resolve_config("quick", task="forecast")


def test_train_teacher_of_another_modality_names_its_checkpoint(tmp_path):
    result = runner.invoke(app, ["train", "teacher", "--preset", "mini", "--arch", "box_transformer",
                                 "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    ckpt = read_checkpoint(tmp_path / "teacher_box_transformer.pt")
    assert ckpt["preprocess"]["modality"] == "objects" and ckpt["config"]["model"]["variant"] == "test"
    assert "objects" in result.output  # the table says what the teacher reads


def test_overrides_reach_the_config():
    from egoedge.pipeline.clips import resolve_config

    cfg = resolve_config("quick", alpha=0.0, temperature=2.0, student_variant="tiny", threads=1)
    assert cfg.kd.alpha == 0.0 and cfg.kd.temperature == 2.0 and cfg.kd.beta == 1.0
    assert cfg.bench.threads == 1
    other = resolve_config("quick", student_variant="mobilenet:v4_small").student
    assert (other.arch, other.variant) == ("mobilenet", "v4_small")


def test_a_bare_student_variant_finds_its_family():
    from egoedge.pipeline.clips import check_models, resolve_config
    from egoedge.trainer.stages import ModelChoice

    assert resolve_config("quick").student == ModelChoice("resnet", "r10_48")
    # The preset's own family first, else the one family that has the variant.
    assert resolve_config("quick", student_variant="r10_32").student == ModelChoice("resnet", "r10_32")
    assert resolve_config("quick", student_variant="tiny").student == ModelChoice("mobilevit", "tiny")
    assert resolve_config("mini", student_variant="r10_16").student == ModelChoice("resnet", "r10_16")
    # A variant no family has stays with the preset's family, whose error lists its variants.
    with pytest.raises(Exception, match="unknown resnet variant 'r99'; valid: r10_16"):
        check_models(resolve_config("quick", student_variant="r99"), 16)


def test_unknown_student_arch_fails_before_training():
    from egoedge.pipeline.clips import check_models, resolve_config

    with pytest.raises(Exception, match="valid: .*mobilenet, mobilevit, resnet"):
        check_models(resolve_config("mini", student_variant="vgg:16"), 16)
    with pytest.raises(Exception, match="unknown resnet variant '18'"):
        check_models(resolve_config("mini", student_variant="resnet:18"), 16)
    with pytest.raises(Exception, match="unknown mobilenet variant 'v9'"):
        check_models(resolve_config("mini", student_variant="mobilenet:v9"), 16)


@pytest.mark.parametrize("command", [["export"], ["nlq", "export"]])
def test_export_rejects_an_unknown_backend(command, tmp_path):
    from typer.testing import CliRunner

    from egoedge.cli import app

    result = CliRunner().invoke(app, [*command, str(tmp_path / "model.pt"), "--to", "onnx, tensorrt"])
    assert result.exit_code != 0
    assert "unknown backend 'tensorrt' in --to; valid: " in result.output
    # The moved spelling still answers, and says where it went.
    assert ("`egoedge nlq export` moved to `egoedge export`" in " ".join(result.output.split())) == (len(command) == 2)


@pytest.mark.parametrize("verbose", [False, True])
def test_third_party_notices_stay_out_of_the_terminal_unless_verbose(verbose):
    """A native runtime's line on fd 2 and a library warning are dropped; egoedge's own error line is not."""
    import subprocess
    import sys

    script = ("import logging, os, warnings\n"
              "from egoedge.cli.console import console, err_console, quiet_third_party\n"
              f"if not {verbose}: quiet_third_party()\n"
              "os.write(2, b'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n')\n"
              "os.write(1, b'[cpuinfo_utils.cpp:71] Reading file /sys/devices/soc0/image_version\\n')\n"
              "warnings.warn('Torch version 2.14.1 has not been tested with coremltools')\n"
              "log = logging.getLogger('torch.utils._pytree'); log.addHandler(logging.StreamHandler())\n"
              "log.warning('KernelPreference is an Enum subclass')\n"
              "import sys; sys.stderr.write('[cpuinfo_utils.cpp:87] Failed to open midr file\\n')\n"
              "sys.stderr.write('Usage: egoedge [OPTIONS]\\n')\n"
              "console.print('| student | ok |')\n"
              "err_console.print('error: the line that matters')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert "error: the line that matters" in done.stderr and "| student | ok |" in done.stdout
    assert "Usage: egoedge" in done.stderr  # what other code prints through sys.stderr (click's usage) stays
    both = done.stdout + done.stderr
    for notice in ("XNNPACK delegate", "cpuinfo_utils", "midr file", "has not been tested", "KernelPreference"):
        assert (notice in both) == verbose, notice


def test_a_closed_pipe_ends_the_output_without_a_traceback():
    """`egoedge run --help | head -1`: the reader goes away early; egoedge stops quietly (no traceback)."""
    import fcntl
    import subprocess
    import sys

    read, write = os.pipe()
    fcntl.fcntl(write, 1031, 4096)  # F_SETPIPE_SZ: a one-page pipe, so the help cannot fit in it
    proc = subprocess.Popen([sys.executable, "-m", "egoedge", "run", "--help"], stdout=write,
                            stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "80"})
    os.close(write)
    with os.fdopen(read, "rb") as reader:
        assert reader.readline()  # like `head -1`: one line, then the reader exits
    _, err = proc.communicate(timeout=60)
    assert b"Traceback" not in err, err.decode()[-2000:]
