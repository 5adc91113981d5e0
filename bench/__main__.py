"""python -m bench: storescu → storescp direct, against storescu → WolfPACS → storescp.

Both legs run DCMTK with TCP_NODELAY=1, on loopback, on the same generated
study; runs are interleaved (direct, node, direct, node...) so that the
machine's load affects both alike. The node's time runs from the start of
storescu to the moment the worker holds the last instance. Prints medians
and the ratio; writes JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import node, send_through, storescp, storescu
from wolfpacs.simulate import free_port
from wolfpacs.synthetic import write_study

RESULTS = Path(__file__).parent / "results"


def direct(files: list[Path], root: Path) -> float:
    port = free_port()
    out = root / "direct"
    proc = storescp(out, "DIRECT", port)
    try:
        return storescu(files, port, "DIRECT")
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(out)


def through_node(files: list[Path], root: Path, durability: str) -> float:
    with node(root, durability) as running:
        return send_through(files, running)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--instances", type=int, default=250)
    parser.add_argument("--size", type=int, default=512, help="rows = columns, 16-bit")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--durability", choices=["fsync", "os"], default="fsync")
    parser.add_argument("--output", type=Path, default=RESULTS / "roundtrip.json")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="wolfpacs-bench-"))
    try:
        files = write_study(root / "study", series=1, per_series=args.instances,
                            rows=args.size, columns=args.size)  # fmt: skip
        megabytes = sum(f.stat().st_size for f in files) / 1e6
        print(f"{len(files)} instances, {megabytes:.1f} MB, {args.repeat} interleaved runs each")
        times: dict[str, list[float]] = {"direct": [], "wolfpacs": []}
        for run in range(args.repeat):
            times["direct"].append(direct(files, root))
            times["wolfpacs"].append(through_node(files, root, args.durability))
            print(f"  run {run + 1}: direct {times['direct'][-1]:.2f} s, "
                  f"wolfpacs {times['wolfpacs'][-1]:.2f} s")  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratio = medians["direct"] / medians["wolfpacs"]
    for name, median in medians.items():
        print(f"{name:9s} median {median:6.2f} s  {len(files) / median:6.1f} inst/s  "
              f"{megabytes / median:6.1f} MB/s")  # fmt: skip
    print(f"throughput through WolfPACS ({args.durability}): {ratio:.2f} x direct")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d"), "instances": len(files), "megabytes": megabytes,
        "durability": args.durability, "runs": times, "medians": medians, "ratio": ratio,
    }, indent=2) + "\n")  # fmt: skip
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
