"""Transcription benchmark: word error rate and real-time factor of the bundled Whisper base on the shared clips.

    python benchmarks/transcription.py [--threads 2] [--beam 1] [--sweep] [--write docs/bench/transcription.md]

Clips: ``../shared/testdata/audio/`` with reference transcripts in ``transcripts.jsonl`` (read at run time, never
copied). Each clip is transcribed on its own, the way an upload is, with automatic language detection. Then all
clips are joined with 2 s pauses into one long recording ("long-form"), which is how real briefings look: Whisper's
cost is per 30 s window, so a 2 s clip pays for a whole window and per-clip RTF overstates the cost of real media.
The bundled sample video (assets/northwind_metals_briefing_2023.mp4, 72 s, synthetic voice) is timed through the
full path (AAC decode, VAD, Whisper) for RTF only: its script spells numbers out, so WER against it would measure
number formatting.

WER: word-level Levenshtein distance / reference words, after lower-casing and replacing punctuation by spaces
(Chinese is scored per character). "Set WER" pools errors over all clips. Four speechbrain labels look phonetically
misspelt; their suspected correct text (``reference_suspected_correct``) gives a second WER column.

RTF: wall-clock transcription time (decode + VAD + Whisper, model already loaded, after one warm-up run) divided
by the audio duration, on ``--threads`` CPU threads. ``--sweep`` compares beam sizes and VAD settings.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import load_jsonl, machine, testdata, today
from rag.media import SAMPLE_RATE, load_audio
from rag.settings import Settings
from rag.text import is_cjk_char
from rag.whisper import WhisperTranscriber

ROOT = Path(__file__).resolve().parent.parent
BRIEFING = ROOT / "assets" / "northwind_metals_briefing_2023.mp4"
# Figures the briefing's script states (assets/make_samples.py), as Whisper writes them.
BRIEFING_FIGURES = ("2023", "388,500", "5.7%", "16%", "80%", "2028", "5.8 million", "2045")
PAUSE_S = 2.0
LABEL_MARGIN = 1.0  # mean log-prob per token: a reference within this of an unrelated sentence is flagged

log = logging.getLogger("bench")


# --- word error rate


def normalise(text: str) -> list[str]:
    """Lower-case, punctuation to spaces, split into words; CJK characters count as words of their own."""
    out: list[str] = []
    word = ""
    for ch in text.lower():
        if is_cjk_char(ch):
            if word:
                out.append(word)
                word = ""
            out.append(ch)
        elif ch.isalnum() or ch == "'":
            word += ch
        else:
            if word:
                out.append(word)
            word = ""
    if word:
        out.append(word)
    return [w.strip("'") for w in out if w.strip("'")]


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance over tokens (substitutions + deletions + insertions)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, start=1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def wer(reference: str, hypothesis: str) -> tuple[int, int]:
    """(errors, reference words)."""
    ref, hyp = normalise(reference), normalise(hypothesis)
    return edit_distance(ref, hyp), len(ref)


# --- runs


def run_clips(transcriber: WhisperTranscriber, clips: list[dict], audio_dir: Path) -> list[dict]:
    rows = []
    for clip in clips:
        path = audio_dir / clip["audio"]
        start, cpu = time.perf_counter(), time.process_time()
        transcript = transcriber.transcribe(path)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        errors, words = wer(clip["reference"], transcript.text)
        alt = clip.get("reference_suspected_correct") or clip["reference"]
        errors_alt, words_alt = wer(alt, transcript.text)
        rows.append(
            {
                "clip": clip["audio"],
                "duration_s": transcript.duration_s,
                "seconds": elapsed,
                "cpu_s": cpu,
                "language": f"{transcript.language} {transcript.language_probability:.2f}",
                "errors": errors,
                "words": words,
                "errors_alt": errors_alt,
                "words_alt": words_alt,
                "text": transcript.text,
                "reference": clip["reference"],
            }
        )
        log.info("%-38s %5.2fs  WER %.2f  %s", clip["audio"], elapsed, errors / max(1, words), transcript.text)
    return rows


def long_form(transcriber: WhisperTranscriber, clips: list[dict], audio_dir: Path, workdir: Path) -> dict:
    """All clips joined with pauses into one WAV, transcribed in one call."""
    pause = np.zeros(int(PAUSE_S * SAMPLE_RATE), dtype=np.int16)
    parts = []
    for clip in clips:
        parts += [load_audio(audio_dir / clip["audio"], max_s=3600), pause]
    pcm = np.concatenate(parts)
    path = workdir / "all_clips.wav"
    _write_wav(path, pcm)
    start, cpu = time.perf_counter(), time.process_time()
    transcript = transcriber.transcribe(path)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    ref = " ".join(c["reference"] for c in clips)
    alt = " ".join(c.get("reference_suspected_correct") or c["reference"] for c in clips)
    errors, words = wer(ref, transcript.text)
    errors_alt, words_alt = wer(alt, transcript.text)
    return {
        "duration_s": len(pcm) / SAMPLE_RATE,
        "seconds": elapsed,
        "cpu_s": cpu,
        "errors": errors,
        "words": words,
        "errors_alt": errors_alt,
        "words_alt": words_alt,
        "text": transcript.text,
    }


def briefing(transcriber: WhisperTranscriber) -> dict | None:
    if not BRIEFING.is_file():
        return None
    start, cpu = time.perf_counter(), time.process_time()
    transcript = transcriber.transcribe(BRIEFING)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    found = [f for f in BRIEFING_FIGURES if f in transcript.text]
    return {
        "duration_s": transcript.duration_s,
        "seconds": elapsed,
        "cpu_s": cpu,
        "segments": len(transcript.segments),
        "figures": f"{len(found)}/{len(BRIEFING_FIGURES)} figures right",
        "missed": [f for f in BRIEFING_FIGURES if f not in found],
        "text": transcript.text,
    }


def label_check(transcriber: WhisperTranscriber, rows: list[dict], clips: list[dict], audio_dir: Path) -> list[dict]:
    """For clips with WER > 0.25: the model's mean per-token log-probability of each candidate text given the audio.

    A reference far less likely than the transcript (and as unlikely as an unrelated sentence) suggests the label
    does not match the audio. Uses CTranslate2's forced alignment; benchmark-only use of faster-whisper internals.
    """
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.tokenizer import Tokenizer

    model = transcriber._get()
    tokenizer = Tokenizer(model.hf_tokenizer, True, task="transcribe", language="en")
    control = "The birch canoe slid on the smooth planks."
    out = []
    by_name = {c["audio"]: c for c in clips}
    for row in rows:
        if row["errors"] / row["words"] <= 0.25:
            continue
        clip = by_name[row["clip"]]
        audio = load_audio(audio_dir / clip["audio"], max_s=60).astype(np.float32) / 32768.0
        features = model.feature_extractor(audio)
        encoded = model.encode(pad_or_trim(features))
        candidates = {"transcript": row["text"], "reference": clip["reference"]}
        if clip.get("reference_suspected_correct"):
            candidates["suspected correct"] = clip["reference_suspected_correct"]
        candidates["unrelated control"] = control
        scores = {}
        for label, text in candidates.items():
            ids = tokenizer.encode(" " + text.strip())
            result = model.model.align(encoded, tokenizer.sot_sequence, [ids], features.shape[-1])
            scores[label] = (text, float(np.log(np.array(result[0].text_token_probs)).mean()))
        # The label does not match the audio when the model finds it no likelier than an unrelated sentence.
        mismatch = scores["reference"][1] < scores["unrelated control"][1] + LABEL_MARGIN
        out.append({"clip": clip["audio"], "scores": scores, "mismatch": mismatch})
    return out


def _write_wav(path: Path, pcm: np.ndarray) -> None:
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.astype("<i2").tobytes())


def summary(rows: list[dict]) -> dict:
    audio = sum(r["duration_s"] for r in rows)
    seconds = sum(r["seconds"] for r in rows)
    cpu = sum(r["cpu_s"] for r in rows)
    return {
        "wer": sum(r["errors"] for r in rows) / sum(r["words"] for r in rows),
        "wer_alt": sum(r["errors_alt"] for r in rows) / sum(r["words_alt"] for r in rows),
        "rtf": seconds / audio,
        "audio_s": audio,
        "seconds": seconds,
        "cpu_s": cpu,
    }


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


# --- report


def markdown(
    config: dict, rows: list[dict], overall: dict, lf: dict, brief: dict | None, sweep: list[dict], labels: list[dict]
) -> str:
    lines = [
        "## Transcription (Whisper base, faster-whisper int8, CPU)",
        "",
        f"- Date: {today()}",
        f"- Machine: {machine()}; load average before/after the run: {config['load_before']} / {config['load_after']}"
        " (the 2 cores are shared with other work, so timings are upper bounds)",
        f"- Command: `{config['command']}`",
        f"- Settings: {config['settings']}; model load (not in RTF) {config['load_s']:.1f} s",
        "- Data: `../shared/testdata/audio/` (12 English clips, 1.8-11 s) with `transcripts.jsonl` references",
        "",
        "| clip | audio s | wall s | RTF (wall) | CPU s / audio s | language | WER | WER (suspected-correct ref) "
        "| transcript |",
        "|---|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['clip']} | {r['duration_s']:.1f} | {r['seconds']:.2f} | {r['seconds'] / r['duration_s']:.2f} | "
            f"{r['cpu_s'] / r['duration_s']:.2f} | {r['language']} | {r['errors'] / r['words']:.2f} | "
            f"{r['errors_alt'] / r['words_alt']:.2f} | {r['text']} |"
        )
    lines += [
        f"| **set, clip by clip** | {overall['audio_s']:.1f} | {overall['seconds']:.1f} | **{overall['rtf']:.2f}** | "
        f"{overall['cpu_s'] / overall['audio_s']:.2f} | | **{overall['wer']:.3f}** | **{overall['wer_alt']:.3f}** | |",
        f"| **set as one long recording** (2 s pauses) | {lf['duration_s']:.1f} | {lf['seconds']:.1f} | "
        f"**{lf['seconds'] / lf['duration_s']:.2f}** | {lf['cpu_s'] / lf['duration_s']:.2f} | | "
        f"**{lf['errors'] / lf['words']:.3f}** | "
        f"**{lf['errors_alt'] / lf['words_alt']:.3f}** | |",
    ]
    if brief:
        lines.append(
            f"| assets/{BRIEFING.name} (mp4, AAC) | {brief['duration_s']:.1f} | {brief['seconds']:.1f} | "
            f"**{brief['seconds'] / brief['duration_s']:.2f}** | {brief['cpu_s'] / brief['duration_s']:.2f} | | "
            f"n/a | n/a | {brief['figures']} (missed: {', '.join(brief['missed']) or 'none'}) |"
        )
    lines += [
        "",
        "Targets: WER ≤ 0.15 on the whole set, RTF ≤ 0.3 on 2 cores. Per-clip RTF is dominated by the fixed cost of",
        "a 30 s Whisper window (plus language detection) paid by every 2 s clip; the long-form rows are what an",
        "uploaded briefing costs. CPU s / audio s is process CPU time (all threads) per second of audio: it barely",
        "changes when other work shares the cores, and on an idle 2-core machine wall RTF is about half of it or more.",
    ]
    if labels:
        lines += [
            "",
            "Label check for clips with WER > 0.25: mean log-probability per token that the model gives each text for",
            "that audio (forced alignment; 0 is certain, lower is less likely):",
            "",
            "| clip | text | mean log p |",
            "|---|---|---:|",
        ]
        for item in labels:
            for label, (text, score) in item["scores"].items():
                lines.append(f"| {item['clip']} | {label}: {text} | {score:.2f} |")
        flagged = {item["clip"] for item in labels if item["mismatch"]}
        if flagged:
            kept = summary([r for r in rows if r["clip"] not in flagged])
            lines += [
                "",
                f"Flagged as not matching its audio (reference within {LABEL_MARGIN} of the unrelated control): "
                f"{', '.join(sorted(flagged))}. Set WER without it: **{kept['wer']:.3f}** "
                f"(suspected-correct references: **{kept['wer_alt']:.3f}**).",
            ]
    if sweep:
        lines += [
            "",
            "Settings sweep (same clips; clip-by-clip WER and RTF, long-form RTF, and the briefing video):",
            "",
            "| beam | VAD min silence ms | VAD threshold | set WER | WER (suspected-correct) | RTF clips "
            "| RTF long-form | CPU s / audio s long-form | briefing |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for s in sweep:
            lines.append(
                f"| {s['beam']} | {s['min_silence']} | {s['threshold']} | {s['wer']:.3f} | {s['wer_alt']:.3f} | "
                f"{s['rtf']:.2f} | {s['rtf_long']:.2f} | {s['cpu_long']:.2f} | {s['briefing']} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--beam", type=int, default=None, help="override the transcriber's beam size")
    parser.add_argument("--sweep", action="store_true", help="also compare beam sizes and VAD settings")
    parser.add_argument("--write", type=Path, default=None, help="write the markdown report here")
    parser.add_argument("--json", type=Path, default=None, help="write raw results as JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)

    audio_dir = testdata() / "audio"
    clips = load_jsonl(audio_dir / "transcripts.jsonl")
    settings = Settings.from_env(threads=args.threads)
    load_before = load_average()
    base = WhisperTranscriber(
        "base", model_cache=settings.model_cache, threads=args.threads, max_s=settings.max_media_s
    )
    start = time.perf_counter()
    base.load()
    load_s = time.perf_counter() - start
    if args.beam is not None:
        base = base.with_options(beam_size=args.beam)
    base.transcribe(audio_dir / clips[0]["audio"])  # warm-up: VAD session, allocator, caches

    with tempfile.TemporaryDirectory() as tmp:
        rows = run_clips(base, clips, audio_dir)
        overall = summary(rows)
        lf = long_form(base, clips, audio_dir, Path(tmp))
        brief = briefing(base)
        labels = label_check(base, rows, clips, audio_dir)
        sweep = []
        if args.sweep:
            for beam, min_silence, threshold in [
                (1, 1000, 0.5),
                (5, 1000, 0.5),
                (5, 2000, 0.5),
                (5, 500, 0.5),
                (5, 1000, 0.35),
            ]:
                variant = base.with_options(beam_size=beam, vad_min_silence_ms=min_silence, vad_threshold=threshold)
                s = summary(run_clips(variant, clips, audio_dir))
                lfv = long_form(variant, clips, audio_dir, Path(tmp))
                bv = briefing(variant) or {"figures": "n/a", "seconds": float("nan"), "duration_s": 1.0}
                sweep.append(
                    {
                        "beam": beam,
                        "min_silence": min_silence,
                        "threshold": threshold,
                        "wer": s["wer"],
                        "wer_alt": s["wer_alt"],
                        "rtf": s["rtf"],
                        "rtf_long": lfv["seconds"] / lfv["duration_s"],
                        "cpu_long": lfv["cpu_s"] / lfv["duration_s"],
                        "briefing": f"{bv['figures']}, RTF {bv['seconds'] / bv['duration_s']:.2f}",
                    }
                )
                log.info("sweep %s", sweep[-1])
    config = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "settings": f"beam {base.beam_size}, VAD threshold {base.vad_threshold}, min silence "
        f"{base.vad_min_silence_ms} ms, pad {base.vad_pad_ms} ms, no-speech drop > {base.no_speech_drop}, "
        f"{args.threads} threads",
        "load_s": load_s,
        "load_before": load_before,
        "load_after": load_average(),
    }
    report = markdown(config, rows, overall, lf, brief, sweep, labels)
    print(report)
    print(f"long-form transcript: {lf['text']}")
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(report, encoding="utf-8")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "clips": rows,
                    "overall": overall,
                    "long_form": lf,
                    "briefing": brief,
                    "sweep": sweep,
                    "labels": labels,
                },
                indent=1,
                ensure_ascii=False,
            )
        )


if __name__ == "__main__":
    main()
