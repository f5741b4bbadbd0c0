#!/usr/bin/env python3
"""Print the slowest tests and the totals of a test run, from its durations file or its JUnit XML report.

    python scripts/slowest.py test-reports/durations.tsv          # written by scripts/test.sh and .ci/run
    python scripts/slowest.py test-reports/junit.xml -n 30
    python scripts/slowest.py before.tsv after.tsv                # two runs side by side

A durations file (``--durations-file``, tests/durations.py) also holds the run's wall time and worker count; a JUnit
report holds each test's time and the summed time only. Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def load(path: Path) -> tuple[dict[str, float], dict[str, str]]:
    """``({test: seconds}, {"wall_s": ..., "workers": ...})`` from a durations TSV or a JUnit XML file."""
    if path.suffix == ".xml":
        root = ET.parse(path).getroot()
        seconds: dict[str, float] = {}
        for case in root.iter("testcase"):
            module = case.get("classname", "").replace(".", "/")
            name = f"{module}.py::{case.get('name')}" if module else case.get("name", "?")
            seconds[name] = seconds.get(name, 0.0) + float(case.get("time") or 0.0)
        return seconds, {}
    seconds, info = {}, {}
    for line in path.read_text().splitlines():
        if line.startswith("# "):
            fields = line[2:].split("\t")
            info.update(zip(fields[::2], fields[1::2], strict=False))
        elif line and not line.startswith("seconds\t"):
            fields = line.split("\t")
            seconds[fields[-1]] = float(fields[0])
    return seconds, info


def summary(path: Path, n: int) -> list[str]:
    seconds, info = load(path)
    total = sum(seconds.values())
    lines = [f"{path}: {len(seconds)} tests, {total:.0f} s of test time ({total / 60:.1f} min)"]
    if "wall_s" in info:
        wall = float(info["wall_s"])
        lines[0] += f", {wall:.0f} s wall ({wall / 60:.1f} min) on {info.get('workers', '1')} worker(s)"
    lines.append(f"the {min(n, len(seconds))} slowest:")
    for test, s in sorted(seconds.items(), key=lambda kv: -kv[1])[:n]:
        lines.append(f"  {s:8.1f} s  {test}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="durations TSV (--durations-file) or JUnit XML")
    parser.add_argument("-n", type=int, default=20, help="how many of the slowest tests to list (default 20)")
    args = parser.parse_args(argv)
    for path in args.files:
        if not path.is_file():
            print(f"error: no such file {str(path)!r}", file=sys.stderr)
            return 2
        print("\n".join(summary(path, args.n)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
