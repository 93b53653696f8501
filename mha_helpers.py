"""mha_helpers: the one import of the Multi-Head Attention notebooks, ``import mha_helpers as mh``.

This file is only the map. The code lives beside it in ``_mha_helpers/``, one readable file per topic, in the order
of the series; ``checkers/`` there holds each notebook's exercise checkers. To read a name's code, open the file
this table names (or type ``mh.split_heads??`` in a notebook).

=========================  =================  ====================================================================
notebook                   file               names the notebook uses
=========================  =================  ====================================================================
00 start here              common.py          get_device, valid_head_counts, SENTENCE
                           figures.py         plot_attention
01 Q/K/V projections       common.py          toy_embeddings (sinusoidal_positions inside it)
                           figures.py         plot_soft_lookup
                           maths/mha.py             MultiHeadAttention
                           checkers/nb01.py   check_project_qkv, check_soft_lookup
02 scaled dot-product      maths/attention.py       scaled_dot_product_attention
                           checkers/nb02.py   check_softmax, check_attention
03 masking                 maths/attention.py       causal_mask, padding_mask
                           checkers/nb03.py   check_causal_mask, check_padding_to_attn_mask, check_masked_attention
04 splitting into heads    maths/attention.py       split_heads, merge_heads
                           figures.py         plot_heads
                           widgets/head_explorer.py   head_explorer, plot_head_explorer
                           checkers/nb04.py   check_split_heads, check_head_weight
05 concat and W_o          figures.py         head_influence, plot_head_influence
                           maths/mha.py             MultiHeadAttention (and maths/torch_compat.py behind it)
                           checkers/nb05.py   check_merge_heads, check_mha_forward
06 exploring heads         widgets/head_explorer.py   explorer_module, resplit_heads, head_attention_maps, HeadExplorer,
                                              EXPLORER_MAX_TOKENS
                           widgets/head_maps.py       attention_entropy, previous_token_share (and the explorer's figure)
                           checkers/nb06.py   check_head_dims, check_head_entropy, check_previous_token_share
07 MHA in Transformers     maths/transformer.py     TransformerBlock, toy_batch
                           maths/vision.py          toy_image, patchify, positions_2d, PatchEmbedding,
                                              plot_patch_tokens, plot_patch_attention
                           checkers/nb07.py   check_pre_norm_sublayer, check_causal_padding_mask
08 what heads learn        experiments/lookup.py          LOOKUP_PATTERNS, IGNORE_INDEX, lookup_letters, two_lookup_targets,
                                              make_two_lookup_batch, TinyLookupModel, heads_switched_off,
                                              train_lookup_model, lookup_test_set, lookup_accuracy,
                                              lookup_attention, attention_shares, ablation_table,
                                              head_count_sweep, stored_head_count_sweep (experiments/lookup_reference.py),
                                              sweep_summary, plot_lookup_heads, plot_head_sweep, steps_to_solve
                           checkers/nb08.py   check_lookup_targets, check_previous_share, check_switch_off_head
09 what heads cost         experiments/cost.py            attention_flops, count_matmul_flops, attention_map_bytes,
                                              median_seconds, sdpa_kernel_used
                           experiments/memory.py          MEMORY_METHODS, measure_peak_memory
                           maths/online_softmax.py  online_softmax_attention, online_softmax_steps, plot_block_schedule
                           maths/kv_cache.py        grouped_query_attention, kv_cache_bytes_per_token, KVCache,
                                              GroupedQuerySelfAttention, decode_step_by_step
                           checkers/nb09.py   check_online_softmax, check_kv_cache_bytes
10 attention at inference  maths/attention.py       causal_mask(..., align="bottom_right")
                           maths/inference.py       run_with_cache, query_positions_seen, plot_causal_alignment,
                                              decode_cost, mask_forms, fully_masked_rows, naive_masked_softmax
                           widgets/mask_editor.py   MaskEditor, mask_editor, plot_mask_editor
                           checkers/nb10.py   check_bottom_right_mask, check_cached_attention
11 attention variants      maths/positions.py       rope, rope_frequencies, alibi_slopes, alibi_bias
                           maths/sliding_window.py  sliding_window_mask, sliding_window_attention
                           maths/latent.py          LatentCache, MultiHeadLatentAttention, latent_cache_bytes_per_token
                           experiments/variant_costs.py   variant_costs
                           widgets/cost_meter.py    VariantCostMeter, variant_cost_meter, plot_variant_cost_meter
                           checkers/nb11.py   check_rope, check_alibi_slopes, check_sliding_window_mask,
                                              check_latent_cache_bytes
12 heads that compose      experiments/induction.py       PERIOD_RANGE, repeated_sequences, occurrence_masks, InductionModel,
                                              induction_maps, previous_token_scores, induction_scores,
                                              induction_test_set, induction_example, induction_letters,
                                              occurrence_losses, InductionHistory, train_induction_model,
                                              circuit_heads, induction_ablation, plot_occurrence_losses,
                                              plot_head_scores, plot_circuit_maps, plot_snapshot_strip,
                                              stored_one_layer_run (its numbers are stored in
                                              experiments/induction_reference.py); heads_switched_off from experiments/lookup.py
                           widgets/training_replay.py   TrainingReplay
                           experiments/induction_paths.py  path_ablation, path_ablated_forward, ABLATION_PATHS
                           checkers/nb12.py   check_previous_token_score, check_induction_score,
                                              check_head_to_switch_off
13 bug hunt                lessons/audit.py           audit, AuditReport, AuditRow, AUDIT_PROPERTIES (probes in lessons/audit_probes.py)
                           lessons/bug_zoo.py         BUG_ZOO, Bug, ZooAttention, broken_attention, fixed_attention, show_bug,
                                              zoo_table, ZooTable
                           checkers/nb13.py   check_fix_fill_value, check_fix_padding_heads, check_fix_gpt_block
every checker              checkers/core.py   exercise_checker, CheckResult
=========================  =================  ====================================================================

A notebook also uses every name of the notebooks before it. Shapes use the names of the maths: ``batch``,
``seq`` (``L`` for queries, ``S`` for keys), ``d_model`` (= ``embed_dim``), ``num_heads`` and
``head_dim = d_model // num_heads``; every tensor is batch-first, ``(batch, seq, d_model)``, unless a docstring
says otherwise.
"""

