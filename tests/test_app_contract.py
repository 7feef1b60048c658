"""What Python and the Android app share: preprocessing, int8 input, manifest and result schemas,
the benchmark activity's intent extras. The Kotlin side runs here too when kotlinc is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import torch

from egoedge.bench.devices.on_device.android import intent_command
from egoedge.bench.devices.on_device.app_protocol import ANDROID_ACTIVITY, ANDROID_PACKAGE, AppRequest
from egoedge.bench.devices.on_device.parsers import parse_app_result
from egoedge.edge.preprocess import (
    center_crop_box,
    dequantize,
    from_tensor,
    preprocess_clip,
    quantize,
    quantizer,
    resize_bilinear,
    runtime_input,
    to_tensor,
)
from egoedge.edge.schema import schema_errors, validate
from egoedge.trainer.common.io import EgoedgeError

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "android_demo"
SRC = APP / "app/src/main/java/org/egoedge/demo"
SPEC = {"size": [32, 32], "mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711],
        "frames": 2, "layout": "NTCHW"}


def _frames(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


# --- the reference preprocessing -----------------------------------------------------------------

def test_reference_preprocessing_is_the_training_input(mini_data_cfg):
    from egoedge.trainer.data import load_split, preprocess_spec, to_model_input

    clips = load_split(mini_data_cfg, "val").clips[:4]
    pp = preprocess_spec(mini_data_cfg)
    for clip in clips:
        assert np.array_equal(preprocess_clip(clip, pp), to_model_input(clip[None], pp).numpy())


@pytest.mark.parametrize("src,dst", [((48, 64), (32, 32)), ((64, 48), (32, 32)), ((40, 40), (16, 24)),
                                     ((17, 23), (32, 32)), ((32, 32), (32, 32))])
def test_resize_is_torch_bilinear_without_antialias(src, dst):
    frame = _frames(1, *src)[0]
    box = center_crop_box(*src, *dst)
    top, left, h, w = box
    crop = torch.from_numpy(frame[top:top + h, left:left + w].astype(np.float32)).permute(2, 0, 1)[None]
    want = torch.nn.functional.interpolate(crop, size=dst, mode="bilinear", align_corners=False, antialias=False)
    assert np.allclose(resize_bilinear(frame, box, *dst), want[0].permute(1, 2, 0).numpy(), atol=1e-3)


@pytest.mark.parametrize("src,dst,box", [((480, 640), (256, 256), (0, 80, 480, 480)),
                                         ((640, 480), (256, 256), (80, 0, 480, 480)),
                                         ((480, 640), (240, 320), (0, 0, 480, 640)),
                                         ((100, 101), (2, 1), (0, 25, 100, 50))])
def test_center_crop_box(src, dst, box):
    assert center_crop_box(*src, *dst) == box


def test_quantize_clamps_to_any_integer_type():
    assert quantize(np.array([1e9, -1e9], np.float32), 1.0, 0, "int16").tolist() == [32767, -32768]
    assert quantize(np.array([-3.0, 300.0], np.float32), 1.0, 0, "uint8").tolist() == [0, 255]


def test_layouts_hold_the_same_values():
    frames = _frames(2, 48, 64)
    a = preprocess_clip(frames, SPEC)
    b = preprocess_clip(frames, {**SPEC, "layout": "NTHWC"})
    assert a.shape == (1, 2, 3, 32, 32) and b.shape == (1, 2, 32, 32, 3)
    assert np.array_equal(a, b.transpose(0, 1, 4, 2, 3))


def test_quantize_rounds_ties_away_from_zero_and_clamps():
    q = quantize(np.array([0.25, -0.25, 0.75, 1e6, -1e6, 0.0], dtype=np.float32), 0.5, -3)
    assert q.tolist() == [-2, -4, -1, 127, -128, -3]  # half-to-even would give -3, -3, -1
    grid = np.arange(-128, 128, dtype=np.int8)
    assert np.array_equal(quantize(dequantize(grid, 0.1, 5), 0.1, 5), grid)


def test_a_quantizer_made_once_quantizes_as_the_reference_on_every_call():
    x = np.concatenate([np.random.default_rng(0).normal(0, 40, 4096), np.arange(-80, 80) * 0.25]).astype(np.float32)
    v = x / np.float32(0.5)  # the quarter steps put ties on every other value
    want = np.clip(np.sign(v) * np.floor(np.abs(v) + np.float32(0.5)) - 3, -128, 127).astype(np.int8)
    q = quantizer(0.5, -3)
    assert np.array_equal(q(x), want) and np.array_equal(q(x), want)  # no state kept between calls
    assert np.array_equal(quantizer(0.1, 5, "uint8")(x.astype(np.float64)), quantize(x, 0.1, 5, "uint8"))
    assert quantize(np.float32(0.25), 0.5, -3) == -2 and quantize([0.25, -0.25], 0.5, -3).tolist() == [-2, -4]


def test_a_tensor_spec_says_how_to_feed_and_read_it():
    """One rule for the manifest's tensors (runtime_input, the LiteRT session): an integer tensor with a scale
    holds quantized reals; integer ids carry no scale and pass as they are; outputs come back as arrays of their
    own, never the runtime's buffer."""
    x = np.array([[0.26, -1.0, 7.5]], np.float32)
    real = {"name": "clip", "shape": [1, 3], "dtype": "int8", "scale": 0.5, "zero_point": -3}
    assert np.array_equal(to_tensor(real)(x), quantize(x, 0.5, -3)) and to_tensor(real)(x).dtype == np.int8
    assert np.array_equal(runtime_input(x, real), quantize(x, 0.5, -3))
    ids = {"name": "words", "shape": [1, 3], "dtype": "int32", "scale": None, "zero_point": None}
    assert to_tensor(ids)(np.array([[3, 1, 4]])).tolist() == [[3, 1, 4]] and runtime_input(x, ids).dtype == np.int32
    buffer = np.array([[-3, 5, 127]], np.int8)
    assert np.array_equal(from_tensor(real)(buffer), dequantize(buffer, 0.5, -3))
    logits = np.array([[0.5, 1.5]], np.float32)
    out = from_tensor({"name": "logits", "shape": [1, 2], "dtype": "float32", "scale": None, "zero_point": None})
    got = out(logits)
    logits[0, 0] = 9.0  # the runtime writes its next result into the same buffer
    assert got.tolist() == [[0.5, 1.5]] and got.dtype == np.float32


