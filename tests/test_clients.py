"""Contracts with the installed outside clients: every pymobiledevice3 subcommand and option egoedge runs exists in
the installed tool, adb comes from adbutils' own lookup, and a venv that is not activated (its bin not on PATH)
still finds and drives an iPhone the way `egoedge devices` does. (qai-hub: tests/test_aihub.py, whose stand-ins
take the installed client's signatures.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from egoedge.bench.devices.on_device.ios import COMMANDS

FIXTURES = Path(__file__).parent / "fixtures"
UDID = "00008110-000A1B2C3D4E5F60"  # the stand-in's iPhone (tests/fixtures/ios/pymobiledevice3)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_pymobiledevice3_command_exists_in_the_installed_tool(name):
    words = [w for w in COMMANDS[name] if not w.startswith("--")]
    options = [w for w in COMMANDS[name] if w.startswith("--")] + ([] if name == "list" else ["--udid"])
    done = subprocess.run([sys.executable, "-m", "pymobiledevice3", *words, "--help"], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr[-1000:]
    assert f"pymobiledevice3 {' '.join(words)}" in done.stdout  # the subcommand itself, not a parent's help
    for option in options:
        assert option in done.stdout, f"pymobiledevice3 {' '.join(words)} no longer takes {option}"


def test_adb_comes_from_adbutils_when_it_is_not_on_path(monkeypatch):
    import inspect

    import adbutils

    from egoedge.bench.devices.adb import adb_source

    assert not [p for p in inspect.signature(adbutils.adb_path).parameters.values() if p.default is p.empty]
    monkeypatch.delenv("EGOEDGE_ADB", raising=False)
    monkeypatch.delenv("ADBUTILS_ADB_PATH", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert adb_source() == (adbutils.adb_path(), "adbutils wheel")
    monkeypatch.setenv("ADBUTILS_ADB_PATH", "/opt/platform-tools/adb")
    assert adb_source() == ("/opt/platform-tools/adb", "ADBUTILS_ADB_PATH")
    monkeypatch.setenv("EGOEDGE_ADB", "/usr/local/bin/adb")  # ours first
    assert adb_source() == ("/usr/local/bin/adb", "EGOEDGE_ADB")


def test_an_iphone_is_found_and_benched_from_a_venv_that_is_not_activated(full_export, tmp_path):
    """PATH without the venv's bin (so no `pymobiledevice3` script on it): discovery and the bench both run the
    tool as `python -m pymobiledevice3` (here the stand-in, first on PYTHONPATH), and every Core ML artifact runs."""
    export, manifest = full_export
    env = {**os.environ, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(FIXTURES / "ios"),
           "FAKE_IOS_ROOT": str(tmp_path / "iphone"), "EGOEDGE_ADB": "/nonexistent/adb", "COLUMNS": "250"}
    egoedge = [sys.executable, "-m", "egoedge"]
    listed = subprocess.run([*egoedge, "devices"], capture_output=True, text=True, timeout=300, env=env)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert UDID in listed.stdout and "Fake iPhone" in listed.stdout
    done = subprocess.run([*egoedge, "bench", str(export), "--device", f"ios:{UDID}", "--out", str(tmp_path / "out"),
                           "--iterations", "3", "--warmup", "0"], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    rows = [r for r in report["results"] if r["device"] == f"ios:{UDID}"]
    coreml = [a["name"] for a in manifest["artifacts"] if a["format"] == "coreml" and a.get("role", "clip") == "clip"]
    assert sorted(r["name"] for r in rows) == sorted(f"{n}@ios" for n in coreml) and coreml
    assert all(r["status"] == "ok" and r["runtime"] == "coreml-ios-app" for r in rows), rows
    assert rows[0]["latency_ms"]["median"] == pytest.approx(2.1)
    assert (tmp_path / "iphone" / "egoedge" / f"{coreml[0]}.mlpackage" / "Manifest.json").is_file()
