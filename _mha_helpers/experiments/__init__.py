"""The experiments that train or measure: 08's look-up task (``lookup.py``), 09's cost measurements (``cost.py``, and
peak memory in ``memory.py``), 11's costs of the attention variants (``variant_costs.py``), 12's induction circuit
(``induction.py``). Results too slow to recompute in a notebook are stored beside them (``*_reference.py``, each
written by a ``tests/make_*_reference.py`` script and checked by a claim test)."""
