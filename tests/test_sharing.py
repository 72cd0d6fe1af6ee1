"""Adapters as small artifacts: adapter-only checkpoints, the hub round trip (offline), adding a task."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import put_in_hub_cache
from safetensors.torch import load_file, save_file

import taskadapt
from taskadapt import checkpoint as ckpt
from taskadapt.cli import main
from taskadapt.config import build_config, load_config, to_dict
from taskadapt.errors import CheckpointError, ConfigError
from taskadapt.models import create_model
from taskadapt.models.backbones import create_backbone
from taskadapt.run import Run, compare_outputs
from taskadapt.sharing.adapters_only import default_output, save_adapters
from taskadapt.sharing.publish import push, write_repo
from taskadapt.train.extend import extend_config
from taskadapt.train.trainer import freeze_untrained, train

ARCH = {"patch_size": 8, "embed_dim": 32, "depth": 4, "num_heads": 2}
TINY = ["data.scenes.train=24", "data.scenes.val=4", "data.scenes.test=4", "data.scenes.size=32",
        "data.crop_size=32", "data.batch_size=4", f"model.backbone_kwargs={json.dumps(ARCH)}",
        "model.decoder_channels=16", "train.steps=3", "train.eval_every=3", "train.checkpoint_every=3",
        "train.warmup_steps=1"]
OLD = ["semseg", "depth", "normals"]
X = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(7))


def _backbone_file(path: Path, seed: int = 0) -> Path:
    """A 'pretrained' tiny ViT written as a timm-format safetensors file."""
    torch.manual_seed(seed)
    save_file(create_backbone("vit_tiny_patch16_224", img_size=32, **ARCH).state_dict(), str(path))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A 3-task model of ours trained for 3 steps on a pretrained (file) backbone."""
    base = tmp_path_factory.mktemp("sharing")
    weights = _backbone_file(base / "backbone.safetensors")
    cfg = load_config(None, [f"data.root={base / 'scenes'}", *TINY, f"data.tasks={OLD}",
                             f"model.pretrained={weights}", f"out_dir={base / 'run'}"])
    result = train(cfg, progress=False, command="taskadapt train tiny.yaml")
    return {"base": base, "weights": weights, "cfg": cfg, "full": result.last}


@pytest.fixture(scope="module")
def slim(trained) -> Path:
    return save_adapters(trained["full"]).path


