"""Device backends: how artifacts are pushed to and measured on each kind of device."""

from egoedge.trainer.common.registry import Registry

BACKENDS: Registry = Registry("device backend")
