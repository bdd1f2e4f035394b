"""Saga Kit benchmark: prints local saga throughput and latency (kit vs bare baseline), state
transitions per saga, each handler's cold import time and the CDK synth time; then the same
figures for the travel saga (parallel group, callback step) as shipped.

    make bench            # or: .venv/bin/python bench/run.py [--sagas 30]

Every figure is measured in this run; nothing is copied from an earlier one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
ENV = dict(os.environ)

from stacks.order_fulfillment import ORDER_FULFILLMENT  # noqa: E402
from stacks.travel_booking import TRAVEL_BOOKING  # noqa: E402

SYNTH_SNIPPET = """
import time, sys
started = time.perf_counter()
from stacks.app_factory import build_app
build_app(sys.argv[1]).synth()
first = time.perf_counter() - started
started = time.perf_counter()
build_app(sys.argv[1] + "-again").synth()
print(first, time.perf_counter() - started)
"""

IMPORT_SNIPPET = """
import importlib, sys, time
sys.path.insert(0, sys.argv[1])
started = time.perf_counter()
importlib.import_module(sys.argv[2])
print(time.perf_counter() - started)
"""


def python(*args: str) -> str:
    run = subprocess.run([sys.executable, *args], cwd=ROOT, env=ENV, check=False,
                         capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed:\n{run.stderr[-4000:]}")
    return run.stdout.strip()


def synth_seconds() -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        first, again = python("-c", SYNTH_SNIPPET, str(Path(tmp) / "out")).split()
    return float(first), float(again)


def cold_imports(repeats: int = 5) -> dict[str, float]:
    modules = sorted({h.rsplit(".", 1)[0] for s in ORDER_FULFILLMENT.steps
                      for h in (s.action, s.compensation) if h})
    # boto3 alone, for reference: Lambda's Python runtime pays it for any handler using AWS.
    modules.append("boto3")
    return {
        module: round(1000 * statistics.median(
            float(python("-c", IMPORT_SNIPPET, str(ROOT / "lambdas"), module))
            for _ in range(repeats)), 1)
        for module in modules
    }


def local(variant: str, sagas: int, saga: str = "order") -> dict:
    return json.loads(python("bench/measure_local.py", "--saga", saga, "--variant", variant,
                             "--sagas", str(sagas)).splitlines()[-1])


def transitions_floor(definition) -> int:
    """The fewest state transitions a saga of this shape can take on its happy path: one per
    task, one per ``Parallel`` state and the terminal state."""
    return len(definition.steps) + len(definition.groups) + 1


def print_travel(travel: dict, sagas: int) -> bool:
    """Prints the travel saga's figures; returns whether its happy path met the floor."""
    steps, groups = len(TRAVEL_BOOKING.steps), len(TRAVEL_BOOKING.groups)
    floor = transitions_floor(TRAVEL_BOOKING)
    print(f"travel_booking ({steps} steps, {groups} parallel group of "
          f"{len(TRAVEL_BOOKING.groups[0].steps)}, book_car a callback step), kit only, "
          f"{sagas} sagas per figure")
    print("compensated = book_hotel fails with a business error: the other branches undone")
    print()
    print(f"{'':38}{'happy':>12}{'compensated':>12}")
    for key, unit in (("ms_per_saga_mean", "ms/saga (mean, sequential)"),
                      ("ms_per_saga_p50", "ms/saga (p50, sequential)"),
                      ("sagas_per_second", "sagas/s (8 concurrent)"),
                      ("transitions_per_saga", "state transitions")):
        print(f"{unit:38}{travel['happy'][key]!s:>12}{travel['compensated'][key]!s:>12}")
    met = travel["happy"]["transitions_per_saga"] == [floor]
    print(f"happy-path transitions floor = {groups} Parallel + {steps} tasks + 1 terminal state"
          f" = {floor}: "
          f"{'met' if met else 'NOT met'}")
    return met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sagas", type=int, default=30, help="sagas per measurement")
    args = parser.parse_args()
    started = time.perf_counter()
    n_steps = len(ORDER_FULFILLMENT.steps)

    first, again = synth_seconds()
    imports = cold_imports()
    kit, runtime, baseline = (local(v, args.sagas) for v in ("kit", "runtime", "baseline"))
    travel = local("kit", args.sagas, saga="travel")

    print(f"Saga Kit benchmark — order_fulfillment ({n_steps} steps), {args.sagas} sagas per "
          f"figure, Python {sys.version.split()[0]}, {os.cpu_count()} cores")
    print()
    print("kit = shipped app (runtime + simulated participants); runtime = @saga_step around an "
          "echo;\nbaseline = bare echo handlers. Same state machine for all three.")
    print()
    header = f"{'':38}{'kit':>9}{'runtime':>9}{'baseline':>9}{'kit/base':>9}{'rt/base':>9}"
    print(header)
    for label in ("happy", "compensated"):
        for key, unit in (("ms_per_saga_mean", "ms/saga (mean, sequential)"),
                          ("ms_per_saga_p50", "ms/saga (p50, sequential)"),
                          ("sagas_per_second", "sagas/s (8 concurrent)")):
            k, r, b = kit[label][key], runtime[label][key], baseline[label][key]
            print(f"{label + ' ' + unit:38}{k:>9}{r:>9}{b:>9}{k / b:>9.2f}{r / b:>9.2f}")
        print(f"{label + ' state transitions':38}"
              + "".join(f"{v[label]['transitions_per_saga']!s:>9}"
                        for v in (kit, runtime, baseline)))
    print()
    print(f"happy-path transitions target N + 1 = {n_steps + 1}: "
          f"{'met' if kit['happy']['transitions_per_saga'] == [n_steps + 1] else 'NOT met'}")
    for name, figures in (("kit", kit), ("runtime", runtime)):
        ratios = [figures[p]["ms_per_saga_mean"] / baseline[p]["ms_per_saga_mean"]
                  for p in ("happy", "compensated")]
        verdict = "met" if max(ratios) <= 1.5 else "NOT met"
        print(f"{name}/baseline ms per saga, target <= 1.5: happy {ratios[0]:.2f}, "
              f"compensated {ratios[1]:.2f} ({verdict})")
    print()
    print("handler cold import (fresh interpreter, median of 5):")
    for module, ms in imports.items():
        print(f"  {module:40}{ms:>8} ms")
    print(f"synth: {first:.1f} s in a fresh process (jsii start included), "
          f"{again:.2f} s for a second synth in the same process")
    print()
    travel_met = print_travel(travel, args.sagas)
    print(f"(benchmark took {time.perf_counter() - started:.0f} s)")
    if not travel_met:
        raise SystemExit(f"travel_booking happy path took {travel['happy']['transitions_per_saga']}"
                         f" state transitions, not the floor {transitions_floor(TRAVEL_BOOKING)}")


if __name__ == "__main__":
    main()
