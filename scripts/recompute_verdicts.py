"""Recompute every committed verdict from the committed files alone: each claim's archived runs
(``results/<claim>/runs/``) and the parameters, looks and pilot plan its ``verdict.json``
records. Prints one line per claim and exits 1 when any verdict does not recompute.

    python scripts/recompute_verdicts.py            # results/
    python scripts/recompute_verdicts.py OUT gn-norms
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from normbench.claims.reproduce import VERDICT_FILE, recompute


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", nargs="?", default="results", type=Path)
    ap.add_argument("claims", nargs="*")
    args = ap.parse_args()
    dirs = [args.out / c for c in args.claims] or sorted(d for d in args.out.iterdir() if (d / VERDICT_FILE).is_file())
    failed = 0
    for d in dirs:
        problems = recompute(d)
        print(f"{d.name}: {'recomputes' if not problems else 'DIFFERS'}", flush=True)
        for p in problems:
            print(f"  {p}")
        failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
