"""The README's commands and Python snippet stay true."""

from __future__ import annotations

import re
from pathlib import Path

from taskadapt.data.scenes import write_scenes

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_api_runs(tmp_path):
    root = write_scenes(tmp_path / "scenes", counts={"train": 2, "val": 1, "test": 1}, size=64, progress=False)
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no Python example"
    namespace: dict = {}
    # the part before `taskadapt.load` (which needs a trained demo run; tests/test_api.py covers it)
    code = blocks[0].split("predictor =")[0]
    code = code.replace("runs/demo/scenes/studio", str(root)).replace("configs/", str(README.parent / "configs") + "/")
    exec(code, namespace)  # noqa: S102 -- our own README
    sample = namespace["sample"]
    assert sample["image"].shape == (3, 64, 64)
    assert set(sample) >= {"image", "semseg", "depth", "normals", "edge", "meta"}
    preds = namespace["preds"]
    assert {k: tuple(v.shape) for k, v in preds.items()} == {
        "semseg": (1, 9, 64, 64), "depth": (1, 1, 64, 64), "normals": (1, 3, 64, 64), "edge": (1, 1, 64, 64)}


def test_readme_opens_with_the_two_commands():
    text = README.read_text()
    bash = re.findall(r"```bash\n(.*?)```", text, flags=re.S)[0]
    commands = [line for line in bash.splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 2
    assert "pip install torch==2.13.0" in commands[0] and "taskadapt" in commands[0]
    assert "pytest" in commands[1]
    ci = (README.parent / ".ci" / "run").read_text()
    assert 'pip install torch==2.13.0 -e ".[dev]"' in ci and "pytest -n 2" in ci
