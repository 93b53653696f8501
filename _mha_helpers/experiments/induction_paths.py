"""Notebook 12, section 7: through which input of the next layer does a head's output act?

A head's output is added to the residual stream, and the next layer reads that stream three times, as the input of
its queries, of its keys and of its values, while the stream itself also goes on past that layer to the read-out.
Switching the head off (:func:`heads_switched_off`) removes it from all four at once: it shows that the head is
needed, not where. :func:`path_ablation` removes it from ONE of them while the others read the full stream. If
copying breaks only when the KEYS lose the previous-token head, the composition is K-composition, the circuit of
Elhage et al. (2021), "A Mathematical Framework for Transformer Circuits".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..common import OneThread
from ..validation import check_choice, check_instance, check_token_ids
from .induction import InductionModel, induction_test_set, occurrence_masks, scores_from_maps
from .lookup import heads_switched_off

#: The paths :func:`path_ablation` can cut: the next layer's queries, keys or values, the residual stream that goes
#: past that layer ("direct": for a 2-layer model, straight to the read-out), or all four at once.
ABLATION_PATHS: tuple[str, ...] = ("queries", "keys", "values", "direct", "all")


def _check_head_and_path(model: object, head: object, path: object) -> tuple[int, int]:
    check_instance("model", model, InductionModel, "an InductionModel (mh.train_induction_model)")
    if not isinstance(head, tuple) or not all(isinstance(v, int) and not isinstance(v, bool) for v in head):
        raise TypeError(f"head must be a (layer, head) pair of ints, e.g. (0, 1), got {head!r}")
    if len(head) != 2:
        raise ValueError(f"head must be a (layer, head) PAIR, e.g. (0, 1), got {len(head)} numbers: {head!r}")
    layer, h = head
    if not (0 <= layer < model.num_layers - 1 and 0 <= h < model.num_heads):
        raise ValueError(f"head must be (layer, head) with layer in 0..{model.num_layers - 2} (a later layer must "
                         f"read it) and head in 0..{model.num_heads - 1}, got {head!r}")
    check_choice("path", path, ABLATION_PATHS)
    return layer, h


def path_ablated_forward(model: InductionModel, tokens: torch.Tensor, head: tuple[int, int],
                         path: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``model(tokens)`` with ``head = (layer, h)``'s output removed from ONE input of layer ``layer + 1``.

    The stream after layer ``layer`` is computed twice, with the head on (full) and off (ablated). Layer ``layer + 1``
    then takes its queries, keys and values from the full stream, except the one ``path`` names (``"queries"``,
    ``"keys"``, ``"values"``), which comes from the ablated stream; ``"direct"`` keeps all three full and carries the
    ablated stream past the layer instead; ``"all"`` ablates everything (the same as :func:`heads_switched_off`).
    Returns ``(logits (batch, seq, vocab), maps (batch, heads, seq, seq))``, the maps of layer ``layer + 1``.
    """
    layer, h = _check_head_and_path(model, head, path)
    check_token_ids("tokens", tokens, model.vocab_size, min_len=2)
    seq = tokens.shape[1]
    positions = model.pos_emb(torch.arange(seq, device=tokens.device))  # (seq, d_model): queries and keys only
    x = model.token_emb(tokens)  # (batch, seq, d_model)
    maps = None
    for index, attn in enumerate(model.layers):
        where = x + positions
        if index == layer:
            with heads_switched_off(attn, h):
                ablated = x + attn(where, where, x, need_weights=False, is_causal=True)[0]  # (batch, seq, d_model)
            x = x + attn(where, where, x, need_weights=False, is_causal=True)[0]  # the full stream
            continue
        if index == layer + 1:
            q_in, k_in, v_in = (ablated if path in (name, "all") else x for name in ("queries", "keys", "values"))
            out, maps = attn(q_in + positions, k_in + positions, v_in, need_weights=True,
                             average_attn_weights=False, is_causal=True)  # (batch, seq, d_model), (b, heads, L, L)
            x = (ablated if path in ("direct", "all") else x) + out
            continue
        x = x + attn(where, where, x, need_weights=False, is_causal=True)[0]
    return model.unembed(x), maps  # (batch, seq, vocab), (batch, heads, seq, seq)


def path_ablation(model: InductionModel, head: tuple[int, int], path: str,
                  tokens: torch.Tensor | None = None) -> dict:
    """The loss and the next layer's induction scores with ``head``'s output cut from one ``path`` only.

    ``head`` is ``(layer, h)``, e.g. ``(0, p)`` for the previous-token head; ``path`` is one of
    :data:`ABLATION_PATHS` (see :func:`path_ablated_forward`). On :func:`induction_test_set` unless ``tokens``
    ``(batch, seq)`` is given. Returns ``{"first": float, "repeated": float, "induction": tensor (num_heads,)}``:
    the losses of :func:`occurrence_losses` and layer ``layer + 1``'s :func:`induction_scores`.
    """
    _check_head_and_path(model, head, path)
    tokens = induction_test_set(seq_len=model.seq_len, vocab_size=model.vocab_size) if tokens is None else tokens
    check_token_ids("tokens", tokens, model.vocab_size, min_len=2)
    first, repeated = occurrence_masks(tokens)  # (batch, seq-1) each
    with OneThread(), torch.no_grad():
        logits, maps = path_ablated_forward(model, tokens, head, path)
        loss = F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")  # (batch, seq-1)
        scores = scores_from_maps(maps[:, None], tokens, "induction")[0]  # (b, 1, heads, L, L) -> (heads,)
    return {"first": loss[first].mean().item(), "repeated": loss[repeated].mean().item(), "induction": scores}
