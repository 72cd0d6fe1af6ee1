"""``taskadapt predict`` outputs: raw files that read back, --overwrite, folders and globs, the "keep"
resize with overlapping windows, bounded memory on big pictures, the sheet's legend and depth colour bar."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from test_api import run, trained_checkpoint  # noqa: F401 -- the module fixture `run`

import taskadapt.api as api
import taskadapt.evaluation.predictions as predictions
import taskadapt.viz as viz
from taskadapt.api import load, model_shape, resize_images, shrink_rgb8, to_batch, upsample_blocks, window_starts
from taskadapt.cli import main
from taskadapt.errors import ConfigError, DatasetError
from taskadapt.evaluation.predictions import expand_inputs, predict_images
from taskadapt.tasks import get_task

TASKS = ["semseg", "depth", "normals", "edge"]
FILES = {"semseg": [".png", ".ids.png"], "depth": [".png", ".mm.png", ".npy"], "normals": [".png", ".npy"],
         "edge": [".png", ".npy"]}


@pytest.fixture(scope="module")
def predictor(run):  # noqa: F811
    return load(run["checkpoint"], device="cpu")


def _picture(path, shape, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)).save(path)
    return path


def _snapshot(folder):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


# ---------------------------------------------------------------------------------- 1. raw outputs


def test_raw_outputs_read_back_as_the_prediction(run, predictor, tmp_path):  # noqa: F811
    image = _picture(tmp_path / "in" / "room.png", (37, 53))
    out = tmp_path / "out"
    paths = predict_images(run["checkpoint"], [str(image)], str(out))
    assert [p.name for p in paths] == [*(f"room_{t}{e}" for t in TASKS for e in FILES[t]), "room_sheet.png"]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)  # no temp file left
    want = predictor.predict(str(image))

    ids = np.asarray(Image.open(out / "room_semseg.ids.png"))
    assert ids.dtype == np.uint8 and ids.shape == (37, 53)
    np.testing.assert_array_equal(ids, want["semseg"])

    mm = np.asarray(Image.open(out / "room_depth.mm.png"))
    assert mm.dtype == np.uint16 and mm.shape == (37, 53)
    np.testing.assert_array_equal(mm, np.clip(np.round(want["depth"] * 1000), 0, 65535).astype(np.uint16))
    metres = np.load(out / "room_depth.npy")
    assert metres.dtype == np.float32 and metres.shape == (37, 53)
    np.testing.assert_array_equal(metres, want["depth"])

    normals = np.load(out / "room_normals.npy")
    assert normals.dtype == np.float32 and normals.shape == (37, 53, 3)
    np.testing.assert_array_equal(normals, want["normals"])

    edge = np.load(out / "room_edge.npy")
    assert edge.dtype == np.float32 and edge.shape == (37, 53)
    np.testing.assert_array_equal(edge, want["edge"])
    grey = Image.open(out / "room_edge.png")
    assert grey.mode == "L"
    np.testing.assert_array_equal(np.asarray(grey), np.round(want["edge"] * 255).astype(np.uint8))
    # the coloured pictures are the tasks' own
    for task in ("semseg", "normals"):
        value = want[task].transpose(2, 0, 1) if task == "normals" else want[task]
        picture = get_task(task).visualize(value, predictor.num_classes.get(task))
        np.testing.assert_array_equal(np.asarray(Image.open(out / f"room_{task}.png").convert("RGB")), picture)
    np.testing.assert_array_equal(np.asarray(Image.open(out / "room_depth.png").convert("RGB")),
                                  get_task("depth").visualize(want["depth"]))


def test_raw_converters_class_ids_above_255_and_depth_clipping(tmp_path):
    style = predictions._Style(get_task("semseg"), 300)
    ids = np.array([[0, 255], [256, 299]], np.int64)
    path = predictions._write(tmp_path / "x_semseg.ids.png", predictions._class_ids(ids, style))
    back = np.asarray(Image.open(path))
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, ids)
    assert predictions._class_ids(ids.clip(0, 8), predictions._Style(get_task("semseg"), 9)).dtype == np.uint8

    depth = np.array([[np.nan, 0.0, 1.2346], [70.0, np.inf, 65.5349]], np.float32)
    mm = predictions._depth_mm(depth, predictions._Style(get_task("depth")))
    np.testing.assert_array_equal(mm, [[0, 0, 1235], [65535, 65535, 65535]])
    path = predictions._write(tmp_path / "x_depth.mm.png", mm)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), mm)


def test_docs_describe_the_prediction_files():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text()
    for needle in ("_semseg.ids.png", "_depth.mm.png", "_depth.npy", "_normals.npy", "_edge.npy", "--overwrite",
                   "--resize"):
        assert needle in text, needle


# ---------------------------------------------------------------------------------- 2. --overwrite


def test_existing_outputs_are_refused_before_any_work(run, tmp_path, monkeypatch):  # noqa: F811
    a, b = _picture(tmp_path / "in" / "a.png", (20, 24), 1), _picture(tmp_path / "in" / "b.png", (20, 24), 2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "b_depth.npy").write_bytes(b"mine")  # only a later picture's file exists
    (out / "notes.txt").write_text("keep")
    before = _snapshot(out)

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the check")

    with monkeypatch.context() as m:
        m.setattr(predictions, "load", no_model)
        with pytest.raises(ConfigError, match=r"'.*b_depth\.npy' already exists; pass --overwrite") as err:
            predict_images(run["checkpoint"], [str(a), str(b)], str(out))
    assert "\n" not in str(err.value)
    assert _snapshot(out) == before  # nothing written, nothing touched

    paths = predict_images(run["checkpoint"], [str(a), str(b)], str(out), overwrite=True)
    assert out / "b_depth.npy" in paths and np.load(out / "b_depth.npy").shape == (20, 24)
    assert (out / "notes.txt").read_text() == "keep"
    with pytest.raises(ConfigError, match=r"a_semseg\.png' already exists"):  # the first one, in order
        predict_images(run["checkpoint"], [str(a)], str(out))


# ---------------------------------------------------------------------------------- 3. folders and globs


def test_folders_and_globs_expand_to_sorted_picture_files(tmp_path):
    folder = tmp_path / "photos"
    for name in ("b.JPG", "a.png", "c.webp", "d.tiff"):
        _picture(folder / name, (4, 4))
    (folder / "notes.txt").write_text("x")
    _picture(folder / "sub" / "e.png", (4, 4))  # not recursive
    assert [p.name for p in expand_inputs([str(folder)])] == ["a.png", "b.JPG", "c.webp", "d.tiff"]
    assert [p.name for p in expand_inputs([str(folder / "*.png"), str(folder / "[bc].*")])] == [
        "a.png", "b.JPG", "c.webp"]
    single = _picture(tmp_path / "x[1].png", (4, 4))  # an existing file is taken literally
    assert expand_inputs([str(single)]) == [single]

    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"folder '.*empty' holds no image files"):
        expand_inputs([str(tmp_path / "empty")])
    with pytest.raises(DatasetError, match=r"pattern '.*\*\.gif' matches no file"):
        expand_inputs([str(folder / "a.png"), str(folder / "*.gif")])
    with pytest.raises(DatasetError, match="missing.jpg.*does not exist"):
        expand_inputs([str(tmp_path / "missing.jpg")])


def test_cli_predicts_a_folder_with_keep_and_overwrite(run, tmp_path, capsys):  # noqa: F811
    folder = tmp_path / "photos"
    _picture(folder / "wide.png", (16, 48), 3)
    _picture(folder / "tall.jpg", (40, 20), 4)
    out = tmp_path / "out"
    args = ["predict", str(run["checkpoint"]), str(folder), "--out", str(out), "--device", "cpu"]
    assert main(args) == 0
    per_image = sum(len(v) for v in FILES.values()) + 1
    assert f"wrote {2 * per_image} files" in capsys.readouterr().out
    assert np.load(out / "wide_depth.npy").shape == (16, 48) and np.load(out / "tall_normals.npy").shape == (40, 20, 3)
    assert main(args) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--resize", "squash"]) == 0
    assert main([*args, "--overwrite", "--resize", "crop"]) == 2
    assert "unknown resize mode 'crop'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- 4. aspect ratio


def test_windows_cover_every_pixel_and_end_flush():
    cases = [(n, s, st) for s in (1, 5, 32) for st in sorted({1, max(1, s // 2), s}) for n in range(1, 4 * s + 3)]
    for length, size, stride in cases:
        starts = window_starts(length, size, stride)
        covered = np.zeros(length, bool)
        for s in starts:
            covered[s:s + size] = True
        assert covered.all(), (length, size, stride)
        assert starts[0] == 0 and starts == sorted(set(starts))
        if length >= size:
            assert starts[-1] == length - size  # flush with the end, never past it
        assert all(b - a <= stride for a, b in zip(starts, starts[1:], strict=False))


def test_window_stride_and_mode_errors():
    with pytest.raises(ConfigError, match=r"window stride 40 must be in \[1, 32\]"):
        window_starts(100, 32, 40)
    with pytest.raises(ConfigError, match="unknown resize mode 'fit'; use 'keep'"):
        model_shape(10, 20, 32, "fit")
    assert model_shape(6000, 8000, 32, "keep") == (32, 43)
    assert model_shape(8000, 6000, 32, "keep") == (43, 32)
    assert model_shape(6000, 8000, 32, "squash") == (32, 32)
    assert model_shape(10, 1000, 32, "keep") == (32, 3200)


def test_keep_equals_squash_on_a_square_picture(predictor):
    rgb = np.random.default_rng(5).integers(0, 256, (45, 45, 3), dtype=np.uint8)
    keep, squash = predictor.predict(rgb, mode="keep"), predictor.predict(rgb, mode="squash")
    for task in TASKS:
        np.testing.assert_array_equal(keep[task], squash[task])


def test_keep_on_a_3_to_1_picture_averages_overlapping_windows(predictor):
    x = torch.rand(1, 3, 24, 72, generator=torch.Generator().manual_seed(6))
    keep = predictor.predict(x[0], mode="keep")
    squash = predictor.predict(x[0])
    assert keep["depth"].shape == (24, 72) and keep["normals"].shape == (24, 72, 3)
    assert not np.allclose(keep["depth"], squash["depth"], atol=1e-3)
    # by hand: short side to 32 (32 x 96), windows at 0, 16, ..., 64, raw outputs averaged, back up, post-process
    small = F.interpolate(x, size=(32, 96), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    starts = [0, 16, 32, 48, 64]
    assert window_starts(96, 32, predictor.window_stride) == starts
    with torch.no_grad():
        raws = [predictor.model(small[..., s:s + 32]) for s in starts]
    total, count = torch.zeros(1, 1, 32, 96), torch.zeros(1, 1, 32, 96)
    for s, raw in zip(starts, raws, strict=True):
        total[..., s:s + 32] += raw["depth"]
        count[..., s:s + 32] += 1
    depth = F.interpolate(total / count, size=(24, 72), mode="bilinear", align_corners=False).clamp(min=0)[0, 0]
    np.testing.assert_allclose(keep["depth"], depth.numpy(), atol=1e-5)
    # the raw maps are averaged before post-processing: normals come out unit length
    np.testing.assert_allclose(np.linalg.norm(keep["normals"], axis=-1), 1.0, atol=1e-4)
    raw = predictor.predict_raw(x, mode="keep")
    assert raw["semseg"].shape == (1, 9, 24, 72)
    np.testing.assert_array_equal(raw["semseg"].argmax(1)[0].numpy(), keep["semseg"])


# ---------------------------------------------------------------------------------- 5. memory


@pytest.mark.parametrize("shape", [(37, 53), (32, 53), (300, 200), (600, 900), (20, 24), (1000, 17)])
def test_uint8_pictures_are_shrunk_in_strips_bit_for_bit(shape):
    rgb = np.random.default_rng(7).integers(0, 256, (*shape, 3), dtype=np.uint8)
    for mode in ("squash", "keep"):
        target = model_shape(*shape, 32, mode)
        torch.testing.assert_close(shrink_rgb8(rgb, target, rows=64), resize_images(to_batch(rgb)[0], target),
                                   atol=0, rtol=0)


def test_large_maps_are_upsampled_in_row_blocks(predictor, monkeypatch):
    raw = torch.randn(1, 9, 32, 43, generator=torch.Generator().manual_seed(8))
    whole = F.interpolate(raw, size=(301, 400), mode="bilinear", align_corners=False)
    blocks = list(upsample_blocks(raw, (301, 400), max_values=9 * 400 * 50))
    assert len(blocks) == 7 and all(b.shape[2] <= 50 for _, b in blocks)
    assert [r.start for r, _ in blocks] == list(range(0, 301, 50)) and blocks[-1][0].stop == 301
    torch.testing.assert_close(torch.cat([b for _, b in blocks], dim=2), whole, atol=1e-5, rtol=0)

    rgb = np.random.default_rng(9).integers(0, 256, (150, 210, 3), dtype=np.uint8)
    reference = predictor.predict(rgb)
    monkeypatch.setattr(api, "MAX_BLOCK_VALUES", 5000)
    stripped = predictor.predict(rgb)
    for task in ("depth", "normals", "edge"):
        np.testing.assert_allclose(stripped[task], reference[task], atol=1e-5)
    assert (stripped["semseg"] == reference["semseg"]).mean() > 0.999


def test_the_model_sees_only_small_inputs_and_tasks_come_one_at_a_time(predictor, monkeypatch):
    seen = []
    forward = predictor.model.forward
    monkeypatch.setattr(predictor.model, "forward", lambda x: seen.append(tuple(x.shape)) or forward(x))
    monkeypatch.setattr(api, "to_batch", lambda *a: pytest.fail("a uint8 picture was converted to float whole"))
    made = []
    full_size = api.Predictor._full_size
    monkeypatch.setattr(api.Predictor, "_full_size", lambda self, *a: made.append(a[0]) or full_size(self, *a))
    rgb = np.random.default_rng(10).integers(0, 256, (300, 200, 3), dtype=np.uint8)
    tasks = predictor.predict_iter(rgb, mode="keep", batch_size=2)
    task, value = next(tasks)
    assert made == [task] and value.shape[:2] == (300, 200)  # the first task only
    assert all(s[1:] == (3, 32, 32) and s[0] <= 2 for s in seen)  # windows of the input size, 2 per forward
    assert sum(s[0] for s in seen) == len(window_starts(48, 32, 16))  # 300 x 200 -> 48 x 32: 3 windows
    rest = dict(tasks)
    assert made == TASKS and set(rest) == set(TASKS[1:])


# ---------------------------------------------------------------------------------- 6. the sheet


def test_sheet_has_a_class_legend_and_a_depth_colour_bar_in_metres(tmp_path, monkeypatch):
    figures = []
    save = viz.save_figure
    monkeypatch.setattr(viz, "save_figure", lambda fig, path, **kw: figures.append(fig) or save(fig, path, **kw))
    semseg = np.zeros((20, 30), np.int64)
    semseg[:, 10:] = 3  # class 3 is the most frequent
    semseg[:2, :2] = 7
    depth = np.linspace(1.0, 5.0, 600, dtype=np.float32).reshape(20, 30)
    sample = {"image": torch.rand(3, 20, 30), "semseg": semseg, "depth": depth}
    names = [f"name{i}" for i in range(9)]
    plain = viz.contact_sheet([sample], tmp_path / "plain.png", {"semseg": 9})
    sheet = viz.contact_sheet([sample], tmp_path / "sheet.png", {"semseg": 9}, class_names={"semseg": names},
                              depth_range=(1.5, 4.5), depth_bar=True)
    assert figures[0].axes[1].get_legend() is None and len(figures[0].axes) == 3  # nothing new by default
    legend = figures[1].axes[1].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["name3", "name0", "name7"]
    colours = [tuple(np.round(np.asarray(h.get_facecolor()[:3]) * 255).astype(int)) for h in legend.legend_handles]
    assert colours == [tuple(int(v) for v in viz.palette(9)[i]) for i in (3, 0, 7)]
    bars = [c for ax in figures[1].axes for c in [ax, *ax.child_axes] if c.get_xlabel() == "depth (m)"]
    assert len(bars) == 1 and bars[0].get_xlim() == pytest.approx((1.5, 4.5))
    assert Image.open(sheet).size[1] > Image.open(plain).size[1]


def test_predicted_sheet_names_classes_and_shares_the_depth_scale(run, tmp_path, monkeypatch):  # noqa: F811
    calls = []
    sheet = viz.contact_sheet
    monkeypatch.setattr(predictions, "contact_sheet", lambda *a, **kw: calls.append(kw) or sheet(*a, **kw))
    image = _picture(tmp_path / "room.png", (33, 41), 11)
    predict_images(run["checkpoint"], [str(image)], str(tmp_path / "out"))
    (kw,) = calls
    assert kw["depth_bar"] is True and kw["class_names"] == {"semseg": load(run["checkpoint"]).class_names["semseg"]}
    depth = np.load(tmp_path / "out" / "room_depth.npy")
    assert kw["depth_range"] == pytest.approx(tuple(np.percentile(depth, [2, 98])))


def test_huge_pictures_are_subsampled_on_the_sheet(run, tmp_path, monkeypatch):  # noqa: F811
    calls = []
    sheet = viz.contact_sheet
    monkeypatch.setattr(predictions, "contact_sheet", lambda samples, *a, **kw: calls.append(samples) or sheet(
        samples, *a, **kw))
    monkeypatch.setattr(predictions, "SHEET_SIDE", 40)
    image = _picture(tmp_path / "big.png", (90, 130), 12)
    predict_images(run["checkpoint"], [str(image)], str(tmp_path / "out"), mode="keep")
    (sample,) = calls[0]
    assert tuple(sample["image"].shape) == (3, 23, 33)  # every 4th pixel
    assert sample["semseg"].shape == (23, 33) and sample["normals"].shape == (3, 23, 33)
    assert np.load(tmp_path / "out" / "big_normals.npy").shape == (90, 130, 3)  # the files stay full size
