"""An export folder's ``manifest.json``, read back: what every reader of an export starts from."""

from __future__ import annotations

import json
from pathlib import Path

from egoedge.trainer.common.io import EgoedgeError


def load_manifest(export_dir: Path) -> tuple[dict, Path]:
    """The export's manifest and the checkpoint it came from, or one clear error."""
    path = export_dir / "manifest.json"
    if not path.is_file():
        raise EgoedgeError(f"no manifest.json in {export_dir}; run `egoedge export` first")
    try:
        manifest = json.loads(path.read_text())
        return manifest, (export_dir / manifest["source"]["checkpoint"]).resolve()
    except (ValueError, KeyError, TypeError, OSError) as e:  # bad JSON, not UTF-8, wrong shape
        raise EgoedgeError(f"{path} is not an egoedge manifest ({type(e).__name__})") from None
