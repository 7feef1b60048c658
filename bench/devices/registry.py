"""The device registry: ``egoedge devices`` lists every kind, ``--device KIND[:ID]`` picks one."""

from trainer.common.registry import Registry

DEVICES: Registry = Registry("device")
