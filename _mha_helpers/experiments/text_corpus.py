"""Notebook 14's text: the training corpus (Python's own documentation), the held-out docstrings, the character
tokeniser and the n-gram baselines that the character model of ``text_model.py`` is compared with.

Everything here is already on every machine that runs Python: nothing is downloaded. The training corpus is
``pydoc_data.topics`` (the language reference's help topics) followed by the docstrings of the standard library,
read from its ``.py`` sources with ``ast`` (nothing is imported, so nothing runs). The docstrings of
:data:`HELDOUT_MODULES` are left out of training: :func:`heldout_docstrings` collects them by importing those
modules, and they are the text on which the model is judged.

The corpus differs slightly between Python versions (the documentation changes); the model stores the version it
was trained on.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import math
import sysconfig
import warnings
from collections import Counter
from pathlib import Path

import torch

from ..validation import check_number, check_positive_int

#: Modules whose docstrings the model never sees in training (with their packages, submodules and C accelerators).
HELDOUT_MODULES: tuple[str, ...] = (
    "json", "argparse", "pathlib", "functools", "itertools", "collections", "logging", "dataclasses", "typing",
    "shutil", "textwrap", "heapq", "bisect", "statistics", "fractions", "difflib", "csv", "zipfile", "tarfile",
)

#: Submodules of the held-out modules whose docstrings :func:`heldout_docstrings` also collects.
HELDOUT_SUBMODULES: tuple[str, ...] = (
    "json.decoder", "json.encoder", "collections.abc", "logging.handlers", "logging.config",
)

#: Parts of the standard library that are not documentation of an API: tests, GUIs, demos, installers, vendored
#: packages, generated tables. ``pydoc_data`` is read directly (:func:`pydoc_topics_text`), not parsed.
SKIPPED_DIRS: frozenset[str] = frozenset({
    "test", "tests", "idlelib", "tkinter", "turtledemo", "lib2to3", "site-packages", "dist-packages", "ensurepip",
    "__pycache__", "pydoc_data", "__phello__",
})

#: Characters every vocabulary holds: printable ASCII (32..126) and the newline.
BASE_CHARS: str = "\n" + "".join(chr(code) for code in range(32, 127))

SEPARATOR = "\n\n"  # between two topics, two docstrings, or the topics and the docstrings
MAX_NGRAM_ORDER = 12  # the longest n-gram ngram_bits_per_char counts


def pydoc_topics_text() -> str:
    """``pydoc_data.topics`` as one string: the help topics in sorted order of their names, blank-line separated."""
    from pydoc_data.topics import topics

    return SEPARATOR.join(topics[name].strip("\n") for name in sorted(topics))


def _is_heldout_part(part: str) -> bool:
    """Is a path part (a folder or a file's stem) a held-out module, its accelerator or its private copy?

    ``_json``, ``_functools``, ``_collections_abc`` (which is ``collections.abc``) and ``importlib``'s private
    ``_functools``/``_itertools``/``_collections`` helpers all count: a leading underscore is stripped first.
    """
    name = part.lstrip("_")
    return name in HELDOUT_MODULES or name == "collections_abc"


def stdlib_source_files(stdlib: Path | None = None) -> list[Path]:
    """The ``.py`` files whose docstrings train the model, in sorted order: the standard library without
    :data:`SKIPPED_DIRS` and without every file or folder of :data:`HELDOUT_MODULES` (see :func:`_is_heldout_part`)."""
    root = Path(sysconfig.get_paths()["stdlib"]) if stdlib is None else Path(stdlib)
    files = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        folders, stem = parts[:-1], Path(parts[-1]).stem
        if SKIPPED_DIRS.intersection(folders) or any(p.startswith("config-") for p in folders):
            continue
        if any(_is_heldout_part(p) for p in (*folders, stem)) or stem.startswith("_sysconfigdata"):
            continue
        files.append(path)
    return files


def stdlib_docstrings(stdlib: Path | None = None) -> list[str]:
    """The docstrings of :func:`stdlib_source_files`, read with ``ast`` (nothing is imported): each module's,
    class's and function's ``ast.get_docstring`` in file order, files sorted, exact repeats dropped."""
    seen: set[str] = set()
    docstrings = []
    for path in stdlib_source_files(stdlib):
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError):  # a few files are templates or for another Python; they teach nothing
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and doc.strip() and doc not in seen:
                    seen.add(doc)
                    docstrings.append(doc.strip("\n"))
    return docstrings


def training_corpus(stdlib: Path | None = None) -> str:
    """The training text: :func:`pydoc_topics_text`, then :func:`stdlib_docstrings`, blank-line separated."""
    return SEPARATOR.join([pydoc_topics_text(), *stdlib_docstrings(stdlib)])


def _heldout_objects(module: object, family: str) -> list[object]:
    """The module, then its public classes and functions defined in ``family`` (sorted by name), each class
    followed by its own public methods (sorted): what ``help(module)`` would document first."""
    def ours(obj: object) -> bool:
        home = getattr(obj, "__module__", None) or ""
        return home.lstrip("_").startswith(family)

    objects: list[object] = [module]
    for name in sorted(vars(module)):
        obj = vars(module)[name]
        if name.startswith("_") or not (inspect.isclass(obj) or inspect.isroutine(obj)) or not ours(obj):
            continue
        objects.append(obj)
        if inspect.isclass(obj):
            for attr in sorted(vars(obj)):
                member = vars(obj)[attr]
                if isinstance(member, (staticmethod, classmethod)):
                    member = member.__func__
                if not attr.startswith("_") and (inspect.isroutine(member) or isinstance(member, property)):
                    objects.append(member)
    return objects


def heldout_docstrings(vocab: str | None = None) -> list[str]:
    """The held-out text: docstrings of :data:`HELDOUT_MODULES` and :data:`HELDOUT_SUBMODULES`, in that order.

    For each module: its own docstring, then its public classes and functions (sorted by name), each class followed
    by its public methods and properties (sorted). Only an object's OWN docstring counts (``inspect.getdoc`` of an
    object whose ``__doc__`` is set; nothing inherited). Repeats are dropped, keeping the first. Importing these
    modules has no side effects.

    ``vocab`` given (a model's characters): docstrings holding a character outside it are skipped WHOLE, so the
    text the model is judged on is real prose, never a string with holes (e.g. ``difflib``'s box-drawing
    characters). :func:`heldout_report` says how many were skipped.
    """
    if vocab is not None and not isinstance(vocab, str):
        raise TypeError(f"vocab must be a str of characters (e.g. model.vocab) or None, got {type(vocab).__name__}")
    allowed = None if vocab is None else set(vocab)
    seen: set[str] = set()
    docstrings = []
    for name in HELDOUT_MODULES + HELDOUT_SUBMODULES:
        module = importlib.import_module(name)
        for obj in _heldout_objects(module, name.split(".")[0]):
            with warnings.catch_warnings():  # typing.io and typing.re warn when touched (Python 3.11)
                warnings.simplefilter("ignore", DeprecationWarning)
                own = isinstance(getattr(obj, "__doc__", None), str)
                doc = inspect.getdoc(obj) if own else None
            if not doc or not doc.strip() or doc in seen:
                continue
            seen.add(doc)
            if allowed is None or set(doc) <= allowed:
                docstrings.append(doc.strip("\n"))
    return docstrings


def heldout_text(vocab: str | None = None) -> str:
    """:func:`heldout_docstrings` joined by blank lines: one string to measure bits per character on."""
    return SEPARATOR.join(heldout_docstrings(vocab))


def heldout_report(vocab: str) -> dict[str, object]:
    """How much of the held-out text a vocabulary covers: docstrings and characters kept and skipped, and the
    characters that caused the skips (with how often each occurs)."""
    every = heldout_docstrings()
    allowed = set(vocab)
    skipped = [doc for doc in every if not set(doc) <= allowed]
    unknown = Counter(ch for doc in skipped for ch in doc if ch not in allowed)
    return {"docstrings": len(every), "skipped_docstrings": len(skipped),
            "chars_kept": sum(len(d) for d in every) - sum(len(d) for d in skipped),
            "chars_skipped": sum(len(d) for d in skipped), "unknown_chars": dict(sorted(unknown.items()))}


class CharTokenizer:
    """Characters to ids and back: the id of a character is its place in the sorted ``vocab``.

    ``encode(text) -> (len(text),)`` LongTensor; ``decode(ids) -> str`` for a 1-D tensor or list of ints. A
    character outside the vocabulary raises a ValueError naming it and its position: the model cannot read it.
    """

    def __init__(self, vocab: str) -> None:
        if not isinstance(vocab, str):
            raise TypeError(f"vocab must be a str of distinct characters, got {type(vocab).__name__}")
        if not vocab or len(set(vocab)) != len(vocab) or list(vocab) != sorted(vocab):
            raise ValueError(f"vocab must be a non-empty str of distinct characters in sorted order, got {vocab!r:.60}")
        self.vocab = vocab
        self.index = {ch: i for i, ch in enumerate(vocab)}

    @classmethod
    def for_corpus(cls, corpus: str) -> CharTokenizer:
        """The vocabulary of a corpus: :data:`BASE_CHARS` and every character of ``corpus``, sorted."""
        return cls("".join(sorted(set(BASE_CHARS) | set(corpus))))

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> torch.Tensor:
        """``text`` -> its ids, a ``(len(text),)`` LongTensor."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}; decode ids with decode(ids) instead")
        if not text:
            raise ValueError("text is empty: pass at least one character, e.g. 'def f(x):'")
        ids = [self.index.get(ch, -1) for ch in text]
        if -1 in ids:
            pos = ids.index(-1)
            raise ValueError(
                f"text holds the character {text[pos]!r} (U+{ord(text[pos]):04X}) at position {pos}, which is not "
                f"in the model's vocabulary of {len(self.vocab)} characters (printable ASCII, the newline and the "
                f"training corpus' characters); replace or remove it, e.g. text.replace({text[pos]!r}, '?')"
            )
        return torch.tensor(ids, dtype=torch.long)

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        """Ids (a 1-D LongTensor or a list of ints) -> the text they stand for."""
        if isinstance(ids, torch.Tensor):
            if ids.dtype != torch.long or ids.dim() != 1:
                raise TypeError(f"ids must be a 1-D LongTensor (or a list of ints), got a {ids.dtype} tensor of "
                                f"shape {tuple(ids.shape)}; for a batch, decode each row: decode(ids[0])")
            ids = ids.tolist()
        if not isinstance(ids, (list, tuple)) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise TypeError(f"ids must be a 1-D LongTensor or a list of ints, got {ids!r:.60}")
        bad = [i for i in ids if not 0 <= i < len(self.vocab)]
        if bad:
            raise ValueError(f"ids must be in 0..{len(self.vocab) - 1} (the vocabulary's size is "
                             f"{len(self.vocab)}), got {bad[0]}")
        return "".join(self.vocab[i] for i in ids)


