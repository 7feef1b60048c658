"""One generic registry used for every pluggable kind (models, losses, exporters, runners)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A named mapping from keys to factories; ``get`` fails loudly with the valid keys.

    Example::

        MODELS = Registry("model")

        @MODELS.register("mobilevit")
        def build_mobilevit(**kw): ...

        MODELS.get("mobilevit")(variant="xxs")
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that adds ``obj`` under ``name``; a duplicate name is an error."""

        def deco(obj: T) -> T:
            if name in self._items:
                raise KeyError(f"{self.kind} '{name}' is already registered")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        """Return the entry for ``name`` or raise listing the valid names."""
        try:
            return self._items[name]
        except KeyError:
            valid = ", ".join(sorted(self._items)) or "(none)"
            raise KeyError(f"unknown {self.kind} '{name}'; valid: {valid}") from None

    def keys(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._items)


def import_submodules(package: str, path: list[str], skip: tuple[str, ...] = ("base", "registry")) -> None:
    """Import every module of a plugin package so that each registers itself (one file per backend)."""
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(path):
        if mod.name not in skip:
            importlib.import_module(f"{package}.{mod.name}")
