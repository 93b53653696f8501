"""One rule for bad input, held over every public name: the same bad value gets the same error type everywhere.

The rule (``_mha_helpers/validation.py``): a value of the wrong KIND (a string, None, a list, a float or a bool
where an int belongs; a list where a tensor belongs; a tensor of ints where a float tensor belongs) raises a
``TypeError``; a value of the right kind that cannot work (negative, zero where a size belongs, NaN, infinite,
empty, a tensor of the wrong rank) raises a ``ValueError``; and the message names the argument.

How: for every callable of ``mh.__all__`` (functions and class constructors), each parameter's kind is read from its
annotation (and, for a few parameters, from its name: ``tokens`` is a tensor of token ids, ``mask`` a boolean
tensor, ...). Each kind has a table of bad values and the error each must raise (``BAD``). Every other argument gets
a small valid value (``VALID``), so no call builds anything large or trains for more than a step even if a check were
missing. Exceptions to the rule are listed with their reason (``SKIP_CALLABLES``, ``SKIP_CASES``).
"""

from __future__ import annotations

import inspect
import math
import string

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mha_helpers as mh

# ---- the table: kind -> expected error -> bad values -----------------------------------------------------------------

NOT_A_TENSOR = [[[1.0, 2.0]], "x"]
FIVE_D = torch.full((2, 2, 2, 2, 2), 0.5)

BAD: dict[str, dict[type, list]] = {
    "positive int": {TypeError: ["0", None, [1], 1.5, True], ValueError: [-1, 0]},
    "int >= 0": {TypeError: ["0", None, [1], 1.5, True], ValueError: [-1]},
    "number": {TypeError: ["0.5", None, [0.5], True, torch.tensor(0.5)], ValueError: [math.nan, math.inf]},
    "bool": {TypeError: [1, None, "yes", torch.tensor(True)]},
    "str": {TypeError: [0, None, ["a"]]},
    "choice": {TypeError: [0, None, ["a"]], ValueError: ["no-such-choice"]},
    "float tensor": {TypeError: [*NOT_A_TENSOR, None, torch.ones(2, 2, dtype=torch.long)],
                     ValueError: [torch.empty(0), FIVE_D]},
    "mask": {TypeError: [*NOT_A_TENSOR, torch.ones(3, 3, dtype=torch.long)],
             ValueError: [torch.ones(5, 5, 5, 5, 5, dtype=torch.bool)]},
    "bool tensor": {TypeError: [*NOT_A_TENSOR, None, torch.ones(3, 3)], ValueError: [torch.ones(1, 2, 3, 4, 5).bool()]},
    "token ids": {TypeError: [[[1, 2]], "x", None, torch.zeros(1, 4)], ValueError: [torch.zeros(4, dtype=torch.long),
                                                                               torch.full((1, 4), -1)]},
    "list of str": {TypeError: ["the cat", [None], None], ValueError: [[]]},
    "list of int": {TypeError: ["0", [1.5], None, [True]], ValueError: [[-1]]},
    "head numbers": {TypeError: ["0", None, 1.5, True, [0.0]], ValueError: [-1, [99]]},
    "layer-head pair": {TypeError: ["0", None, 0, (0, 0.5), [0, 0]], ValueError: [(99, 0), (0, 99), (0, 0, 0)]},
    "layer-head pairs": {TypeError: ["0", None, [0], [(0, 0.5)]], ValueError: [[(99, 0)], [(0, 0, 0)]]},
    "positions": {TypeError: ["0", ["a"], [True]], ValueError: [[0.0, math.nan, 2.0], [0, 1]]},
    "sentence": {TypeError: [0, None, [1]], ValueError: [""]},
    "sentences": {TypeError: ["the cat", None, [1]], ValueError: [[]]},
    "dict": {TypeError: ["x", None, [1]], ValueError: [{}]},
    "jobs": {TypeError: ["x", None, [1], [{"method": 1, "batch": 1, "heads": 1, "seq": 8, "head_dim": 4}]],
             ValueError: [[{"method": "no-such-method", "batch": 1, "heads": 1, "seq": 8, "head_dim": 4}],
                          [{"method": "sdpa", "batch": 0, "heads": 1, "seq": 8, "head_dim": 4}]]},
    "callable": {TypeError: [0, None, "f"]},
    "instance": {TypeError: [None, "model", nn.Linear(2, 2)]},
    "device": {TypeError: [[1], 1.5], ValueError: ["nowhere"]},
    "dtype": {TypeError: ["float32", torch.long]},
    "axes": {TypeError: ["ax", 0]},
    "generator": {TypeError: [0, "g"]},
    "table": {TypeError: [None, "x", 0, [1]]},  # a list of rows another helper returned (its shape is checked)
}

