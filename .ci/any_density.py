#!/usr/bin/env python3
"""How many ``Any`` per thousand lines the package has: ``typing.Any`` names anywhere in the code
(imports, annotations, casts, aliases), counted from the syntax tree, over all lines of ``ollamalike/``.

``from typing import Any`` counts too, so the figure matches ``grep -w Any`` on code (comments and
docstrings that mention the word are not counted).

    python .ci/any_density.py [--max N] [--top K]

Exits 1 when the density is above ``--max`` (CI runs it through tests/test_code_quality.py).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "ollamalike"


def count_any(source: str) -> int:
    tree = ast.parse(source)
    n = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "Any" or isinstance(node, ast.Attribute) and node.attr == "Any":
            n += 1
        elif isinstance(node, ast.alias) and node.name == "Any":
            # ``from typing import Any`` (or ``import ... as Any``): the import is part of the count.
            n += 1
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "Any" in node.value:
            # String annotations ("dict[str, Any]") written before postponed evaluation.
            try:
                inner = ast.parse(node.value, mode="eval")
            except SyntaxError:
                continue
            n += sum(1 for sub in ast.walk(inner) if isinstance(sub, ast.Name) and sub.id == "Any")
    return n


def measure(root: Path = ROOT) -> tuple[int, int, list[tuple[int, str]]]:
    """(Any count, line count, per-file counts sorted high to low)."""
    total_any = total_lines = 0
    per_file: list[tuple[int, str]] = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        n = count_any(text)
        total_any += n
        total_lines += len(text.splitlines())
        per_file.append((n, str(path.relative_to(root.parent))))
    per_file.sort(reverse=True)
    return total_any, total_lines, per_file


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max", type=float, default=None, help="fail above this many per thousand lines")
    ap.add_argument("--top", type=int, default=0, help="also list the K files with the most")
    args = ap.parse_args()
    n, lines, per_file = measure()
    density = 1000 * n / max(lines, 1)
    print(f"{n} Any in {lines} lines: {density:.1f} per thousand lines")
    for count, name in per_file[: args.top]:
        print(f"  {count:4d}  {name}")
    if args.max is not None and density > args.max:
        print(f"above the limit of {args.max} per thousand lines", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
