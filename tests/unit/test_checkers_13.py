"""The exercise checkers of notebook 13 (the bug hunt), as far as the shared contract goes: a class whose __init__
needs arguments is reported as the student's, with a hint that says why, and never with a line of mha_helpers' own
code."""

from __future__ import annotations

import torch
from checker_support import assert_hint, run

import mha_helpers as mh


def test_a_class_that_needs_arguments_is_the_students_with_a_hint(capsys):
    class SelfAttentionG(mh.ZooAttention):
        def __init__(self, d_model, num_heads):
            super().__init__(d_model, num_heads)

    assert_hint(mh.check_fix_padding_heads, SelfAttentionG, "your class raised TypeError", capsys)
    passed, out = run(mh.check_fix_padding_heads, SelfAttentionG, capsys)
    assert "builds your class with no arguments" in out and "give every parameter you added a default" in out, out
    assert "impl()" not in out and ", at `" not in out, out  # no line of bug_zoo.py quoted as the student's


def test_an_error_inside_the_students_forward_quotes_the_students_line(capsys):
    class Broken(torch.nn.Module):
        def forward(self, x):
            return x @ torch.zeros(3, 3)  # the student's own line

    passed, out = run(mh.check_fix_gpt_block, Broken, capsys)
    assert not passed and "your function raised RuntimeError" in out and "torch.zeros(3, 3)" in out, out
