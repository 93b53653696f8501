"""How long a notebook takes a student working alone: its core path, and its optional deep dives.

    python tests/notebook_minutes.py                                  # every notebook
    python tests/notebook_minutes.py notebooks/02_scaled_dot_product_attention.ipynb   # just these
    python tests/notebook_minutes.py --check notebooks/0[0-6]_*.ipynb  # exit 1 if a core path exceeds its "Time"

The measure (the one of the classroom review, ``/work/shared/reviews/site-jupyterlab-classroom.md``, column B):

    minutes = prose words / 200  +  20 s per code cell  +  stored output words / 200  +  5 min per exercise

- *prose words*: the words of the markdown cells, without folded solutions (``<details>…</details>``) and fenced
  code blocks; a word is a run of non-space characters with a letter or a digit in it (an image's alt text counts:
  it stands for the time spent looking at the diagram);
- *code cells*: every code cell, exercise stubs included;
- *stored output words*: the words with a letter in them (a column of numbers is scanned, not read) of the stored
  stream outputs and of the ``text/plain`` of results that have no image or widget (a figure or a widget is looked
  at, not read: it costs its cell's 20 s);
- *exercises*: the code cells that hold a stub (``raise NotImplementedError``).

A heading whose text contains "Optional" or "Going deeper" starts an **optional** part, which runs to the next
heading of the same or a higher level; everything else is the **core path**. The stated time ("**Time:** about N
minutes" in the title cell) should cover the core path; the optional minutes are reported beside it.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
WORDS_PER_MINUTE = 200
SECONDS_PER_CODE_CELL = 20
MINUTES_PER_EXERCISE = 5
OPTIONAL = re.compile(r"optional|going deeper", re.IGNORECASE)
HEADING = re.compile(r"^(#{1,6})\s+(.*)$")


@dataclass
class Part:
    """What one path (core or optional) of a notebook holds."""

    prose_words: int = 0
    code_cells: int = 0
    output_words: int = 0
    exercises: int = 0
    headings: list[str] = field(default_factory=list)

    @property
    def minutes(self) -> float:
        return (self.prose_words / WORDS_PER_MINUTE + self.code_cells * SECONDS_PER_CODE_CELL / 60
                + self.output_words / WORDS_PER_MINUTE + self.exercises * MINUTES_PER_EXERCISE)


def prose_words(markdown: str) -> int:
    text = re.sub(r"<details>.*?</details>", " ", markdown, flags=re.S)  # folded solutions
    text = re.sub(r"```.*?```", " ", text, flags=re.S)  # fenced code
    return sum(1 for word in text.split() if re.search(r"[A-Za-z0-9]", word))


def _lettered(text: str) -> int:
    return sum(1 for word in text.split() if re.search(r"[A-Za-z]", word))


def output_words(cell) -> int:
    words = 0
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            words += _lettered(out.text)
        elif out.output_type in ("execute_result", "display_data"):
            data = out.get("data", {})
            if "text/plain" in data and not any(k.startswith("image/") or "widget" in k for k in data):
                words += _lettered(data["text/plain"])
    return words


def measure(path: Path) -> tuple[int | None, Part, Part]:
    """(stated minutes, core path, optional parts) of one notebook."""
    nb = nbformat.read(path, as_version=4)
    stated = re.search(r"\*\*Time:\*\*\s*about (\d+) minutes", nb.cells[0].source)
    core, optional = Part(), Part()
    optional_level = None  # the level of the heading that opened the current optional part, or None
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            # A markdown cell may hold several headings: split it at each and file every piece where it belongs.
            piece, part = [], optional if optional_level else core
            for line in cell.source.splitlines():
                match = HEADING.match(line)
                if match:
                    part.prose_words += prose_words("\n".join(piece))
                    piece, level = [], len(match.group(1))
                    if optional_level and level <= optional_level:
                        optional_level = None
                    if not optional_level and OPTIONAL.search(match.group(2)):
                        optional_level = level
                    part = optional if optional_level else core
                    part.headings.append(match.group(2).strip())
                piece.append(line)
            part.prose_words += prose_words("\n".join(piece))
        elif cell.cell_type == "code":
            part = optional if optional_level else core
            part.code_cells += 1
            part.output_words += output_words(cell)
            part.exercises += "raise NotImplementedError" in cell.source
    return (int(stated.group(1)) if stated else None), core, optional


def main(argv: list[str]) -> int:
    check = "--check" in argv
    paths = [Path(a) for a in argv if a != "--check"] or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"usage: python tests/notebook_minutes.py [--check] [NOTEBOOK ...]; no such notebook: {', '.join(missing)}")
        return 2
    print(f"{'notebook':<40} {'stated':>6} {'core':>6} {'optional':>8}   core: prose words, code cells, "
          "output words, exercises")
    over = []
    for path in paths:
        stated, core, optional = measure(path)
        print(f"{path.name:<40} {stated!s:>6} {core.minutes:6.1f} {optional.minutes:8.1f}   "
              f"{core.prose_words}, {core.code_cells}, {core.output_words}, {core.exercises}")
        if stated is None or core.minutes > stated:
            over.append(path.name)
    if over:
        print("core path longer than the stated time:", ", ".join(over))
    return 1 if check and over else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