@pytest.mark.parametrize("call,message", [
    (lambda: preprocess_clip(_frames(3, 8, 8), SPEC), "takes 2 frames, got 3"),
    (lambda: preprocess_clip(_frames(2, 8, 8).astype(np.float32), SPEC), "must be uint8"),
    (lambda: preprocess_clip(_frames(2, 8, 8), {**SPEC, "layout": "NCHW"}), "unknown layout"),
    (lambda: quantize(np.zeros(2), 0.0, 0), "scale must be > 0"),
    (lambda: quantize(np.zeros(2), 0.5, 0, "float32"), "not an integer type"),
    (lambda: quantizer(-1.0, 0), "scale must be > 0"),
    (lambda: runtime_input(np.zeros((1, 2), np.float32), {"name": "clip", "shape": [1, 3], "dtype": "int8"}),
     r"input 'clip' is \[1, 3\]"),
])
def test_bad_input_gets_a_clear_error(call, message):
    with pytest.raises(EgoedgeError, match=message):
        call()


# --- schemas -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(full_export):
    """Every backend and precision, the app's (ExecuTorch, LiteRT) among them (shared, read-only)."""
    return full_export[0]


def test_export_manifest_follows_the_schema(exported):
    manifest = json.loads((exported / "manifest.json").read_text())
    assert schema_errors(manifest, "manifest") == []
    sample = manifest["sample"]
    clip = np.load(exported / sample["clip"])
    assert clip.dtype == np.uint8 and sample["label"] in manifest["artifacts"][0]["labels"]
    assert np.array_equal(preprocess_clip(clip, manifest["artifacts"][0]["preprocess"]),
                          np.load(exported / sample["input"]))


