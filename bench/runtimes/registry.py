"""The host runtime registry: how each backend's artifacts (and PyTorch eager models) are opened and run on the host."""

from egoedge.trainer.common.registry import Registry

RUNTIMES: Registry = Registry("host runtime")
