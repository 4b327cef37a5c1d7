"""Server memory under sustained load: every answer frees cyclic garbage and hands the C heap's free pages back to
the operating system, and large blocks stay out of the worker threads' heaps.

The soak (``python benchmarks/load.py --soak-minutes 10``) and ``benchmarks/memory_probe.py`` measure the effect
on the running server (docs/bench/reliability.md); these tests check the mechanisms: ``ui.server.release_memory`` really
frees garbage in reference cycles and returns freed heap memory on glibc, the chat handler calls it once per
answer, whether it finishes, fails or is abandoned, ``ui.server.configure_malloc`` keeps large blocks in their own
mappings, and the soak's "flat" verdict.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rag.llm import ScriptedLLM
from ui import server

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "What were Northwind Metals' Scope 1 emissions in 2023?"


def stream_answer(demo):
    fns = {f.fn for f in demo.fns.values() if f.name == "stream_answer"}  # wired to Enter and to the Ask button
    assert len(fns) == 1
    return fns.pop()


@pytest.fixture
def releases(monkeypatch):
    """Records each ``release_memory`` call with the number of chat snapshots streamed before it."""
    calls: list[int] = []
    streamed = [0]
    monkeypatch.setattr(server, "release_memory", lambda: calls.append(streamed[0]) or True)
    return calls, streamed


def test_each_answer_releases_memory_after_its_last_snapshot(make_app, releases):
    calls, streamed = releases
    _, demo, ctl = make_app(samples=True, llm=ScriptedLLM(lambda m: "Scope 1 emissions were 388,500 tCO2e [1]."))
    ui = ctl.new_session()
    for n in (1, 2):
        snapshots: list[str] = []
        for chat in stream_answer(demo)(QUESTION, [], ui, "all", [], None):
            snapshots.append(chat[-1]["content"])
            streamed[0] += 1
            assert len(calls) == n - 1, "memory released before the answer was complete"
        assert "esg-source" in snapshots[-1] and len(snapshots) > 3
        assert len(calls) == n and calls[-1] == streamed[0]  # released once, after the final snapshot


def test_a_failed_or_abandoned_answer_releases_memory_too(make_app, releases):
    import gradio as gr

    calls, _ = releases
    _, demo, ctl = make_app(samples=True, llm=ScriptedLLM(lambda m: "Scope 1 emissions were 388,500 tCO2e [1]."))
    ui = ctl.new_session()
    # A scope the user left incomplete: a clear error, and the memory is still released.
    with pytest.raises(gr.Error, match="choose at least one document"):
        for _ in stream_answer(demo)(QUESTION, [], ui, "docs", [], None):
            pass
    assert len(calls) == 1
    # The visitor closes the page mid-answer: Gradio closes the generator.
    answer = stream_answer(demo)(QUESTION, [], ui, "all", [], None)
    next(answer)
    answer.close()
    assert len(calls) == 2
    # An empty question is not an answer: nothing to release.
    assert list(stream_answer(demo)("", [], ui, "all", [], None)) == []
    assert len(calls) == 2


def test_release_memory_frees_llama_samplers_left_in_reference_cycles():
    """llama-cpp-python builds a sampler per generation that references itself, so only Python's cycle collector
    frees its C memory, and under load its full collections come rarely; each answer's release_memory runs one."""
    import gc
    import weakref

    from llama_cpp._internals import LlamaSampler

    enabled = gc.isenabled()
    gc.disable()  # as between Python's rare full collections
    try:
        sampler = LlamaSampler()
        sampler.add_greedy()
        alive = weakref.ref(sampler)
        del sampler
        assert alive() is not None, "the sampler no longer references itself: this test shows nothing"
        server.release_memory()
        assert alive() is None
    finally:
        if enabled:
            gc.enable()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim")
