"""One import package, ``egoedge``, from the repository's layer folders (metadata lives in pyproject.toml).

``trainer/``, ``edge/`` and ``bench/`` stay at the top of the repository and install as
``egoedge.trainer``, ``egoedge.edge`` and ``egoedge.bench``; ``egoedge/`` holds the application
(CLI and run pipelines). Nothing else lands at the top of site-packages.
"""

from setuptools import find_packages, setup

LAYERS = ("trainer", "edge", "bench")

package_dir = {"egoedge": "egoedge"}
packages = find_packages(include=["egoedge", "egoedge.*"])
for layer in LAYERS:
    package_dir[f"egoedge.{layer}"] = layer
    packages += [f"egoedge.{name}" for name in find_packages(include=[layer, f"{layer}.*"])]

setup(packages=packages, package_dir=package_dir)
