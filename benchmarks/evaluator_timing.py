"""Time the evaluator CLI on a sampled light.yaml spec: wall seconds per run, median of N.

    python benchmarks/evaluator_timing.py --budget cpu --repeats 3

Each run is a fresh `python -m evaluators` process (import, data, cached FID reference,
training, scoring), as a user runs it.  Prints one line per run and the median, with the
evaluation's own overhead share, and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="light.yaml")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed of the spec")
    parser.add_argument("--budget", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.yaml"
        spec.write_text(subprocess.run([sys.executable, "-m", "nas.space", "sample", args.space, "--n", "1",
                                        "--seed", str(args.seed)], check=True, capture_output=True,
                                       text=True).stdout)
        walls = []
        for i in range(args.repeats):
            started = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "evaluators", "--config", str(spec), "--budget",
                                   args.budget, "--device", args.device, "--json"], capture_output=True, text=True)
            wall = time.perf_counter() - started
            if proc.returncode not in (0, 1):
                print(proc.stderr, file=sys.stderr)
                return proc.returncode
            data = json.loads(proc.stdout)
            walls.append(wall)
            print(f"run {i + 1}: wall {wall:.1f} s (evaluate {data['eval_seconds']:.1f} s: train "
                  f"{data['train_seconds']:.1f}, FID sampling {data['sampling_seconds']:.1f}, timing "
                  f"{data['timing_seconds']:.1f}, overhead {data['overhead_fraction']:.1%}); status "
                  f"{data['status']}, params {data['params']:,}, MACs {data['macs']:,}, val_loss "
                  f"{data['val_loss']}, fid_proxy {data['fid_proxy']} (floor {data['fid_floor']})")
    print(f"median wall over {len(walls)} runs: {statistics.median(walls):.1f} s "
          f"[{args.space} seed {args.seed}, budget {args.budget}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch threads default]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
