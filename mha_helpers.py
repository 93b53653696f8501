"""mha_helpers: the one import of the Multi-Head Attention notebooks, ``import mha_helpers as mh``.

This file is only the map. The code lives in ``_mha_helpers/``, by kind: ``maths/`` (attention and the modules built
on it), ``experiments/`` (what the notebooks train and measure), ``widgets/``, ``lessons/`` (13's bug hunt) and
``checkers/`` (exercises, one file per notebook); ``common.py``, ``figures.py`` and ``validation.py`` beside them.
To read a name's code, open the file the table names (or type ``mh.split_heads??`` in a notebook).

==  ========================  =============================================================================
nb  file                      names the notebook adds
==  ========================  =============================================================================
00  common.py                 get_device, valid_head_counts, SENTENCE; figures.py: plot_attention
01  common.py                 toy_embeddings, sinusoidal_positions; figures.py: plot_soft_lookup
    maths/mha.py              MultiHeadAttention (maths/torch_compat.py behind it)
02  maths/attention.py        scaled_dot_product_attention
03  maths/attention.py        causal_mask, padding_mask
04  maths/attention.py        split_heads, merge_heads; figures.py: plot_heads
    widgets/head_explorer.py  head_explorer, plot_head_explorer
05  figures.py                head_influence, plot_head_influence
06  widgets/head_explorer.py  explorer_module, resplit_heads, head_attention_maps, HeadExplorer, EXPLORER_MAX_TOKENS
    widgets/head_maps.py      attention_entropy, previous_token_share (and the explorer's figure)
07  maths/transformer.py      TransformerBlock, toy_batch
    maths/vision.py           toy_image, patchify, positions_2d, PatchEmbedding, plot_patch_tokens, plot_patch_attention
08  experiments/lookup.py     LOOKUP_PATTERNS, IGNORE_INDEX, lookup_letters, two_lookup_targets, make_two_lookup_batch,
                              TinyLookupModel, heads_switched_off, train_lookup_model, lookup_test_set, lookup_accuracy,
                              lookup_attention, attention_shares, ablation_table, head_count_sweep, sweep_summary,
                              plot_lookup_heads, plot_head_sweep, steps_to_solve, stored_head_count_sweep
                              (its numbers in experiments/lookup_reference.py)
09  experiments/cost.py       attention_flops, count_matmul_flops, attention_map_bytes, median_seconds, sdpa_kernel_used
    experiments/memory.py     MEMORY_METHODS, measure_peak_memory
    maths/online_softmax.py   online_softmax_attention, online_softmax_steps, plot_block_schedule
    maths/kv_cache.py         grouped_query_attention, kv_cache_bytes_per_token, KVCache, GroupedQuerySelfAttention,
                              decode_step_by_step
10  maths/attention.py        causal_mask(..., align="bottom_right")
    maths/inference.py        run_with_cache, query_positions_seen, plot_causal_alignment, decode_cost, mask_forms,
                              fully_masked_rows, naive_masked_softmax
    widgets/mask_editor.py    MaskEditor, mask_editor, plot_mask_editor
11  maths/positions.py        rope, rope_frequencies, alibi_slopes, alibi_bias
    maths/sliding_window.py   sliding_window_mask, sliding_window_attention
    maths/latent.py           LatentCache, MultiHeadLatentAttention, latent_cache_bytes_per_token
    experiments/variant_costs.py  variant_costs; widgets/cost_meter.py: VariantCostMeter, variant_cost_meter,
                              plot_variant_cost_meter
12  experiments/induction.py  PERIOD_RANGE, repeated_sequences, occurrence_masks, InductionModel, induction_maps,
                              previous_token_scores, induction_scores, induction_test_set, induction_example,
                              induction_letters, occurrence_losses, InductionHistory, train_induction_model,
                              circuit_heads, induction_ablation, plot_occurrence_losses, plot_head_scores,
                              plot_circuit_maps, plot_snapshot_strip, stored_one_layer_run
                              (its numbers in experiments/induction_reference.py)
    experiments/induction_paths.py  path_ablation, path_ablated_forward, ABLATION_PATHS
    widgets/training_replay.py  TrainingReplay
13  lessons/audit.py          audit, AuditReport, AuditRow, AUDIT_PROPERTIES (probes: lessons/audit_*.py)
    lessons/bug_zoo.py        BUG_ZOO, Bug, ZooAttention, broken_attention, fixed_attention, show_bug, zoo_table, ZooTable
14  experiments/text_model.py  load_text_model, TextModel, bits_per_char, repeated_string_losses (weights in data/)
    experiments/text_corpus.py  heldout_text, pydoc_topics_text, ngram_bits_per_char, HELDOUT_MODULES
    experiments/text_heads.py  PATTERNS, sample_text, head_pattern_scores, classify_heads, head_ablation, masked_bits,
                              pruning_curve, text_model_log, head_count_sweep_results, plot_pattern_scores,
                              plot_head_ablation, plot_pruning_curve, plot_head_count_sweep
    widgets/text_heads.py     TextHeadPicker, text_head_picker
==  ========================  =============================================================================

Each notebook's exercise checkers (the machinery they share: checkers/core.py, exercise_checker, CheckResult):
checkers/nb01.py: check_project_qkv, check_soft_lookup; checkers/nb02.py: check_attention, check_softmax;
checkers/nb03.py: check_causal_mask, check_masked_attention, check_padding_to_attn_mask;
checkers/nb04.py: check_head_weight, check_split_heads; checkers/nb05.py: check_merge_heads, check_mha_forward;
checkers/nb06.py: check_head_dims, check_head_entropy, check_previous_token_share;
checkers/nb07.py: check_causal_padding_mask, check_pre_norm_sublayer;
checkers/nb08.py: check_lookup_targets, check_previous_share, check_switch_off_head;
checkers/nb09.py: check_kv_cache_bytes, check_online_softmax;
checkers/nb10.py: check_bottom_right_mask, check_cached_attention;
checkers/nb11.py: check_alibi_slopes, check_latent_cache_bytes, check_rope, check_sliding_window_mask;
checkers/nb12.py: check_head_to_switch_off, check_induction_score, check_previous_token_score;
checkers/nb13.py: check_fix_fill_value, check_fix_gpt_block, check_fix_padding_heads;
checkers/nb14.py: check_bits_per_char, check_head_to_prune, check_previous_char_share.

A notebook also uses the names of the notebooks before it. Shapes use the names of the maths: ``batch``, ``seq``
(``L`` queries, ``S`` keys), ``d_model`` (= ``embed_dim``), ``num_heads``, ``head_dim = d_model // num_heads``;
tensors are batch-first, ``(batch, seq, d_model)``, unless a docstring says otherwise.
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
from _mha_helpers.checkers.nb14 import check_bits_per_char, check_head_to_prune, check_previous_char_share
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
from _mha_helpers.experiments.text_model import TextModel, bits_per_char, load_text_model, repeated_string_losses
from _mha_helpers.experiments.text_corpus import HELDOUT_MODULES, heldout_text, ngram_bits_per_char, pydoc_topics_text
from _mha_helpers.experiments.text_heads import (
    PATTERNS, classify_heads, head_ablation, head_count_sweep_results, head_pattern_scores, masked_bits,
    plot_head_ablation, plot_head_count_sweep, plot_pattern_scores, plot_pruning_curve, pruning_curve, sample_text,
    text_model_log,
)
from _mha_helpers.widgets.text_heads import TextHeadPicker, text_head_picker

# The public names are exactly those imported above (dir(mh) == __all__ is tested); the table says where each lives.
__all__ = [name for name in dir() if not name.startswith("_")]
