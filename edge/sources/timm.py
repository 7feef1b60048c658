"""``timm:NAME``: a timm model with its classifier (weights from ``--weights FILE``; random without)."""

from __future__ import annotations

from torch import nn

from egoedge.edge.sources.base import ModelSource
from egoedge.edge.sources.registry import MODEL_SOURCES


class TimmSource(ModelSource):
    name = "timm"
    example = "timm:mobilenetv3_small_100"

    def matches(self, spec: str) -> bool:
        return spec.startswith("timm:")

    def load(self, spec: str, weights: str | None) -> nn.Module:
        import timm

        from egoedge.trainer.models.timm_trunk import check_timm_name
        from egoedge.trainer.models.weights import load_weights, read_weights

        name = spec.removeprefix("timm:")
        check_timm_name(name)
        model = timm.create_model(name, pretrained=False)
        if weights is not None:
            load_weights(model, read_weights(weights), f"--weights {weights} for {spec}")
        return model

    def stem(self, spec: str) -> str:
        return spec.removeprefix("timm:").replace(".", "_")


MODEL_SOURCES.register("timm")(TimmSource())
