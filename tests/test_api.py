"""``taskadapt.load`` and ``Predictor.predict``: any picture in, per-task arrays at its size out."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import taskadapt
from taskadapt.api import Predictor, load
from taskadapt.checkpoint import read_meta, save_checkpoint
from taskadapt.config import Config, build_config, load_config, to_dict
from taskadapt.data.scenes import CLASS_NAMES
from taskadapt.errors import CheckpointError, DatasetError
from taskadapt.models import create_model
from taskadapt.tasks import get_task

TINY = ["data.scenes.train=32", "data.scenes.val=4", "data.scenes.test=8", "data.scenes.size=32",
        "data.crop_size=32", "data.batch_size=4",
        "model.backbone_kwargs={patch_size: 8, embed_dim: 32, depth: 4, num_heads: 2}",
        "model.decoder_channels=16", "train.steps=4", "train.eval_every=4"]

_RUN: dict = {}


def trained_checkpoint(tmp_path_factory) -> dict:
    """Train the tiny model once per process; shared by this module and test_eval_predict."""
    if not _RUN:
        from taskadapt.train.trainer import train

        base = tmp_path_factory.mktemp("tiny")
        cfg = load_config(None, [f"data.root={base / 'scenes'}", *TINY, f"out_dir={base / 'run'}"])
        result = train(cfg, progress=False)
        _RUN.update(checkpoint=result.last, cfg=cfg, root=base / "scenes", run=base / "run")
    return _RUN


def write_checkpoint(path, cfg: Config, affinity=None, **meta_changes) -> None:
    """An untrained checkpoint of ``cfg`` (fast: no training), header as the trainer writes it."""
    torch.manual_seed(0)
    model = create_model(cfg, num_classes={"semseg": len(CLASS_NAMES)})
    meta = {"config": to_dict(cfg), "step": 0, "tasks": list(cfg.data.tasks), "num_classes": {"semseg": 9},
            "backbone": cfg.model.backbone, "method": cfg.model.method, "affinity": affinity, "metrics": {},
            **meta_changes}
    save_checkpoint(path, model, meta)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def predictor(run) -> Predictor:
    return load(run["checkpoint"], device="cpu")


def _check_prediction(out: dict, shape: tuple[int, ...]) -> None:
    """Shapes, dtypes and value ranges of every task, per the api module's table."""
    assert set(out) == {"semseg", "depth", "normals", "edge"}
    assert out["semseg"].shape == shape and out["semseg"].dtype == np.int64
    assert out["semseg"].min() >= 0 and out["semseg"].max() < len(CLASS_NAMES)
    assert out["depth"].shape == shape and out["depth"].dtype == np.float32
    assert np.isfinite(out["depth"]).all() and out["depth"].min() >= 0
    assert out["normals"].shape == (*shape, 3) and out["normals"].dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out["normals"], axis=-1), 1.0, atol=1e-4)
    assert out["edge"].shape == shape and out["edge"].dtype == np.float32
    assert out["edge"].min() >= 0 and out["edge"].max() <= 1


