"""Dotted module paths (``encoder.stages.0``): which path lies in which module."""

from __future__ import annotations

from collections.abc import Iterable


def in_modules(path: str, modules: Iterable[str]) -> bool:
    """Whether the module or parameter at ``path`` is one of ``modules`` or inside one.

    Example: ``in_modules("encoder.stages.0.conv", ["encoder.stages"])`` is True; ``"encoder.stagesX"`` is not.
    """
    return any(path == m or path.startswith(m + ".") for m in modules)
