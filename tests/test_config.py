"""Configuration: layering, type conversion and one-line errors for every kind of bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from taskadapt.config import Config, load_config, parse_overrides, to_yaml
from taskadapt.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_defaults_are_valid():
    cfg = load_config()
    assert isinstance(cfg, Config)
    assert cfg.data.tasks == ["semseg", "depth", "normals", "edge"]
    assert cfg.data.format == "scenes"


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_shipped_configs_load(name):
    raw = yaml.safe_load((REPO / "configs" / name).read_text())
    overrides = [] if raw["data"]["format"] == "scenes" else ["data.root=/some/dataset"]
    for section in ("zeroshot", "adapt"):  # real-data settings presets name a target dataset too
        if raw.get(section, {}).get("target", {}).get("format", "scenes") != "scenes":
            overrides.append(f"{section}.target.root=/some/target")
    cfg = load_config(REPO / "configs" / name, overrides)
    assert cfg.data.batch_size > 0


def test_layering_file_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("data:\n  batch_size: 4\n  tasks: [semseg]\nseed: 3\n")
    cfg = load_config(f, ["data.batch_size=2", "data.tasks=semseg,depth", "model.pretrained=null"])
    assert cfg.data.batch_size == 2  # override beats file
    assert cfg.seed == 3  # file beats default
    assert cfg.data.tasks == ["semseg", "depth"]  # comma list accepted for list keys
    assert cfg.model.pretrained is None
    assert "batch_size: 2" in to_yaml(cfg)


def test_yaml_list_override():
    assert parse_overrides(["data.tasks=[edge, depth]"]) == {"data": {"tasks": ["edge", "depth"]}}


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["data.fromat=nyud"], "unknown config key 'data.fromat'; did you mean 'data.format'?"),
        (["seeed=1"], "unknown config key 'seeed'; did you mean 'seed'?"),
        (["data.batch_size=abc"], "config key 'data.batch_size' has a bad value 'abc': expected int"),
        (["data.batch_size=0"], "config key 'data.batch_size' must be > 0, got 0"),
        (["data.tasks=[semseg,smeseg]"], "unknown task 'smeseg'; did you mean 'semseg'?"),
        (["data.format=nyu"], "unknown dataset format 'nyu'; did you mean 'nyud'?"),
        (["data.scenes.domain=studoi"], "unknown scene domain 'studoi'; did you mean 'studio'?"),
        (["model.backbone=vit_small_patch16"], "unknown backbone 'vit_small_patch16'; did you mean"),
        (["data.format=nyud"], "config key 'data.root' is null"),
        (["data.tasks=[]"], "config key 'data.tasks' is empty"),
        (["data.tasks=[depth,depth]"], "lists a task twice"),
        (["data.augment.scale_min=2", "data.augment.scale_max=1"], "0 < min <= max"),
        (["batch_size"], "is not of the form key=value"),
    ],
)
def test_bad_values_give_one_clear_line(overrides, expected):
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_unknown_task_lists_allowed_values():
    with pytest.raises(ConfigError, match=r"Available: .*depth.*normals.*semseg"):
        load_config(None, ["data.tasks=[bogus]"])


def test_unknown_key_in_file_names_section_keys(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("data:\n  scenes:\n    sise: 64\n")
    with pytest.raises(ConfigError, match=r"'data.scenes.sise'; did you mean 'data.scenes.size'\? Allowed keys"):
        load_config(f)


def test_section_must_be_a_mapping(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("data: 3\n")
    with pytest.raises(ConfigError, match="'data' must be a mapping"):
        load_config(f)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(bad)
    top = tmp_path / "list.yaml"
    top.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must contain a mapping"):
        load_config(top)