def test_predict_any_input_type_and_size(predictor, tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    _check_prediction(predictor.predict(arr), (37, 53))
    png = tmp_path / "odd.png"
    Image.fromarray(arr).save(png)
    from_path = predictor.predict(str(png))
    _check_prediction(from_path, (37, 53))
    from_pil = predictor.predict(Image.open(png))
    from_float = predictor.predict(arr.astype(np.float32) / 255.0)
    for task in from_path:  # the same pixels give the same prediction whatever the container
        np.testing.assert_allclose(from_pil[task], from_path[task], atol=1e-6)
        np.testing.assert_allclose(from_float[task], from_path[task], atol=1e-5)
    tensor = torch.rand(3, 41, 23)
    _check_prediction(predictor.predict(tensor), (41, 23))
    batch = predictor.predict(torch.rand(3, 3, 19, 27), batch_size=2)  # chunked batch
    assert batch["semseg"].shape == (3, 19, 27) and batch["normals"].shape == (3, 19, 27, 3)
    single = predictor.predict(torch.from_numpy(arr).permute(2, 0, 1).float() / 255)
    np.testing.assert_allclose(single["depth"], from_path["depth"], atol=1e-5)


def test_predict_equals_an_independent_forward_at_the_model_size(run, predictor):
    """Rebuild the model from the file by hand; at the model's own size no resize may happen."""
    cfg = build_config({**to_dict(run["cfg"])})
    model = create_model(cfg, num_classes={"semseg": 9})
    model.load_state_dict(load_file(str(run["checkpoint"])))
    model.eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        raw = model(x)
    out = predictor.predict(x)
    assert predictor.input_size == 32
    np.testing.assert_array_equal(out["semseg"], get_task("semseg").postprocess(raw["semseg"]).numpy())
    np.testing.assert_allclose(out["depth"], raw["depth"].clamp(min=0)[:, 0].numpy(), atol=1e-6)
    np.testing.assert_allclose(out["edge"], torch.sigmoid(raw["edge"])[:, 0].numpy(), atol=1e-6)
    normals = torch.nn.functional.normalize(raw["normals"], dim=1).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(out["normals"], normals, atol=1e-5)


def test_predict_resizes_like_evaluation(predictor):
    """Odd sizes: antialiased resize to 32, raw outputs back bilinearly, then post-processing."""
    x = torch.rand(1, 3, 45, 29, generator=torch.Generator().manual_seed(2))
    small = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        raw = predictor.model(small.clamp(0, 1))
    depth = torch.nn.functional.interpolate(raw["depth"], size=(45, 29), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(predictor.predict(x)["depth"], depth.clamp(min=0)[:, 0].numpy(), atol=1e-5)


def test_predictor_attributes(run, predictor):
    meta = read_meta(run["checkpoint"])
    assert predictor.tasks == ["semseg", "depth", "normals", "edge"]
    assert predictor.num_classes == {"semseg": 9}
    assert predictor.class_names == {"semseg": list(CLASS_NAMES)}
    assert predictor.affinity.shape == (4, 4)
    np.testing.assert_allclose(predictor.affinity, np.asarray(meta["affinity"]))
    np.testing.assert_allclose(predictor.affinity, predictor.model.affinity.affinity.numpy(), atol=1e-6)
    assert isinstance(predictor.config, Config) and predictor.config.data.crop_size == 32
    assert not predictor.model.training
    assert taskadapt.load is load


def test_load_ignores_the_pretrained_file_of_the_run(tmp_path):
    """The backbone weights come from the checkpoint: a vanished pretrained file must not matter."""
    cfg = load_config(None, [*TINY, "model.method=mtl_finetune", "data.tasks=[semseg,depth]"])
    path = tmp_path / "ckpt.safetensors"
    write_checkpoint(path, cfg)
    meta_cfg = to_dict(cfg)
    meta_cfg["model"]["pretrained"] = str(tmp_path / "gone.safetensors")
    write_checkpoint(path, cfg, config=meta_cfg)
    p = load(path, device="cpu")
    assert p.config.model.pretrained is None
    assert p.affinity is None  # a baseline method: no TROA
    out = p.predict(np.zeros((10, 12, 3), np.uint8))
    assert set(out) == {"semseg", "depth"} and out["depth"].shape == (10, 12)


def test_corrupt_and_foreign_checkpoints_raise_checkpoint_error(run, tmp_path):
    good = run["checkpoint"].read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good[: len(good) // 2])
    noise = tmp_path / "noise.safetensors"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, str(foreign))
    missing = tmp_path / "missing.safetensors"
    for path, needle in [(truncated, "truncated or corrupt"), (noise, "corrupt"),
                         (foreign, "not a taskadapt checkpoint"), (missing, "does not exist")]:
        with pytest.raises(CheckpointError, match=needle) as err:
            load(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_checkpoint_whose_weights_do_not_fit_its_config(tmp_path):
    cfg = load_config(None, TINY)
    path = tmp_path / "ckpt.safetensors"
    wider = to_dict(cfg)
    wider["model"]["decoder_channels"] = 24  # the header now describes another model
    write_checkpoint(path, cfg, config=wider)
    with pytest.raises(CheckpointError, match="does not fit"):
        load(path)


def test_bad_inputs_have_clear_errors(predictor, tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("not a picture")
    with pytest.raises(DatasetError, match="notes.png.*cannot be read"):
        predictor.predict(fake)
    with pytest.raises(DatasetError, match="does not exist"):
        predictor.predict(tmp_path / "nope.jpg")
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        predictor.predict(np.zeros((3, 8, 8, 2), np.uint8))
    with pytest.raises(ValueError, match="divide 0..255 data by 255"):
        predictor.predict(np.full((8, 8, 3), 200.0, np.float32))
    with pytest.raises(TypeError, match="cannot predict on a list"):
        predictor.predict([1, 2, 3])
