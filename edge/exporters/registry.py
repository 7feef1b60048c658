"""The exporter registry; the CLI's ``--to`` choices are its keys."""

from egoedge.trainer.common.registry import Registry

EXPORTERS: Registry = Registry("exporter")
