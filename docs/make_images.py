"""Regenerate the pictures in README.md and docs/ (run from the repository root).

    python docs/make_images.py

Writes docs/images/scenes_contact_sheet.png (the studio contact sheet that
`taskadapt data make-scenes` writes) and docs/images/scenes_domains.png (one scene geometry in every
appearance domain, with its labels, which are the same in all domains).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import matplotlib

from taskadapt.data.scenes import CLASS_NAMES, list_domains, render_scenes, write_scenes

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from taskadapt.viz import label_to_rgb, save_figure  # noqa: E402

OUT = Path("docs/images")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = write_scenes(Path(tmp) / "scenes", domain="studio", counts={"train": 4, "val": 0, "test": 0},
                            size=128, seed=0, progress=False)
        shutil.copyfile(root / "contact_sheet.png", OUT / "scenes_contact_sheet.png")

    domains = list_domains()
    batches = {d: render_scenes(d, "train", [2], size=128, seed=0) for d in domains}
    labels = batches[domains[0]]  # identical in every domain (asserted in tests/test_scenes.py)
    cols = max(len(domains), 4)
    fig, axes = plt.subplots(2, cols, figsize=(2.0 * cols, 4.9), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for c, d in enumerate(domains):
        axes[0][c].imshow(label_to_rgb("image", batches[d]["image"][0]))
        axes[0][c].set_title(d, fontsize=9)
    for c, key in enumerate(("semseg", "depth", "normals", "edge")):
        axes[1][c].imshow(label_to_rgb(key, labels[key][0], len(CLASS_NAMES)), interpolation="nearest")
        axes[1][c].set_title(f"{key} (all domains)", fontsize=9)
    fig.suptitle("one scene geometry (seed 0, train index 2) in every appearance domain", fontsize=10)
    fig.tight_layout()
    save_figure(fig, OUT / "scenes_domains.png")
    print(f"wrote {OUT / 'scenes_contact_sheet.png'} and {OUT / 'scenes_domains.png'}")


if __name__ == "__main__":
    main()
