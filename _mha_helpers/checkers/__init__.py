"""Exercise checkers: ``core.py`` is the machinery they share; ``nbNN.py`` holds notebook NN's checkers."""
