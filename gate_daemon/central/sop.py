"""The fleet page's SOP cards: one Markdown file per condition, in the folder the venue writes.

``[central] sop = "sop/"`` names the folder; each condition
(``gate_daemon.core.fleet.Condition``) has its card ``sop/FILE.md`` (``FILES``: the
condition's name, ``gate_`` before the two that are about the gate as a whole), and
``central_down.md`` is also the one the page shows when it cannot reach the central.
Cards are rendered on the server with markdown-it-py (the ``central`` extra) in its
CommonMark preset with raw HTML off, so a card's ``<script>`` is shown as text; links to
``javascript:`` and the like are dropped. Without markdown-it-py a card is shown as
escaped plain text. A card is read again when its file changes, so the venue edits it
while the central runs.
"""

from __future__ import annotations

import html
import logging
import stat as stat_module
from collections.abc import Callable
from pathlib import Path

from gate_daemon.core.fleet import Condition

log = logging.getLogger(__name__)

#: A card's size, at most: a card is a few lines for a person under pressure.
MAX_CARD = 64 * 1024
#: Each condition's card file, without ``.md``.
FILES = {
    str(c): {Condition.UNREACHABLE: "gate_unreachable", Condition.OUT_OF_SERVICE: "gate_out_of_service"}.get(
        c, str(c)
    )
    for c in Condition
}


def _renderer() -> Callable[[str], str]:
    try:
        from markdown_it import MarkdownIt
    except ImportError:  # the central's extra is not installed: plain text, escaped
        log.warning(
            "markdown-it-py is not installed (pip install gate-daemon[central]): SOP cards as plain text"
        )
        return lambda text: f"<pre>{html.escape(text)}</pre>"
    md = MarkdownIt("commonmark", {"html": False})
    return md.render


class SopCards:
    """The cards of one folder, rendered once per version of each file."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        if folder is not None and not folder.is_dir():
            log.warning("SOP cards: %s is not a folder; the fleet page shows no cards", folder)
        self._render = _renderer()
        self._cache: dict[str, tuple[tuple[int, int], str]] = {}

    def card(self, name: str) -> str | None:
        """The card of condition ``name`` as HTML; None without a folder, for another name or no such file."""
        if self.folder is None or name not in FILES:
            return None
        path = self.folder / f"{FILES[name]}.md"
        try:
            stat = path.stat()
        except OSError:
            return None
        if not stat_module.S_ISREG(stat.st_mode):
            return _problem(f"{path} is not a regular file")
        stamp = (stat.st_mtime_ns, stat.st_size)
        cached = self._cache.get(name)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        shown = self._read(path)
        self._cache[name] = (stamp, shown)
        return shown

    def _read(self, path: Path) -> str:
        try:
            with path.open("rb") as handle:
                data = handle.read(MAX_CARD + 1)
        except OSError as exc:
            return _problem(f"cannot read {path}: {exc.strerror or exc}")
        if len(data) > MAX_CARD:
            return _problem(f"{path} is over {MAX_CARD // 1024} KiB; keep a card to a few lines")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return _problem(f"{path} is not UTF-8 text (byte {exc.start})")
        return self._render(text)


def _problem(text: str) -> str:
    log.warning("SOP card: %s", text)
    return f'<p class="sop-problem">{html.escape(text)}</p>'
