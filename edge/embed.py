"""``egoedge embed``: copy exported students into the Android demo app's assets, checked.

What lands in ``android_demo/app/src/main/assets/``::

    manifest.json       the export manifest, cut to the embedded artifacts, ``file`` = "models/<file>"
    models/<file>       each artifact, byte-identical to the export (size and sha256 checked twice)
    sample/clip.rgb     one held-out clip, raw uint8 RGB (T, H, W, 3), with PyTorch's logits for it
                        in the manifest's ``sample`` block, so the app can show its own parity

Only artifacts the app can run (ExecuTorch, LiteRT) that passed the parity gate are taken; a
failed, missing or modified artifact is refused with the reason. A streaming artifact brings its
other half, and the manifest keeps the ``streaming`` block the camera path needs. The new files are staged beside
the assets and moved in place at the end; the manifest, which the app reads first, is replaced last.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from egoedge.edge.manifest import load_manifest
from egoedge.edge.preprocess import preprocess_clip
from egoedge.edge.schema import validate
from egoedge.trainer.common.io import EgoedgeError, remove_path, sha256_file, write_json_atomic
from egoedge.trainer.tasks import task_named

ASSETS = Path("app/src/main/assets")
VERSIONS = Path("gradle/libs.versions.toml")
MODELS, SAMPLE = "models", "sample"
SAMPLE_CLIP = f"{SAMPLE}/clip.rgb"
ANDROID_FORMATS = ("executorch", "tflite")  # the runtimes the Android app links (ExecuTorch AAR, LiteRT)
_RUNTIME_KEYS = {"executorch": "executorch"}  # artifact format -> its runtime's key in libs.versions.toml


@dataclass(frozen=True)
class EmbedConfig:
    """Which artifacts to embed: names or shell patterns (``*_int8``); ``None`` takes every eligible one."""

    models: tuple[str, ...] | None = None
    sample: bool = True


def find_export(run: str | Path) -> Path:
    """The export folder of ``run``: the one its report ships from (``egoedge run`` exports the KD and the CBKD
    student, and ships the faster), else ``run/export`` or ``run`` itself, whichever holds ``manifest.json``."""
    run = Path(run)
    shipped = None
    try:
        shipped = (json.loads((run / "report.json").read_text()).get("ship") or {}).get("export")
    except (OSError, ValueError, AttributeError):
        pass  # no run report (an export folder, or a run still going): the plain layout
    for folder in ((run / shipped,) if shipped else ()) + (run / "export", run):
        if (folder / "manifest.json").is_file():
            return folder
    raise EgoedgeError(f"no manifest.json in {run} or {run / 'export'}; run `egoedge export` (or `egoedge run`) first")


def app_assets(app: str | Path) -> Path:
    """The assets folder of the Android project at ``app`` (created if missing)."""
    app = Path(app)
    if not (app / "settings.gradle.kts").is_file() or not (app / "app/build.gradle.kts").is_file():
        raise EgoedgeError(f"{app} is not the Android demo project (no settings.gradle.kts and app/build.gradle.kts); "
                           "pass --app PATH/TO/android_demo")
    assets = app / ASSETS
    assets.mkdir(parents=True, exist_ok=True)
    return assets


def select(manifest: dict, patterns: tuple[str, ...] | None) -> list[dict]:
    """The artifacts to embed, in manifest order; anything asked for that cannot be embedded is an error."""
    artifacts = manifest["artifacts"]
    names = [a["name"] for a in artifacts]
    if patterns is None:
        chosen = [a for a in artifacts if a["format"] in ANDROID_FORMATS and a["status"] == "ok"]
        if not chosen:
            raise EgoedgeError(f"no artifact the app can run passed the parity gate (the app runs "
                               f"{', '.join(ANDROID_FORMATS)}; exported: {', '.join(names) or 'nothing'})")
        return chosen
    chosen = []
    for pattern in patterns:
        hits = [a for a in artifacts if fnmatch.fnmatchcase(a["name"], pattern)]
        if not hits:
            raise EgoedgeError(f"no artifact matches '{pattern}'; exported: {', '.join(names)}")
        chosen += [a for a in hits if a not in chosen]
    for a in chosen:
        if a["format"] not in ANDROID_FORMATS:
            raise EgoedgeError(f"{a['name']} is {a['format']}; the Android app runs {', '.join(ANDROID_FORMATS)}")
        if a["status"] != "ok":
            raise EgoedgeError(f"refusing {a['name']}: it failed the parity gate ({a['reason']})")
    return with_pairs(artifacts, chosen)


def with_pairs(artifacts: list[dict], chosen: list[dict]) -> list[dict]:
    """``chosen`` plus the other half of every streaming pair in it: half a pair cannot run."""
    by_name = {a["name"]: a for a in artifacts}
    out = list(chosen)
    for a in chosen:
        if a.get("role", "clip") in ("clip", "stream_step"):
            continue
        other = by_name.get(a.get("pair"))
        if other is None:
            raise EgoedgeError(f"{a['name']} is half of a streaming pair whose other half ({a.get('pair')}) "
                               "is not in the manifest; re-export with --streaming")
        if other not in out:
            out.append(other)
    return out


def check_file(export: Path, artifact: dict) -> Path:
    """The artifact's file, if it is still exactly what was exported and verified."""
    path = export / artifact["file"]
    if not path.is_file():
        raise EgoedgeError(f"refusing {artifact['name']}: {path} is missing")
    size, digest = path.stat().st_size, sha256_file(path)
    if size != artifact["bytes"] or digest != artifact["sha256"]:
        raise EgoedgeError(f"refusing {artifact['name']}: {path} changed since export ({size} bytes, sha256 "
                           f"{digest[:12]}…; the manifest says {artifact['bytes']} bytes, {artifact['sha256'][:12]}…)")
    return path


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def runtime_warnings(app: Path, artifacts: list[dict]) -> list[str]:
    """Artifacts exported by a newer runtime than the app links (an older runtime may refuse to load them)."""
    versions_file = Path(app) / VERSIONS
    if not versions_file.is_file():
        return [f"{versions_file} not found: cannot check the app's runtime versions"]
    linked = tomllib.loads(versions_file.read_text()).get("versions", {})
    warnings = []
    for a in artifacts:
        key, exporter = _RUNTIME_KEYS.get(a["format"]), (a.get("backend") or {}).get("exporter", "")
        if key is None or not exporter or key not in linked:
            continue
        made, runs = exporter.split()[-1], linked[key]
        if _version(runs) < _version(made):
            warnings.append(f"{a['name']} was exported with {exporter} but the app links {key} {runs}: "
                            f"set {key} = \"{made}\" in {versions_file}")
    return warnings


