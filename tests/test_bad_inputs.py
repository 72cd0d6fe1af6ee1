"""Bad input as a user types it: each case exits 2 with one message naming the problem and the fix, no
traceback, nothing overwritten (issue 15). Every test here failed on the code before that issue."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from taskadapt.cli import main
from taskadapt.config import load_config
from taskadapt.errors import ConfigError

TINY = ["data.scenes.train=12", "data.scenes.val=0", "data.scenes.test=3", "data.scenes.size=32", "data.crop_size=32",
        "data.batch_size=4", "model.backbone_kwargs={patch_size: 8, embed_dim: 32, depth: 4, num_heads: 2}",
        "model.decoder_channels=16", "model.task_embed_dim=8", "train.steps=4", "train.warmup_steps=1",
        "train.eval_every=4", "train.checkpoint_every=2", "train.log_every=1"]


def _run(args: list[str], capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main(args)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.err


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished 4-step run (its scenes in its own folder) and its config overrides."""
    base = tmp_path_factory.mktemp("bad")
    overrides = [*TINY, f"data.root={base / 'scenes'}", f"out_dir={base / 'run'}"]
    assert main(["train", *overrides]) == 0
    return base, overrides


# -- 1. overrides ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("override", "key", "value"), [
    ("model.loss_weights.semseg=2", ("model", "loss_weights"), {"semseg": 2.0}),
    ("model.backbone_kwargs.depth=6", ("model", "backbone_kwargs"), {"depth": 6}),
    ("adapt.adv_weights.semseg=0.5", ("adapt", "adv_weights"), {"semseg": 0.5}),
    ("data.options.num_classes=16", ("data", "options"), {"num_classes": 16}),
])
def test_dotted_overrides_reach_dict_entries(override, key, value):
    extra = ["data.format=cityscapes", "data.root=/x", "data.tasks=[semseg,depth]"] if "options" in override else []
    cfg = load_config(None, [*extra, override])
    assert getattr(getattr(cfg, key[0]), key[1]) == value


@pytest.mark.parametrize(("override", "message"), [
    ("train.lr=nan", "config key 'train.lr' must be a finite number"),
    ("model.loss_weights.semseg=inf", "config key 'model.loss_weights.semseg' must be a finite number"),
    ("train.lr.x=1", "'train.lr' is a value, not a section"),
    ("model.loss_weights.semseg.x=1", "goes below an entry of the mapping 'model.loss_weights'"),
    ("train.device=gpu", "config key 'train.device'"),
])
def test_bad_numbers_and_keys_are_one_line(override, message, capsys):
    code, err = _run(["config", "show", override], capsys)
    assert code == 2 and message in err


# -- 2. messages are literal ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["a[/x]b", "[bold]c", "d[semseg,depth]"])
def test_paths_with_brackets_are_printed_as_they_are(name, tmp_path, capsys):
    missing = tmp_path / name / "best.safetensors"
    code, err = _run(["eval", str(missing)], capsys)
    assert code == 2 and str(missing) in " ".join(err.split())


def test_hints_keep_their_bracketed_examples(capsys):
    code, err = _run(["config", "show", "data.tasks=[]"], capsys)
    assert code == 2 and "data.tasks=[semseg,depth]" in err


# -- 3. resume ----------------------------------------------------------------------------------------------

def test_resume_takes_the_runs_own_config(tiny_run, tmp_path, capsys):
    base, overrides = tiny_run
    last = base / "run" / "checkpoints" / "last.safetensors"
    # a longer schedule: the run's config plus the one changed key, named in the output
    code = main(["train", "--resume", str(last), "train.steps=6"])
    out = capsys.readouterr().out
    assert code == 0 and "train.steps: 4 -> 6" in " ".join(out.split())
    from taskadapt.run import Run

    resumed = Run.open(last)
    assert resumed.step == 6
    # the run's own data and model, not the defaults (which would render 2,700 scenes of 128 px elsewhere)
    assert resumed.config.data.root == str(base / "scenes") and resumed.config.data.scenes.size == 32


