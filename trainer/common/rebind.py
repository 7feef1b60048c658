"""Wrap a function that other modules bound by name at their import, once per process."""

from __future__ import annotations

from collections.abc import Callable, Sequence

# Marks our wrappers: ``__wrapped__`` alone cannot, as functools.wraps (and a classmethod) sets it too.
_MARK = "__egoedge_rebound__"


def _held(owner: object, name: str) -> object | None:
    """What ``owner`` holds under ``name``: a class's classmethod itself, not the bound method a lookup makes."""
    if isinstance(owner, type):
        for klass in owner.__mro__:
            if name in vars(klass):
                return vars(klass)[name]
        return None
    return getattr(owner, name, None)


def _function(held: object) -> object:
    return held.__func__ if isinstance(held, classmethod) else held


def rebind(name: str, owners: Sequence[object | None], wrap: Callable[[Callable], Callable]) -> object | None:
    """Bind ``wrap(owners[0].name)`` in every owner (module or class) that holds the original; returns the wrapper.

    A module that did ``from x import name`` keeps its own reference, so each must be rebound. The
    wrapper carries the original as ``__wrapped__``: a second call wraps nothing again and only binds
    the wrapper in owners imported since. A classmethod's function is wrapped and bound as a classmethod
    (the one returned). ``None`` owners (modules not imported) are skipped; with no first owner, or one
    without ``name``, nothing is bound.
    """
    origin = owners[0] if owners else None
    if origin is None or not hasattr(origin, name):
        return None
    current = _held(origin, name)
    function = _function(current)
    if getattr(function, _MARK, False):
        wrapper, original = current, function.__wrapped__
    else:
        wrapped = wrap(function)
        wrapped.__wrapped__ = function
        setattr(wrapped, _MARK, True)
        wrapper = classmethod(wrapped) if isinstance(current, classmethod) else wrapped
        original = function
    for owner in owners:
        if owner is not None and _function(_held(owner, name)) in (original, _function(wrapper)):
            setattr(owner, name, wrapper)
    return wrapper
