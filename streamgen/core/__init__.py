"""The engine core: decode, windows, normalization, calibration, alerting, the loop.

Nothing in this package imports ``kafka`` or ``prometheus_client``; adapters in
:mod:`streamgen.io` do (a test enforces it).
"""