@pytest.mark.parametrize(("override", "message"), [
    ("data.batch_size=2", "data.batch_size"),
    ("model.backbone_kwargs={patch_size: 8, embed_dim: 48, depth: 4, num_heads: 2}", "model.backbone_kwargs"),
    ("train.steps=1", "already done"),
])
def test_resume_refuses_what_would_break_it(tiny_run, override, message, capsys):
    base, _ = tiny_run
    last = base / "run" / "checkpoints" / "last.safetensors"
    before = last.read_bytes()
    code, err = _run(["train", "--resume", str(last), override], capsys)
    assert code == 2 and message in err
    assert last.read_bytes() == before


def test_resume_with_another_backbone_in_the_config_is_one_error(tiny_run, capsys):
    from taskadapt.train.trainer import train

    base, overrides = tiny_run
    last = base / "run" / "checkpoints" / "last.safetensors"
    cfg = load_config(None, [*overrides, "model.method=lora"])
    with pytest.raises(ConfigError, match="cannot resume .* method adapters"):
        train(cfg, resume=last, progress=False)


# -- 4. eval checks the labels and reads NAME=FOLDER once --------------------------------------------------

def test_eval_names_the_file_of_an_out_of_range_class(tiny_run, tmp_path, capsys):
    import shutil

    base, _ = tiny_run
    scenes = tmp_path / "scenes"
    shutil.copytree(base / "scenes", scenes)
    seg = scenes / "segmentation" / "test_000001.png"
    Image.fromarray(np.full((32, 32), 200, dtype=np.uint8)).save(seg)  # class 199 of 9
    code, err = _run(["eval", str(base / "run" / "checkpoints" / "last.safetensors"), "--data", str(scenes)], capsys)
    assert code == 2 and "test_000001.png" in err and "class id 199" in err


def test_eval_refuses_a_label_of_the_wrong_shape(tiny_run, tmp_path, capsys):
    import shutil

    base, _ = tiny_run
    scenes = tmp_path / "scenes"
    shutil.copytree(base / "scenes", scenes)
    np.save(scenes / "depth" / "test_000000.npy", np.ones((16, 32), dtype=np.float32))
    code, err = _run(["eval", str(base / "run" / "checkpoints" / "last.safetensors"), "--data", str(scenes)], capsys)
    assert code == 2 and "test_000000.npy" in err and "shape" in err


def test_eval_data_name_equals_folder_given_once(tiny_run, tmp_path, capsys):
    base, _ = tiny_run
    code = main(["eval", str(base / "run" / "checkpoints" / "last.safetensors"), "--data",
                 f"studio={base / 'scenes'}", "--out", str(tmp_path / "e")])
    assert code == 0 and (tmp_path / "e" / "metrics.json").is_file()


# -- 5. 16-bit pictures -------------------------------------------------------------------------------------

def test_a_16_bit_grey_picture_is_scaled_not_clipped(tmp_path):
    from taskadapt.api import read_image

    values = (np.arange(48 * 64).reshape(48, 64) * 21).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    rgb = read_image(tmp_path / "g16.png")
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[..., 0], np.rint(values * (255 / 65535)).astype(np.uint8))
    assert (rgb == 255).mean() < 0.01  # Pillow's convert("RGB") made 99 % of it white


# -- 9. devices ----------------------------------------------------------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_asking_for_cuda_without_one_is_one_error(tiny_run, capsys):
    import taskadapt

    base, _ = tiny_run
    last = base / "run" / "checkpoints" / "last.safetensors"
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        taskadapt.load(last, device="cuda")
    code, err = _run(["eval", str(last), "--device", "cuda"], capsys)
    assert code == 2 and "no CUDA GPU" in err
    code, err = _run(["eval", str(last), "--device", "tpu"], capsys)
    assert code == 2 and "device 'tpu' is unknown" in err


