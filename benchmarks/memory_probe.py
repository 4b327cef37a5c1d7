"""Memory probe: where does the server's memory go as it answers questions? Prints memory every N answers.

    python benchmarks/memory_probe.py --gradio [--malloc app|glibc] [--answers 120] [--every 20] [--users 20]
    python benchmarks/memory_probe.py [--steps anyio|same] [--concurrency 4] [--sessions users|each] ...
        [--tracemalloc] [--no-trim] [--kb DIR]

Answers the load benchmark's questions back to back with the bundled small LLM over the two sample PDFs, all in
this one process, so its memory can be read from inside. ``--gradio``: the app's own UI (``ui.layout.build_ui``, queue
and concurrency as ``app.main`` sets them) served on loopback, with ``--users`` ``gradio_client`` sessions asking
from a child process as ``benchmarks/load.py`` does; answers are counted where the app releases memory after each.
Without it, the core alone (``ui.controller.Controller.ask``, no HTTP): ``--users`` users, each with its own session,
``--concurrency`` of them answering at once (the app's chat limit); with ``--steps anyio`` every step of an
answer's generator runs on anyio's worker threads exactly as Gradio runs a sync generator, so consecutive steps land
on different threads; with ``--steps same`` each answer runs on one thread. ``--sessions each`` gives every answer a
new session. After every answer the app's ``release_memory`` (glibc ``malloc_trim``) runs, as in the app, unless
``--no-trim``. ``--malloc app`` (default) first calls ``ui.server.configure_malloc()`` as ``app.main`` does; ``glibc``
leaves glibc's allocator at its defaults, as the app was before.

Every ``--every`` answers it prints: answers, seconds, resident memory (``/proc/self/smaps_rollup``: Rss and
Anonymous), glibc ``mallinfo2`` (bytes in use in the C heap, free but kept, in mmapped blocks), the process's
threads, glibc arenas reached, and with ``--tracemalloc`` Python's traced memory; at the end, the growth from the
first to the last checkpoint and (``--tracemalloc``) the ten source lines whose Python allocations grew most.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import random
import signal
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine, today
from benchmarks.load import QUESTIONS, build_kb


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _libc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _Mallinfo2
    except (OSError, AttributeError):
        return None
    return libc


LIBC = _libc()


def smaps_mb() -> dict[str, float]:
    """Rss and Anonymous of this process in MB (``/proc/self/smaps_rollup``)."""
    out = {}
    with open("/proc/self/smaps_rollup") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Anonymous"):
                out[key.lower()] = int(rest.split()[0]) / 1024
    return out


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def arenas() -> dict[str, float]:
    """glibc's arenas from ``malloc_info``: how many, and the size (MB) and free bytes of the main arena (the event
    loop's thread and the main thread) and of all the others (worker threads) together."""
    import re

    if LIBC is None:
        return {}
    buf, size = ctypes.c_char_p(), ctypes.c_size_t()
    LIBC.open_memstream.restype = ctypes.c_void_p
    stream = LIBC.open_memstream(ctypes.byref(buf), ctypes.byref(size))
    LIBC.malloc_info(0, ctypes.c_void_p(stream))
    LIBC.fclose(ctypes.c_void_p(stream))
    text = ctypes.string_at(buf, size.value).decode()
    LIBC.free(buf)
    out = {"arenas": 0.0, "main": 0.0, "main_free": 0.0, "others": 0.0, "others_free": 0.0}
    for nr, body in re.findall(r'<heap nr="(\d+)">(.*?)</heap>', text, re.S):
        current = int(re.search(r'<system type="current" size="(\d+)"', body).group(1)) / 2**20
        free = sum(int(x) for x in re.findall(r'<total type="(?:fast|rest)" count="\d+" size="(\d+)"', body)) / 2**20
        key = "main" if nr == "0" else "others"
        out["arenas"] += 1
        out[key] += current
        out[key + "_free"] += free
    return out


COLLECT = [True]  # gc.collect() before each checkpoint (--no-gc: leave collection to Python, as the app does)


def checkpoint(answers: int, start: float) -> dict[str, float]:
    if COLLECT[0]:
        gc.collect()
    row: dict[str, float] = {"answers": answers, "s": time.perf_counter() - start, **smaps_mb()}
    row["gen2"] = gc.get_stats()[2]["collections"]
    if LIBC is not None:
        mi = LIBC.mallinfo2()
        row |= {"in_use": mi.uordblks / 2**20, "free_kept": mi.fordblks / 2**20, "mmapped": mi.hblkhd / 2**20}
    row |= {"threads": threads(), **arenas()}
    if tracemalloc.is_tracing():
        row["py_traced"] = tracemalloc.get_traced_memory()[0] / 2**20
    return row


