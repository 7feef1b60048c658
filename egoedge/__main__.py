"""``python -m egoedge``: the same as the ``egoedge`` command."""

from egoedge.cli import main

main()