def test_each_artifact_reproduces_pytorch_on_the_app_input(exported):
    """The sample clip, preprocessed and (for int8 inputs) quantised exactly as the app does, fed straight
    to each runtime: its output matches PyTorch's within the parity the export measured."""
    from ai_edge_litert.interpreter import Interpreter
    from executorch.runtime import Runtime

    manifest = json.loads((exported / "manifest.json").read_text())
    clip = preprocess_clip(np.load(exported / manifest["sample"]["clip"]), manifest["artifacts"][0]["preprocess"])
    reference = np.load(exported / manifest["sample"]["output"])
    checked = []
    for a in manifest["artifacts"]:
        if a["status"] != "ok" or a["format"] not in ("tflite", "executorch") or a.get("role", "clip") != "clip":
            continue
        x = runtime_input(clip, a["inputs"][0])
        if a["format"] == "tflite":
            interp = Interpreter(model_path=str(exported / a["file"]))
            interp.allocate_tensors()
            interp.set_tensor(interp.get_input_details()[0]["index"], x)
            interp.invoke()
            y = interp.get_tensor(interp.get_output_details()[0]["index"])
            out = a["outputs"][0]
            y = dequantize(y, out["scale"], out["zero_point"]) if out["dtype"] == "int8" else y
        else:
            y = Runtime.get().load_program(exported / a["file"]).load_method("forward").execute(
                [torch.from_numpy(x)])[0].numpy()
        assert np.abs(y - reference).max() <= a["parity"]["max_abs"] + 1e-6, a["name"]
        checked.append((a["format"], a["inputs"][0]["dtype"], a["outputs"][0]["dtype"]))
    # The LiteRT int8 clip model takes float (its stem's space-to-depth rearrangement runs float before the first
    # quantize) and gives int8 logits, which the app dequantizes.
    assert ("tflite", "float32", "int8") in checked and ("executorch", "float32", "float32") in checked


def _manifest(exported) -> dict:
    return json.loads((exported / "manifest.json").read_text())


@pytest.mark.parametrize("breaks,message", [
    (lambda m: m.pop("artifacts"), "'artifacts' is a required property"),
    (lambda m: m["artifacts"][0].update(sha256="abc"), "artifacts/0/sha256"),
    (lambda m: m["artifacts"][0].update(format="pytorch"), "artifacts/0/format: 'pytorch' is not one of"),
    (lambda m: m["artifacts"][0]["inputs"][0].update(dtype="int8", scale=None), "artifacts/0/inputs/0/scale: None"),
    (lambda m: m["artifacts"][0]["preprocess"].update(std=[1, 0, 1]), "preprocess/std/1"),
    (lambda m: m["artifacts"][0].update(status="failed", reason=None), "artifacts/0/reason: None is not of type"),
])
def test_broken_manifests_are_named(exported, breaks, message):
    manifest = _manifest(exported)
    breaks(manifest)
    with pytest.raises(EgoedgeError, match=re.escape(message) if "/" in message else message):
        validate(manifest, "manifest", "test manifest")


# --- the Kotlin sources against the Python side of each contract -----------------------------------------

def _kotlin(name: str) -> str:
    return (SRC / name).read_text()


