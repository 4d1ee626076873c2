"""The JSON contract of `lossdoctor diagnose --format json` (see design.md)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from lossdoctor import __version__
from lossdoctor.diagnosis import Diagnosis
from lossdoctor.errors import InputError


def to_json_dict(
    diagnoses: Sequence[Diagnosis], errors: Sequence[InputError] = ()
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "lossdoctor": __version__,
        "runs": [d.to_dict() for d in diagnoses],
    }
    for d, entry in zip(diagnoses, doc["runs"], strict=True):
        if d.run.warnings:
            entry["warnings"] = list(d.run.warnings)
    # Unreadable inputs are part of the answer, not an afterthought on stderr only.
    doc["errors"] = [{"source": e.path, "problem": e.problem} for e in errors]
    return doc


def render_json(diagnoses: Sequence[Diagnosis], errors: Sequence[InputError] = ()) -> str:
    return json.dumps(to_json_dict(diagnoses, errors), indent=2, allow_nan=False)
