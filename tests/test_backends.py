"""Every backend SDK imports in the installed environment (the install pins must allow all of them)."""

import importlib

import pytest


@pytest.mark.parametrize("module", [
    "torch", "torchvision", "timm", "executorch.runtime", "executorch.exir",
    "executorch.backends.xnnpack.partition.xnnpack_partitioner", "coremltools", "litert_torch",
    "ai_edge_litert.interpreter", "onnx", "onnxruntime", "typer", "rich", "matplotlib", "psutil", "torch_pruning",
    "yaml",
])
def test_backend_imports(module):
    importlib.import_module(module)


def test_torchvision_ops_work():
    # torch 2.13's CPU build fails here ('operator torchvision::nms does not exist').
    import torch
    import torchvision

    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    assert torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8]), 0.5).tolist() == [0]
