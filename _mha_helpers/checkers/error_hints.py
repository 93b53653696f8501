"""Plain-words hints for the errors beginners meet most (a float size, a missing import, ``.T`` on a 3-D tensor, a
view on a non-contiguous tensor, ...), added by checkers/core.py to "your function raised ..." lines."""

from __future__ import annotations

import re


def error_hint(exc: BaseException, line: str) -> str:
    """A plain-words hint for a common error raised by the student's code ('' when none applies)."""
    message = str(exc)
    if isinstance(exc, NameError):
        name = getattr(exc, "name", None) or (re.findall(r"'(\w+)'", message) or [""])[0]
        if name == "math":
            return ("this notebook does not import math: write x ** 0.5 for a square root (or add `import math` at "
                    "the top of the notebook)")
        if name in {"F", "nn", "np", "torch", "mh"}:
            return f"`{name}` is not imported in this notebook; use the names its first cell imports"
        return f"`{name}` is not defined here: is it defined in a cell you have not run yet?"
    if isinstance(exc, TypeError) and re.search(
        r"but got float|'float' object cannot be interpreted as an integer|slice indices must be integers|"
        r"must be tuple of ints|expected .*int.* but got float|received an invalid combination of arguments.*float",
        message, re.S,
    ):
        return ("a size or an index is a float: d_model / num_heads gives a float (12 / 3 = 4.0) even when it "
                "divides evenly; use integer division, d_model // num_heads")
    if isinstance(exc, TypeError) and re.search(r"__init__\(\) (missing \d+ required|takes \d+ positional)", message):
        return ("the checker builds your class with no arguments, as the notebook does (YourClass()): keep the "
                "stub's __init__, or give every parameter you added a default value")
    if isinstance(exc, TypeError) and re.search(r"required positional argument|positional arguments? but \d+ (were|was) "
                                                r"given|got an unexpected keyword argument", message) and \
            not re.search(r"^(view|reshape|ones|zeros|full|randn|arange)\(", message):
        return ("the checker calls your function exactly as the stub's `def` line says: keep the stub's name and "
                "parameters (and call any helper with all of its arguments)")
    if isinstance(exc, IndexError) and "Dimension out of range" in message:
        return ("your code uses a dim this tensor does not have: the hidden inputs may have more or fewer dims than "
                "the ones you tried; count dims from the end (dim=-1, .transpose(-2, -1)) so any leading dims work")
    if isinstance(exc, AttributeError) and re.search(r"'(list|tuple|int|float)' object has no attribute", message):
        return ("an argument is a plain Python value (a list, tuple or number), not a tensor: use len(...) and "
                "indexing on it, or turn it into one with torch.tensor(...)")
    if "view size is not compatible with input tensor's size and stride" in message:
        return ("view on a non-contiguous tensor: after transpose(1, 2) a token's features are no longer next to "
                "each other in memory, so .view cannot merge them — use .reshape(...) (it copies when it must) or "
                ".contiguous().view(...)")
    matmul = re.search(r"mat1 and mat2 shapes cannot be multiplied|Expected size for first two dimensions of batch2|"
                       r"size mismatch|inconsistent tensor size|must match the size of tensor", message)
    if matmul and re.search(r"\.T\b", line) and ("@" in line or "# .T" in line):
        return ("`.T` reverses ALL the dims of a tensor with more than two (a (batch, S, d) key becomes (d, S, batch)); "
                "swap only the last two with .transpose(-2, -1)")
    if matmul and re.search(r"\bW\w*\s*@\s*\w", line):
        return ("the weight is on the left: a token is a row of x, so the projection is x @ W.T "
                "(nn.Linear stores W as (out_features, in_features))")
    if "must match the size of tensor" in message:
        if re.search(r"\.(max|sum|amax|mean|logsumexp)\((?![^)]*keepdim\s*=\s*True)", line) or "@" not in line:
            return ("two tensors' shapes do not line up here. If one of them comes from a reduction such as "
                    ".max(dim=-1) or .sum(dim=-1), pass keepdim=True: (..., S) and (..., 1) broadcast row by row, "
                    "(..., S) and (...,) do not")
    if matmul:
        return ("the inner sizes of this matrix product do not match: check each operand's shape (print it); for "
                "attention scores it is query @ key.transpose(-2, -1)")
    return ""
