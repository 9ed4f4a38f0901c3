"""Cold start: wall time and peak RSS of importing ``function_app`` and indexing its functions,
against importing the SDKs eagerly, each in a fresh interpreter (median of N runs).

    python bench/cold_start.py [--runs 5]

Targets (issue 2): <= 0.25 s and <= 60 MB for the lazy app; the eager import for comparison.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EAGER = ["azure.ai.ml", "sklearn.linear_model", "azure.monitor.query", "azure.monitor.querymetrics",
         "azure.data.tables", "azure.storage.blob", "azure.identity", "azure.eventgrid"]

PROBE = """
import json, resource, sys, time
t = time.perf_counter()
{imports}
elapsed = time.perf_counter() - t
print(json.dumps({{"seconds": elapsed, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

CASES = {
    "azure.functions alone (the worker has it loaded already)": "import azure.functions",
    "function_app + get_functions() (lazy, as shipped)":
        "import function_app\nfunction_app.app.get_functions()",
    "function_app + get_functions() + SDKs imported eagerly":
        "import function_app\nfunction_app.app.get_functions()\n" + "\n".join(f"import {m}" for m in EAGER),
}


def measure(imports: str, runs: int) -> tuple[float, float]:
    seconds, rss = [], []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", PROBE.format(imports=imports)], cwd=ROOT,
                             capture_output=True, text=True, check=True)
        result = json.loads(out.stdout)
        seconds.append(result["seconds"])
        rss.append(result["rss_mb"])
    return statistics.median(seconds), statistics.median(rss)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    measure("import function_app", 1)  # warm the bytecode cache so every case compares like with like
    results = {name: measure(code, args.runs) for name, code in CASES.items()}
    print(f"cold start, median of {args.runs} fresh interpreters")
    for name, (sec, mb) in results.items():
        print(f"  {name:<60} {sec:7.3f} s  {mb:6.1f} MB peak RSS")
    lazy, eager = results[list(CASES)[1]], results[list(CASES)[2]]
    print(f"  eager / lazy: {eager[0] / lazy[0]:.1f}x time, {eager[1] / lazy[1]:.1f}x memory")
    print(f"  targets: lazy <= 0.25 s ({'met' if lazy[0] <= 0.25 else 'MISSED'}), "
          f"<= 60 MB ({'met' if lazy[1] <= 60 else 'MISSED'})")


if __name__ == "__main__":
    main()