#: int parameters for which 0 is a valid value (a seed, a position, an index); every other int is a size or count.
ZERO_IS_FINE = {"seed", "warmup", "rope_dim", "query", "enlarge", "skip", "layer", "head"}
INSTANCE_TYPES = {"MultiHeadAttention", "TinyLookupModel", "InductionModel", "GroupedQuerySelfAttention", "MaskEditor",
                  "InductionHistory", "TextModel"}
BY_NAME = {"tokens": "token ids", "mask": "bool tensor", "attn_mask": "mask", "heads_off": "head numbers",
           "heads": "head numbers", "positions": "positions", "sentence": "sentence", "sentences": "sentences",
           "jobs": "jobs", "align": "choice", "name": "choice", "ax": "axes", "lengths": "list of int",
           "path": "choice"}
BY_ANNOTATION = {"int": "positive int", "float": "number", "bool": "bool", "str": "str", "torch.Tensor": "float tensor",
                 "Sequence[str]": "list of str", "Sequence[int]": "list of int", "torch.dtype": "dtype",
                 "torch.device | str": "device", "torch.Generator": "generator", "Axes": "axes", "dict": "dict",
                 "tuple[int, int]": "layer-head pair"}


def kind_of(callable_name: str, param: inspect.Parameter) -> tuple[str | None, bool]:
    """(kind, None is fine) for a parameter, from its name and annotation; kind None = not checked here."""
    annotation = param.annotation if isinstance(param.annotation, str) else ""
    optional = annotation.endswith(" | None") or param.default is None
    bare = annotation.removesuffix(" | None")
    kind = BY_NAME.get(param.name) or BY_ANNOTATION.get(bare.split("[")[0] if bare.startswith("dict") else bare)
    if (callable_name, param.name) in KIND_OVERRIDES:
        kind = KIND_OVERRIDES[(callable_name, param.name)]
    elif bare in INSTANCE_TYPES:
        kind = "instance"
    elif bare.startswith("Callable"):
        kind = "callable"
    if kind == "positive int" and param.name in ZERO_IS_FINE:
        kind = "int >= 0"
    return kind, optional


#: Parameters whose annotation alone misleads the inference.
KIND_OVERRIDES = {
    ("occurrence_losses", "heads_off"): "layer-head pairs",
    ("plot_snapshot_strip", "heads"): "dict",
    ("toy_embeddings", "tokens"): "list of str",
    ("head_influence", "heads"): "float tensor",
    ("plot_patch_tokens", "tokens"): "float tensor",
    ("toy_embeddings", "positions"): "bool",
    ("audit", "positions"): "bool",
    ("sweep_summary", "key"): "choice",
    ("plot_pattern_scores", "labels"): "table",
    ("plot_pattern_scores", "fig"): "axes",
    ("plot_pruning_curve", "curve"): "table",
}

# ---- exceptions, each with its reason --------------------------------------------------------------------------------