def _outputs(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return model(X)


# -- adapter-only checkpoints ---------------------------------------------------------------------------------

def test_adapter_only_checkpoint_reproduces_the_full_one_exactly(trained, slim):
    full, small = Run.open(trained["full"]), Run.open(slim)
    assert slim == default_output(trained["full"]) and slim.name == "last.adapters.safetensors"
    assert small.adapters_only and not full.adapters_only
    a, b = _outputs(full.build_model()), _outputs(small.build_model())
    assert all(torch.equal(a[t], b[t]) for t in OLD)
    stored, everything = load_file(str(slim)), load_file(str(trained["full"]))
    left_out = set(everything) - set(stored)
    assert left_out and all(k.startswith("backbone.") for k in left_out)
    # what training changed is all there: the adapters, TSN maps, embeddings, affinity, decoder and heads
    assert {"task_embeddings", "affinity.affinity"} <= set(stored)
    assert any(".film." in k for k in stored) and any(k.startswith("heads.") for k in stored)
    assert all(torch.equal(stored[k], everything[k]) for k in stored)
    assert small.meta["backbone_weights"]["kind"] == "file"
    assert small.meta["frozen"]["tensors"] == len(left_out)
    assert slim.stat().st_size < 0.5 * trained["full"].stat().st_size


def test_adapter_only_needs_the_same_backbone_weights(trained, slim, tmp_path):
    other = _backbone_file(tmp_path / "other.safetensors", seed=1)
    with pytest.raises(CheckpointError, match="sha256") as err:
        taskadapt.load(slim, device="cpu", backbone_weights=other)
    assert "backbone_weights" in str(err.value)
    # the weights moved: the recorded file is gone, a copy passed explicitly works (same hash)
    moved = tmp_path / "copy.safetensors"
    shutil.copy(trained["weights"], moved)
    predictor = taskadapt.load(slim, device="cpu", backbone_weights=moved)
    assert torch.equal(_outputs(predictor.model)["depth"], _outputs(Run.open(trained["full"]).build_model())["depth"])
    meta = {**Run.open(slim).meta}
    meta["backbone_weights"] = {**meta["backbone_weights"], "source": str(tmp_path / "gone.safetensors")}
    with pytest.raises(CheckpointError, match="cannot be found"):
        Run(slim, meta).build_model()


def test_adapter_only_names_hub_weights_by_their_id(trained, tmp_path, offline_hub):
    """Backbone weights from the hub are recorded as the hf-hub: id and fetched (here: from the cache) on load."""
    cached = put_in_hub_cache(offline_hub, "lab/tiny-backbone", {})
    shutil.copy(trained["weights"], cached)
    out = save_adapters(trained["full"], tmp_path / "hub.adapters.safetensors",
                        backbone_weights="hf-hub:lab/tiny-backbone").path
    record = Run.open(out).meta["backbone_weights"]
    assert record["kind"] == "hub" and record["source"] == "hf-hub:lab/tiny-backbone"
    assert torch.equal(_outputs(Run.open(out).build_model())["semseg"],
                       _outputs(Run.open(trained["full"]).build_model())["semseg"])


def test_adapter_only_checks_the_rebuilt_frozen_tensors(trained, slim):
    """Same weights file, but a header whose digest does not match: one clear error, no silent mismatch."""
    meta = {**Run.open(slim).meta, "frozen": {"tensors": Run.open(slim).meta["frozen"]["tensors"], "sha256": "0" * 64}}
    with pytest.raises(CheckpointError, match="not the one adapter-only checkpoint"):
        Run(slim, meta).build_model()


def test_adapter_only_refusals(trained, slim, tmp_path):
    with pytest.raises(CheckpointError, match="already an adapter-only"):
        save_adapters(slim, tmp_path / "x.safetensors")
    with pytest.raises(CheckpointError, match="already exists"):
        save_adapters(trained["full"], slim)
    before = slim.read_bytes()
    with pytest.raises(CheckpointError, match="are not those of"):  # weights of another backbone: nothing written
        save_adapters(trained["full"], tmp_path / "y.safetensors",
                      backbone_weights=_backbone_file(tmp_path / "o.safetensors", seed=3))
    assert not (tmp_path / "y.safetensors").exists() and slim.read_bytes() == before
    cfg = load_config(None, [*TINY, f"data.tasks={OLD}"])  # random backbone: nothing to rebuild it from
    random_ckpt = tmp_path / "random.safetensors"
    ckpt.save_checkpoint(random_ckpt, create_model(cfg, num_classes={"semseg": 9}),
                         {"config": to_dict(cfg), "tasks": OLD, "num_classes": {"semseg": 9}, "step": 0,
                          "method": "adapters", "backbone": cfg.model.backbone})
    with pytest.raises(CheckpointError, match="randomly initialised"):
        save_adapters(random_ckpt)


def test_save_adapters_cli(trained, tmp_path, capsys):
    out = tmp_path / "cli.adapters.safetensors"
    assert main(["save-adapters", str(trained["full"]), "--out", str(out), "--verify", "4"]) == 0
    printed = capsys.readouterr().out
    assert "% of the full" in printed and out.is_file()
    assert "outputs on 4 test images: identical" in printed
    assert main(["save-adapters", str(trained["full"]), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_eval_and_predict_take_adapter_only_checkpoints_and_their_weights(trained, slim, tmp_path, capsys):
    copy = tmp_path / "copy.safetensors"
    shutil.copy(trained["weights"], copy)
    out = tmp_path / "eval"
    assert main(["eval", str(slim), "--backbone-weights", str(copy), "--out", str(out)]) == 0
    scored = json.loads((out / "metrics.json").read_text())["metrics"]
    assert main(["eval", str(trained["full"]), "--out", str(tmp_path / "eval-full")]) == 0
    assert scored == json.loads((tmp_path / "eval-full" / "metrics.json").read_text())["metrics"]
    assert set(scored) == set(OLD)
    wrong = _backbone_file(tmp_path / "wrong.safetensors", seed=5)
    capsys.readouterr()
    assert main(["eval", str(slim), "--backbone-weights", str(wrong), "--out", str(tmp_path / "x")]) == 2
    assert "sha256" in capsys.readouterr().err
    picture = tmp_path / "pic.png"
    from PIL import Image

    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(picture)
    assert main(["predict", str(slim), str(picture), "--out", str(tmp_path / "pred"),
                 "--backbone-weights", str(copy)]) == 0
    assert (tmp_path / "pred" / "pic_sheet.png").is_file()
    assert main(["eval", str(slim), str(trained["full"]), "--data", str(trained["base"] / "scenes"),
                 "--backbone-weights", str(copy)]) == 2


# -- the hub, offline ----------------------------------------------------------------------------------------

def test_hub_round_trip_offline(trained, tmp_path, offline_hub, monkeypatch):
    layout = write_repo(trained["full"], tmp_path / "repo", "lab/tiny-adapters")
    assert layout.adapters_only and sorted(p.name for p in layout.folder.iterdir()) == [
        "README.md", "config.yaml", "model.safetensors"]
    card = (layout.folder / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: taskadapt" in card
    for needle in ("semantic-segmentation", "| semseg |", "floor", "## Validation metrics", "vit_tiny_patch16_224",
                   Run.open(layout.checkpoint).meta["backbone_weights"]["sha256"], "taskadapt train tiny.yaml",
                   'taskadapt.load("hf-hub:lab/tiny-adapters")', "## Task affinity"):
        assert needle in card, needle
    assert load_config(layout.folder / "config.yaml").model_tasks() == OLD
    cached = put_in_hub_cache(offline_hub, "lab/tiny-adapters", {})
    shutil.copy(layout.checkpoint, cached)
    predictor = taskadapt.load("hf-hub:lab/tiny-adapters", device="cpu")
    expected = _outputs(Run.open(trained["full"]).build_model())
    assert all(torch.equal(_outputs(predictor.model)[t], expected[t]) for t in OLD)
    assert predictor.run.adapters_only and predictor.tasks == OLD
    monkeypatch.chdir(tmp_path)  # `eval` of a hub id writes runs/eval-<repo>-<split>, not into the hub cache
    assert main(["eval", "hf-hub:lab/tiny-adapters"]) == 0
    assert (tmp_path / "runs" / "eval-tiny-adapters-test" / "metrics.json").is_file()
    with pytest.raises(CheckpointError, match="HF_HUB_OFFLINE"):
        taskadapt.load("hf-hub:lab/not-there")
    with pytest.raises(CheckpointError, match="not a hub model id"):
        taskadapt.load("hf-hub:no-owner")


def test_push_uploads_the_repository_in_one_commit(trained, tmp_path, monkeypatch):
    calls: dict = {}

    class FakeApi:
        def __init__(self, token=None):
            calls["token"] = token

        def create_repo(self, repo_id, private=None, exist_ok=False):
            calls["create"] = (repo_id, private, exist_ok)

        def upload_folder(self, repo_id, folder_path, commit_message):
            calls["files"] = sorted(p.name for p in Path(folder_path).iterdir())
            calls["upload"] = (repo_id, commit_message)
            return type("Info", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/abc"})()

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    url = push(trained["full"], "lab/tiny", private=True, local_dir=tmp_path / "kept")
    assert url.endswith("lab/tiny/commit/abc")
    assert calls["create"] == ("lab/tiny", True, True) and calls["upload"][0] == "lab/tiny"
    assert calls["files"] == ["README.md", "config.yaml", "model.safetensors"]
    assert "semseg" in calls["upload"][1] and (tmp_path / "kept" / "model.safetensors").is_file()

    class FailingApi(FakeApi):
        def upload_folder(self, **kwargs):
            raise OSError("401 Unauthorized")

    monkeypatch.setattr(huggingface_hub, "HfApi", FailingApi)
    with pytest.raises(CheckpointError, match="hf auth login"):
        push(trained["full"], "lab/tiny")
    with pytest.raises(ConfigError, match="@revision"):
        push(trained["full"], "lab/tiny@v1")


def test_push_dry_run_cli(trained, tmp_path, capsys):
    folder = tmp_path / "dry"
    assert main(["push", str(trained["full"]), "lab/tiny", "--dry-run", "--local-dir", str(folder)]) == 0
    assert "nothing uploaded" in capsys.readouterr().out and (folder / "README.md").is_file()
    assert main(["push", str(trained["full"]), "lab/tiny", "--dry-run", "--local-dir", str(folder)]) == 2
    assert "not empty" in capsys.readouterr().err


# -- adding a task -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def extended(trained) -> dict:
    cfg = extend_config(trained["full"], ["edge"], trained["base"] / "extended", overrides=["train.steps=3"])
    return {"cfg": cfg, "ckpt": train(cfg, progress=False).last}


def test_extend_keeps_old_tasks_bit_identical(trained, extended):
    cfg = extended["cfg"]
    assert cfg.model.tasks == [*OLD, "edge"] and cfg.model.task_groups == [OLD, ["edge"]]
    assert cfg.train.train_tasks == ["edge"] and cfg.data.tasks == [*OLD, "edge"]
    check = compare_outputs(trained["full"], extended["ckpt"], X)
    assert check.identical and set(check.max_abs_diff) == set(OLD)
    before, after = Run.open(trained["full"]), Run.open(extended["ckpt"])
    old_state, new_state = before.state_dict(), after.state_dict()
    changed = [k for k in old_state if k in new_state and old_state[k].shape == new_state[k].shape
               and not torch.equal(old_state[k], new_state[k])]
    assert changed == ["affinity.num_updates"]  # nothing the old tasks use moved
    assert torch.equal(new_state["task_embeddings"][:3], old_state["task_embeddings"])
    assert not torch.equal(new_state["heads.edge.out.weight"], Run(after.path, after.meta).create_network()
                           .state_dict()["heads.edge.out.weight"])  # the new head did train


def test_extend_grows_the_affinity_and_learns_its_new_row_and_column(trained, extended):
    before, after = Run.open(trained["full"]).affinity, Run.open(extended["ckpt"]).affinity
    assert after.shape == (4, 4)
    np.testing.assert_array_equal(after[:3, :3], before)  # pairs of old tasks are fixed
    assert (after[:3, 3] != 0).any()  # the old tasks' effect on edge was measured (their labels are in the data)


def test_extend_trains_only_the_new_tasks_parts(extended):
    cfg = extended["cfg"]
    model = create_model(cfg, num_classes={"semseg": 9})
    freeze_untrained(model, cfg)  # what the trainer applies
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"task_embeddings"} | {n for n, _ in model.named_parameters() if n.startswith("heads.edge.")}


@pytest.mark.parametrize("extra", [["model.tsn.task_offset=true"], ["model.method=lora"],
                                   ["model.decoder=per_task"]])
def test_extend_other_layouts_keep_old_tasks(tmp_path, extra):
    """TSN's per-task offsets (rows sliced per group), a single-stream baseline, per-task decoders."""
    cfg = load_config(None, [f"data.root={tmp_path / 'scenes'}", *TINY, "data.tasks=[semseg,depth]", *extra,
                             f"out_dir={tmp_path / 'base'}"])
    base = train(cfg, progress=False).last
    ext = train(extend_config(base, ["normals"], tmp_path / "ext", overrides=["train.steps=2"]), progress=False).last
    assert compare_outputs(base, ext, X).identical


def test_extend_cli_and_its_errors(trained, tmp_path, capsys):
    out = tmp_path / "cli-ext"
    assert main(["extend", str(trained["full"]), "--task", "edge", "--out", str(out), "train.steps=2"]) == 0
    assert "bit-identical" in capsys.readouterr().out
    assert Run.open(out / "checkpoints" / "last.safetensors").meta["command"].startswith("taskadapt extend")
    assert main(["extend", str(trained["full"]), "--task", "depth", "--out", str(tmp_path / "x")]) == 2
    assert "already predicts" in capsys.readouterr().err
    assert main(["extend", str(trained["full"]), "--task", "colour", "--out", str(tmp_path / "x")]) == 2
    assert "unknown task" in capsys.readouterr().err


def test_task_groups_and_train_tasks_are_validated(trained):
    layer = to_dict(trained["cfg"])
    with pytest.raises(ConfigError, match="model.task_groups"):
        build_config(layer, {"model": {"task_groups": [["semseg"], ["normals", "depth"]]}})
    with pytest.raises(ConfigError, match="train.train_tasks"):
        build_config(layer, {"train": {"train_tasks": ["edge"], "init_from": "x.safetensors"}})
    with pytest.raises(ConfigError, match="train.init_from is null"):
        build_config(layer, {"train": {"train_tasks": ["depth"]}})


def test_an_extended_model_exports_with_one_prefix_pass(extended, tmp_path):
    """The task groups' separate streams still read one shared prefix, and ONNX Runtime matches PyTorch."""
    pytest.importorskip("onnxruntime")
    from taskadapt.export import export_onnx

    report = export_onnx(extended["ckpt"], tmp_path / "extended.onnx")
    assert report.prefix_runs == 1 and report.tasks == [*OLD, "edge"]
    assert report.checked and max(report.max_abs_diff.values()) <= 1e-4
