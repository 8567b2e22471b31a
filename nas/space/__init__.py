"""The search-space DSL: YAML spaces that resolve to validated `UNetSpec` s.

See :mod:`nas.space.loader` for the file format, :mod:`nas.space.decisions` for the decision
kinds, :mod:`nas.space.conditions` for ``when:`` conditions, :mod:`nas.space.validation` for the
load-time checks and :mod:`nas.space.summary` for what ``python -m nas.space`` reports.
"""

from __future__ import annotations

from nas.space.loader import BUNDLED_DIR, load_space, resolve_space_path
from nas.space.search_space import DataConfig, Objective, SearchSpace

__all__ = ["BUNDLED_DIR", "DataConfig", "Objective", "SearchSpace", "load_space", "resolve_space_path"]
