"""The JSON contracts shared with the demo apps, checked against their JSON Schema files.

``edge/schemas/manifest.schema.json`` describes ``manifest.json`` (export folders and app assets);
``edge/schemas/app_result.schema.json`` describes the benchmark result the apps write.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files

from egoedge.trainer.common.io import EgoedgeError

SCHEMAS = {"manifest": ("egoedge.edge", "schemas/manifest.schema.json"),
           "app_result": ("egoedge.edge", "schemas/app_result.schema.json")}


@cache
def load_schema(name: str) -> dict:
    """The parsed schema ``name`` (a key of ``SCHEMAS``)."""
    if name not in SCHEMAS:
        raise EgoedgeError(f"unknown schema '{name}'; known: {', '.join(SCHEMAS)}")
    package, path = SCHEMAS[name]
    return json.loads(files(package).joinpath(path).read_text())


def checked_schema(name: str) -> dict:
    """Schema ``name`` as this process checks it: the manifest's formats are the registered exporters.

    The file lists the formats too, for readers outside Python; a test keeps the two equal.
    """
    schema = load_schema(name)
    if name != "manifest":
        return schema
    from egoedge.edge.exporters import EXPORTERS

    artifact = schema["$defs"]["artifact"]
    fmt = {**artifact["properties"]["format"], "enum": list(EXPORTERS.keys())}
    return {**schema, "$defs": {**schema["$defs"], "artifact": {
        **artifact, "properties": {**artifact["properties"], "format": fmt}}}}


def schema_errors(instance: object, name: str) -> list[str]:
    """Every violation of schema ``name`` as ``path: message``, outermost first; empty when valid."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(checked_schema(name))
    errors = sorted(validator.iter_errors(instance),
                    key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors]


def validate(instance: object, name: str, what: str) -> None:
    """Raise one clear error naming ``what`` and its first violation if ``instance`` breaks schema ``name``."""
    errors = schema_errors(instance, name)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise EgoedgeError(f"{what} does not follow the {name} schema: {errors[0]}{more}")
