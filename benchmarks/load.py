"""Load and soak benchmark: simulated users on loopback asking questions at once through ``gradio_client``.

    python benchmarks/load.py [--users 20] [--questions 1] [--soak-minutes 0] [--md PATH]

Starts ``python app.py`` (bundled small LLM, shared mode as on the public Space) on a free loopback port over a
knowledge base of the two sample PDFs (built first with the real pipeline), then runs ``--users`` threads, each
its own browser session (a ``gradio_client.Client``), that ask questions exactly as the page does
(``/take_question`` then ``/stream_answer``). Without ``--soak-minutes`` each user asks ``--questions`` questions,
all starting at once; with it, every user keeps asking (next question as soon as the last answer is done) until the
time is up.

Reports throughput (answers per minute), p50/p95/max latency (seconds from the question to the full answer), the
outcome of every request (answered, refused, "busy, try again", client-side error, server error), the server's
resident memory (the app process and its children) sampled every 5 s — peak, after the first minute, at the end —
and the load average before and after (the 2-core machine may be shared); for a soak, whether memory is flat
(``memory_trend``: growth after a 2-minute warm-up and the slope of the last half, against fixed bounds). Server
errors are failed requests that were not a clear "busy" message plus tracebacks in the server log; the target is
zero.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib

from benchmarks.common import machine, percentile, today
from benchmarks.servers import free_port, shared_app_env, start_app

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = [
    ROOT / "assets" / "northwind_metals_sustainability_report_2023.pdf",
    ROOT / "assets" / "qinghe_energy_esg_report_2023_zh.pdf",
]
QUESTIONS = [
    "What were Northwind Metals' Scope 1 emissions in 2023?",
    "What is Northwind Metals' renewable electricity target?",
    "How much water did Northwind Metals withdraw in 2023?",
    "How many people does Northwind Metals employ?",
    "What were Northwind Metals' Scope 2 market-based emissions in 2023?",
    "青禾能源2023年的范围一排放是多少？",
    "青禾能源的碳中和目标是什么？",
    "What is Scope 3?",
    "Hello!",
    "What share of Northwind Metals' Scope 3 comes from purchased goods?",
]


# Flat memory (issue 7, item 9): after a warm-up of FLAT_WARMUP_MIN minutes, the server's RSS (highest sample per
# minute) ends at most FLAT_MAX_GROWTH_MB above the warm-up minute, and over the second half of the minutes after
# the warm-up its least-squares slope is at most FLAT_MAX_SLOPE_MB_MIN (before the fix: ~7 MB/min, +90 MB).
FLAT_WARMUP_MIN = 2
FLAT_MAX_GROWTH_MB = 10.0
FLAT_MAX_SLOPE_MB_MIN = 0.5


def memory_trend(rss_by_minute: list[float]) -> dict[str, float | bool]:
    """Growth after warm-up (MB), the slope of the last half (MB per minute) and whether both are within bounds."""
    after = rss_by_minute[FLAT_WARMUP_MIN:]
    if len(after) < 4:
        return {"growth_after_warmup_mb": float("nan"), "slope_last_half_mb_min": float("nan"), "flat": False}
    half = after[len(after) // 2 :]
    xs = range(len(half))
    mx, my = (len(half) - 1) / 2, sum(half) / len(half)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, half, strict=True)) / sum((x - mx) ** 2 for x in xs)
    growth = after[-1] - after[0]
    return {
        "growth_after_warmup_mb": round(growth, 1),
        "slope_last_half_mb_min": round(slope, 2),
        "flat": growth <= FLAT_MAX_GROWTH_MB and slope <= FLAT_MAX_SLOPE_MB_MIN,
    }


@dataclass
class Outcome:
    user: int
    question: str
    start: float  # seconds since the run started
    seconds: float
    kind: str  # answered | refused | busy | client_error | server_error
    detail: str = ""


@dataclass
class Memory:
    samples: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, MB)


def build_kb(kb: Path) -> None:
    """The sample PDFs ingested with the real pipeline (run in a child so its memory is not the app's)."""
    code = (
        "import sys; from pathlib import Path\n"
        "from rag.assistant import Assistant\nfrom rag.settings import Settings\n"
        "if __name__ == '__main__':\n"
        "    a = Assistant(Settings.from_env(kb_dir=Path(sys.argv[1])))\n"
        "    for r in a.ingest([Path(p) for p in sys.argv[2:]]):\n"
        "        assert r.ok, r.message\n"
    )
    script = kb.parent / "build_kb.py"
    script.write_text(code)
    subprocess.run(
        [sys.executable, str(script), str(kb), *map(str, SAMPLES)],
        cwd=ROOT,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def tree_rss_mb(pid: int) -> float:
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total / 2**20


def chat_text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [] if isinstance(part, dict))


def ask(client, question: str) -> tuple[str, str]:
    """One question as the page asks it; returns (kind, detail)."""
    from gradio_client.exceptions import AppError

    try:
        _, chat = client.predict(question, [], api_name="/take_question")
        chat = client.predict(chat, "all", [], None, api_name="/stream_answer")
    except AppError as exc:
        text = str(exc)
        kind = "busy" if "busy" in text.lower() or "try again" in text.lower() else "server_error"
        return kind, text[:200]
    except Exception as exc:  # the harness must keep going: record it and carry on
        text = f"{type(exc).__name__}: {exc}"
        kind = "busy" if "queue is full" in text.lower() else "client_error"
        return kind, text[:200]
    html = chat_text(chat[-1]) if chat else ""
    if "esg-error" in html:
        return "server_error", html[:200]
    if "esg-refused" in html:
        return "refused", ""
    return ("answered", "") if 'class="esg-text"' in html or "esg-answer" in html else ("client_error", html[:200])


def run(args: argparse.Namespace, work: Path) -> dict:
    from gradio_client import Client

    kb = work / "kb"
    t0 = time.perf_counter()
    build_kb(kb)
    print(f"knowledge base built in {time.perf_counter() - t0:.0f} s", flush=True)
    port = free_port()
    log = work / "app.log"
    env = shared_app_env(kb, port, work / "gradio", admin_token="load-test-admin")  # shared mode, as on the Space
    if args.queue_size is not None:
        env["ESG_QUEUE_SIZE"] = str(args.queue_size)
    url = f"http://127.0.0.1:{port}/"
    with start_app(env, port, log) as app:
        app.wait_http(timeout_s=600)
        proc = app.proc
        # Warm-up: load the LLM once, so the first user's latency is not the model load.
        warm = Client(url, verbose=False)
        t0 = time.perf_counter()
        print("warm-up:", ask(warm, QUESTIONS[0])[0], f"{time.perf_counter() - t0:.1f} s", flush=True)

        load_before = os.getloadavg()
        memory = Memory()
        outcomes: list[Outcome] = []
        lock = threading.Lock()
        stop = threading.Event()
        start = time.perf_counter()
        soak_s = args.soak_minutes * 60

        def sampler() -> None:
            while not stop.is_set():
                memory.samples.append((time.perf_counter() - start, tree_rss_mb(proc.pid)))
                stop.wait(5)

        def user(i: int) -> None:
            rng = random.Random(i)
            client = Client(url, verbose=False)
            n = 0
            while True:
                if soak_s and time.perf_counter() - start > soak_s:
                    break
                if not soak_s and n >= args.questions:
                    break
                question = rng.choice(QUESTIONS)
                t = time.perf_counter()
                kind, detail = ask(client, question)
                with lock:
                    outcomes.append(Outcome(i, question, t - start, time.perf_counter() - t, kind, detail))
                print(f"user {i:2d}: {kind:12s} {time.perf_counter() - t:6.1f} s  {question[:50]}", flush=True)
                n += 1

        watcher = threading.Thread(target=sampler, daemon=True)
        watcher.start()
        users = [threading.Thread(target=user, args=(i,)) for i in range(args.users)]
        for th in users:
            th.start()
        for th in users:
            th.join()
        wall = time.perf_counter() - start
        stop.set()
        watcher.join()
        load_after = os.getloadavg()
        alive = proc.poll() is None

    log_text = log.read_text(encoding="utf-8", errors="replace")
    tracebacks = log_text.count("Traceback (most recent call last)")
    kinds: dict[str, int] = {}
    for o in outcomes:
        kinds[o.kind] = kinds.get(o.kind, 0) + 1
    done = [o.seconds for o in outcomes if o.kind in ("answered", "refused")]
    mb = [m for _, m in memory.samples]
    after_1min = next((m for s, m in memory.samples if s >= 60), mb[0] if mb else 0.0)
    rss_by_minute = [
        round(max(m for s, m in memory.samples if int(s // 60) == minute))
        for minute in sorted({int(s // 60) for s, _ in memory.samples})
    ]
    return {
        "users": args.users,
        "mode": f"soak {args.soak_minutes:g} min" if soak_s else f"{args.questions} question(s) per user at once",
        "wall_s": round(wall, 1),
        "requests": len(outcomes),
        "outcomes": kinds,
        "throughput_per_min": round(len(done) / wall * 60, 2) if wall else 0.0,
        "p50_s": round(percentile(done, 50), 1),
        "p95_s": round(percentile(done, 95), 1),
        "max_s": round(max(done), 1) if done else float("nan"),
        "server_errors": kinds.get("server_error", 0) + tracebacks,
        "log_tracebacks": tracebacks,
        "rss_peak_mb": round(max(mb), 0) if mb else 0.0,
        "rss_after_1min_mb": round(after_1min, 0),
        "rss_end_mb": round(mb[-1], 0) if mb else 0.0,
        # Highest sample in each minute: a leak shows as a steady climb, a warm-up as an early step then flat.
        "rss_by_minute_mb": rss_by_minute,
        **(memory_trend(rss_by_minute) if soak_s else {}),
        "requests_by_minute": [
            sum(1 for o in outcomes if int(o.start // 60) == minute) for minute in range(int(wall // 60) + 1)
        ],
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
        "app_alive_at_end": alive,
        "errors": [o.detail for o in outcomes if o.kind in ("server_error", "client_error")][:5],
        "busy": [o.detail for o in outcomes if o.kind == "busy"][:3],
    }


def markdown(r: dict) -> str:
    out = ", ".join(f"{k} {v}" for k, v in sorted(r["outcomes"].items()))
    return "\n".join(
        [
            f"Date {today()}; machine: {machine()}; command: `python benchmarks/load.py {' '.join(sys.argv[1:])}`",
            "",
            "| users | mode | wall (s) | requests | outcomes | answers/min | p50 (s) | p95 (s) | max (s) "
            "| server errors | peak RSS (MB) | RSS after 1 min → end (MB) | load avg before → after |",
            "|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---|",
            f"| {r['users']} | {r['mode']} | {r['wall_s']} | {r['requests']} | {out} | {r['throughput_per_min']} | "
            f"{r['p50_s']} | {r['p95_s']} | {r['max_s']} | {r['server_errors']} | {r['rss_peak_mb']:.0f} | "
            f"{r['rss_after_1min_mb']:.0f} → {r['rss_end_mb']:.0f} | {r['load_before'][0]} → {r['load_after'][0]} |",
            "",
            f"Server RSS by minute (MB, highest sample): {', '.join(map(str, r['rss_by_minute_mb']))}",
            *(
                [
                    f"Memory after the {FLAT_WARMUP_MIN}-minute warm-up: {r['growth_after_warmup_mb']:+} MB, last half "
                    f"{r['slope_last_half_mb_min']:+} MB/min: {'flat' if r['flat'] else 'NOT flat'} (bounds "
                    f"{FLAT_MAX_GROWTH_MB:g} MB, {FLAT_MAX_SLOPE_MB_MIN:g} MB/min)"
                ]
                if "flat" in r
                else []
            ),
            f"Busy replies (first): {r['busy'][:1]}",
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--questions", type=int, default=1, help="questions per user (without --soak-minutes)")
    ap.add_argument("--soak-minutes", type=float, default=0.0, help="keep asking for this long (e.g. 10)")
    ap.add_argument("--queue-size", type=int, help="the app's queue bound (ESG_QUEUE_SIZE; default: the app's)")
    ap.add_argument("--md", type=Path, help="append the Markdown result here")
    ap.add_argument("--keep", type=Path, help="work folder to keep (knowledge base, app log)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="esg-load-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        result = run(args, work)
    print(json.dumps(result, indent=1, ensure_ascii=False))
    text = markdown(result)
    print(text)
    if args.md:
        with open(args.md, "a", encoding="utf-8") as fh:
            fh.write(text + "\n\n")
    if result["server_errors"] or not result["app_alive_at_end"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