SKIP_CALLABLES = {
    "AuditReport": "a record that audit() fills in, not called by students",
    "AuditRow": "a record that audit() fills in, not called by students",
    "Bug": "a record of the zoo, written in bug_zoo.py",
    "InductionHistory": "a record that train_induction_model() fills in",
    "CheckResult": "a checker's verdict, built by exercise_checker",
    "HeadExplorer": "built by head_explorer(), which checks every argument (widgets/ is being reworked in parallel)",
    "VariantCostMeter": "built by variant_cost_meter(), which checks every argument (being moved to widgets/)",
    "ZooAttention": "the bug zoo's base class: notebook 13 prints its source, which stays as bare as the buggy code "
    "students read beside it",
    "TrainingReplay": "being moved to widgets/training_replay.py in parallel; it refuses a non-history with a TypeError",
    "TextHeadPicker": "built by text_head_picker(), which takes the same arguments and is walked here",
}
SKIP_CASES = {
    ("rope", "x", "5-D"): "rope takes any leading dims (..., seq, head_dim), as torch's SDPA does",
    ("attention_entropy", "weights", "5-D"): "takes any leading dims (..., L, S)",
    ("previous_token_share", "weights", "5-D"): "takes any leading dims (..., L, S)",
    ("naive_masked_softmax", "scores", "5-D"): "takes any leading dims (..., L, S)",
    ("plot_attention", "weights", "int64(2, 2)"): "draws any real map (a boolean or integer mask too), as floats",
    ("plot_head_influence", "influence", "int64(2, 2)"): "draws any real map, converted to floats",
    ("induction_letters", "tokens", "int64(4,)"): "takes one sequence as (seq,) as well as (1, seq)",
    ("mask_forms", "mask", "5-D"): "converts a boolean mask of any shape",
}


