import pytest
import torch

from egoedge.trainer.checkpoint import load_model, read_checkpoint, save_checkpoint
from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.models import build_model


@pytest.fixture
def ckpt(tmp_path):
    kwargs = {"num_classes": 3, "frames": 2, "size": 32, "variant": "micro"}
    model = build_model("mobilevit", **kwargs)
    path = save_checkpoint(tmp_path / "student.pt", arch="mobilevit", model_kwargs=kwargs, model=model,
                           metrics={"test": {"top1": 50.0}}, label_names=["a", "b", "c"],
                           preprocess={"frames": 2}, config={"data": {}})
    return path, model


def test_roundtrip_weights_only(ckpt):
    path, model = ckpt
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"arch", "config", "state_dict", "metrics", "label_names", "preprocess"}
    loaded, meta = load_model(path)
    (x,) = model.example_inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x))
    assert meta["label_names"] == ["a", "b", "c"]


def test_missing_truncated_and_foreign(tmp_path, ckpt):
    path, _ = ckpt
    with pytest.raises(EgoedgeError, match="not found"):
        read_checkpoint(tmp_path / "nope.pt")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(path.read_bytes()[:200])
    with pytest.raises(EgoedgeError, match="not a readable checkpoint"):
        read_checkpoint(cut)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(EgoedgeError, match="not an egoedge checkpoint"):
        read_checkpoint(foreign)


def _fuzz_files(valid: bytes, tmp_path, seed: int = 0):
    """Random bytes of several lengths and truncations of a valid file at several points (seeded)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    blobs = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in (0, 1, 100, 3000, 100_000)]
    blobs += [valid[:cut] for cut in sorted(set(rng.integers(1, len(valid), 6).tolist()))]
    for i, blob in enumerate(blobs):
        path = tmp_path / f"fuzz{i}"
        path.write_bytes(blob)
        yield path


def test_any_unreadable_checkpoint_is_one_egoedge_error(ckpt, tmp_path):
    """Whatever the bytes, reading a checkpoint raises EgoedgeError (one line), never another exception."""
    import io
    import pickle
    import zipfile

    path, _ = ckpt
    for bad in _fuzz_files(path.read_bytes(), tmp_path):
        with pytest.raises(EgoedgeError):
            read_checkpoint(bad)
    wrong_zip = tmp_path / "wrong.zip"
    with zipfile.ZipFile(wrong_zip, "w") as z:
        z.writestr("data.txt", "a valid zip with the wrong content")
    with pytest.raises(EgoedgeError, match="not a readable checkpoint"):
        read_checkpoint(wrong_zip)

    class RunsCode:
        def __reduce__(self):
            return (print, ("this must never run",))

    evil = tmp_path / "evil.pt"
    buf = io.BytesIO()
    torch.save({"arch": RunsCode()}, buf, pickle_module=pickle)
    evil.write_bytes(buf.getvalue())
    with pytest.raises(EgoedgeError, match="not a readable checkpoint"):  # weights_only refuses the call
        read_checkpoint(evil)


def test_any_unreadable_manifest_or_report_is_one_egoedge_error(tmp_path):
    import json

    from egoedge.bench.compare import load_report
    from egoedge.edge.manifest import load_manifest

    valid = json.dumps({"source": {"checkpoint": "s.pt", "sha256": "0" * 64}, "artifacts": []}).encode()
    for bad in _fuzz_files(valid, tmp_path, seed=1):
        folder = tmp_path / f"d_{bad.name}"
        folder.mkdir()
        (folder / "manifest.json").write_bytes(bad.read_bytes())
        (folder / "report.json").write_bytes(bad.read_bytes())
        with pytest.raises(EgoedgeError):
            load_manifest(folder)
        with pytest.raises(EgoedgeError):
            load_report(folder)
    shaped_wrong = tmp_path / "shape"
    shaped_wrong.mkdir()
    (shaped_wrong / "manifest.json").write_text("[1, 2, 3]")
    with pytest.raises(EgoedgeError, match="is not an egoedge manifest"):
        load_manifest(shaped_wrong)


def test_any_unreadable_config_calibration_or_program_is_one_egoedge_error(tmp_path):
    import logging

    from egoedge.trainer.config import read_config_file
    from egoedge.trainer.data.calibration import load_calibration_file
    from egoedge.trainer.quantize.program import load_program

    valid_npy = tmp_path / "ok.npy"
    import numpy as np

    np.save(valid_npy, np.zeros((8, 2, 3, 4, 4), np.float32))
    loaders = [(".yaml", read_config_file, b"student_train: {epochs: 3}\n"),
               (".json", read_config_file, b'{"student_train": {"epochs": 3}}'),
               (".npy", lambda p: load_calibration_file(p, (2, 3, 4, 4)), valid_npy.read_bytes()),
               (".pt2", load_program, b"PK\x03\x04" + bytes(200))]
    logging.disable(logging.WARNING)  # torch.export logs the archive error before raising
    try:
        for ext, load, valid in loaders:
            for bad in _fuzz_files(valid, tmp_path, seed=len(ext)):
                path = bad.with_suffix(ext)
                bad.rename(path)
                try:
                    out = load(path)
                except EgoedgeError:
                    continue
                # Only a config may load (an empty file or a cut that keeps whole lines is still valid).
                assert ext in (".yaml", ".json") and isinstance(out, dict), (path, out)
    finally:
        logging.disable(logging.NOTSET)
