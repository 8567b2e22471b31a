"""Export a searched architecture as a config: pick a trial of a study and write it.

:func:`export_from_study` is the library call behind ``python -m nas.export``: it opens the
study (by default where a search with ``--out RESULTS`` put it), picks a trial
(:mod:`nas.export.pick`, narrowed by :mod:`nas.export.where`) and writes it
(:mod:`nas.export.write`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nas.export.pick import Pick, pick_trial
from nas.export.where import Clause, parse_where
from nas.export.write import FORMATS, ExportResult, export_trial

__all__ = [
    "FORMATS",
    "Clause",
    "ExportResult",
    "Exported",
    "Pick",
    "export_from_study",
    "export_trial",
    "parse_where",
    "pick_trial",
]


@dataclass
class Exported:
    """What :func:`export_from_study` did: the trial it picked, how, its values, and the files."""

    trial_number: int
    how: str
    values: dict[str, float]
    params: int | None
    storage_url: str
    result: ExportResult


def export_from_study(study_name: str, *, pick: str = "knee", where: str | None = None, fmt: str = "yaml",
                      out: str | Path | None = None, storage: str | None = None,
                      results: str | Path = "results") -> Exported:
    """Pick one trial of study ``study_name`` and write it; every input error is a ConfigError.

    ``storage`` defaults to where a search with ``--out results`` keeps the study
    (:func:`nas.study.find_storage_url`); ``out`` to ``best.yaml`` or ``best-diffusers/``.
    """
    from nas.study import find_storage_url, load_existing_study

    parsed_pick, clauses = Pick.parse(pick), parse_where(where)
    storage_url = storage or find_storage_url(study_name, results)
    study = load_existing_study(study_name, storage_url)
    trial, how = pick_trial(study, parsed_pick, where=clauses)
    target = out or ("best.yaml" if fmt == "yaml" else "best-diffusers")
    result = export_trial(study, trial, storage_url=storage_url, out=target, fmt=fmt, how=how)
    values = dict(zip(study.metric_names or [], trial.values or [], strict=False))
    return Exported(trial_number=trial.number, how=how, values=values, params=trial.user_attrs.get("params"),
                    storage_url=storage_url, result=result)