def _case_tag(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return "5-D" if value.dim() == 5 else f"{str(value.dtype).removeprefix('torch.')}{tuple(value.shape)}"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return repr(value)[:20]


# ---- small valid arguments --------------------------------------------------------------------------------------------


def _valid() -> dict[str, dict]:
    torch.manual_seed(0)
    lookup = mh.TinyLookupModel()
    induction = mh.InductionModel(d_model=8, num_heads=2)
    repeats = mh.repeated_sequences(2, generator=torch.Generator().manual_seed(0))
    gqa = mh.GroupedQuerySelfAttention(8, 2, 1)
    history, _ = mh.stored_one_layer_run()
    sweep = mh.stored_head_count_sweep()
    qkv = {"query": torch.randn(2, 4, 8), "key": torch.randn(2, 4, 8), "value": torch.randn(2, 4, 8)}
    text_model = mh.TextModel("".join(sorted("\n ." + string.ascii_letters)), context=16, d_model=8, num_heads=2, num_layers=1)
    text = "Return a new list. " * 3  # 57 characters of the tiny model's vocabulary
    scores = mh.head_pattern_scores(text_model, text, num_windows=2, skip=4)
    cost = torch.rand(1, 2)
    job = {"method": "sdpa", "batch": 1, "heads": 1, "seq": 8, "head_dim": 4, "threads": 1}
    return {
        "GroupedQuerySelfAttention": dict(d_model=8, num_heads=2, num_kv_heads=1),
        "InductionModel": dict(d_model=8, num_heads=2),
        "KVCache": dict(batch=1, num_kv_heads=1, head_dim=2, max_len=4),
        "LatentCache": dict(batch=1, latent_dim=2, max_len=4),
        "MultiHeadAttention": dict(embed_dim=8, num_heads=2),
        "MultiHeadLatentAttention": dict(d_model=8, num_heads=2, latent_dim=4),
        "PatchEmbedding": dict(image_size=8, patch_size=4, d_model=4),
        "TransformerBlock": dict(d_model=8, num_heads=2),
        "ablation_table": dict(model=lookup, num_examples=2),
        "alibi_bias": dict(num_heads=2, L=3, S=3),
        "alibi_slopes": dict(num_heads=2),
        "attention_entropy": dict(weights=torch.full((2, 3, 3), 1 / 3)),
        "attention_flops": dict(batch=1, seq_len=4, d_model=8, num_heads=2),
        "attention_map_bytes": dict(batch=1, num_heads=2, seq_len=4),
        "attention_shares": dict(weights=torch.full((1, 2, 4, 4), 0.25)),
        "audit": dict(attention=F.scaled_dot_product_attention),
        "broken_attention": dict(name="inverted_mask"),
        "causal_mask": dict(seq_len=3),
        "circuit_heads": dict(model=induction),
        "count_matmul_flops": dict(fn=lambda: None),
        "decode_cost": dict(num_layers=1, d_model=8, num_heads=2, num_kv_heads=1, context_len=4),
        "decode_step_by_step": dict(layer=gqa, x=torch.randn(1, 3, 8), use_cache=True),
        "exercise_checker": dict(title="Exercise 0.1: a test"),
        "fixed_attention": dict(name="inverted_mask"),
        "fully_masked_rows": dict(mask=mh.causal_mask(3)),
        "grouped_query_attention": dict(query=torch.randn(1, 2, 3, 4), key=torch.randn(1, 1, 3, 4),
                                        value=torch.randn(1, 1, 3, 4)),
        "head_attention_maps": dict(module=mh.explorer_module(8), x=torch.randn(1, 3, 8), num_heads=2),
        "head_count_sweep": dict(d_model=1, seeds=(0,), progress=False, steps=1),
        "head_explorer": dict(compact=True),
        "head_influence": dict(heads=torch.randn(1, 2, 3, 4)),
        "heads_switched_off": dict(attn=mh.MultiHeadAttention(8, 2), heads=[0]),
        "induction_ablation": dict(model=induction),
        "induction_letters": dict(tokens=torch.tensor([[0, 1, 2]])),
        "induction_maps": dict(model=induction, tokens=repeats),
        "induction_scores": dict(model=induction, tokens=repeats),
        "kv_cache_bytes_per_token": dict(num_layers=1, num_kv_heads=1, head_dim=2),
        "latent_cache_bytes_per_token": dict(num_layers=1, latent_dim=2),
        "lookup_accuracy": dict(model=lookup, num_examples=2),
        "lookup_attention": dict(model=lookup, tokens=torch.zeros(1, 8, dtype=torch.long)),
        "make_two_lookup_batch": dict(batch_size=2),
        "mask_forms": dict(mask=mh.causal_mask(3)),
        "measure_peak_memory": dict(jobs=[job]),
        "median_seconds": dict(fn=lambda: None, repeats=1, warmup=0),
        "merge_heads": dict(x=torch.randn(1, 2, 3, 4)),
        "naive_masked_softmax": dict(scores=torch.randn(3, 3), mask=mh.causal_mask(3)),
        "occurrence_losses": dict(model=induction, tokens=repeats),
        "occurrence_masks": dict(tokens=repeats),
        "online_softmax_attention": dict(qkv),
        "online_softmax_steps": dict(x=torch.randn(6), block_size=2),
        "padding_mask": dict(lengths=[2, 1]),
        "patchify": dict(images=torch.zeros(3, 8, 8), patch_size=4),
        "path_ablated_forward": dict(model=induction, tokens=repeats, head=(0, 0), path="keys"),
        "path_ablation": dict(model=induction, head=(0, 0), path="keys", tokens=repeats),
        "plot_attention": dict(weights=torch.full((3, 3), 1 / 3)),
        "plot_block_schedule": dict(seq_len=8, key_len=8, block_size=4, query_block_size=4),
        "plot_causal_alignment": dict(seq_len=2, key_len=3),
        "plot_circuit_maps": dict(model=induction),
        "plot_head_explorer": dict(compact=True),
        "plot_head_influence": dict(influence=torch.rand(8, 2)),
        "plot_head_scores": dict(history=history),
        "plot_head_sweep": dict(results=sweep),
        "plot_heads": dict(weights=torch.full((2, 3, 3), 1 / 3)),
        "plot_lookup_heads": dict(weights=torch.full((2, 4, 4), 0.25), labels=list("ABCD")),
        "plot_mask_editor": dict(editor=mh.mask_editor()),
        "plot_occurrence_losses": dict(two_layers=history),
        "plot_patch_attention": dict(weights=torch.full((2, 5, 5), 0.2), image=torch.zeros(3, 8, 8), patch_size=4),
        "plot_patch_tokens": dict(image=torch.zeros(3, 8, 8), patch_size=4),
        "plot_snapshot_strip": dict(history=history),
        "plot_soft_lookup": dict(query=torch.randn(2), keys=torch.randn(3, 2), weights=torch.full((3,), 1 / 3),
                                 key_names=["a", "b", "c"]),
        "positions_2d": dict(grid_h=2, grid_w=2, d_model=4),
        "previous_token_scores": dict(model=induction, tokens=repeats),
        "previous_token_share": dict(weights=torch.full((2, 3, 3), 1 / 3)),
        "query_positions_seen": dict(mask=mh.causal_mask(3)),
        "repeated_sequences": dict(batch=2),
        "resplit_heads": dict(module=mh.MultiHeadAttention(8, 2), num_heads=2),
        "rope": dict(x=torch.randn(3, 4)),
        "rope_frequencies": dict(head_dim=4),
        "run_with_cache": dict(layer=gqa, x=torch.randn(1, 3, 8), chunks=[2, 1]),
        "scaled_dot_product_attention": dict(qkv),
        "sdpa_kernel_used": dict(qkv),
        "show_bug": dict(name="inverted_mask"),
        "sinusoidal_positions": dict(seq_len=4, d_model=8),
        "sliding_window_attention": dict(query=torch.randn(1, 6, 4), key=torch.randn(1, 6, 4),
                                         value=torch.randn(1, 6, 4), window=2),
        "sliding_window_mask": dict(seq_len=4, window=2),
        "split_heads": dict(x=torch.randn(1, 3, 8), num_heads=2),
        "steps_to_solve": dict(num_heads=1, max_steps=1, every=1, num_examples=1, d_model=2),
        "sweep_summary": dict(results=sweep),
        "toy_batch": dict(sentences=[["a", "b"], ["c"]]),
        "train_induction_model": dict(steps=1, batch_size=2, d_model=8, num_heads=2, snapshot_every=1, progress=False),
        "train_lookup_model": dict(num_heads=1, d_model=2, steps=1, batch_size=2, progress=False),
        "two_lookup_targets": dict(tokens=torch.zeros(1, 3, dtype=torch.long)),
        "valid_head_counts": dict(d_model=8),
        "TextModel": dict(vocab="ab", context=4, d_model=4, num_heads=2, num_layers=1),
        "bits_per_char": dict(model=text_model, text=text),
        "repeated_string_losses": dict(model=text_model, num_strings=2, length=4),
        "heldout_text": dict(vocab="ab"),
        "ngram_bits_per_char": dict(text="abcab", n=2, train_text="abcabc"),
        "sample_text": dict(model=text_model, prompt="Re", length=2),
        "head_pattern_scores": dict(model=text_model, text=text, num_windows=2, skip=4),
        "classify_heads": dict(scores=scores),
        "head_ablation": dict(model=text_model, text=text, num_windows=2),
        "masked_bits": dict(model=text_model, text=text, head_mask=None, num_windows=2),
        "pruning_curve": dict(model=text_model, text=text, cost=cost, num_windows=2),
        "plot_pattern_scores": dict(scores=scores, labels=mh.classify_heads(scores)),
        "plot_head_ablation": dict(cost=cost),
        "plot_pruning_curve": dict(curve=[(2, 3.0), (0, 4.0)], full=3.0, none=4.0),
        "plot_head_count_sweep": dict(sweep=mh.head_count_sweep_results()),
        "text_head_picker": dict(model=text_model, text="Return a list."),
    }


VALID = _valid()


def _callables() -> list[str]:
    names = []
    for name in mh.__all__:
        obj = getattr(mh, name)
        if callable(obj) and not name.startswith("check_") and name not in SKIP_CALLABLES:
            names.append(name)
    return names


def _cases(skip: bool = True) -> list[tuple[str, str, type, object]]:
    """(callable, parameter, expected error, bad value) for every bad value of every parameter of a known kind."""
    cases = []
    for name in _callables():
        for param in inspect.signature(getattr(mh, name)).parameters.values():
            if param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                continue
            kind, optional = kind_of(name, param)
            if kind is None:
                continue
            for error, values in BAD[kind].items():
                for value in values:
                    if value is None and optional or skip and (name, param.name, _case_tag(value)) in SKIP_CASES:
                        continue
                    cases.append((name, param.name, error, value))
    return cases


CASES = _cases()


def test_the_walk_covers_the_public_names():
    walked = {name for name, *_ in CASES}
    callables = set(_callables())
    without_parameters = {n for n in callables if not inspect.signature(getattr(mh, n)).parameters}
    assert callables - without_parameters - walked == set(), "a public callable has no parameter of a known kind"
    assert len(CASES) > 800


def test_every_listed_exception_is_still_needed():
    tried = {(name, param, _case_tag(value)) for name, param, _, value in _cases(skip=False)}
    assert set(SKIP_CASES) <= tried, f"these exceptions match no case any more: {set(SKIP_CASES) - tried}"
    assert set(SKIP_CALLABLES) <= set(mh.__all__), f"not public any more: {set(SKIP_CALLABLES) - set(mh.__all__)}"


def test_every_parameter_of_a_public_name_has_a_known_kind():
    unknown = [f"{name}({param.name}: {param.annotation})" for name in _callables()
               for param in inspect.signature(getattr(mh, name)).parameters.values()
               if param.kind not in (param.VAR_KEYWORD, param.VAR_POSITIONAL) and kind_of(name, param)[0] is None]
    assert not unknown, f"add these parameters' kinds to BY_NAME / BY_ANNOTATION / KIND_OVERRIDES: {unknown}"


def _call(name: str, param: str, value: object) -> BaseException | None:
    """Call ``mh.<name>`` with ``param=value`` and small valid other arguments; what it raised (None: nothing)."""
    try:
        result = getattr(mh, name)(**{**VALID.get(name, {}), param: value})
        if hasattr(result, "__enter__"):  # heads_switched_off checks when it is built, not when entered
            with result:
                pass
    except Exception as exc:  # noqa: BLE001 - any exception is compared with the policy below
        return exc
    return None


def _verdict(name: str, param: str, error: type, value: object) -> str | None:
    """None when the call raised ``error`` naming ``param``; else what went wrong."""
    raised = _call(name, param, value)
    call = f"{name}({param}={value!r:.40})"
    if raised is None:
        return f"{call} raised nothing; the policy says {error.__name__}"
    if not isinstance(raised, error):
        return f"{call} raised {type(raised).__name__}, the policy says {error.__name__}: {raised}"
    if param not in str(raised):
        return f"{call}: the message does not name {param}: {raised}"
    return None


@pytest.mark.parametrize("name", sorted({name for name, *_ in CASES}))
def test_the_same_bad_value_gets_the_same_error_everywhere(name):
    """Every bad value of every parameter of ``mh.<name>``: TypeError for a wrong kind, ValueError for a wrong value,
    the parameter named in the message (one test per public name, so the whole table runs in seconds)."""
    problems = [_verdict(*case) for case in CASES if case[0] == name]
    problems = [p for p in problems if p]
    assert not problems, f"{len(problems)} bad values broke the policy:\n" + "\n".join(problems)


def test_the_verdict_catches_a_wrong_error_type():
    """The harness itself: a function that raises ValueError for a str where an int belongs is caught."""
    assert _verdict("valid_head_counts", "d_model", TypeError, "8") is None
    assert "raised ValueError" in (_verdict("valid_head_counts", "d_model", TypeError, -1) or "")
    assert "raised nothing" in (_verdict("valid_head_counts", "d_model", TypeError, 8) or "")
