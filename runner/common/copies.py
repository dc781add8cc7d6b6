"""Deep copies of composed configs, for the sweeper's checks and the lanes launcher's jobs: through
pickle (how Hydra's remote launchers ship a job's config), a quarter of `copy.deepcopy`'s time on
a composed config; a config that does not pickle is deep-copied."""

from __future__ import annotations

import copy
import pickle
from typing import TypeVar

T = TypeVar("T")


def duplicate(cfg: T) -> T:
    """An independent deep copy of `cfg` (a DictConfig, or anything that pickles)."""
    try:
        return pickle.loads(pickle.dumps(cfg, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:  # noqa: BLE001 - any value pickle refuses: the slower copy is as good
        return copy.deepcopy(cfg)
