"""Reads a modernft run's TensorBoard event files with TensorBoard's own reader (EventAccumulator)
and checks every scalar against the run's metrics.jsonl: same tags, same steps, same values (f32),
nothing missing, nothing extra, no step twice. Prints one line per tag and exits non-zero on a
mismatch.

    pip install tensorboard==2.20.0
    python scripts/tensorboard_check.py runs/x
"""
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def expected_scalars(run: Path):
    want = defaultdict(list)
    for line in (run / "metrics.jsonl").read_text().splitlines():
        v = json.loads(line)
        kind = v["type"]
        prefix = f"final_{v['split']}" if kind == "final" else kind
        for k, x in v.items():
            if k in ("type", "step", "split") or (kind == "eval" and k == "epoch") or not isinstance(x, (int, float)):
                continue
            tag = f"{prefix}/{k[5:] if k.startswith('eval_') else k}"
            want[tag].append((v["step"], float(np.float32(x))))
    return want


def main(run: Path) -> int:
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    got = {tag: [(e.step, float(np.float32(e.value))) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    want = expected_scalars(run)
    bad = 0
    for tag in sorted(set(got) | set(want)):
        g, w = got.get(tag, []), want.get(tag, [])
        steps = [s for s, _ in g]
        ok = g == w and len(steps) == len(set(steps))
        bad += not ok
        first = f"step {g[0][0]}: {g[0][1]:.6g}" if g else "-"
        last = f"step {g[-1][0]}: {g[-1][1]:.6g}" if g else "-"
        print(f"{'ok ' if ok else 'BAD'} {tag:<32} {len(g):>4} points   first {first:<24} last {last}")
    texts = acc.Tags().get("tensors", [])
    print(f"text summaries: {texts}")
    if "hyperparameters" not in texts:
        print("BAD no hyperparameters text")
        bad += 1
    print(f"{sum(len(v) for v in got.values())} scalars read by TensorBoard {__import__('tensorboard').__version__}; {'all match' if bad == 0 else f'{bad} tags differ'} metrics.jsonl")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
