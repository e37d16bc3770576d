"""Summarise a py-spy `record -f raw` (collapsed stacks) profile: where the time goes.

For each thread: its share of the samples, then the functions with the most
inclusive time (on the stack) and self time (top of the stack). `--idle`
profiles include samples where a thread waits (epoll, fsync, locks), which is
what an I/O-bound service needs to show.

Usage: python bench/pyspy_summary.py PROFILE.txt [--top 25] [--match TEXT]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict
from pathlib import Path

_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def short(frame: str) -> str:
    """`fn (path/to/file.py:12)` -> `fn (file.py)`."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match["file"]
    marker = "/adapter/"
    tail = ("adapter/" + path.split(marker, 1)[1]) if marker in path else path.rsplit("/", 1)[-1]
    return f"{match['fn']} ({tail})"


def load(path: Path) -> dict[str, list[tuple[list[str], int]]]:
    threads: dict[str, list[tuple[list[str], int]]] = defaultdict(list)
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        threads[frames[0]].append(([short(f) for f in frames[1:]], int(count)))
    return threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default="", help="only count stacks containing this text")
    ns = parser.parse_args()
    threads = load(ns.profile)
    grand = sum(c for stacks in threads.values() for _, c in stacks)
    for thread, stacks in sorted(threads.items(), key=lambda kv: -sum(c for _, c in kv[1])):
        if ns.match:
            stacks = [(f, c) for f, c in stacks if any(ns.match in x for x in f)]
        total = sum(c for _, c in stacks)
        if not total:
            continue
        inclusive: Counter[str] = Counter()
        own: Counter[str] = Counter()
        for frames, count in stacks:
            for name in set(frames):
                inclusive[name] += count
            if frames:
                own[frames[-1]] += count
        print(f"\n### {thread}: {total} samples ({100 * total / grand:.1f}% of all)")
        print("inclusive:")
        for name, count in inclusive.most_common(ns.top):
            print(f"  {100 * count / total:5.1f}%  {name}")
        print("self:")
        for name, count in own.most_common(ns.top):
            print(f"  {100 * count / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
