"""optuna-dashboard's notes in the study's storage, read and written without importing the dashboard.

The dashboard keeps a note (markdown) for the study and for each trial in the study's system
attributes: ``dashboard:note_ver`` / ``dashboard:<trial_id>:note_ver`` hold the version, and the
body is cut into chunks of at most 2,045 characters under ``dashboard:note_str:<i>`` /
``dashboard:<trial_id>:note_str:<i>`` (chunks past the end of a shorter note are set to ``""``).
That format is optuna-dashboard 0.21's (``optuna_dashboard._note``); ``tests/test_dashboard_notes.py``
checks a round trip through the dashboard's own ``get_note`` and ``save_note``.

Why not call ``optuna_dashboard.save_note``: importing the package takes about 2 s (it loads
scipy and scikit-learn), once per search worker, and each of its calls reads all of the study's
system attributes; :func:`save_notes` reads them once for any number of notes and writes only
the notes whose text changed.
"""

from __future__ import annotations

import math
from typing import Any

from optuna.storages import BaseStorage

__all__ = ["CHUNK_CHARS", "read_note", "save_notes"]

CHUNK_CHARS = 2045  # optuna-dashboard's SYSTEM_ATTR_MAX_LENGTH


def _version_key(trial_id: int | None) -> str:
    return "dashboard:note_ver" if trial_id is None else f"dashboard:{trial_id}:note_ver"


def _chunk_prefix(trial_id: int | None) -> str:
    return "dashboard:note_str:" if trial_id is None else f"dashboard:{trial_id}:note_str:"


def _chunk_count(system_attrs: dict[str, Any], trial_id: int | None) -> int:
    prefix = _chunk_prefix(trial_id)
    return sum(1 for key in system_attrs if key.startswith(prefix))


def read_note(system_attrs: dict[str, Any], trial_id: int | None) -> str:
    """The note of trial ``trial_id`` (``None``: the study) in a study's ``system_attrs``; ``""`` if none."""
    if _version_key(trial_id) not in system_attrs:
        return ""
    prefix = _chunk_prefix(trial_id)
    return "".join(str(system_attrs.get(f"{prefix}{i}", "")) for i in range(_chunk_count(system_attrs, trial_id)))


def save_notes(storage: BaseStorage, study_id: int, bodies: dict[int | None, str]) -> int:
    """Write each note of ``bodies`` (trial id, or ``None`` for the study, to markdown) whose text
    differs from the stored one, as the dashboard would (version incremented); returns how many
    were written.  The study's system attributes are read once."""
    system_attrs = storage.get_study_system_attrs(study_id)
    written = 0
    for trial_id, body in bodies.items():
        if _version_key(trial_id) in system_attrs and read_note(system_attrs, trial_id) == body:
            continue  # unchanged: no write, no new version
        prefix = _chunk_prefix(trial_id)
        chunks = [body[i * CHUNK_CHARS:(i + 1) * CHUNK_CHARS] for i in range(math.ceil(len(body) / CHUNK_CHARS))]
        storage.set_study_system_attr(study_id, _version_key(trial_id),
                                      int(system_attrs.get(_version_key(trial_id), 0)) + 1)
        for i, chunk in enumerate(chunks):
            storage.set_study_system_attr(study_id, f"{prefix}{i}", chunk)
        for i in range(len(chunks), _chunk_count(system_attrs, trial_id)):
            storage.set_study_system_attr(study_id, f"{prefix}{i}", "")  # what a longer note left
        written += 1
    return written
