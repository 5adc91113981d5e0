"""The ``wolfpacs`` command and its verbs: run, demo, ctl, shell, chaos.

The top layer: it may import every part of WolfPACS, :mod:`wolfpacs.testing`
included (the demo's and the chaos run's simulated peers); nothing imports it.
"""

from wolfpacs.cli.main import main

__all__ = ["main"]
