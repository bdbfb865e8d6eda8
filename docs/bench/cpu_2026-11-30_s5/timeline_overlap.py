"""How much a forward batch slows while the reader or the writer works beside it, from a stage timeline
(``bench predict --timeline DIR``): each forward's duration against its overlap with read and write intervals.

    python docs/bench/cpu_2026-11-30_s5/timeline_overlap.py docs/bench/cpu_2026-11-30_s5/timeline/timeline_10000.json
"""

from __future__ import annotations

import json
import sys

import numpy as np


def overlap(a: float, b: float, intervals: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(b, d) - max(a, c)) for c, d in intervals)


def analyse(path: str) -> dict:
    events = json.load(open(path))
    forwards = [(a, b) for stage, _, a, b in events if stage == "forward"]
    reads = [(a, b) for stage, _, a, b in events if stage == "read"]
    writes = [(a, b) for stage, _, a, b in events if stage == "write"]
    seconds = np.array([b - a for a, b in forwards])
    beside_read = np.array([overlap(a, b, reads) for a, b in forwards])
    beside_write = np.array([overlap(a, b, writes) for a, b in forwards])
    alone = (beside_read == 0) & (beside_write == 0)
    design = np.vstack([np.ones_like(seconds), beside_read, beside_write]).T
    base, per_read, per_write = np.linalg.lstsq(design, seconds, rcond=None)[0]
    fifths = np.array_split(np.flatnonzero(alone), 5)
    return {
        "timeline": path,
        "batches": len(seconds),
        "alone": {"n": int(alone.sum()), "mean_s": round(float(seconds[alone].mean()), 4)},
        "beside_read": {"n": int((beside_read > 0).sum()), "mean_s": round(float(seconds[beside_read > 0].mean()), 4)},
        "beside_write": {"n": int((beside_write > 0).sum()), "mean_s": round(float(seconds[beside_write > 0].mean()), 4)},
        # seconds added to a batch per second of read / write beside it (least squares)
        "fit": {"base_s": round(base, 4), "per_read_s": round(per_read, 4), "per_write_s": round(per_write, 4)},
        "alone_mean_s_by_fifth_of_pass": [round(float(seconds[k].mean()), 4) for k in fifths],
        "forward_s": round(float(seconds.sum()), 1),
        "forward_s_if_all_ran_alone": round(float(len(seconds) * seconds[alone].mean()), 1),
    }


if __name__ == "__main__":
    for path in sys.argv[1:]:
        print(json.dumps(analyse(path)))
