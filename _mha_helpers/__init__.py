"""The code behind ``mha_helpers``, in sub-folders by kind, each file one topic, read in the order of the series.

Notebooks never import this package: they ``import mha_helpers as mh``, whose file is the map of what lives where.
``validation.py`` holds the argument checks every public function calls; ``common.py`` the device, the toy data and
the one-thread guard; ``figures.py`` the labelled heat maps. Then ``maths/`` (the attention maths), ``experiments/``
(what trains or measures), ``widgets/`` (what students move), ``lessons/`` (the audit and the bug zoo) and
``checkers/`` (each notebook's exercise checkers). Every name keeps the module that defines it (``mh.split_heads``
is ``_mha_helpers.maths.attention.split_heads``), so ``inspect``, type hints, pickles and "go to definition" all
find it where it is written.
"""