# -- 5. sizes, seeds and files that must not be clobbered ------------------------------------------------------

def test_make_scenes_refuses_a_huge_size_before_making_the_folder(tmp_path, capsys):
    code, err = _run(["data", "make-scenes", "--out", str(tmp_path / "big"), "--size", "100000"], capsys)
    assert code == 2 and "[16, 1024]" in err and not (tmp_path / "big").exists()
    code, err = _run(["config", "show", "data.scenes.size=4096"], capsys)
    assert code == 2 and "data.scenes.size" in err


def test_pretrain_keeps_an_existing_file_and_the_evaluation_seed(tmp_path, capsys):
    out = tmp_path / "w.safetensors"
    out.write_bytes(b"precious")
    code, err = _run(["pretrain", "--out", str(out), "--steps", "1"], capsys)
    assert code == 2 and "--overwrite" in err and out.read_bytes() == b"precious"
    code, err = _run(["pretrain", "--out", str(tmp_path / "new.safetensors"), "--steps", "1", "--seed", "0"], capsys)
    assert code == 2 and "evaluation scenes' seed" in err and not (tmp_path / "new.safetensors").exists()


# -- 8. what eval reports ----------------------------------------------------------------------------------------

def test_eval_reports_per_class_iou_with_names_and_scores_a_task_subset(tiny_run, tmp_path, capsys):
    import json

    from taskadapt.data.scenes import CLASS_NAMES

    base, _ = tiny_run
    last = base / "run" / "checkpoints" / "last.safetensors"
    assert main(["eval", str(last), "--out", str(tmp_path / "all")]) == 0
    doc = json.loads((tmp_path / "all" / "metrics.json").read_text())
    iou = doc["per_class"]["semseg"]["IoU"]
    assert list(iou) == list(CLASS_NAMES)
    assert sum(iou.values()) / len(iou) == pytest.approx(doc["metrics"]["semseg"]["mIoU"], abs=1e-6)
    assert "## semseg: per class" in (tmp_path / "all" / "report.md").read_text()
    assert main(["eval", str(last), "--tasks", "depth,edge", "--out", str(tmp_path / "some")]) == 0
    doc = json.loads((tmp_path / "some" / "metrics.json").read_text())
    assert list(doc["metrics"]) == ["depth", "edge"]
    code, err = _run(["eval", str(last), "--tasks", "parts", "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "does not predict ['parts']" in err


def test_a_checkpoint_finds_its_data_from_another_directory(tmp_path, monkeypatch):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(work)
    assert main(["train", *TINY, "data.root=scenes", "out_dir=run"]) == 0  # relative folders
    monkeypatch.chdir(elsewhere)
    assert main(["eval", str(work / "run" / "checkpoints" / "last.safetensors"), "--out", "e"]) == 0
    assert (elsewhere / "e" / "metrics.json").is_file()


# -- 3. init_from with another task list or another model ---------------------------------------------------------

def test_init_from_a_model_with_more_or_fewer_tasks(tiny_run, tmp_path):
    from taskadapt.checkpoint import load_weights
    from taskadapt.models import create_model
    from taskadapt.run import Run

    base, overrides = tiny_run
    last = base / "run" / "checkpoints" / "last.safetensors"
    source, state = Run.open(last), load_weights(last)
    # fewer tasks: what the kept tasks learned carries over, row by row
    fewer = load_config(None, [*overrides, "data.tasks=[depth,semseg]", f"out_dir={tmp_path / 'f'}"])
    model = create_model(fewer, num_classes=source.num_classes)
    assert source.load_weights_for_tasks(model) == []
    own = model.state_dict()
    for t in ("depth", "semseg"):
        row = own["task_embeddings"][model.tasks.index(t)]
        assert torch.equal(row, state["task_embeddings"][source.tasks.index(t)])
        assert torch.equal(own[f"heads.{t}.out.weight"], state[f"heads.{t}.out.weight"])
    i, j = source.tasks.index("depth"), source.tasks.index("semseg")
    assert own["affinity.affinity"][0, 1] == state["affinity.affinity"][i, j]
    # more tasks: a source of two tasks starts a four-task model; the new tasks keep their fresh heads
    two = load_config(None, [*overrides, "data.tasks=[semseg,depth]", f"out_dir={tmp_path / 'two'}"])
    assert main(["train", *overrides, "data.tasks=[semseg,depth]", f"out_dir={tmp_path / 'two'}"]) == 0
    small = Run.open(tmp_path / "two" / "checkpoints" / "last.safetensors")
    torch.manual_seed(5)
    bigger = create_model(load_config(None, overrides), num_classes=small.num_classes)
    fresh = bigger.state_dict()["heads.normals.out.weight"].clone()
    assert small.load_weights_for_tasks(bigger) == ["normals", "edge"]
    assert torch.equal(bigger.state_dict()["heads.normals.out.weight"], fresh)
    learned = load_weights(small.path)["heads.depth.out.weight"]
    assert torch.equal(bigger.state_dict()["heads.depth.out.weight"], learned)
    assert two.data.tasks == ["semseg", "depth"]
    # through the trainer: a task subset trains from the bigger model
    assert main(["train", *overrides, "data.tasks=[semseg]", f"train.init_from={last}",
                 f"out_dir={tmp_path / 'sub'}"]) == 0


def test_init_from_another_method_is_one_error(tiny_run, tmp_path, capsys):
    base, overrides = tiny_run
    last = base / "run" / "checkpoints" / "last.safetensors"
    code, err = _run(["train", *overrides, "model.method=lora", f"train.init_from={last}",
                      f"out_dir={tmp_path / 'l'}"], capsys)
    assert code == 2 and "same method and backbone" in err and "adapters" in err


# -- 6. wide boundary labels ---------------------------------------------------------------------------------------

def test_nyud_boundaries_are_thinned_before_matching():
    from taskadapt.data.datasets import edge_thin_targets
    from taskadapt.evaluation import make_metrics

    nyud = load_config(None, ["data.format=nyud", "data.root=/x"]).data
    scenes = load_config(None, []).data
    assert edge_thin_targets(nyud) and not edge_thin_targets(scenes)
    wide = torch.zeros(1, 1, 40, 40)
    wide[..., 18:21, 5:35] = 1.0  # a 3-px-wide true line, as NYUD draws them
    thin = torch.zeros(1, 1, 40, 40)
    thin[..., 19, 5:35] = 1.0  # the prediction: one 1-px line on its centre
    scores = {}
    for flag in (False, True):
        metric = make_metrics(["edge"], {}, edge_thin_targets=flag)["edge"]
        metric.update(thin, wide)
        scores[flag] = float(metric.compute()["odsF"])
    assert scores[True] > 0.95 and scores[False] < 0.8  # thinning also trims the line's ends by a pixel


# -- the same cases as a user types them ----------------------------------------------------------------------------

def test_dict_entry_overrides_through_the_cli(capsys):
    code = main(["config", "show", "model.loss_weights.semseg=2", "model.backbone_kwargs.depth=6"])
    out = capsys.readouterr().out
    assert code == 0 and "semseg: 2.0" in out and "depth: 6" in out


def test_predict_reads_a_16_bit_grey_picture_through_the_cli(tiny_run, tmp_path):
    base, _ = tiny_run
    values = (np.arange(32 * 48).reshape(32, 48) * 40).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    last = base / "run" / "checkpoints" / "last.safetensors"
    assert main(["predict", str(last), str(tmp_path / "g16.png"), "--out", str(tmp_path / "p")]) == 0
    depth = np.load(tmp_path / "p" / "g16_depth.npy")
    assert depth.shape == (32, 48) and np.isfinite(depth).all()
