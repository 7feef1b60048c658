"""Small shared pieces: the registry, atomic I/O and the user-facing error type."""

from egoedge.trainer.common.io import EgoedgeError, atomic_write, sha256_file, write_bytes_atomic, write_json_atomic
from egoedge.trainer.common.registry import Registry

__all__ = ["EgoedgeError", "Registry", "atomic_write", "sha256_file", "write_bytes_atomic", "write_json_atomic"]