from _mha_helpers.maths.attention import causal_mask, merge_heads, padding_mask, scaled_dot_product_attention, split_heads
from _mha_helpers.lessons.audit import AUDIT_PROPERTIES, AuditReport, AuditRow, audit
from _mha_helpers.lessons.bug_zoo import (
    BUG_ZOO, Bug, ZooAttention, ZooTable, broken_attention, fixed_attention, show_bug, zoo_table,
)
from _mha_helpers.checkers.core import CheckResult, exercise_checker
from _mha_helpers.checkers.nb01 import check_project_qkv, check_soft_lookup
from _mha_helpers.checkers.nb02 import check_attention, check_softmax
from _mha_helpers.checkers.nb03 import check_causal_mask, check_masked_attention, check_padding_to_attn_mask
from _mha_helpers.checkers.nb04 import check_head_weight, check_split_heads
from _mha_helpers.checkers.nb05 import check_merge_heads, check_mha_forward
from _mha_helpers.checkers.nb06 import check_head_dims, check_head_entropy, check_previous_token_share
from _mha_helpers.checkers.nb07 import check_causal_padding_mask, check_pre_norm_sublayer
from _mha_helpers.checkers.nb08 import check_lookup_targets, check_previous_share, check_switch_off_head
from _mha_helpers.checkers.nb09 import check_kv_cache_bytes, check_online_softmax
from _mha_helpers.checkers.nb10 import check_bottom_right_mask, check_cached_attention
from _mha_helpers.checkers.nb11 import check_alibi_slopes, check_latent_cache_bytes, check_rope, check_sliding_window_mask
from _mha_helpers.checkers.nb12 import check_head_to_switch_off, check_induction_score, check_previous_token_score
from _mha_helpers.checkers.nb13 import check_fix_fill_value, check_fix_gpt_block, check_fix_padding_heads
from _mha_helpers.common import SENTENCE, get_device, sinusoidal_positions, toy_embeddings, valid_head_counts
from _mha_helpers.experiments.cost import attention_flops, attention_map_bytes, count_matmul_flops, median_seconds, sdpa_kernel_used
from _mha_helpers.experiments.memory import MEMORY_METHODS, measure_peak_memory
from _mha_helpers.maths.kv_cache import (
    GroupedQuerySelfAttention, KVCache, decode_step_by_step, grouped_query_attention, kv_cache_bytes_per_token,
)
from _mha_helpers.maths.online_softmax import online_softmax_attention, online_softmax_steps, plot_block_schedule
from _mha_helpers.figures import head_influence, plot_attention, plot_head_influence, plot_heads, plot_soft_lookup
from _mha_helpers.widgets.head_explorer import (
    EXPLORER_MAX_TOKENS, HeadExplorer, explorer_module, head_attention_maps, head_explorer, plot_head_explorer,
    resplit_heads,
)
from _mha_helpers.widgets.head_maps import attention_entropy, previous_token_share
from _mha_helpers.experiments.induction import (
    PERIOD_RANGE, InductionHistory, InductionModel, circuit_heads, induction_ablation, induction_example,
    induction_letters, induction_maps, induction_scores, induction_test_set, occurrence_losses, occurrence_masks,
    plot_circuit_maps, plot_head_scores, plot_occurrence_losses, plot_snapshot_strip, previous_token_scores,
    repeated_sequences, stored_one_layer_run, train_induction_model,
)
from _mha_helpers.experiments.induction_paths import ABLATION_PATHS, path_ablated_forward, path_ablation
from _mha_helpers.widgets.training_replay import TrainingReplay
from _mha_helpers.maths.inference import decode_cost, fully_masked_rows, mask_forms, naive_masked_softmax
from _mha_helpers.maths.inference import plot_causal_alignment, query_positions_seen, run_with_cache
from _mha_helpers.widgets.mask_editor import MaskEditor, mask_editor, plot_mask_editor
from _mha_helpers.experiments.lookup import (
    IGNORE_INDEX, LOOKUP_PATTERNS, TinyLookupModel, ablation_table, attention_shares, head_count_sweep,
    heads_switched_off, lookup_accuracy, lookup_attention, lookup_letters, lookup_test_set, make_two_lookup_batch,
    plot_head_sweep, plot_lookup_heads, steps_to_solve, stored_head_count_sweep, sweep_summary, train_lookup_model,
    two_lookup_targets,
)
from _mha_helpers.maths.mha import MultiHeadAttention
from _mha_helpers.maths.transformer import TransformerBlock, toy_batch
from _mha_helpers.maths.positions import alibi_bias, alibi_slopes, rope, rope_frequencies
from _mha_helpers.maths.sliding_window import sliding_window_attention, sliding_window_mask
from _mha_helpers.maths.latent import LatentCache, MultiHeadLatentAttention, latent_cache_bytes_per_token
from _mha_helpers.experiments.variant_costs import variant_costs
from _mha_helpers.widgets.cost_meter import VariantCostMeter, plot_variant_cost_meter, variant_cost_meter
from _mha_helpers.maths.vision import (
    PatchEmbedding, patchify, plot_patch_attention, plot_patch_tokens, positions_2d, toy_image,
)

# The public names are exactly those imported above (dir(mh) == __all__ is tested); the table says where each lives.
__all__ = [name for name in dir() if not name.startswith("_")]
