"""The interactive widgets students move: 06's head explorer (``head_explorer.py``, its figure and per-head measures
in ``head_maps.py``)."""
