"""Stand-ins for outside clients that keep to the installed client's API: each method takes the real function's
signature, so a parameter egoedge passes that the installed client lacks fails as it would for real, and a
function the installed client deprecates fails the test when egoedge calls it."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import pytest

DEPRECATION_MARKERS = ("_print_deprecation_message(", "DeprecationWarning", "deprecated_")


def deprecation_of(real: Callable) -> str | None:
    """How the installed client marks ``real`` deprecated (a printed message or a warning in its body), if it does."""
    try:
        source = inspect.getsource(real)
    except (OSError, TypeError):
        return None
    return next((m for m in DEPRECATION_MARKERS if m in source), None)


def like(real: Callable) -> Callable[[Callable], Callable]:
    """Decorate a stand-in method: calls are bound to ``real``'s signature first (``self`` excluded)."""
    signature = inspect.signature(real)
    params = list(signature.parameters.values())
    if params and params[0].name == "self":  # an unbound method: the stand-in's own self takes that place
        signature = signature.replace(parameters=params[1:])
    name = getattr(real, "__qualname__", repr(real))

    def wrap(impl: Callable) -> Callable:
        @functools.wraps(impl)
        def call(self, *args, **kwargs):
            if marker := deprecation_of(real):
                pytest.fail(f"egoedge called {name}, which the installed client deprecates ({marker})")
            try:
                signature.bind(*args, **kwargs)
            except TypeError as e:
                raise TypeError(f"{name}{signature}: {e}") from None
            return impl(self, *args, **kwargs)

        call.real = real
        return call

    return wrap