COLUMNS = [
    ("answers", "answers", "{:.0f}"),
    ("s", "s", "{:.0f}"),
    ("rss", "RSS MB", "{:.1f}"),
    ("anonymous", "anon MB", "{:.1f}"),
    ("in_use", "malloc in use MB", "{:.1f}"),
    ("free_kept", "free kept MB", "{:.1f}"),
    ("mmapped", "mmapped MB", "{:.1f}"),
    ("threads", "threads", "{:.0f}"),
    ("arenas", "arenas", "{:.0f}"),
    ("main", "main arena MB", "{:.1f}"),
    ("main_free", "its free MB", "{:.1f}"),
    ("others", "thread arenas MB", "{:.1f}"),
    ("others_free", "their free MB", "{:.1f}"),
    ("py_traced", "Python traced MB", "{:.1f}"),
    ("gen2", "full gc runs", "{:.0f}"),
]


def print_row(row: dict[str, float], header: bool = False) -> None:
    cols = [c for c in COLUMNS if c[0] in row]
    if header:
        print("| " + " | ".join(c[1] for c in cols) + " |")
        print("|" + "---:|" * len(cols))
    print("| " + " | ".join(c[2].format(row[c[0]]) for c in cols) + " |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--answers", type=int, default=120)
    ap.add_argument("--every", type=int, default=20, help="print memory every this many answers")
    ap.add_argument("--users", type=int, default=20, help="simulated users, each with its own session")
    ap.add_argument("--concurrency", type=int, default=4, help="answers running at once (the app's chat limit: 4)")
    ap.add_argument("--steps", choices=("anyio", "same"), default="anyio")
    ap.add_argument("--sessions", choices=("users", "each"), default="users")
    ap.add_argument("--tracemalloc", action="store_true")
    ap.add_argument("--no-trim", action="store_true")
    ap.add_argument("--no-gc", action="store_true", help="no gc.collect() at checkpoints (one after the last)")
    ap.add_argument("--gradio", action="store_true", help="answer through the app's Gradio server (see above)")
    ap.add_argument("--drain", action="store_true", help="with --gradio: then stop asking and answer the queue")
    ap.add_argument("--client", help=argparse.SUPPRESS)  # internal: run the gradio_client users against this URL
    ap.add_argument(
        "--malloc",
        choices=("app", "glibc"),
        default="app",
        help="app: ui.server.configure_malloc() first, as app.main does; glibc: glibc's defaults (the app before it)",
    )
    ap.add_argument("--kb", type=Path, help="knowledge base folder (built from the sample PDFs when missing)")
    args = ap.parse_args()
    if args.client:
        return clients(args.client, args.users)
    with tempfile.TemporaryDirectory(prefix="esg-probe-") as tmp:
        kb = args.kb or Path(tmp) / "kb"
        if not kb.is_dir() or not any(kb.iterdir()):
            kb.parent.mkdir(parents=True, exist_ok=True)
            build_kb(kb)
        run(args, kb)