def check_text(name: str, text: object, minimum: int = 2) -> None:
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, got {type(text).__name__}")
    if len(text) < minimum:
        raise ValueError(f"{name} must hold at least {minimum} characters (one to read, one to predict), "
                         f"got {len(text)}")


def ngram_bits_per_char(text: str, n: int, train_text: str | None = None, vocab: str | None = None,
                        discount: float = 0.75) -> float:
    """Bits per character of a smoothed character ``n``-gram model on ``text`` (1 = unigram, 2 = bigram, ...).

    Trained on ``train_text`` (default: :func:`pydoc_topics_text`). Smoothing: interpolated absolute discounting
    (``discount`` taken off every seen count and spread over the next-lower order), down to a unigram with add-one
    counts over ``vocab`` (default: :data:`BASE_CHARS` and the characters of both texts), so no character ever
    gets probability 0. Every character of ``text`` after the first is predicted from up to ``n - 1`` before it.
    """
    check_text("text", text)
    check_positive_int("n", n)
    if n > MAX_NGRAM_ORDER:
        raise ValueError(f"n must be at most {MAX_NGRAM_ORDER} (a longer context only memorises the training text, and "
                         f"counting it takes minutes); got n={n}")
    train_text = pydoc_topics_text() if train_text is None else train_text
    check_text("train_text", train_text)
    if vocab is not None and not isinstance(vocab, str):
        raise TypeError(f"vocab must be a str of characters (e.g. model.vocab) or None, got {type(vocab).__name__}")
    check_number("discount", discount, minimum=0, maximum=1, above_minimum=True, below_maximum=True,
                 what="a number in (0, 1) such as 0.75")
    chars = set(BASE_CHARS) | set(train_text) | set(text) if vocab is None else set(vocab)
    counts = [Counter(train_text)] + [Counter(train_text[i:i + k + 1] for i in range(len(train_text) - k))
                                      for k in range(1, n)]  # counts[k]: (k+1)-grams
    totals = [Counter(), *[Counter() for _ in range(1, n)]]  # totals[k][h]: how often context h (length k) occurs
    kinds = [Counter(), *[Counter() for _ in range(1, n)]]  # kinds[k][h]: how many different characters follow h
    for k in range(1, n):
        for gram, c in counts[k].items():
            totals[k][gram[:-1]] += c
            kinds[k][gram[:-1]] += 1
    unigram_total = len(train_text) + len(chars)

    def prob(history: str, ch: str) -> float:
        p = (counts[0][ch] + 1) / unigram_total
        for k in range(1, len(history) + 1):
            h = history[-k:]
            seen = totals[k][h]
            if seen:
                p = (max(counts[k][h + ch] - discount, 0) + discount * kinds[k][h] * p) / seen
        return p

    bits = sum(-math.log2(prob(text[max(0, i - n + 1):i], text[i])) for i in range(1, len(text)))
    return bits / (len(text) - 1)

