"""Wrap a function that other modules bound by name at their import, once per process."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def rebind(name: str, owners: Sequence[object | None], wrap: Callable[[Callable], Callable]) -> Callable | None:
    """Bind ``wrap(owners[0].name)`` in every owner (module or class) that holds the original; returns the wrapper.

    A module that did ``from x import name`` keeps its own reference, so each must be rebound. The
    wrapper carries the original as ``__wrapped__``: a second call wraps nothing again and only binds
    the wrapper in owners imported since. ``None`` owners (modules not imported) are skipped; with no
    first owner, or one without ``name``, nothing is bound.
    """
    origin = owners[0] if owners else None
    if origin is None or not hasattr(origin, name):
        return None
    current = getattr(origin, name)
    if hasattr(current, "__wrapped__"):
        wrapper = current
    else:
        wrapper = wrap(current)
        wrapper.__wrapped__ = current
    for owner in owners:
        if owner is not None and getattr(owner, name, None) in (wrapper.__wrapped__, wrapper):
            setattr(owner, name, wrapper)
    return wrapper