def run(args: argparse.Namespace, kb: Path) -> None:
    import anyio
    import anyio.to_thread

    from rag.assistant import Assistant
    from rag.settings import Settings
    from rag.types import Scope
    from ui import server
    from ui.controller import Controller

    if args.malloc == "app" and not server.configure_malloc():
        raise SystemExit("ui.server.configure_malloc() had no effect (not glibc?)")
    settings = Settings.from_env(kb_dir=kb, llm="small", threads=2, admin_token="probe-admin")
    ctl = Controller(Assistant(settings))
    print(f"Date {today()}; machine: {machine()}; command: python benchmarks/memory_probe.py {' '.join(sys.argv[1:])}")
    warm = ctl.new_session()
    for _ in ctl.ask(QUESTIONS[0], warm, Scope()):  # load the models, so the first checkpoint is after warm-up
        pass
    server.release_memory()
    COLLECT[0] = not args.no_gc
    if args.tracemalloc:
        tracemalloc.start(8)
    start = time.perf_counter()
    rows = [checkpoint(0, start)]
    print_row(rows[0], header=True)
    snap0 = tracemalloc.take_snapshot() if args.tracemalloc else None
    done = [0]
    lock = threading.Lock()

    release = server.release_memory

    def finished() -> None:
        if not args.no_trim:
            release()
        with lock:
            done[0] += 1
            if done[0] % args.every == 0:
                rows.append(checkpoint(done[0], start))
                print_row(rows[-1])

    def claim() -> bool:
        with lock:
            if claim.n >= args.answers:  # type: ignore[attr-defined]
                return False
            claim.n += 1  # type: ignore[attr-defined]
            return True

    claim.n = 0  # type: ignore[attr-defined]

    def user_thread(i: int) -> None:
        rng, ui = random.Random(i), ctl.new_session()
        while claim():
            if args.sessions == "each":
                ui = ctl.new_session()
            for _ in ctl.ask(rng.choice(QUESTIONS), ui, Scope()):
                pass
            finished()

    async def user_async(i: int, slots: anyio.CapacityLimiter) -> None:
        rng, ui = random.Random(i), ctl.new_session()
        while claim():
            if args.sessions == "each":
                ui = ctl.new_session()
            async with slots:  # Gradio's concurrency limit: the other users wait in its queue
                steps = ctl.ask(rng.choice(QUESTIONS), ui, Scope())
                sentinel = object()
                while await anyio.to_thread.run_sync(next, steps, sentinel) is not sentinel:
                    pass
                await anyio.to_thread.run_sync(finished)

    if args.gradio:
        serve(args, ctl, server, finished, done)
    elif args.steps == "same":
        pool = [threading.Thread(target=user_thread, args=(i,)) for i in range(args.concurrency)]
        for th in pool:
            th.start()
        for th in pool:
            th.join()
    else:

        async def all_users() -> None:
            slots = anyio.CapacityLimiter(args.concurrency)
            async with anyio.create_task_group() as tg:
                for i in range(args.users):
                    tg.start_soon(user_async, i, slots)

        anyio.run(all_users)

    if args.no_gc:  # what a full collection frees of what Python left uncollected
        COLLECT[0] = True
        release()
        rows.append(checkpoint(done[0], start))
        print("after gc.collect() and release_memory():")
        print_row(rows[-1])
        rows.pop()
    first, last = rows[1] if len(rows) > 2 else rows[0], rows[-1]
    print(
        f"\ngrowth from {first['answers']:.0f} to {last['answers']:.0f} answers: "
        + ", ".join(f"{name} {last[key] - first[key]:+.1f}" for key, name, _ in COLUMNS[2:7] if key in last)
        + f" MB ({(last['rss'] - first['rss']) / max(1, last['answers'] - first['answers']):+.3f} MB RSS per answer)"
    )
    if snap0 is not None:
        print("\nPython allocations that grew most since the first checkpoint (tracemalloc):")
        for stat in tracemalloc.take_snapshot().compare_to(snap0, "lineno")[:10]:
            print(f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks  {stat.traceback[0]}")


def serve(args: argparse.Namespace, ctl, server, finished, done: list[int]) -> None:
    """The app's UI served on loopback from this process; ``--users`` gradio_client users in a child process ask
    until ``--answers`` answers are done. Answers are counted where the app releases memory after each one."""
    import subprocess

    from benchmarks.servers import free_port
    from ui.layout import build_ui

    server.release_memory = finished  # stream_answer calls it once per answer, finished or not
    demo = build_ui(ctl.assistant, ctl.media_dir)
    port = free_port()
    s = ctl.settings
    demo.queue(max_size=s.queue_size, default_concurrency_limit=s.concurrency).launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, show_error=True, quiet=True
    )
    cmd = [sys.executable, __file__, "--client", f"http://127.0.0.1:{port}/", "--users", str(args.users)]
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    try:
        while done[0] < args.answers:
            if child.poll() is not None:
                raise SystemExit(f"the client process ended early (status {child.returncode})")
            time.sleep(1)
        if args.drain:  # as at the end of a soak: no new questions, the queued ones are answered, users leave
            print(f"drain: users ask no more; {done[0]} answers so far", flush=True)
            child.send_signal(signal.SIGUSR1)
            child.wait(1800)
            print(f"drain done: {done[0]} answers", flush=True)
    finally:
        child.terminate()
        child.wait(30)
        demo.close()


def clients(url: str, users: int) -> None:
    """``users`` gradio_client sessions asking back to back, as ``benchmarks/load.py`` does, until killed."""
    from gradio_client import Client

    from benchmarks.load import ask

    stop = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: stop.set())  # the probe's --drain: finish the question, ask no more

    def user(i: int) -> None:
        rng, client = random.Random(i), Client(url, verbose=False)
        while not stop.is_set():
            ask(client, rng.choice(QUESTIONS))

    parent = os.getppid()
    pool = [threading.Thread(target=user, args=(i,), daemon=True) for i in range(users)]
    for th in pool:
        th.start()
    while os.getppid() == parent and any(th.is_alive() for th in pool):  # end with the probe, however it ended
        time.sleep(1)


if __name__ == "__main__":
    main()
