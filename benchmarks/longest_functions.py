"""The longest functions and methods of a source tree, for reviews of the code's shape.

    python benchmarks/longest_functions.py                 # tinylm/ of this checkout, top 15
    python benchmarks/longest_functions.py --rev d04e51f   # the same at a git revision
    python benchmarks/longest_functions.py --top 30 --root tinylm/training

Length is the number of source lines from the `def` to the last line of the body (docstring and
comments included), as Python's `ast` reports them; nested functions count inside their parent and
on their own.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
from pathlib import Path


def function_lengths(source: str, filename: str) -> list[tuple[int, str]]:
    """(lines, 'file:qualified.name') for every function and method in one module's source."""
    tree = ast.parse(source, filename)
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                found.append((child.end_lineno - child.lineno + 1, f"{filename}:{child.lineno} {name}"))
                visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")

    visit(tree, "")
    return found


def sources(root: str, rev: str | None) -> dict[str, str]:
    """Python files under `root`: from the working tree, or from a git revision."""
    if rev is None:
        return {str(p): p.read_text(encoding="utf-8") for p in sorted(Path(root).rglob("*.py"))}
    names = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, root], capture_output=True, text=True, check=True).stdout.split()
    return {n: subprocess.run(["git", "show", f"{rev}:{n}"], capture_output=True, text=True, check=True).stdout
            for n in names if n.endswith(".py")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="tinylm")
    parser.add_argument("--rev", default=None, help="a git revision instead of the working tree")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    lengths = [item for name, text in sources(args.root, args.rev).items() for item in function_lengths(text, name)]
    lengths.sort(reverse=True)
    print(f"{len(lengths)} functions in {args.root} ({args.rev or 'working tree'}); longest {args.top}:")
    for n, where in lengths[: args.top]:
        print(f"{n:5d}  {where}")


if __name__ == "__main__":
    main()
