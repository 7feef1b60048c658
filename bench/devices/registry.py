"""The device registry: ``egoedge devices`` lists every kind, ``--device KIND[:ID]`` picks one."""

from egoedge.trainer.common.registry import Registry

DEVICES: Registry = Registry("device")