def test_release_memory_returns_freed_heap_pages_to_the_os():
    """Memory freed in a worker thread's arena stays resident until released; ``release_memory`` gives it back.

    A thread allocates 200 MB in 100 KB blocks (below glibc's mmap threshold, as llama.cpp's per-token arrays end up
    once the threshold adapts), keeps a small block after each so the arena cannot shrink from its top, and frees
    the large ones. Run in a child process so the measurement is not disturbed by the test session's own heap.
    """
    code = textwrap.dedent(
        """
        import ctypes, threading
        from ui import server

        libc = ctypes.CDLL("libc.so.6")
        libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
        libc.free.argtypes = [ctypes.c_void_p]

        def rss_mb():
            with open("/proc/self/status") as fh:
                return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024

        pins = []

        def work():
            big = []
            for _ in range(2000):
                p = libc.malloc(100_000)
                ctypes.memset(p, 1, 100_000)  # touch the pages: they count as resident
                big.append(p)
                pins.append(libc.malloc(64))
            for p in big:
                libc.free(p)

        t = threading.Thread(target=work)
        t.start()
        t.join()
        held = rss_mb()
        released = server.release_memory()
        print(f"{held:.0f} {rss_mb():.0f} {released}")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    held, after, released = proc.stdout.split()
    assert released == "True"
    assert float(held) - float(after) > 150, f"RSS {held} MB -> {after} MB: the freed 200 MB were not returned"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_configure_malloc_keeps_large_blocks_out_of_worker_threads_heaps():
    """Once a large block has been freed, glibc carves blocks of up to its size (llama.cpp's 1.8 MB per-token list)
    from the worker threads' heaps, where they fragment under load; ``configure_malloc`` (called first by
    ``app.main``) keeps every block of 128 KB or more in its own mapping, returned to the OS when freed.

    A 30 MB block is allocated and freed first (as loading a model does); then a worker thread allocates twenty
    2 MB blocks, touches and frees them. Each case runs in a fresh child process.
    """
    code = textwrap.dedent(
        """
        import ctypes, sys, threading
        from ui import server

        configured = server.configure_malloc() if sys.argv[1] == "fixed" else None

        class Mallinfo2(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks "
                        "fordblks keepcost".split()]

        libc = ctypes.CDLL("libc.so.6")
        libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
        libc.free.argtypes = [ctypes.c_void_p]
        libc.mallinfo2.restype = Mallinfo2

        def rss_mb():
            with open("/proc/self/status") as fh:
                return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024

        libc.free(libc.malloc(30 * 2**20))

        def work():
            mapped = libc.mallinfo2().hblkhd
            blocks = [libc.malloc(2 * 2**20) for _ in range(20)]
            for p in blocks:
                ctypes.memset(p, 1, 2 * 2**20)
            mapped = (libc.mallinfo2().hblkhd - mapped) / 2**20
            held = rss_mb()
            for p in blocks:
                libc.free(p)
            print(configured, f"{mapped:.0f}", f"{held - rss_mb():.0f}")

        t = threading.Thread(target=work)
        t.start()
        t.join()
        """
    )
    result = {}
    for case in ("default", "fixed"):
        proc = subprocess.run(
            [sys.executable, "-c", code, case], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        configured, mapped, returned = proc.stdout.split()
        result[case] = (float(mapped), float(returned))
        assert configured == ("True" if case == "fixed" else "None")
    # glibc's default: the blocks sit in the worker's heap and stay resident when freed (the cause of the soak's
    # growth); fixed: each block is its own mapping and the 40 MB go back to the OS on free.
    assert result["default"] == (0, pytest.approx(0, abs=5)), f"default glibc (mapped, returned MB): {result}"
    assert result["fixed"][0] >= 40 and result["fixed"][1] > 35, f"configure_malloc (mapped, returned MB): {result}"


def test_soak_memory_is_flat_only_without_a_late_trend():
    from benchmarks.load import memory_trend

    session3 = [958, 960, 972, 980, 985, 992, 996, 1004, 1007, 1008, 1018, 1030, 1042, 1048]  # soak 4, before the fix
    assert memory_trend(session3) == {"growth_after_warmup_mb": 76, "slope_last_half_mb_min": 9.11, "flat": False}
    warm_then_flat = [900, 940, 950, 951, 950, 952, 951, 951, 952, 951, 952, 951]
    assert memory_trend(warm_then_flat)["flat"]
    slow_creep = [950 + 0.8 * minute for minute in range(14)]  # +8 MB: small, but still climbing
    assert not memory_trend(slow_creep)["flat"]
    assert not memory_trend([950, 951, 952, 953])["flat"]  # too short to tell
