"""Your own task, backend, data source or device without editing egoedge: modules named in ``EGOEDGE_PLUGINS``.

Each module registers what it adds (``TASKS.register(...)``, ``EXPORTERS.register(...)``) when imported.
The command line imports them before it reads its registries, and so does every process a run spawns.

Example::

    EGOEDGE_PLUGINS=my_task.py egoedge run --task my_task
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

from egoedge.trainer.common.io import EgoedgeError

ENV = "EGOEDGE_PLUGINS"
_loaded: set[str] = set()


def load_plugins(spec: str | None = None) -> list[str]:
    """Import each module ``spec`` (default: ``$EGOEDGE_PLUGINS``) names, once per process; the names loaded.

    ``spec`` is ``os.pathsep``-separated: ``.py`` files or dotted module names. A missing file or a module
    that fails to import is one clear error.
    """
    spec = os.environ.get(ENV, "") if spec is None else spec
    items = [s.strip() for s in spec.split(os.pathsep) if s.strip()]
    for item in items:
        if item in _loaded:
            continue
        try:
            if item.endswith(".py"):
                path = Path(item).expanduser()
                if not path.is_file():
                    raise EgoedgeError(f"{ENV}: no such file: {item}")
                name = f"egoedge_plugin_{path.stem}"
                module_spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(module_spec)
                sys.modules[name] = module
                module_spec.loader.exec_module(module)
            else:
                importlib.import_module(item)
        except EgoedgeError:
            raise
        except Exception as e:  # noqa: BLE001 - a plugin's own error, named with the plugin
            raise EgoedgeError(f"{ENV}: {item} did not import: {type(e).__name__}: {e}") from None
        _loaded.add(item)
    return items
