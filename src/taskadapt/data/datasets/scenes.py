"""The procedural scenes as a dataset format: ``data.format=scenes``.

The scene generator (:mod:`taskadapt.data.scenes`) writes the NYUD_MT tree plus a ``meta.json``, so this
reader extends the NYUD one with what is particular to scenes, and nothing outside this file needs to
know that scenes are NYUD-shaped:

* **preparation**: the folder is written on first use from the config's ``scenes`` section (domain,
  seed, size, counts), and refused if it holds other scenes;
* **root**: ``data.root``, or ``runs/scenes/<domain>-seed<seed>-<size>px`` when it is null;
* **classes**: the generator's :data:`~taskadapt.data.scenes.CLASS_NAMES`, known without any folder
  (``meta.json`` of a folder names them too, and wins when present);
* ``meta["domain"]`` of each sample: the appearance domain the folder was rendered in;
* the boundary tolerance of NYUD (0.011 of the diagonal), inherited.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from taskadapt.data.datasets.base import register_dataset
from taskadapt.data.datasets.files import load_json
from taskadapt.data.datasets.nyud import NYUDDataset
from taskadapt.data.scenes import CLASS_NAMES, DOMAINS, write_scenes
from taskadapt.data.scenes.render import MAX_SIZE, MIN_SIZE
from taskadapt.errors import ConfigError
from taskadapt.registry import unknown_name_message


@register_dataset
class ScenesDataset(NYUDDataset):
    """A folder of procedural scenes (``taskadapt data make-scenes``, or written by the first run)."""

    FORMAT = "scenes"
    GENERATED = True
    EDGE_THIN_TARGETS = False  # the generator draws 1-px boundaries
    SOURCE = ("`taskadapt data make-scenes --out <root>`, or written on first use by any command reading a "
              "config with data.format=scenes")
    LAYOUT = NYUDDataset.LAYOUT.rstrip().rstrip('"').rstrip() + """
          meta.json                  generator, domain, seed, size, counts, {"class_names": [...]}
    """

    # -- the config section ----------------------------------------------------------------------

    @classmethod
    def root_for(cls, section: Any) -> Path:
        s = section.scenes
        return Path(section.root or f"runs/scenes/{s.domain}-seed{s.seed}-{s.size}px").expanduser()

    @classmethod
    def check_section(cls, section: Any, prefix: str) -> None:
        """The generator settings of ``<prefix>.scenes``: a known domain, counts >= 0, size >= 16 px."""
        s, key = section.scenes, f"{prefix}.scenes"
        if s.domain not in DOMAINS:
            message = unknown_name_message("scene domain", s.domain, DOMAINS.names())
            raise ConfigError(f"config key '{key}.domain': {message}")
        for split in ("train", "val", "test"):
            if getattr(s, split) < 0:
                raise ConfigError(f"config key '{key}.{split}' must be >= 0, got {getattr(s, split)}")
        if not MIN_SIZE <= s.size <= MAX_SIZE:
            raise ConfigError(f"config key '{key}.size' must be in [{MIN_SIZE}, {MAX_SIZE}] pixels, got {s.size}")

    @classmethod
    def describe(cls, section: Any) -> str:
        return f"scenes/{section.scenes.domain}"

    @classmethod
    def prepare(cls, section: Any, progress: bool = True) -> Path:
        """Write the configured scenes unless the root already holds exactly them; return the root."""
        s = section.scenes
        root = cls.root_for(section)
        counts = {"train": s.train, "val": s.val, "test": s.test}
        meta_path = root / "meta.json"
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            have = (meta.get("domain"), meta.get("seed"), meta.get("size"), meta.get("counts"))
            if have != (s.domain, s.seed, s.size, counts):
                raise ConfigError(
                    f"data.root '{root}' holds other scenes (domain, seed, size, counts = {have}); "
                    f"delete the folder or set data.root to a new folder for {(s.domain, s.seed, s.size, counts)}"
                )
            return root
        return write_scenes(root, domain=s.domain, counts=counts, size=s.size, seed=s.seed, progress=progress)

    @classmethod
    def class_names_of(cls, section: Any, tasks: Sequence[str]) -> dict[str, list[str]]:
        return {"semseg": list(CLASS_NAMES)} if "semseg" in tasks else {}

    # -- reading ---------------------------------------------------------------------------------

    @cached_property
    def meta(self) -> dict[str, Any]:
        """Contents of ``meta.json`` (empty when absent)."""
        path = self.root / "meta.json"
        if not path.is_file():
            return {}
        data = self.read_or_error(load_json, path, "fix or delete meta.json")
        if not isinstance(data, dict):
            raise self.error(f"{path} must hold a JSON object", "fix or delete meta.json")
        return data

    def _class_names(self, task: str) -> list[str]:
        names = self.meta.get("class_names")
        if names is None:
            return list(CLASS_NAMES)
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise self.error(f"'class_names' in {self.root / 'meta.json'} must be a non-empty list of "
                             "strings", "fix meta.json")
        return list(names)

    def _meta_extra(self) -> dict[str, Any]:
        domain = self.meta.get("domain")
        return {"domain": str(domain)} if domain is not None else {}
