"""Measuring artifacts on a device: each kind's bench (``android``, ``ios``, ``aihub``), the app protocol, the
parsers of what apps and native tools print, and the dispatch from ``--device`` to a kind's bench.

Imported only when a device bench runs (the device kinds in :mod:`egoedge.bench.devices` reach
their bench lazily), so that listing devices and ``egoedge --help`` stay light.
"""
