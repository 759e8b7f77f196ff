"""Compare the JSON files of two fit directories, numbers to a relative tolerance.

    python scripts/compare_fit_dirs.py FITDIR_A FITDIR_B [--files analysis.json summary.json] [--rtol 1e-9]

Prints every difference (path, both values) and exits 1 if there is any. Numbers are
compared with ``math.isclose(rel_tol=rtol)``: EM and the edge-label gradients sum in
parallel numba kernels and BLAS, so two runs of the same code agree to about 1e-14,
not to the last bit.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def differences(a, b, rtol: float, path: str = "") -> list[str]:
    """Paths at which the parsed JSON values ``a`` and ``b`` differ."""
    if isinstance(a, bool) or isinstance(b, bool) or not (isinstance(a, (int, float)) and isinstance(b, (int, float))):
        if type(a) is not type(b):
            return [f"{path}: {a!r} != {b!r}"]
    if isinstance(a, dict):
        out = [f"{path}/{k}: only in one" for k in sorted(set(a) ^ set(b))]
        return out + [d for k in sorted(set(a) & set(b)) for d in differences(a[k], b[k], rtol, f"{path}/{k}")]
    if isinstance(a, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} != {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, rtol, f"{path}[{i}]")]
    if isinstance(a, (int, float)) and not isinstance(a, bool):
        return [] if math.isclose(a, b, rel_tol=rtol, abs_tol=1e-12) else [f"{path}: {a!r} != {b!r}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--files", nargs="+", default=["analysis.json", "summary.json"])
    parser.add_argument("--rtol", type=float, default=1e-9)
    args = parser.parse_args(argv)
    found = 0
    for name in args.files:
        diffs = differences(json.loads((args.a / name).read_text()), json.loads((args.b / name).read_text()), args.rtol)
        print(f"{name}: {'same' if not diffs else f'{len(diffs)} difference(s)'} (rtol {args.rtol:g})")
        for line in diffs[:20]:
            print("  " + line)
        found += len(diffs)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
