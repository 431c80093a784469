"""Writing reports and records: one indented JSON document, or JSON Lines (one object a line).

Shared by evaluation (reports, per-example samples) and the Medico submission files, so every
file gi_sdk.train writes is UTF-8 with non-ASCII text kept as it is.
"""
from __future__ import annotations

import json
from pathlib import Path


def write_json(path, document, indent: int = 2) -> Path:
    """Write ``document`` as indented JSON (parent folders made); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=indent, ensure_ascii=False), encoding="utf-8")
    return path


def write_jsonl(path, records) -> Path:
    """Write one JSON object per line (parent folders made); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path
