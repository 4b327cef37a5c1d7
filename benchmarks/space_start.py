"""Start-up time of the app run as a Hugging Face Space: ``python app.py`` with ``SPACE_ID`` set and an empty
temporary folder as ``/data``, started twice (first start builds the sample knowledge base, the second reuses it).

    python benchmarks/space_start.py [--runs N]

Prints, per run, the seconds from process start to the first HTTP 200 on ``/`` for both starts, and the time spent
building the sample knowledge base (from the app's log). Measures wall-clock on whatever else the machine is doing.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, today
from servers import app_env, free_port, start_app


def start(data: Path, log: Path, timeout_s: float = 1800) -> float:
    """Seconds until the app answers HTTP; the app is stopped afterwards."""
    port = free_port()
    env = app_env(SPACE_ID="bench/esg", ESG_DATA_DIR=data, GRADIO_SERVER_PORT=port)
    t0 = time.perf_counter()
    with start_app(env, port, log) as app:
        app.wait_http(timeout_s, poll_s=0.25)
        return time.perf_counter() - t0


def ingest_seconds(log: Path) -> float | None:
    """From 'first start: building…' to the last 'sample …' line, by the log's timestamps."""
    stamps = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if "first start: building" in line or " app: sample " in line:
            stamps.append(datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f"))
    return (stamps[-1] - stamps[0]).total_seconds() if len(stamps) > 1 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    firsts, seconds, ingests = [], [], []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="esg-space-") as tmp:
            data = Path(tmp) / "data"
            data.mkdir()
            first = start(data, Path(tmp) / "first.log")
            ing = ingest_seconds(Path(tmp) / "first.log")
            second = start(data, Path(tmp) / "second.log")
            if re.search("first start", (Path(tmp) / "second.log").read_text()):
                raise SystemExit("the second start rebuilt the knowledge base")
        firsts.append(first)
        seconds.append(second)
        ingests.append(ing or 0.0)
        print(f"run {i + 1}: first start {first:.1f} s (sample ingest {ing or 0:.1f} s), second start {second:.1f} s")
    print(f"machine: {machine()}; date {today()}; load average {os.getloadavg()[0]:.1f}")
    print(
        f"median: first start {statistics.median(firsts):.1f} s (sample ingest {statistics.median(ingests):.1f} s), "
        f"second start {statistics.median(seconds):.1f} s"
    )


if __name__ == "__main__":
    main()
