"""Attaching a trial's files (samples, spec) to it in a fixed order, as Optuna artifacts.

optuna-dashboard lists a trial's artifacts in the order its storage returns their metadata, and
an RDB storage returns it sorted by artifact id; Smart Selection's grid then shows the artifact
at one index for every trial.  ``optuna.artifacts.upload_artifact`` draws random ids, so the
order varies from trial to trial and some tiles showed a YAML file instead of the samples.
:func:`attach_files` stores the same artifact (same store, same metadata record that
``get_all_artifact_meta``, ``download_artifact`` and the dashboard read) under ids that sort in
the order given: a position prefix, then a random UUID.  Optuna has no public name for the
metadata's key prefix, so its private module is imported here and nowhere else.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import ArtifactMeta

__all__ = ["attach_files"]


def attach_files(trial: optuna.Trial, files: list[tuple[Path, str]], *, artifact_store: Any) -> list[str]:
    """Store each ``(path, mimetype)`` of ``files`` that exists as an artifact of ``trial``, listed in
    this order; returns the artifact ids."""
    from optuna.artifacts._upload import ARTIFACTS_ATTR_PREFIX

    ids = []
    for position, (path, mimetype) in enumerate([(p, m) for p, m in files if p.is_file()]):
        artifact_id = f"{position:02d}-{uuid.uuid4()}"
        meta = ArtifactMeta(artifact_id=artifact_id, filename=path.name, mimetype=mimetype, encoding=None)
        # The data first, then the record that makes it visible (a reader never finds a missing file).
        with path.open("rb") as fh:
            artifact_store.write(artifact_id, fh)
        trial.storage.set_trial_system_attr(trial._trial_id, ARTIFACTS_ATTR_PREFIX + artifact_id,
                                            json.dumps(asdict(meta)))
        ids.append(artifact_id)
    return ids
