import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from egoedge.bench.devices import DEVICES
from egoedge.bench.devices import adb as adb_mod
from egoedge.bench.devices import ios as ios_mod
from egoedge.bench.devices.ios import parse_pymobiledevice3
from egoedge.cli import app

FIXTURES = Path(__file__).parent / "fixtures" / "adb"


def test_parse_adb_devices_every_state():
    rows = adb_mod.parse_devices((FIXTURES / "devices_l.txt").read_text())
    assert [(r["serial"], r["state"]) for r in rows] == [
        ("emulator-5554", "device"), ("2A111FDH2004VZ", "device"), ("R58M41XXXXX", "unauthorized"),
        ("0123456789ABCDEF", "offline"), ("ZY22345678", "no permissions"), ("HT7A1B234567", "device")]
    assert rows[1]["model"] == "Pixel_8_Pro" and rows[1]["usb"] == "3-1"
    assert adb_mod.parse_devices("List of devices attached\n\n") == []
    assert adb_mod.parse_devices("* daemon not running; starting now at tcp:5037\n"
                                 "* daemon started successfully\nList of devices attached\n") == []


def test_parse_getprop():
    props = adb_mod.parse_getprop((FIXTURES / "getprop_2A111FDH2004VZ.txt").read_text())
    assert props["ro.product.model"] == "Pixel 8 Pro" and props["ro.soc.model"] == "Tensor G3"
    assert adb_mod.parse_getprop("[ro.soc.model]: []\n") == {"ro.soc.model": ""}


@pytest.fixture
def fake_adb(monkeypatch):
    monkeypatch.setenv("EGOEDGE_ADB", str(FIXTURES / "fake_adb.sh"))
    monkeypatch.delenv("FAKE_ADB_MODE", raising=False)
    return monkeypatch


def test_discovery_through_a_stand_in_adb(fake_adb):
    found = {d.id: d for d in DEVICES.get("android").discover()}
    assert found["emulator-5554"].usable and found["emulator-5554"].details["emulator"] is True
    pixel = found["2A111FDH2004VZ"]
    assert pixel.usable and pixel.name == "Pixel 8 Pro" and pixel.details["abi"] == "arm64-v8a"
    assert pixel.details["emulator"] is False and pixel.details["android"] == "15"
    assert not found["R58M41XXXXX"].usable and "Allow USB debugging" in found["R58M41XXXXX"].reason
    assert not found["0123456789ABCDEF"].usable and "offline" in found["0123456789ABCDEF"].reason
    assert "udev" in found["ZY22345678"].reason
    assert not found["HT7A1B234567"].usable and "armeabi-v7a" in found["HT7A1B234567"].reason


def test_no_device_and_no_adb(fake_adb):
    fake_adb.setenv("FAKE_ADB_MODE", "empty")
    (d,) = DEVICES.get("android").discover()
    assert not d.usable and d.state == "no device" and "start an emulator" in d.reason
    fake_adb.setenv("EGOEDGE_ADB", "/nonexistent/adb")
    (d,) = DEVICES.get("android").discover()
    assert d.state == "unavailable" and "not found on PATH" in d.reason


def test_a_hanging_adb_times_out(fake_adb):
    fake_adb.setenv("FAKE_ADB_MODE", "hang")
    fake_adb.setattr(adb_mod, "TIMEOUT_S", 0.5)
    (d,) = DEVICES.get("android").discover()
    assert d.state == "unavailable" and "did not answer within" in d.reason


@pytest.mark.skipif(shutil.which("adb") is None, reason="Debian's adb is not installed here")
def test_real_adb_without_devices(monkeypatch):
    monkeypatch.delenv("EGOEDGE_ADB", raising=False)
    found = DEVICES.get("android").discover()
    if any(d.usable for d in found):
        pytest.skip("a real device is attached")
    assert all(not d.usable and d.reason for d in found)


def test_ios_parsing_and_absence(monkeypatch):
    text = ('[{"BuildVersion": "22A3354", "ConnectionType": "USB", "DeviceClass": "iPhone", '
            '"DeviceName": "Test iPhone", "Identifier": "00008110-000A1B2C3D4E5F6G", "ProductType": "iPhone15,2", '
            '"ProductVersion": "18.0", "UniqueDeviceID": "00008110-000A1B2C3D4E5F6G"}]')
    (d,) = parse_pymobiledevice3(text)
    assert d.usable and d.name == "Test iPhone" and d.details["ios"] == "18.0"
    monkeypatch.setattr(ios_mod, "ios_tool", lambda: None)
    (d,) = DEVICES.get("ios").discover()
    assert not d.usable and d.state == "unavailable" and "pip install pymobiledevice3" in d.reason


def test_the_installed_ios_tool_is_found_without_path(monkeypatch):
    """pymobiledevice3 is a dependency: found through this Python when its script is not on PATH."""
    import sys

    monkeypatch.setenv("PATH", "/nonexistent")
    assert ios_mod.ios_tool() == [sys.executable, "-m", "pymobiledevice3"]
    (d,) = DEVICES.get("ios").discover()  # no iPhone and, here, no usbmuxd: the tool answers, nothing is attached
    assert d.state == "no device" and not d.usable and ("usbmuxd" in d.reason or "no paired iPhone" in d.reason)


def test_adb_comes_from_the_env_then_path_then_the_adbutils_wheel(monkeypatch, tmp_path):
    fake = tmp_path / "adb"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("EGOEDGE_ADB", "/opt/my/adb")
    assert adb_mod.adb_source() == ("/opt/my/adb", "EGOEDGE_ADB")
    monkeypatch.delenv("EGOEDGE_ADB")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert adb_mod.adb_source() == (str(fake), "PATH")
    monkeypatch.setenv("PATH", "/nonexistent")
    binary, source = adb_mod.adb_source()
    assert source == "adbutils wheel" and Path(binary).name == "adb" and "adbutils" in binary


def test_the_bundled_adb_works_with_nothing_attached(monkeypatch):
    """A fresh install can list phones: the wheel's real adb runs (its server is stopped afterwards)."""
    import subprocess

    monkeypatch.delenv("EGOEDGE_ADB", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    binary, source = adb_mod.adb_source()
    assert source == "adbutils wheel"
    try:
        found = DEVICES.get("android").discover()
    finally:
        subprocess.run([str(binary), "kill-server"], capture_output=True, timeout=30, check=False)
    if any(d.usable for d in found):
        pytest.skip("a real device is attached")
    (d,) = found
    assert d.state == "no device" and "(adbutils wheel)" in d.reason and d.details["adb"].endswith("(adbutils wheel)")


def test_devices_command(fake_adb):
    result = CliRunner().invoke(app, ["devices"])
    assert result.exit_code == 0, result.output
    for text in ("host", "emulator-5554", "R58M41XXXXX", "ios"):
        assert text in result.output
