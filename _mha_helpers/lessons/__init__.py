"""The lessons' tools: 13's auditor (``audit.py``, its probes in ``audit_probes.py``) and its zoo of bugs modelled on
reported ones (``bug_zoo.py``)."""