def sample_block(export: Path, manifest: dict, preprocess: dict) -> tuple[dict, np.ndarray]:
    """The app's ``sample`` entry and the raw clip, after checking that the reference preprocessing of the
    clip gives exactly the input the artifacts were verified on."""
    info = manifest.get("sample")
    if not info or not (export / info["clip"]).is_file():
        raise EgoedgeError(f"{export} has no sample clip (exported by an older egoedge?): re-run `egoedge export`, "
                           "or pass --no-sample")
    clip = np.load(export / info["clip"], allow_pickle=False)
    expected_in = np.load(export / info["input"], allow_pickle=False)
    reference = np.load(export / info["output"], allow_pickle=False)
    got = preprocess_clip(clip, preprocess)
    if got.shape != expected_in.shape or not np.allclose(got, expected_in, rtol=0, atol=1e-6):
        raise EgoedgeError(f"the app's preprocessing of {info['clip']} does not give {info['input']}: "
                           "the manifest's preprocess block and the exported input disagree")
    return ({"clip": SAMPLE_CLIP, "shape": list(clip.shape), "dtype": "uint8", "layout": "THWC",
             "label": info["label"], "reference_logits": [float(v) for v in reference.reshape(-1)]}, clip)


def embed(run: str | Path, app: str | Path = "android_demo", cfg: EmbedConfig = EmbedConfig()) -> dict:
    """Embed the artifacts of ``run`` into the app at ``app``; returns what was written.

    Example::

        summary = embed("runs/quick", "android_demo", EmbedConfig(models=("*_int8",)))
        [a["file"] for a in summary["manifest"]["artifacts"]]   # ['models/student_executorch_int8.pte', ...]
    """
    export, assets = find_export(run), app_assets(app)
    manifest_file = export / "manifest.json"
    manifest, _ = load_manifest(export)
    validate(manifest, "manifest", str(manifest_file))
    task = task_named(manifest.get("task"), str(manifest_file))
    if not task.app:
        raise EgoedgeError(f"{manifest_file} holds {task.name} models; the Android demo does not run that task")
    chosen = select(manifest, cfg.models)
    sources = [check_file(export, a) for a in chosen]
    if len({Path(a["file"]).name for a in chosen}) != len(chosen):
        raise EgoedgeError("two chosen artifacts share a file name; embed them one export at a time")

    staging, trash = assets / ".egoedge-staging", assets / ".egoedge-old"
    remove_path(staging)
    (staging / MODELS).mkdir(parents=True)
    entries = []
    for a, src in zip(chosen, sources, strict=True):
        dst = staging / MODELS / src.name
        shutil.copyfile(src, dst)
        if sha256_file(dst) != a["sha256"]:
            remove_path(staging)
            raise EgoedgeError(f"copying {src} to {dst} did not give the same bytes (disk full?)")
        entries.append({**a, "file": f"{MODELS}/{src.name}"})
    out = {"source": manifest["source"], "calibration": manifest.get("calibration"), "gate": manifest.get("gate", {}),
           "embedded": {"run": str(Path(run)), "manifest_sha256": sha256_file(manifest_file)},
           "artifacts": entries}
    if any(a.get("role", "clip") != "clip" for a in chosen):  # the app's camera path streams the step or pair
        out["streaming"] = {k: v for k, v in manifest["streaming"].items()
                            if k not in ("sample_stream", "sample_stream_logits")}
    if cfg.sample:
        out["sample"], clip = sample_block(export, manifest, chosen[0]["preprocess"])
        (staging / SAMPLE).mkdir()
        (staging / SAMPLE_CLIP).write_bytes(np.ascontiguousarray(clip, dtype=np.uint8).tobytes())
    validate(out, "manifest", "the app manifest")
    write_json_atomic(staging / "manifest.json", out)

    remove_path(trash)
    trash.mkdir()
    for name in (MODELS, SAMPLE):
        if (assets / name).exists():
            (assets / name).rename(trash / name)
        if (staging / name).exists():
            (staging / name).rename(assets / name)
    (staging / "manifest.json").replace(assets / "manifest.json")
    remove_path(trash)
    remove_path(staging)
    return {"assets": assets, "manifest": out, "warnings": runtime_warnings(Path(app), chosen)}
