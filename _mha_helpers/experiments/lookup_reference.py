"""The record of notebook 08's head-count sweep (see stored_head_count_sweep in lookup.py).

Written by tests/make_lookup_reference.py; do not edit by hand. Each run: mh.train_lookup_model(num_heads,
d_model=8, seed) with the defaults (150 steps, lr 0.03), scored by mh.lookup_accuracy; seeds (0, 1, 2, 3, 4).
"""

SEEDS = (0, 1, 2, 3, 4)

SWEEP_D_MODEL_8 = {
    1: [
        {'previous': 0.12349999696016312, 'first': 1.0, 'both': 0.12349999696016312},
        {'previous': 0.14358332753181458, 'first': 0.996666669845581, 'both': 0.14091666042804718},
        {'previous': 0.12183333188295364, 'first': 1.0, 'both': 0.12183333188295364},
        {'previous': 0.12349999696016312, 'first': 1.0, 'both': 0.12349999696016312},
        {'previous': 0.9260833263397217, 'first': 0.7302500009536743, 'both': 0.6809166669845581},
    ],
    2: [
        {'previous': 1.0, 'first': 1.0, 'both': 1.0},
        {'previous': 1.0, 'first': 1.0, 'both': 1.0},
        {'previous': 1.0, 'first': 1.0, 'both': 1.0},
        {'previous': 1.0, 'first': 1.0, 'both': 1.0},
        {'previous': 1.0, 'first': 1.0, 'both': 1.0},
    ],
    4: [
        {'previous': 1.0, 'first': 1.0, 'both': 1.0},
        {'previous': 1.0, 'first': 1.0, 'both': 1.0},
        {'previous': 1.0, 'first': 1.0, 'both': 1.0},
        {'previous': 1.0, 'first': 1.0, 'both': 1.0},
        {'previous': 1.0, 'first': 1.0, 'both': 1.0},
    ],
    8: [
        {'previous': 0.590749979019165, 'first': 1.0, 'both': 0.590749979019165},
        {'previous': 0.43308332562446594, 'first': 1.0, 'both': 0.43308332562446594},
        {'previous': 0.5092499852180481, 'first': 0.999833345413208, 'both': 0.5090833306312561},
        {'previous': 0.5337499976158142, 'first': 1.0, 'both': 0.5337499976158142},
        {'previous': 0.5941666960716248, 'first': 1.0, 'both': 0.5941666960716248},
    ],
}
