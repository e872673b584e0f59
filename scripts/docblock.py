"""The generated blocks of the docs: text between two marker comments that a script rewrites."""

from __future__ import annotations

from pathlib import Path


def replace_block(path: Path, start: str, end: str, body: str) -> bool:
    """Replace what stands between ``start`` and ``end`` in ``path`` with ``body``; False when a marker is missing."""
    text = path.read_text()
    if start not in text or end not in text:
        return False
    head, rest = text.split(start, 1)
    path.write_text(f"{head}{start}\n{body}{end}{rest.split(end, 1)[1]}")
    return True
