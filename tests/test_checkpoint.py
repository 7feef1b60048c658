import pytest
import torch

from trainer.checkpoint import load_model, read_checkpoint, save_checkpoint
from trainer.common.io import EgoedgeError
from trainer.models import build_model


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
