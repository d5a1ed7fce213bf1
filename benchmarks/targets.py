"""Benchmark targets: every figure that has one is compared in the run that measured it.

Each benchmark collects ``Row``s and ends with ``report()``, which prints one table with
the target and the raw library measured in the same run beside each figure, names every
miss and returns the exit code (1 on a miss), so ``scripts/bench.sh`` fails on any of
them. The targets come from the issues that asked for each figure (docs/decisions.md
says where one was moved and why).
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One figure: what, the result, its target, the raw library beside it, met or not.

    ``met`` is None for a figure shown for context only (no target).
    """

    measure: str
    result: str
    target: str = ""
    raw: str = ""
    met: bool | None = None

    @property
    def verdict(self) -> str:
        return "" if self.met is None else ("ok" if self.met else "MISSED")


def at_most(value: float, limit: float) -> bool:
    return value <= limit


def at_least(value: float, floor: float) -> bool:
    return value >= floor


def machine() -> str:
    return (f"{platform.machine()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")


def report(name: str, rows: Sequence[Row]) -> int:
    """Print the targets table of one benchmark; 1 when any figure missed its target."""
    header = ("measure", "result", "target", "raw library, same run", "verdict")
    table = [header] + [(r.measure, r.result, r.target, r.raw, r.verdict) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    print(f"\n## {name}: targets ({machine()})\n")
    for i, line in enumerate(table):
        print("| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True))
              + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    missed = [r.measure for r in rows if r.met is False]
    if missed:
        print(f"\n{name}: MISSED {len(missed)} target(s): " + "; ".join(missed))
        return 1
    print(f"\n{name}: every target met ({sum(r.met is True for r in rows)} checked)")
    return 0
