"""The interactive widgets students move, one a file: 06's head explorer (``head_explorer.py``, its figure and
per-head measures in ``head_maps.py``), 10's mask editor (``mask_editor.py``), 11's cost meter (``cost_meter.py``)
and 12's training replay (``training_replay.py``). What they share (display, read-outs, figures as PNG, showing a
failed redraw) is ``base.py``. A widget that can be copied where there is no kernel describes its own states
(``states.py``: controls, outputs, a view for given values); the static site (``site/widget_export.py``) does the
copying, and nothing here knows about pages or files."""