def test_benchmark_activity_reads_exactly_the_extras_egoedge_sends():
    source = _kotlin("BenchmarkActivity.kt")
    constants = dict(re.findall(r'const val (EXTRA_\w+) = "(\w+)"', source))
    getters = {"getStringExtra": "--es", "getIntExtra": "--ei", "getBooleanExtra": "--ez"}
    read = {constants[c]: getters[g] for g, c in re.findall(r"(get\w+Extra)\((EXTRA_\w+)", source)}
    from egoedge.bench.devices.on_device.app_protocol import StreamRequest
    from egoedge.bench.host_bench import BenchConfig

    cmd = intent_command(AppRequest("/sdcard/m.pte", "/sdcard/r.json", "/sdcard/i.f32", (4, 2, 3, 32, 32),
                                    BenchConfig()))
    sent = dict((key, flag) for flag, key in re.findall(r"(--e[siz]) (\w+)", cmd))
    stream = intent_command(AppRequest("/sdcard/e.pte", "/sdcard/r.json", None, None, BenchConfig(),
                                       StreamRequest("/sdcard/h.pte", 4, 256, (1, 3, 32, 32))))
    streamed = dict((key, flag) for flag, key in re.findall(r"(--e[siz]) (\w+)", stream))
    assert {"head", "window", "embedding_dim", "frame_shape", "head_threads"} <= set(streamed)
    step = intent_command(AppRequest("/sdcard/s.pte", "/sdcard/r.json", None, None, BenchConfig(),
                                     StreamRequest(None, 4, 256, (1, 3, 32, 32),
                                                   step_inputs=("frame", "buffer", "valid"),
                                                   step_outputs=("logits", "next_buffer", "next_valid"))))
    stepped = dict((key, flag) for flag, key in re.findall(r"(--e[siz]) (\w+)", step))
    assert {"step_inputs", "step_outputs", "window"} <= set(stepped) and "head" not in stepped
    assert "--es step_inputs frame,buffer,valid" in step
    assert read == {**sent, **streamed, **stepped}
    assert f"-n {ANDROID_PACKAGE}/{ANDROID_ACTIVITY}" in cmd


def test_android_manifest_and_build_match_the_protocol():
    manifest = (APP / "app/src/main/AndroidManifest.xml").read_text()
    build = (APP / "app/build.gradle.kts").read_text()
    assert f'namespace = "{ANDROID_PACKAGE}"' in build and f'applicationId = "{ANDROID_PACKAGE}"' in build
    benchmark = re.search(r'<activity\s+android:name="\.BenchmarkActivity"(.*?)/>', manifest, re.S)
    assert benchmark and 'android:exported="true"' in benchmark[1]
    # Only the shell (adb) may start it: DUMP is held by the shell and by no installable app.
    assert 'android:permission="android.permission.DUMP"' in benchmark[1]
    assert ANDROID_ACTIVITY == f"{ANDROID_PACKAGE}.BenchmarkActivity"
    assert re.search(r"minSdk = 26\b", build)


def test_app_links_the_executorch_that_exports():
    """A .pte must be loaded by the runtime version that wrote it (or newer)."""
    versions = tomllib.loads((APP / "gradle/libs.versions.toml").read_text())["versions"]
    assert versions["executorch"] == version("executorch")


def test_app_reads_only_fields_the_manifest_schema_defines():
    from egoedge.edge.schema import load_schema

    def names(node) -> set[str]:
        if isinstance(node, list):
            return set().union(*map(names, node)) if node else set()
        if not isinstance(node, dict):
            return set()
        return set(node.get("properties", {})) | set().union(*map(names, node.values()))

    known = names(load_schema("manifest"))
    source = _kotlin("ModelManifest.kt")
    read = set(re.findall(r'(?:get|opt)(?:String|Int|Long|Double|JSONArray|JSONObject)\("(\w+)"[,)]', source))
    read |= set(re.findall(r'(?:isNull|has)\("(\w+)"\)', source))
    assert {"role", "pair", "streaming", "window", "embedding_dim", "head_threads", "frame_input",
            "next_buffer_output", "next_valid_output"} <= read
    assert read and read <= known, read - known


def test_gradle_wrapper_is_complete():
    props = (APP / "gradle/wrapper/gradle-wrapper.properties").read_text()
    assert re.search(r"distributionUrl=https\\://services\.gradle\.org/distributions/gradle-[\d.]+-bin\.zip", props)
    jar = APP / "gradle/wrapper/gradle-wrapper.jar"
    import zipfile

    with zipfile.ZipFile(jar) as z:
        assert "org/gradle/wrapper/GradleWrapperMain.class" in z.namelist()
    assert (APP / "gradlew").stat().st_mode & 0o111


