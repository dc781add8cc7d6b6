"""A lane job's .hydra/ files (config.yaml, hydra.yaml, overrides.yaml), the text Hydra's
`_save_config` writes (`OmegaConf.to_yaml`), made from pieces kept between the jobs of a sweep.

Dumping YAML in pure Python is most of what writing these files costs (about 15 ms a job for
hydra.yaml on the 2-core development machine), and the jobs of a lane group differ in a few
entries (`seed`; `hydra.job`, `hydra.runtime.output_dir`, `hydra.overrides`). A block mapping's
entries are written one after the other, each from a fresh line at its own indentation, so the
document is the concatenation of its entries' texts, and a mapping's entry is its key's line and
its own entries': each entry (down to `DEPTH` levels) is dumped once per distinct value and reused.
tests/lanes/test_saved.py checks the text against `OmegaConf.to_yaml` for whole sweeps' configs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


DEPTH = 3  # mappings this deep are cut into their entries (hydra.runtime.choices); deeper ones are pieces


class SavedYaml:
    """`text(cfg)` == `OmegaConf.to_yaml(cfg)`; `save` writes it as `_save_config` does."""

    def __init__(self) -> None:
        self.pieces: dict[str, str] = {}

    def text(self, cfg: DictConfig, only: str | None = None) -> str:
        """`only`: the text of the config holding just that key (hydra.yaml: `hydra`), as of set_config's copy."""
        try:
            data = OmegaConf.to_container(cfg if only is None else cfg[only], resolve=False, enum_to_str=True)
            data = data if only is None else {only: data}
            if isinstance(data, dict) and data and all(isinstance(k, str) for k in data):
                return self._body((), data)
        except Exception:  # noqa: BLE001 - an entry that does not dump alone: the whole, as Hydra dumps it
            pass
        return OmegaConf.to_yaml(cfg if only is None else OmegaConf.masked_copy(cfg, only))

    def _body(self, path: tuple[str, ...], mapping: dict[str, Any]) -> str:
        """The lines of the mapping at `path` (below its keys' lines), entry by entry."""
        out = []
        for key, value in mapping.items():
            if isinstance(value, dict) and value and len(path) < DEPTH - 1 and all(isinstance(k, str) for k in value):
                line = self._lines(path, key, {"_": 0})  # the key's own line: the value's come after it
                out.append(line[:line.index("\n") + 1] + self._body((*path, key), value))
            else:
                out.append(self._lines(path, key, value))
        return "".join(out)

    def _lines(self, path: tuple[str, ...], key: str, value: Any) -> str:
        """The lines `key: value` takes at `path` (the document {path...: {key: value}} less its
        first len(path) lines, its ancestors' keys); dumped once per distinct entry."""
        # json tells 1, 1.0, "1", true and null apart, as YAML does; keys keep their order
        name = json.dumps([path, key, value], default=repr)
        if name not in self.pieces:
            doc: Any = {key: value}
            for parent in reversed(path):
                doc = {parent: doc}
            text = OmegaConf.to_yaml(doc)
            for _ in path:
                text = text[text.index("\n") + 1:]
            self.pieces[name] = text
        return self.pieces[name]

    def save(self, cfg: DictConfig, filename: str, output_dir: Path, only: str | None = None) -> None:
        output_dir.mkdir(parents=True, exist_ok=True)
        with open(str(output_dir / filename), "w", encoding="utf-8") as file:
            file.write(self.text(cfg, only))
