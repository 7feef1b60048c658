"""The exporter registry; the CLI's ``--to`` choices are its keys."""

from egoedge.trainer.common.registry import Registry

EXPORTERS: Registry = Registry("exporter")


def lowers_program(fmt: str, precision: str) -> bool:
    """Whether ``fmt`` lowers the int8 PT2E program for ``precision`` (its ``program_precision``)."""
    return precision == getattr(EXPORTERS.get(fmt), "program_precision", None)


def from_recipe(fmt: str, precision: str) -> bool:
    """Whether ``fmt``'s ``precision`` is static int8 made from the int8 recipe (its program, or a backend's own
    int8 calibrated on the recipe's samples with its modules kept fp32: ``recipe_precision``), so keeping
    more modules fp32 changes it; weight-only int8 is not."""
    exporter = EXPORTERS.get(fmt)
    return lowers_program(fmt, precision) or precision == getattr(exporter, "recipe_precision", None)
