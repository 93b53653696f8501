"""How :func:`audit` (audit.py) reads an attention module: where its query, key, value and output projections are,
how many heads it has and how wide they are.

Reading goes by name, as the usual codebases spell them, in the module itself and then in its sub-modules (a wrapper
around ``nn.MultiheadAttention`` is read through it). What cannot be read is said, with what would make it readable;
it is never guessed, because a wrong guess would turn into a false alarm.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

#: (query, key, value, output) projections held as four layers, as tutorials and libraries name them.
SEPARATE_NAMES: tuple[tuple[str, str, str, str], ...] = (
    ("W_q", "W_k", "W_v", "W_o"), ("W_Q", "W_K", "W_V", "W_O"), ("Wq", "Wk", "Wv", "Wo"), ("w_q", "w_k", "w_v", "w_o"),
    ("wq", "wk", "wv", "wo"), ("q_proj", "k_proj", "v_proj", "o_proj"), ("q_proj", "k_proj", "v_proj", "out_proj"),
    ("query", "key", "value", "out"), ("query", "key", "value", "out_proj"), ("query", "key", "value", "proj"),
    ("query", "key", "value", "output"), ("to_q", "to_k", "to_v", "to_out"), ("q", "k", "v", "o"),
    ("q", "k", "v", "proj"), ("q_lin", "k_lin", "v_lin", "out_lin"), ("query_proj", "key_proj", "value_proj", "out_proj"),
)
#: (query|key|value packed in one layer, output), as nanoGPT, timm, lucidrains and others name them.
PACKED_NAMES: tuple[tuple[str, str], ...] = (
    ("c_attn", "c_proj"), ("qkv", "proj"), ("qkv", "out_proj"), ("qkv", "o_proj"), ("qkv_proj", "o_proj"),
    ("qkv_proj", "out_proj"), ("to_qkv", "to_out"), ("Wqkv", "out_proj"), ("W_qkv", "W_o"), ("in_proj", "out_proj"),
)
HEAD_NAMES = ("num_heads", "n_head", "n_heads", "nhead", "num_attention_heads", "heads", "h", "num_head", "nheads")
KV_HEAD_NAMES = ("num_kv_heads", "n_kv_heads", "num_key_value_heads", "n_kv_head", "kv_heads")
HEAD_DIM_NAMES = ("head_dim", "d_k", "d_head", "head_size", "dim_head", "attention_head_size")
D_MODEL_NAMES = ("embed_dim", "d_model", "n_embd", "hidden_size", "dim", "embed_size", "emb_dim", "model_dim")

#: What a module needs for the weight-based rows, said in every report that could not read one.
HOW_TO_READ = ("name its projections W_q/W_k/W_v/W_o (or q_proj/k_proj/v_proj/o_proj or out_proj, query/key/value/"
               "out, to_q/to_k/to_v/to_out, a packed qkv + proj or c_attn + c_proj) and give it num_heads (or n_head), "
               "or audit its attention function alone: mh.audit(fn) with F.scaled_dot_product_attention's convention")


def positive_int_attr(obj: object, names: tuple[str, ...]) -> int | None:
    """The first of ``names`` that ``obj`` holds as a positive int (bools are not counts)."""
    for n in names:
        value = getattr(obj, n, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _linear(m: nn.Module, name: str) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """(weight (out, in), bias) of the layer ``m.<name>``: an nn.Linear, or a Sequential(Linear, Dropout...)."""
    layer = getattr(m, name, None)
    if isinstance(layer, nn.Sequential) and len(layer) and all(
            isinstance(extra, (nn.Dropout, nn.Identity)) for extra in list(layer)[1:]):
        layer = layer[0]
    return (layer.weight, layer.bias) if isinstance(layer, nn.Linear) else None


def _output(m: nn.Module, name: str) -> tuple[torch.Tensor, torch.Tensor | None] | str | None:
    """The output projection: a layer, "none" for an nn.Identity (no W_o, as lucidrains' one-head case), or None."""
    return "none" if isinstance(getattr(m, name, None), nn.Identity) else _linear(m, name)


@dataclass(frozen=True)
class Layout:
    """Where the projections are: ``path`` the sub-module that holds them ("" = the module itself), ``names`` their
    attribute names, ``kind`` "separate" (four layers), "packed" (one q|k|v layer + output), "linears" (a ModuleList
    of four, as the Annotated Transformer) or "torch_separate" (nn.MultiheadAttention's q/k/v_proj_weight)."""

    path: str
    names: tuple[str, ...]
    kind: str

    @property
    def naming(self) -> str:
        where = f" in .{self.path}" if self.path else ""
        return ("/".join(self.names) if self.kind != "packed" else f"packed {self.names[0]} + {self.names[1]}") + where


def _layout_of(sub: nn.Module, path: str) -> Layout | None:
    for names in SEPARATE_NAMES:
        if all(_linear(sub, n) for n in names[:3]) and _output(sub, names[3]):
            return Layout(path, names, "separate")
    linears = getattr(sub, "linears", None)
    if isinstance(linears, nn.ModuleList) and len(linears) == 4 and all(isinstance(x, nn.Linear) for x in linears):
        return Layout(path, ("linears",), "linears")
    if _linear(sub, "out_proj"):
        if isinstance(getattr(sub, "in_proj_weight", None), torch.Tensor):
            return Layout(path, ("in_proj_weight", "out_proj"), "packed")
        if all(isinstance(getattr(sub, f"{c}_proj_weight", None), torch.Tensor) for c in "qkv"):
            return Layout(path, ("q_proj_weight", "k_proj_weight", "v_proj_weight", "out_proj"), "torch_separate")
    for names in PACKED_NAMES:
        if _linear(sub, names[0]) and _output(sub, names[1]):
            return Layout(path, names, "packed")
    return None


def find_layout(module: nn.Module) -> Layout | None:
    """The first module, the module itself first, then its sub-modules in order, whose projections can be read."""
    for path, sub in module.named_modules():
        if (layout := _layout_of(sub, path)) is not None:
            return layout
    return None


def projections(module: nn.Module, layout: Layout, q_out: int, k_out: int) -> dict:
    """Views of the Q/K/V/O weights ``(out_features, in_features)`` and biases of ``module`` (or of a copy of the
    module the layout was read from); ``"o"`` is None for a module without an output projection."""
    sub = module.get_submodule(layout.path) if layout.path else module
    if layout.kind == "linears":
        return dict(zip("qkvo", ((lin.weight, lin.bias) for lin in sub.linears), strict=True))
    if layout.kind == "separate":
        o = _output(sub, layout.names[3])
        return {**dict(zip("qkv", (_linear(sub, n) for n in layout.names[:3]), strict=True)),
                "o": None if o == "none" else o}
    bias = getattr(sub, "in_proj_bias", None)
    if layout.kind == "torch_separate":
        parts = [getattr(sub, n) for n in layout.names[:3]]
    else:
        packed, bias = (sub.in_proj_weight, bias) if layout.names[0] == "in_proj_weight" else _linear(sub, layout.names[0])
        parts = list(packed.split([q_out, k_out, k_out]))  # [q | k | v] along the output features
    biases = [None] * 3 if bias is None else list(bias.split([q_out, k_out, k_out]))
    o = _output(sub, layout.names[-1])
    return {**{c: (w, b) for c, w, b in zip("qkv", parts, biases, strict=True)}, "o": None if o == "none" else o}


@dataclass
class Structure:
    """What audit read of a module. ``layout`` None: no projections found. ``num_heads`` None with no ``problem``:
    the projections were found but no head count (audit then tries the counts the widths allow). ``problem`` says
    why the weight-based rows cannot use what was read."""

    layout: Layout | None
    d_model: int | None
    widths: tuple[int | None, int | None, int | None] = (None, None, None)  # (q_out, k_out, packed total)
    num_heads: int | None = None
    num_kv_heads: int | None = None
    head_dim: int | None = None
    problem: str | None = None
    note: str = ""

    @property
    def readable(self) -> bool:
        return self.layout is not None and self.problem is None and self.num_heads is not None

    def weights(self, module: nn.Module) -> dict:
        """The projections of ``module`` (the audited module or a copy of it), split by the heads read."""
        return projections(module, self.layout, self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim)


def _widths(sub: nn.Module, layout: Layout) -> tuple[int, tuple[int | None, int | None, int | None], int | None]:
    """(d_model, (q_out, k_out, packed total), the output projection's input width or None without one)."""
    o = _output(sub, layout.names[-1]) if layout.kind != "linears" else (sub.linears[3].weight, None)
    o_in = None if o == "none" else o[0].shape[1]
    if layout.kind == "packed":
        packed = sub.in_proj_weight if layout.names[0] == "in_proj_weight" else _linear(sub, layout.names[0])[0]
        return packed.shape[1], (None, None, packed.shape[0]), o_in
    w = projections(sub, Layout("", layout.names, layout.kind), 0, 0)
    if w["k"][0].shape[0] != w["v"][0].shape[0]:
        return w["q"][0].shape[1], (w["q"][0].shape[0], None, None), o_in
    return w["q"][0].shape[1], (w["q"][0].shape[0], w["k"][0].shape[0], None), o_in


def split_heads_of(H: int, hd: int | None, kv: int | None, widths: tuple, o_in: int | None) -> tuple[int, int, int] | str:
    """(num_heads, num_kv_heads, head_dim) that the projection widths allow for ``H`` heads, or why none does."""
    q_out, k_out, total = widths
    if q_out is None and total is not None:  # packed [q | k | v]: the split follows from the heads
        hd = hd or total // (H + 2 * (kv or H))
        if hd == 0:
            return f"num_heads={H} is more than the {total // 3} features its query projection makes: a head would be empty"
        q_out, k_out = H * hd, (total - H * hd) // 2
    if k_out is None:
        return "its key and value projections differ in width"
    if H > q_out:
        return f"num_heads={H} is more than the {q_out} features its query projection makes: a head would be empty"
    hd = hd or q_out // H
    if H * hd != q_out or (total is not None and q_out + 2 * k_out != total):
        return f"num_heads={H} heads of head_dim={hd} make {H * hd} features, but its query projection makes {q_out}"
    if k_out == 0 or k_out % hd or H % (k_out // hd) or (kv and kv != k_out // hd):
        return f"its key projection's {k_out} features are not a whole number of heads of {hd} that divides {H}"
    if o_in is not None and o_in != q_out:
        return f"its output projection takes {o_in} features, but the {H} heads give {q_out}"
    return H, k_out // hd, hd


def read_structure(module: nn.Module) -> Structure:
    """Find the projections of ``module`` and its heads; see :class:`Structure`."""
    layout = find_layout(module)
    if layout is None:
        first = next((c for c in module.modules() if isinstance(c, nn.Linear)), None)
        d_model = positive_int_attr(module, D_MODEL_NAMES) or (first.in_features if first is not None else None)
        return Structure(None, d_model, problem="audit found no query/key/value/output projections under a name it "
                                                "knows")
    sub = module.get_submodule(layout.path) if layout.path else module
    d_model, widths, o_in = _widths(sub, layout)
    H = positive_int_attr(sub, HEAD_NAMES) or positive_int_attr(module, HEAD_NAMES)
    hd = positive_int_attr(sub, HEAD_DIM_NAMES) or positive_int_attr(module, HEAD_DIM_NAMES)
    kv = positive_int_attr(sub, KV_HEAD_NAMES) or positive_int_attr(module, KV_HEAD_NAMES)
    found = Structure(layout, d_model, widths)
    if getattr(sub, "add_zero_attn", False) or getattr(sub, "bias_k", None) is not None:
        found.problem = ("it attends to extra keys (nn.MultiheadAttention's add_zero_attn or add_bias_kv) that the "
                         "reference does not have")
    elif H is None:
        return found  # audit tries the head counts the widths allow (head_counts)
    heads = split_heads_of(H, hd, kv, widths, o_in) if found.problem is None else found.problem
    if isinstance(heads, str):
        found.problem = heads
    else:
        found.num_heads, found.num_kv_heads, found.head_dim = heads
    return found


def head_counts(module: nn.Module, structure: Structure) -> list[tuple[int, int, int]]:
    """Every (num_heads, num_kv_heads, head_dim) the widths of the projections allow, fewest heads first."""
    sub = module.get_submodule(structure.layout.path) if structure.layout.path else module
    _, widths, o_in = _widths(sub, structure.layout)
    q_out = widths[0] or (widths[2] // 3 if widths[2] % 3 == 0 else 0)
    hd = positive_int_attr(sub, HEAD_DIM_NAMES) or positive_int_attr(module, HEAD_DIM_NAMES)
    kv = positive_int_attr(sub, KV_HEAD_NAMES) or positive_int_attr(module, KV_HEAD_NAMES)
    found = [split_heads_of(H, hd, kv, widths, o_in) for H in range(1, q_out + 1) if q_out % H == 0]
    return [f for f in found if not isinstance(f, str)]


def output_layer(module: nn.Module, layout: Layout) -> nn.Module:
    """The output projection's layer (an nn.Linear) of ``module`` (or of a copy of it), for a hook on its input."""
    sub = module.get_submodule(layout.path) if layout.path else module
    layer = sub.linears[3] if layout.kind == "linears" else getattr(sub, layout.names[-1])
    return layer[0] if isinstance(layer, nn.Sequential) else layer
