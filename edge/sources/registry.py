"""The model-source registry: where ``egoedge export MODEL`` gets its model from."""

from egoedge.trainer.common.registry import Registry

MODEL_SOURCES: Registry = Registry("model source")