# --- the Kotlin core itself, on the JVM (skipped without kotlinc) ------------------------------------------

KOTLINC, JAVA = shutil.which("kotlinc"), shutil.which("java")
JUNIT = [Path("/usr/share/java/junit4.jar"), Path("/usr/share/java/hamcrest-core.jar")]
needs_kotlin = pytest.mark.skipif(KOTLINC is None or JAVA is None, reason="kotlinc and java not installed")


def _stdlib() -> str:
    return str(Path(KOTLINC).resolve().parent.parent / "lib" / "kotlin-stdlib.jar")


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> list[str]:
    jar = tmp_path_factory.mktemp("kotlin") / "harness.jar"
    sources = sorted(map(str, (SRC / "core").glob("*.kt"))) + [str(ROOT / "tests/kotlin/ContractHarness.kt")]
    done = subprocess.run([KOTLINC, *sources, "-d", str(jar)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return [JAVA, "-cp", f"{jar}:{_stdlib()}", "ContractHarnessKt"]


@needs_kotlin
@pytest.mark.kotlin
@pytest.mark.slow
@pytest.mark.parametrize("src,dst,layout", [((32, 32), (32, 32), "NTCHW"), ((48, 64), (32, 32), "NTCHW"),
                                            ((64, 40), (24, 32), "NTHWC"), ((17, 23), (32, 32), "NTCHW")])
def test_kotlin_preprocessing_equals_the_reference(harness, tmp_path, src, dst, layout):
    frames = _frames(2, *src, seed=sum(src))
    (tmp_path / "clip.rgb").write_bytes(frames.tobytes())
    spec = {**SPEC, "size": list(dst), "layout": layout}
    subprocess.run([*harness, "preprocess", str(tmp_path / "clip.rgb"), "2", str(src[0]), str(src[1]), str(dst[0]),
                    str(dst[1]), layout, ",".join(map(repr, spec["mean"])), ",".join(map(repr, spec["std"])),
                    str(tmp_path / "out.f32")], check=True, timeout=120)
    got = np.fromfile(tmp_path / "out.f32", dtype="<f4").reshape(preprocess_clip(frames, spec).shape)
    assert np.array_equal(got, preprocess_clip(frames, spec))  # bit for bit: same float32 operations


@needs_kotlin
@pytest.mark.kotlin
@pytest.mark.slow
def test_kotlin_quantisation_equals_the_reference(harness, tmp_path):
    scale, zero = 0.015436221845448017, -12
    x = np.concatenate([np.random.default_rng(0).normal(0, 1, 4000),
                        (np.arange(-300, 300) + 0.5) * np.float32(scale)]).astype("<f4")  # exact ties too
    x.tofile(tmp_path / "x.f32")
    subprocess.run([*harness, "quantize", str(tmp_path / "x.f32"), repr(np.float32(scale).item()), str(zero),
                    str(tmp_path / "q.i8")], check=True, timeout=120)
    assert np.array_equal(np.fromfile(tmp_path / "q.i8", dtype=np.int8), quantize(x, scale, zero))


@needs_kotlin
@pytest.mark.kotlin
@pytest.mark.slow
def test_kotlin_result_json_is_what_egoedge_parses(harness, tmp_path):
    from egoedge.bench.measure import latency_stats

    samples = [3.25, 4.0, 5.5, 4.125, 3.0, 9.75, 4.5]
    subprocess.run([*harness, "result", ",".join(map(str, samples)), "3", str(tmp_path / "r.json")], check=True,
                   timeout=120)
    text = (tmp_path / "r.json").read_text()
    result = json.loads(text)
    assert schema_errors(result, "app_result") == []
    parsed = parse_app_result(text)
    want = latency_stats(samples, 3)
    want.pop("samples")  # egoedge keeps the timed calls themselves; the app sends them as latency_samples_ms
    assert parsed["latency_ms"]["samples"] == samples
    for key, value in want.items():
        assert result["latency_ms"][key] == pytest.approx(value, rel=1e-12), key  # the app's own summary
        assert parsed["latency_ms"][key] == pytest.approx(value, rel=1e-12)
    assert result["precision"] == "int8" and parsed["logits"].tolist() == [[0.25, -1.5, 3.0]]
    subprocess.run([*harness, "error", str(tmp_path / "e.json")], check=True, timeout=120)
    with pytest.raises(Exception, match="cannot open /x.pte"):
        parse_app_result((tmp_path / "e.json").read_text())


@needs_kotlin
@pytest.mark.kotlin
@pytest.mark.slow
@pytest.mark.skipif(not all(p.is_file() for p in JUNIT), reason="JUnit 4 jars not installed (Debian: junit4)")
def test_app_unit_tests_pass(tmp_path):
    """The app's own JVM unit tests (what `./gradlew test` runs), compiled and run without Gradle."""
    tests = sorted((APP / "app/src/test/java").rglob("*Test.kt"))
    sources = sorted(map(str, (SRC / "core").glob("*.kt"))) + list(map(str, tests))
    cp = ":".join(map(str, JUNIT))
    jar = tmp_path / "tests.jar"
    done = subprocess.run([KOTLINC, *sources, "-cp", cp, "-d", str(jar)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    classes = [f"org.egoedge.demo.core.{t.stem}" for t in tests]
    run = subprocess.run([JAVA, "-cp", f"{jar}:{cp}:{_stdlib()}", "org.junit.runner.JUnitCore", *classes],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "OK (" in run.stdout, run.stdout[-3000:]


@needs_kotlin
@pytest.mark.kotlin
@pytest.mark.slow
def test_app_sources_beyond_the_core_compile(tmp_path):
    """The manifest reader, the runners and the benchmark activity compiled with the core against stand-ins for the
    Android, ExecuTorch and LiteRT classes they call (tests/kotlin/android_stubs): the app's own code type-checks
    (a name out of scope once reached the tree unseen). The platform calls themselves need a real build; the
    camera activity needs CameraX and AppCompat stand-ins too and is left out."""
    sources = [*sorted((SRC / "core").glob("*.kt")), *sorted((SRC / "runtime").glob("*.kt")),
               *(SRC / name for name in ("ModelManifest.kt", "Runners.kt", "BenchmarkActivity.kt", "Memory.kt")),
               *sorted((ROOT / "tests/kotlin/android_stubs").glob("*.kt"))]
    done = subprocess.run([KOTLINC, *map(str, sources), "-d", str(tmp_path / "app.jar")], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def test_benchmark_activity_reads_and_writes_only_its_push_folder():
    """The activity resolves every path extra inside the folder `egoedge bench` pushes to, and nowhere else."""
    from egoedge.bench.devices.on_device.android import APP_DIR

    source = _kotlin("BenchmarkActivity.kt")
    folder = re.search(r'const val PUSH_FOLDER = "([^"]+)"', source)[1]
    assert APP_DIR == f"/sdcard/Android/data/{ANDROID_PACKAGE}/files/{folder}"
    assert "File(getExternalFilesDir(null), PUSH_FOLDER)" in source
    assert re.search(r"EXTRA_RESULT\)\?\.let \{ SafePaths\.resolveInside\(it, listOf\(pushFolder\(\)\)\) \}", source)
    assert re.search(r"SafePaths\.require\(model, readable, \"model\"\)", source)
    assert re.search(r"EXTRA_INPUTS\)\?\.let \{ SafePaths\.require\(it, listOf\(pushFolder\(\)\), \"inputs\"\)", source)
    assert "File(" not in source.split("private fun request")[1].split("return Request")[0].replace(
        'File(filesDir, "models")', "")  # no path extra is opened without SafePaths


def test_main_activity_survives_its_lifecycle():
    """What keeps the camera path from crashing on rotation or back (checked in the source: no Android runtime
    here): frames stop before the analysis thread drains; the instance is marked destroyed before its runners'
    close is queued, and every queued clip checks that mark first; the inference thread is the process's one,
    never shut down (no rejected submission, no model opened while another instance closes its own); the
    camera provider is not bound once the activity is destroyed; nothing escapes the analyzer."""
    source = _kotlin("MainActivity.kt")
    body = source.split("override fun onDestroy()")[1].split("\n    }\n")[0]
    order = [body.index(s) for s in ("stopCamera()", "analysis.shutdown()", "analysis.awaitTermination",
                                     "destroyed = true", "submit {", "runner?.close()")]
    assert order == sorted(order)
    assert "inference.shutdown()" not in source and "private val inference: ExecutorService = " \
        "InferenceThread.executor" in source
    assert "Executors.newSingleThreadExecutor" in _kotlin("InferenceThread.kt")
    for fn in ("private fun classify(", "private fun classifyFrame("):  # the clip path and the streaming path
        head, queued = source.split(fn)[1].split("val queued = submit {")[:2]
        assert "destroyed)" in head, fn  # dropped before queueing once destroyed
        assert queued.lstrip().startswith("if (destroyed) {"), fn  # and when it runs after the close
        assert "if (!queued) busy.set(false)" in queued, fn
    listener = source.split("future.addListener({")[1].split("}, ContextCompat.getMainExecutor(this))")[0]
    assert listener.index("isDestroyed") < listener.index("bindToLifecycle")
    analyze = source.split("private fun analyze(image: ImageProxy) {")[1].split("\n    }\n")[0]
    assert "try {" in analyze and "analyzeFrame(image)" in analyze and "catch (e: Exception)" in analyze
    # The sample clip plays through a classifier of its own, never the camera's window.
    assert "val own = if (a.isStep) stepOf(runner!!, a)" in source and "else pairOf(runner!!" in source
    assert "own.clip(" in source


def test_benchmark_activity_runs_once_whatever_the_configuration_does():
    manifest = (APP / "app/src/main/AndroidManifest.xml").read_text()
    bench = manifest.split('android:name=".BenchmarkActivity"')[1].split("/>")[0]
    changes = re.search(r'android:configChanges="([^"]+)"', bench)[1].split("|")
    assert {"orientation", "screenSize", "screenLayout", "smallestScreenSize", "uiMode", "density"} <= set(changes)
    source = _kotlin("BenchmarkActivity.kt")
    start = source.split("override fun onCreate(savedInstanceState: Bundle?) {")[1]
    assert start.index("savedInstanceState != null || !running.compareAndSet(false, true)") < start.index("thread(")
    assert source.count("running.set(false)") == 2  # released when refused and when done


def test_the_app_feeds_a_temporal_head_by_the_manifests_input_names():
    source = _kotlin("ModelManifest.kt")
    for field in ("buffer_input", "valid_input", "order"):
        assert f'optString("{field}"' in source, field
    assert "StreamLayout.of(head.inputNames, spec.bufferInput, spec.validInput, spec.order)" in source
    assert "layout.arrange(w, v)" in _kotlin("MainActivity.kt")


@needs_kotlin
@pytest.mark.kotlin
@pytest.mark.slow
def test_kotlin_stream_buffer_feeds_the_head_what_the_reference_does(harness, tmp_path):
    """The app's ring buffer (core/StreamBuffer.kt) gives the temporal head exactly edge/streaming.py's inputs."""
    from egoedge.edge.streaming import RingBuffer

    window, dim = 4, 3
    emb = np.random.default_rng(1).normal(size=(11, dim)).astype("<f4")
    emb.tofile(tmp_path / "e.f32")
    subprocess.run([*harness, "stream", str(tmp_path / "e.f32"), str(window), str(dim), str(tmp_path / "o.f32")],
                   check=True, timeout=120)
    got = np.fromfile(tmp_path / "o.f32", dtype="<f4").reshape(len(emb), window * dim + window)
    ref = RingBuffer(window, dim)
    for s, e in enumerate(emb):
        ref.push(e)
        w, v = ref.view()
        assert np.array_equal(got[s], np.concatenate([w.reshape(-1), v.reshape(-1)])), s
