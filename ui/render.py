"""HTML for the chat and the result areas: answers with citation chips, source cards with the cited sentence
highlighted, the passages being read, upload results, the header and footer.

Model output and document text are untrusted: every piece is HTML-escaped, and links or images the model writes are
never rendered as live content. Nothing here imports Gradio.
"""

from __future__ import annotations

import html
import itertools
import re
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from rag.storage import Storage
from rag.text import HAN, OVERLAP_STOPWORDS, split_sentences, split_statements, strip_citations
from rag.types import Answer, Citation, Hit, IngestResult, Removed, Source
from ui.i18n import has, t

AUDIO_SUFFIXES = (".mp3", ".wav", ".m4a", ".flac")

_CITE_MARK = re.compile(r"\[(\d{1,3})\]")
_CJK = re.compile(f"[{HAN}]")
_WORD = re.compile(r"[a-z][a-z\-]{2,}|\d[\d,.]*\d%?|\d%?")


def esc(text: str) -> str:
    return html.escape(text or "", quote=True)


def _inline(text: str) -> str:
    """Escape untrusted text for HTML; keep only **bold** and line breaks. Links and images stay inert text."""
    out = esc(text)
    out = re.sub(r"\*\*(?=\S)(.+?)(?<=\S)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"(?m)^\s*[-*•]\s+", "• ", out)
    return out.replace("\r", "").replace("\n", "<br>")


def render_answer_text(
    text: str, numbers: dict[int, int] | None = None, verified: Collection[int] = (), lang: str = "en"
) -> str:
    """The answer (escaped) with ``[n]`` marks as small citation chips.

    ``numbers`` maps passage numbers to the numbers shown (sources are numbered 1, 2, ... in order of citation);
    marks not in it are dropped. Without it (while streaming) marks show as they are. Chips of ``verified`` passages
    (the figures and names of the sentence were found in them: rag/ground.py) carry a check mark.
    """

    def chip(m: re.Match[str]) -> str:
        n = int(m.group(1))
        if numbers is not None and n not in numbers:
            return ""
        shown = numbers[n] if numbers is not None else n
        if n in verified:
            title = esc(t(lang, "grounding_checked_title"))
            return f'<sup class="esg-cite esg-verified" data-verified="true" title="{title}">{shown}✓</sup>'
        return f'<sup class="esg-cite">{shown}</sup>'

    return _CITE_MARK.sub(chip, re.sub(r"[ \t]+(?=\[\d{1,3}\])", "", _inline(text)))


def searched_for_html(answer: Answer, lang: str) -> str:
    """The question retrieval searched for, when a follow-up was rewritten with the conversation (else nothing)."""
    asked, searched = answer.question.strip(), answer.standalone_question.strip()
    if not searched or searched == asked:
        return ""
    return f'<div class="esg-searched">{esc(t(lang, "searched_for"))}: <q>{esc(searched)}</q></div>'


# ------------------------------------------------------------------------------------------ citation highlighting
def removed_html(removed: Sequence[Removed], lang: str) -> str:
    """The sentences of the model's reply that were not shown, each with the reason."""
    if not removed:
        return ""
    items = "".join(
        f'<li><span class="esg-removed-reason">{esc(r.reason)}</span>: <s>{esc(strip_citations(r.sentence))}</s></li>'
        for r in removed
    )
    return (
        f'<details class="esg-removed" data-removed="{len(removed)}"><summary>{esc(t(lang, "grounding_removed"))} '
        f"({len(removed)})</summary><ul>{items}</ul></details>"
    )


def _paragraphs(text: str) -> list[list[str]]:
    """Paragraphs (the loader puts one per line, blank lines between) split into sentences."""
    paragraphs = (p.strip() for p in re.split(r"\n+", text.replace("\r", "")))
    return [split_sentences(p) for p in paragraphs if p]


_DISTINCTIVE = 6.0  # weight of a figure like 388,500 or 5.7
_MIN_SHARE = 0.3  # a highlighted sentence carries at least this share of the claim's weight


def _figure_weight(number: str) -> float:
    """A distinctive figure (388,500, 5.7 or 80%) identifies the supporting sentence; a year or a count barely."""
    year = len(number) == 4 and number[:2] in ("19", "20")
    if "." in number or number.endswith("%") or (len(number) >= 3 and not year):
        return _DISTINCTIVE
    return 1.5 if year else 1.0


def _features(text: str) -> dict[str, float]:
    """Weighted bag of a sentence's words, figures (weighted by how distinctive) and Chinese character pairs."""
    low = text.lower()
    feats: dict[str, float] = {}
    for w in _WORD.findall(low):
        if w[0].isdigit():
            number = w.replace(",", "").rstrip(".")
            feats["#" + number] = _figure_weight(number)
        elif w not in OVERLAP_STOPWORDS:  # the words citation support ignores
            feats[w] = 1.0
    cjk = "".join(_CJK.findall(text))
    for a, b in itertools.pairwise(cjk):
        feats[a + b] = 1.0
    return feats


def claims_for(answer_text: str, n: int) -> list[str]:
    """The answer's sentences that cite passage ``n`` (marks removed)."""
    return [strip_citations(s) for s in split_statements(answer_text) if f"[{n}]" in s]


def highlight_passage(passage: str, claims: Sequence[str]) -> tuple[str, str | None]:
    """The passage as HTML with the sentence best supporting each claim in ``<mark>``; also the first such sentence.

    Overlap is counted in shared words, figures (a distinctive figure outweighs several words) and Chinese character
    pairs. A marked sentence must contain the claim's distinctive figures and carry at least 30% of its weight, so
    when the model cites the wrong passage nothing is highlighted rather than a look-alike heading.
    """
    paragraphs = _paragraphs(passage)
    sentences = [s for p in paragraphs for s in p]
    marked: set[int] = set()
    for claim in claims:
        want = _features(claim)
        if not want:
            continue
        figures = {k for k, w in want.items() if w >= _DISTINCTIVE}
        best, best_score = None, 0.0
        for i, sentence in enumerate(sentences):
            have = _features(sentence)
            if figures and not figures & have.keys():
                continue  # the claim's figure is not in this sentence: it cannot be what supports the claim
            score = sum(w for k, w in want.items() if k in have)
            if score > best_score:
                best, best_score = i, score
        if best is not None and best_score >= max(2.0, _MIN_SHARE * sum(want.values())):
            marked.add(best)
    out, first, i = [], None, 0
    for paragraph in paragraphs:
        parts = []
        for sentence in paragraph:
            if i in marked:
                first = first or sentence
                parts.append(f"<mark>{esc(sentence)}</mark>")
            else:
                parts.append(esc(sentence))
            i += 1
        out.append(("" if _CJK.search(" ".join(paragraph)[:200]) else " ").join(parts))
    return "<br>".join(out), first


# ------------------------------------------------------------------------------------------------ chat messages
def reading_summary(hits: Sequence[Hit]) -> str:
    """The passages being read, grouped by file: ``report.pdf p. 2, 3 · briefing.mp4 ▶ 00:15–00:45``."""
    by_file: dict[str, list[str]] = {}
    for h in hits:
        src = h.chunk.source
        if src.is_media:
            where = src.label().split(" ▶ ", 1)[-1]
        elif src.page is not None:
            where = str(src.page)
        else:
            where = ""
        spots = by_file.setdefault(src.file, [])
        if where and where not in spots:
            spots.append(where)
    parts = []
    for file, spots in by_file.items():
        if not spots:
            parts.append(file)
        elif spots[0][0].isdigit() and ":" not in spots[0]:
            parts.append(f"{file} p. {', '.join(sorted(spots, key=int))}")
        else:
            parts.append(f"{file} ▶ {', '.join(spots)}")
    return " · ".join(parts)


class Renderer:
    """Builds the HTML of an assistant message. ``media_url(source)`` gives a playable URL for media sources."""

    def __init__(self, media_url: Callable[[Source], str | None]) -> None:
        self.media_url = media_url

    def badge(self, route: str | None, lang: str, refused: bool = False) -> str:
        if not route:
            return ""
        label = t(lang, f"route_{route}") if has(f"route_{route}") else route
        extra = f' <span class="esg-badge esg-refused">{esc(t(lang, "refused"))}</span>' if refused else ""
        return f'<span class="esg-badge esg-route-{esc(route)}" data-route="{esc(route)}">{esc(label)}</span>{extra}'

    def pending(self, route: str | None, hits: Sequence[Hit], text: str, lang: str) -> str:
        """While streaming: badge, the passages being read (not yet sources), and the text so far."""
        parts = ['<div class="esg-answer esg-streaming">', f'<div class="esg-meta">{self.badge(route, lang)}</div>']
        if hits:
            summary = esc(reading_summary(hits))
            parts.append(f'<div class="esg-reading">{esc(t(lang, "reading"))}: {summary}</div>')
        if text:
            parts.append(f'<div class="esg-text">{render_answer_text(text)}<span class="esg-caret"></span></div>')
        else:
            parts.append(f'<div class="esg-text esg-muted">{esc(t(lang, "thinking"))}</div>')
        parts.append("</div>")
        return "".join(parts)

    def waiting(self, status: str, lang: str) -> str:
        """Before the answer can start: the models are still being prepared (``status`` says which)."""
        return (
            '<div class="esg-answer esg-streaming esg-waiting"><div class="esg-meta"></div>'
            f'<div class="esg-text esg-muted">{esc(status)}</div></div>'
        )

    def final(self, answer: Answer, lang: str) -> str:
        """The finished answer: badge, text with citation chips, and the cited passages only."""
        numbers = {c.n: i for i, c in enumerate(answer.citations, 1)}
        verified = {c.n for c in answer.citations if c.verified}
        parts = [
            f'<div class="esg-answer" data-route="{esc(answer.route)}">',
            f'<div class="esg-meta">{self.badge(answer.route, lang, answer.refused)}</div>',
            searched_for_html(answer, lang),
            f'<div class="esg-text">{render_answer_text(answer.text, numbers, verified, lang)}</div>',
            removed_html(answer.removed, lang),
        ]
        if answer.citations:
            parts.append(f'<div class="esg-sources"><div class="esg-sources-title">{esc(t(lang, "sources"))}</div>')
            parts.extend(self.source_card(c, numbers[c.n], answer.text, lang) for c in answer.citations)
            parts.append("</div>")
        parts.append("</div>")
        return "".join(parts)

    def source_card(self, citation: Citation, shown: int, answer_text: str, lang: str) -> str:
        """One cited passage; ``shown`` is its number in the answer as displayed."""
        src = citation.source
        body, quote = highlight_passage(citation.hit.chunk.text, claims_for(answer_text, citation.n))
        check = ""
        if citation.verified:
            check = (
                f'<span class="esg-verified" title="{esc(t(lang, "grounding_checked_title"))}">'
                f"{esc(t(lang, 'grounding_checked'))}</span>"
            )
        head = (
            f'<div class="esg-source-head"><span class="esg-n">{shown}</span>'
            f'<span class="esg-label">{esc(src.label())}</span>{check}</div>'
        )
        player = ""
        if src.is_media:
            url = self.media_url(src)
            if url:
                end = f",{src.end_s:.2f}" if src.end_s is not None else ""
                tag = "audio" if Path(src.file).suffix.lower() in AUDIO_SUFFIXES else "video"
                player = (
                    f'<{tag} class="esg-player" controls preload="metadata" '
                    f'src="{esc(url)}#t={src.start_s:.2f}{end}"></{tag}>'
                )
        preview = f'<div class="esg-quote">“{esc(quote)}”</div>' if quote else ""
        details = (
            f'<details class="esg-passage"><summary>{esc(t(lang, "passage"))}</summary>'
            f'<div class="esg-passage-text">{body}</div></details>'
        )
        return f'<div class="esg-source" data-label="{esc(src.label())}">{head}{player}{preview}{details}</div>'

    def error(self, message: str, lang: str) -> str:
        return f'<div class="esg-answer esg-error"><strong>{esc(t(lang, "error"))}:</strong> {esc(message)}</div>'


# ------------------------------------------------------------------------------------------------ other areas
_MD_IMAGE_LINE = re.compile(r"(?m)^!\[[^\]\n]*\]\([^)\n]*\)[ \t]*\n?")


def report_for_display(markdown: str) -> str:
    """The evaluation report's Markdown made inert for display: its chart lines dropped (the charts are shown beside
    it), and the model's answers (untrusted, quoted in the tables) unable to form links, images or HTML."""
    text = _MD_IMAGE_LINE.sub("", markdown)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("[", "\\[").replace("]", "\\]")
    text = re.sub(r"(?i)\b(https?|ftp)://", r"\1\\://", text)  # no bare-URL autolinks
    return re.sub(r"(?i)\bwww\.", r"www\\.", text)


def results_html(results: Sequence[IngestResult]) -> str:
    """One line per ingested file: ✓ or ✗, its name and the one-line message."""
    lines = []
    for r in results:
        cls, mark = ("ok", "✓") if r.ok else ("fail", "✗")
        lines.append(f'<div class="{cls}">{mark}&nbsp;<strong>{esc(r.file)}</strong>: {esc(r.message)}</div>')
    return '<div class="esg-results">' + "".join(lines) + "</div>"


def lines_html(lines: Sequence[str]) -> str:
    return '<div class="esg-results">' + "".join(f"<div>{esc(x)}</div>" for x in lines) + "</div>"


LOGO = (
    '<svg viewBox="0 0 24 24" width="26" height="26" fill="none" stroke="white" stroke-width="2" '
    'stroke-linecap="round" stroke-linejoin="round"><path d="M11 20A7 7 0 0 1 9.8 6.1C15.5 5 17 4.48 19 2c1 2 2 '
    '4.18 2 8 0 5.5-4.78 10-10 10Z"/><path d="M2 21c0-3 1.85-5.36 5.08-6C9.5 14.52 12 13 13 12"/></svg>'
)


def header_html(lang: str) -> str:
    return (
        f'<div id="esg-header"><div class="esg-logo">{LOGO}</div><div>'
        f"<h1>{esc(t(lang, 'title'))}</h1><p>{t(lang, 'subtitle')}</p></div></div>"
    )


def footer_text(lang: str, storage: Storage | None = None) -> str:
    """The footer: the sample/model caveat, then (when known) whether the knowledge base survives a restart."""
    text = t(lang, "footer")
    if storage is not None:
        note = t(lang, f"storage_{storage.kind}").format(root=storage.root, kb=storage.kb_dir)
        text = f"{text}\n\n{note}"
    return text
