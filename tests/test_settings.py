"""The generalization settings: zero-shot task transfer, domain adaptation, novel-domain evaluation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from test_trainer import tiny_cfg

from taskadapt import checkpoint as ckpt
from taskadapt.cli import main
from taskadapt.config import load_config
from taskadapt.data.datasets import create_dataset
from taskadapt.errors import ConfigError, DatasetError
from taskadapt.models.troa import TaskAffinity
from taskadapt.settings.adapt import gap_closed, run_adapt
from taskadapt.settings.domains import evaluate_domains, parse_domain, relative_drop
from taskadapt.settings.zeroshot import run_zeroshot
from taskadapt.train.adversarial import DomainAdversary, OutputDiscriminator, discriminator_input
from taskadapt.train.trainer import train

SCENE_KEYS = ["scenes.train=24", "scenes.val=0", "scenes.test=4", "scenes.size=32", "crop_size=32",
              "batch_size=4"]


def _target(section: str, tmp_path: Path, domain: str) -> list[str]:
    return [f"{section}.target.root={tmp_path / domain}", f"{section}.target.scenes.domain={domain}",
            f"{section}.target.scenes.seed=1", *(f"{section}.target.{k}" for k in SCENE_KEYS)]


def _corrupt_labels(root: Path, split: str, folders: list[str]) -> int:
    """Overwrite every label file of ``split`` in ``folders`` with garbage; returns how many."""
    n = 0
    ids = (root / "gt_sets" / f"{split}.txt").read_text().split()
    for folder in folders:
        for path in (root / folder).iterdir():
            if path.stem in ids or path.stem.split(".")[0] in ids:
                path.write_bytes(b"not a label file")
                n += 1
    return n


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("source")
    return train(tiny_cfg(tmp, "src"), progress=False), tmp


# ------------------------------------------------------------------------------------ zero-shot


def test_zero_shot_task_gets_no_gradient_step_and_its_labels_are_never_read(source_run, tmp_path):
    src, _ = source_run
    from taskadapt.data.scenes import write_scenes

    root = write_scenes(tmp_path / "fog", domain="fog", counts={"train": 24, "val": 0, "test": 4}, size=32, seed=1,
                        progress=False)
    assert _corrupt_labels(root, "train", ["normals"]) == 24
    with pytest.raises(DatasetError):  # the corruption is real: reading a normals label fails
        create_dataset("nyud", root, "train", tasks=["normals"])[0]
    cfg = tiny_cfg(tmp_path, "zs", f"data.root={root}", "data.scenes.domain=fog", "data.scenes.seed=1",
                   "data.scenes.val=0", "data.tasks=[semseg,depth,edge]", "model.tasks=[semseg,depth,normals,edge]",
                   f"train.init_from={src.last}")
    result = train(cfg, progress=False)
    before, after = ckpt.load_weights(src.last), ckpt.load_weights(result.last)
    normals = [k for k in before if k.startswith("heads.normals.")]
    assert normals
    for key in normals:
        torch.testing.assert_close(before[key], after[key], rtol=0, atol=0, msg=key)
    k = 2  # normals' index in the model's task list
    torch.testing.assert_close(before["task_embeddings"][k], after["task_embeddings"][k], rtol=0, atol=0)
    a0, a1 = before["affinity.affinity"], after["affinity.affinity"]
    torch.testing.assert_close(a0[k], a1[k], rtol=0, atol=0)  # its row and column: carried over
    torch.testing.assert_close(a0[:, k], a1[:, k], rtol=0, atol=0)
    # what the labelled tasks share did train
    assert not torch.equal(before["heads.semseg.out.weight"], after["heads.semseg.out.weight"])
    assert not torch.equal(before["task_embeddings"][0], after["task_embeddings"][0])
    assert not torch.equal(a0[0, 1], a1[0, 1])
    meta = ckpt.read_meta(result.last)
    assert meta["tasks"] == ["semseg", "depth", "normals", "edge"]
    assert meta["trained_tasks"] == ["semseg", "depth", "edge"]


def test_tasks_without_labels_need_a_model_to_start_from(tmp_path):
    with pytest.raises(ConfigError, match="train.init_from"):  # a config check: it fails before any work
        tiny_cfg(tmp_path, "zs", "data.tasks=[semseg,depth]", "model.tasks=[semseg,depth,normals]")
    assert not (tmp_path / "zs").exists()


def test_model_tasks_must_include_the_data_tasks():
    with pytest.raises(ConfigError, match="model.tasks"):
        load_config(None, ["data.tasks=[semseg,depth]", "model.tasks=[semseg]"])


def test_zeroshot_command_end_to_end(tmp_path):
    cfg = tiny_cfg(tmp_path, "zsrun", "train.steps=4", "train.eval_every=4", "zeroshot.steps=3",
                   *_target("zeroshot", tmp_path, "fog"))
    result = run_zeroshot(cfg, progress=False)
    names = [r.name for r in result.rows]
    assert names == ["source model, unchanged (ours)", "source model, unchanged (TROA off)",
                     "zero-shot transfer (ours)", "zero-shot transfer (TROA off)"]
    for row in result.rows:
        assert math.isfinite(row.metrics["normals"]["mean"])
        assert set(row.metrics) == {"semseg", "depth", "normals", "edge"}
    assert result.labelled_tasks == ["semseg", "depth", "edge"]
    doc = json.loads((tmp_path / "zsrun" / "zeroshot.json").read_text())
    assert doc["zero_shot_tasks"] == ["normals"]
    assert "zero-shot normals mean" in (tmp_path / "zsrun" / "zeroshot.md").read_text()
    # the transferred model started from the source model (init_from) and trained 3 steps
    target_cfg = (tmp_path / "zsrun" / "target-adapters" / "config.yaml").read_text()
    assert "source-adapters/checkpoints" in target_cfg
    assert ckpt.read_meta(result.rows[2].checkpoint)["step"] == 3


def test_zeroshot_rejects_a_task_the_source_does_not_learn(tmp_path):
    cfg = tiny_cfg(tmp_path, "x", "data.tasks=[semseg,depth]", "zeroshot.tasks=[normals]")
    with pytest.raises(ConfigError, match="zeroshot.tasks"):
        run_zeroshot(cfg, progress=False)


# ------------------------------------------------------------------------------- adaptation


def test_discriminator_inputs():
    torch.manual_seed(0)
    seg = discriminator_input("semseg", torch.randn(2, 5, 8, 8))
    assert seg.shape == (2, 5, 8, 8) and seg.min() >= 0
    entropy = seg.sum(1)  # the self-information map sums to the normalised entropy, in [0, 1]
    assert float(entropy.max()) <= 1 + 1e-5
    uniform = discriminator_input("semseg", torch.zeros(1, 5, 4, 4)).sum(1)
    torch.testing.assert_close(uniform, torch.ones(1, 4, 4))
    depth = discriminator_input("depth", 3 + 2 * torch.randn(2, 1, 8, 8))
    torch.testing.assert_close(depth.flatten(1).mean(1), torch.zeros(2), atol=1e-5, rtol=0)
    normals = discriminator_input("normals", torch.randn(2, 3, 8, 8))
    torch.testing.assert_close(normals.norm(dim=1), torch.ones(2, 8, 8))
    edge = discriminator_input("edge", torch.randn(2, 1, 8, 8))
    assert float(edge.min()) >= 0 and float(edge.max()) <= 1
    assert OutputDiscriminator(5, 8)(seg).shape == (2, 1, 2, 2)  # small maps are upsampled to 32 px
    assert OutputDiscriminator(1, 8)(torch.zeros(1, 1, 64, 64)).shape == (1, 1, 4, 4)


def test_discriminators_learn_to_tell_the_domains_apart():
    cfg = load_config(None, ["adapt.disc_lr=1e-3", "adapt.disc_channels=8"]).adapt
    torch.manual_seed(0)
    adversary = DomainAdversary(cfg, ["depth"], {}, total_steps=100)
    source = {"depth": torch.randn(8, 1, 32, 32)}
    target = {"depth": torch.randn(8, 1, 32, 32).sign()}  # a different output distribution
    first = None
    for step in range(60):
        adversary.generator_loss(target, step)
        logs = adversary.discriminator_step(source, step)
        first = first if first is not None else logs["disc/depth"]
    assert logs["disc/depth"] < 0.5 * first  # it separates them
    gen, _ = adversary.generator_loss(target, 60)
    assert float(gen) > 0.005 * math.log(2)  # so fooling it now costs more than chance


def test_adaptation_never_reads_target_labels(tmp_path):
    from taskadapt.data.scenes import write_scenes

    root = write_scenes(tmp_path / "dusk", domain="dusk", counts={"train": 24, "val": 0, "test": 4}, size=32,
                        seed=1, progress=False)
    n = _corrupt_labels(root, "train", ["segmentation", "depth", "normals", "edge"])
    assert n == 4 * 24
    for task in ("semseg", "depth", "normals", "edge"):  # any read of a target label would fail
        with pytest.raises(DatasetError):
            create_dataset("nyud", root, "train", tasks=[task])[0]
    cfg = tiny_cfg(tmp_path, "ad", "adapt.enabled=true", *_target("adapt", tmp_path, "dusk"))
    result = train(cfg, progress=False)
    rows = (tmp_path / "ad" / "log.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert {"adv/semseg", "adv/depth", "adv/normals", "adv/edge", "disc/edge"} <= set(header)
    state = ckpt.load_train_state(result.last)
    assert set(state["adversary"]["discriminators"]) >= {"semseg.0.weight", "edge.8.bias"}


def test_adaptation_resumes_to_the_uninterrupted_run(tmp_path, monkeypatch):
    from test_trainer import _interrupt_after

    from taskadapt.train.trainer import TrainingInterrupted

    extra = ["adapt.enabled=true", *_target("adapt", tmp_path, "dusk")]
    full = train(tiny_cfg(tmp_path, "full", *extra), progress=False)
    _interrupt_after(monkeypatch, 3)
    with pytest.raises(TrainingInterrupted):
        train(tiny_cfg(tmp_path, "split", *extra), progress=False)
    monkeypatch.undo()
    resumed = train(tiny_cfg(tmp_path, "split", *extra), resume="last", progress=False)
    a, b = ckpt.load_weights(full.last), ckpt.load_weights(resumed.last)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    da = ckpt.load_train_state(full.last)["adversary"]["discriminators"]
    db = ckpt.load_train_state(resumed.last)["adversary"]["discriminators"]
    for key in da:
        torch.testing.assert_close(da[key], db[key], rtol=0, atol=1e-6, msg=key)


def test_troa_ignores_the_appended_target_samples():
    aff = TaskAffinity(2, "cosine", momentum=0.0)
    z = torch.zeros(2, 4, 3, requires_grad=True)
    aff.watch(z)
    grads = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 1.0, 0]])  # task 0 per sample
    other = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0]])  # task 1 per sample
    (z * torch.stack([grads, other])).sum().backward()
    aff.update(torch.ones(2), samples=2)  # samples 2 and 3 (orthogonal) must not count
    assert float(aff.affinity[0, 1]) == pytest.approx(1.0)


def test_adapt_checks_the_crop_sizes_before_training(tmp_path):
    cfg = tiny_cfg(tmp_path, "x", *_target("adapt", tmp_path, "dusk"), "adapt.target.crop_size=48")
    with pytest.raises(ConfigError, match="crop_size"):
        run_adapt(cfg, progress=False)
    assert not (tmp_path / "x" / "source-only").exists()


def test_gap_closed():
    assert gap_closed(0.2, 0.3, 0.4) == pytest.approx(0.5)  # mIoU
    assert gap_closed(1.0, 0.9, 0.8) == pytest.approx(0.5)  # RMSE, lower is better: same formula
    assert gap_closed(1.0, 1.1, 0.8) == pytest.approx(-0.5)  # adaptation hurt
    assert gap_closed(1.0, 1.0, 1.0) is None


def test_adapt_command_end_to_end(tmp_path):
    cfg = tiny_cfg(tmp_path, "adrun", "train.steps=3", "train.eval_every=3", "data.tasks=[semseg,depth]",
                   *_target("adapt", tmp_path, "dusk"), "adapt.target.tasks=[semseg,depth]")
    result = run_adapt(cfg, progress=False)
    assert set(result.metrics) == {"source only", "adapted (ours)", "target supervised"}
    assert set(result.gap_closed) == {"semseg", "depth"}
    assert "domain: dusk" in (tmp_path / "adrun" / "target-supervised" / "config.yaml").read_text()
    md = (tmp_path / "adrun" / "adapt.md").read_text()
    assert "share of the gap closed" in md
    saved = load_config(tmp_path / "adrun" / "adapted" / "config.yaml")
    assert saved.adapt.enabled and not load_config(tmp_path / "adrun" / "source-only" / "config.yaml").adapt.enabled


# -------------------------------------------------------------------------------- novel domains


def test_relative_drop_has_one_sign_for_worse():
    assert relative_drop("semseg", 0.4, 0.3) == pytest.approx(0.25)  # mIoU fell: worse
    assert relative_drop("depth", 0.5, 0.6) == pytest.approx(0.2)  # rmse rose: worse
    assert relative_drop("normals", 30.0, 27.0) == pytest.approx(-0.1)  # mean angle fell: better


def test_parse_domain():
    assert parse_domain("dusk=runs/x/dusk").name == "dusk"
    assert parse_domain("runs/scenes/fog/").name == "fog"
    with pytest.raises(ConfigError):
        parse_domain("=runs/x")


def test_eval_over_several_domains(source_run, tmp_path, capsys):
    src, tmp = source_run
    from taskadapt.data.scenes import write_scenes

    fog = write_scenes(tmp_path / "fog", domain="fog", counts={"train": 0, "val": 0, "test": 4}, size=32, seed=1,
                       progress=False)
    own = tmp / "scenes"
    code = main(["eval", str(src.last), str(src.best), "--data", f"studio={own}", "--data", str(fog),
                 "--out", str(tmp_path / "dom")])
    assert code == 0
    doc = json.loads((tmp_path / "dom" / "domains.json").read_text())
    assert doc["models"] == ["src", "src-2"]
    m = doc["metrics"]["src"]
    assert set(m) == {"studio", "fog"}
    drop = doc["drops"]["src"]["fog"]["semseg"]
    assert drop == pytest.approx((m["studio"]["semseg"]["mIoU"] - m["fog"]["semseg"]["mIoU"])
                                 / m["studio"]["semseg"]["mIoU"])
    assert "(in-domain)" in (tmp_path / "dom" / "domains.md").read_text()
    out = capsys.readouterr().out
    assert "novel domains" in out


def test_eval_several_checkpoints_needs_data(source_run, capsys):
    src, _ = source_run
    assert main(["eval", str(src.last), str(src.best)]) == 2
    assert "--data" in capsys.readouterr().err


def test_evaluate_domains_rejects_twin_names(source_run, tmp_path):
    src, tmp = source_run
    with pytest.raises(ConfigError, match="named alike"):
        evaluate_domains([src.last], [parse_domain(f"a={tmp}"), parse_domain(f"a={tmp}")], out=tmp_path)
