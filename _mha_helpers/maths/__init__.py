"""The attention maths, one topic a file, in series order: scaled dot-product attention, masks and the head split
(``attention.py``), the reference module (``mha.py``, with PyTorch compatibility in ``torch_compat.py``), the
Transformer block (``transformer.py``), the online softmax (``online_softmax.py``), grouped-query attention and the
KV cache (``kv_cache.py``), attention at inference (``inference.py``), today's variants (``positions.py``: RoPE and
ALiBi; ``sliding_window.py``; ``latent.py``: multi-head latent attention) and attention over image patches
(``vision.py``)."""
