"""Real-photo evaluation: readers, multi-annotator edge counts, scale-aligned depth, baselines, `eval-real`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from real_fixtures import MOTORCYCLE, photo, write_bsds, write_depth_png, write_middlebury
from scipy import ndimage
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching

from taskadapt.baselines import (
    canny_edges,
    constant_depth,
    hysteresis,
    non_maximum_suppression,
    row_depth,
    sobel_edges,
)
from taskadapt.baselines import gradient as image_gradient
from taskadapt.cli import main
from taskadapt.data.real import Calibration, detect_format, open_real_folder, parse_calib, read_calib_txt
from taskadapt.errors import ConfigError, DatasetError
from taskadapt.metrics import AlignedDepthMetric, EdgeMetric, MultiAnnotatorEdgeMetric
from taskadapt.metrics.depth_aligned import aligned_depth_errors, fit_scale
from taskadapt.metrics.edges import edge_thresholds, image_counts, max_matching
from taskadapt.morphology import thin

SHARED = Path(__file__).resolve().parents[2] / "shared" / "real"


# --- readers ----------------------------------------------------------------------------------


def test_bsds_reader_returns_every_annotator(tmp_path):
    truth = write_bsds(tmp_path / "bsds", annotators=2)
    folder = open_real_folder(tmp_path / "bsds")
    assert (folder.format, folder.task, folder.ids) == ("bsds", "edge", ["101", "202"])
    for sample in folder:
        assert sample.image.shape == (24, 32, 3) and sample.image.dtype == np.uint8
        assert sample.target.dtype == bool and sample.target.shape == (2, 24, 32)
        np.testing.assert_array_equal(sample.target, truth[sample.id])


def test_fixture_mat_has_the_layout_of_the_shared_bsds_files(tmp_path):
    write_bsds(tmp_path / "bsds", annotators=3)
    ours = scipy.io.loadmat(tmp_path / "bsds" / "groundTruth" / "101.mat")["groundTruth"]
    assert ours.shape == (1, 3) and ours.dtype == object
    assert ours[0, 0].shape == (1, 1) and set(ours[0, 0].dtype.names) == {"Segmentation", "Boundaries"}
    assert ours[0, 0]["Boundaries"][0, 0].shape == (24, 32)
    shared = SHARED / "bsds500" / "groundTruth" / "2018.mat"
    if shared.is_file():
        theirs = scipy.io.loadmat(shared)["groundTruth"]
        assert theirs.dtype == ours.dtype and theirs.shape[0] == 1
        assert theirs[0, 0].shape == (1, 1) and set(theirs[0, 0].dtype.names) == set(ours[0, 0].dtype.names)


def test_depth_png_reader_gives_metres_with_nan_invalid(tmp_path):
    truth = write_depth_png(tmp_path / "nyu", names=("a", "b"))
    folder = open_real_folder(tmp_path / "nyu")
    assert (folder.format, folder.task, len(folder)) == ("depth_png", "depth", 2)
    for sample in folder:
        assert sample.target.dtype == np.float32 and sample.target.shape == (24, 32)
        np.testing.assert_array_equal(np.isnan(sample.target), np.isnan(truth[sample.id]))
        np.testing.assert_allclose(sample.target, truth[sample.id], rtol=1e-6)
        assert np.isnan(sample.target[:, :8]).all()


def test_middlebury_reader_uses_calib_txt_or_the_given_calibration(tmp_path):
    truth = write_middlebury(tmp_path / "mb")
    folder = open_real_folder(tmp_path / "mb", calibration=parse_calib("f=1,baseline=1,doffs=0"))
    assert folder.format == "middlebury" and folder.calibration.source.endswith("calib.txt")  # calib.txt wins
    assert folder.calibration.baseline == pytest.approx(MOTORCYCLE["baseline_mm"] / 1000)  # mm -> m
    sample = folder.load("bike")
    np.testing.assert_allclose(sample.target, truth["bike"], rtol=1e-6)
    assert np.isnan(sample.target[0, :5]).all() and np.isfinite(sample.target[1:]).all()

    write_middlebury(tmp_path / "bare", calib=False)
    with pytest.raises(DatasetError, match="--calib"):
        open_real_folder(tmp_path / "bare")
    given = parse_calib("f=994.978,baseline=0.193001,doffs=31.086")
    assert given == Calibration(994.978, 0.193001, 31.086, source="--calib")
    np.testing.assert_allclose(open_real_folder(tmp_path / "bare", calibration=given).load("bike").target,
                               truth["bike"], rtol=1e-5)
    # depth = f B / (disp + doffs); no depth where disp + doffs <= 0
    np.testing.assert_allclose(Calibration(100.0, 0.5, 10.0).depth(np.array([40.0, -10.0, np.nan])),
                               [1.0, np.nan, np.nan])


@pytest.mark.parametrize("spec", ["f=1,baseline=2", "f=a,baseline=1,doffs=0", "f=1;baseline=1;doffs=0",
                                  "f=0,baseline=1,doffs=0"])
def test_bad_calibration_option_is_a_config_error(spec):
    with pytest.raises(ConfigError, match="--calib"):
        parse_calib(spec)


def test_bad_calib_txt_names_the_file(tmp_path):
    (tmp_path / "calib.txt").write_text("doffs=3\n")
    with pytest.raises(DatasetError, match="calib.txt"):
        read_calib_txt(tmp_path / "calib.txt")


def test_layout_detection_and_its_errors(tmp_path):
    write_bsds(tmp_path / "b")
    write_depth_png(tmp_path / "d")
    write_middlebury(tmp_path / "m")
    assert [detect_format(tmp_path / n) for n in "bdm"] == ["bsds", "depth_png", "middlebury"]
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="no known real-image layout.*--format"):
        open_real_folder(tmp_path / "junk")
    with pytest.raises(DatasetError, match="does not exist"):
        open_real_folder(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="unknown real-image format"):
        open_real_folder(tmp_path / "b", format="kitti")
    with pytest.raises(DatasetError, match="groundTruth"):  # forced format, wrong folder
        open_real_folder(tmp_path / "d", format="bsds")


def test_unpaired_and_corrupt_files_name_the_file(tmp_path):
    write_bsds(tmp_path / "b")
    (tmp_path / "b" / "groundTruth" / "202.mat").unlink()
    with pytest.raises(DatasetError, match="images without groundTruth.*202"):
        open_real_folder(tmp_path / "b")

    write_bsds(tmp_path / "c")
    (tmp_path / "c" / "groundTruth" / "202.mat").write_bytes(b"not a mat file at all")
    folder = open_real_folder(tmp_path / "c")  # pairing only: decoding happens on load/check
    with pytest.raises(DatasetError, match="202.mat"):
        folder.check()
    scipy.io.savemat(tmp_path / "c" / "groundTruth" / "202.mat", {"somethingElse": np.zeros((2, 2))})
    with pytest.raises(DatasetError, match="no 'groundTruth' variable"):
        folder.load("202")

    write_depth_png(tmp_path / "d")
    Image.fromarray(np.full((24, 32), 7, dtype=np.uint8)).save(tmp_path / "d" / "room_0001.png")  # 8-bit
    with pytest.raises(DatasetError, match="16-bit"):
        open_real_folder(tmp_path / "d").check()
    (tmp_path / "d" / "room_0001.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    with pytest.raises(DatasetError, match="room_0001.png"):
        open_real_folder(tmp_path / "d").check()

    write_middlebury(tmp_path / "m")
    (tmp_path / "m" / "bike_disp.npz").write_bytes(b"PK\x03\x04 broken zip")
    with pytest.raises(DatasetError, match="bike_disp.npz"):
        open_real_folder(tmp_path / "m").check()
    np.savez(tmp_path / "m" / "bike_disp.npz", disparity=np.zeros((24, 32)))
    with pytest.raises(DatasetError, match="arr_0"):
        open_real_folder(tmp_path / "m").check()
    np.savez(tmp_path / "m" / "bike_disp.npz", np.zeros((10, 10)))
    with pytest.raises(DatasetError, match="must match"):
        open_real_folder(tmp_path / "m").check()


# --- multi-annotator edge counts -----------------------------------------------------------------


def test_max_matching_reports_a_maximum_set_of_matched_rows():
    rng = np.random.default_rng(1)
    for _ in range(30):
        n1, n2 = rng.integers(1, 30, 2)
        dense = rng.random((n1, n2)) < rng.uniform(0.03, 0.3)
        rows, cols = np.nonzero(dense)
        size, matched = max_matching(rows, cols, n1, n2)
        ref = (maximum_bipartite_matching(csr_matrix(dense.astype(np.int8)), perm_type="column") >= 0).sum()
        assert size == ref == matched.sum()
        # the reported rows alone still admit a matching of that size
        only = csr_matrix(dense[matched].astype(np.int8))
        assert (maximum_bipartite_matching(only, perm_type="column") >= 0).sum() == size


def _two_annotators() -> tuple[np.ndarray, np.ndarray]:
    gt = np.zeros((2, 10, 10), dtype=bool)
    gt[0, 2, 2:5] = True  # annotator 1: (2,2) (2,3) (2,4)
    gt[1, 6, 2:5] = True  # annotator 2: (6,2) (6,3) (6,4)
    pred = np.zeros((10, 10))
    pred[2, 2:5] = 0.9  # on annotator 1's line
    pred[7, 2:4] = 0.9  # 1 px below annotator 2's line: 2 pixels can match 2 of its 3
    pred[0, 9] = 0.9  # far from both
    return pred, gt


def test_multi_annotator_counts_hand_computed():
    pred, gt = _two_annotators()
    thr = edge_thresholds(1)  # 0.5
    counts = image_counts(pred, gt, thr, 1.5, thin_pred=False)[:, 0]
    # matched predictions: 3 (annotator 1) OR 2 (annotator 2) = 5 of 6; recall 3 + 2 of 3 + 3 GT pixels
    assert tuple(counts) == (5, 6, 5, 6)
    # each annotator alone, and K = 1 is the single-GT call
    assert tuple(image_counts(pred, gt[0], thr, 1.5, thin_pred=False)[:, 0]) == (3, 6, 3, 3)
    assert tuple(image_counts(pred, gt[1:], thr, 1.5, thin_pred=False)[:, 0]) == (2, 6, 2, 3)
    # a prediction pixel matched for both annotators counts once in cntP
    both = np.zeros((2, 10, 10), dtype=bool)
    both[:, 2, 2:5] = True
    assert tuple(image_counts(pred, both, thr, 1.5, thin_pred=False)[:, 0]) == (3, 6, 6, 6)
    # approximate matcher: same rule (OR over annotators, recall summed)
    assert tuple(image_counts(pred, gt, thr, 1.5, exact=False, thin_pred=False)[:, 0]) == (5, 6, 6, 6)


def test_one_annotator_metric_equals_the_single_gt_metric():
    rng = np.random.default_rng(4)
    single, multi = EdgeMetric(tolerance=0.02, num_thresholds=15), MultiAnnotatorEdgeMetric(0.02, 15)
    for _ in range(3):
        blobs = ndimage.gaussian_filter(rng.random((40, 48)), 3) > 0.5
        gt = blobs ^ ndimage.binary_erosion(blobs)
        pred = np.clip(ndimage.gaussian_filter(gt.astype(float), 1.0) * 3 + rng.random((40, 48)) * 0.2, 0, 1)
        single.update(torch.from_numpy(pred)[None], torch.from_numpy(gt.astype(np.float32))[None])
        multi.update(torch.from_numpy(pred), torch.from_numpy(gt.astype(np.float32))[None])
        assert multi.last_counts.shape == (4, 15)
    assert all(torch.equal(single.metric_state[k], multi.metric_state[k]) for k in single.metric_state)


def test_perfect_prediction_scores_one_and_a_wrong_one_low():
    pred, gt = _two_annotators()
    perfect = gt.any(axis=0) * 0.9  # every annotator's line: each pixel matches in its annotator
    m = MultiAnnotatorEdgeMetric(tolerance=1.5 / math.hypot(10, 10))
    m.update(torch.from_numpy(perfect), torch.from_numpy(gt.astype(np.float32)))
    r = {k: float(v) for k, v in m.compute().items()}
    assert r["odsF"] == pytest.approx(1.0) and r["oisF"] == pytest.approx(1.0)
    wrong = np.zeros((10, 10))
    wrong[:, 9] = 0.9  # a line far from both annotators
    m.reset()
    m.update(torch.from_numpy(wrong), torch.from_numpy(gt.astype(np.float32)))
    assert float(m.compute()["odsF"]) == 0.0
    with pytest.raises(ValueError, match="K, H, W"):
        m.update(torch.from_numpy(wrong), torch.from_numpy(gt[0].astype(np.float32)))


# --- scale-aligned depth -------------------------------------------------------------------------


def test_scale_alignment_recovers_a_scaled_depth_exactly():
    rng = np.random.default_rng(0)
    d = rng.uniform(1, 5, size=(2, 16, 20)).astype(np.float32)
    d[:, :3] = np.nan  # invalid
    p = np.nan_to_num(d, nan=123.0) / 3.7  # junk where the target is invalid
    for alignment in ("lsq", "median"):
        m = AlignedDepthMetric(alignment=alignment)
        m.update(torch.from_numpy(p)[:, None], torch.from_numpy(d)[:, None])
        r = {k: float(v) for k, v in m.compute().items()}
        assert r["silog"] == pytest.approx(0, abs=1e-6) and r["abs_rel"] == pytest.approx(0, abs=1e-6)
        assert r["rmse"] == pytest.approx(0, abs=1e-5) and r["delta1"] == 1.0
        assert aligned_depth_errors(p[0], d[0], alignment)["scale"] == pytest.approx(3.7, rel=1e-5)


def test_aligned_depth_hand_computed():
    p, d = np.array([[1.0, 2.0]]), np.array([[2.0, 2.0]])
    assert fit_scale(p.ravel(), d.ravel(), "lsq") == pytest.approx(6 / 5)  # sum pd / sum p^2
    assert fit_scale(p.ravel(), d.ravel(), "median") == pytest.approx(2 / 1.5)
    e = aligned_depth_errors(p, d, "lsq")
    assert e["abs_rel"] == pytest.approx((0.8 / 2 + 0.4 / 2) / 2)  # q = 1.2, 2.4
    assert e["silog"] == pytest.approx(math.log(2) / 2)  # g = ln q - ln d = c + (0, ln 2): std ln2 / 2
    assert e["delta1"] == pytest.approx(0.5)  # 2 / 1.2 = 1.67 fails, 2.4 / 2 = 1.2 passes
    assert aligned_depth_errors(p, np.full((1, 2), np.nan)) is None
    # images are averaged, not pixels pooled; an image without a valid pixel is skipped
    m = AlignedDepthMetric()
    m.update(torch.from_numpy(p), torch.from_numpy(d))
    m.update(torch.ones(1, 3), torch.full((1, 3), 2.0))  # perfect after scaling
    m.update(torch.ones(1, 3), torch.full((1, 3), float("nan")))
    assert float(m.compute()["abs_rel"]) == pytest.approx(e["abs_rel"] / 2)
    assert int(m.num_images) == 2


# --- baselines -----------------------------------------------------------------------------------


def _step(size: int = 32) -> np.ndarray:
    img = np.zeros((size, size, 3), dtype=np.uint8)
    img[:, size // 2 :] = 255
    return img


def test_canny_finds_a_step_as_one_thin_line():
    edges = canny_edges(_step())
    assert edges.dtype == np.float32 and edges.min() >= 0 and edges.max() <= 1
    on = edges >= 0.5
    cols = np.unique(np.nonzero(on)[1])
    assert len(cols) == 1 and cols[0] in (15, 16)  # one column, at the step
    assert on[:, cols[0]].all()  # unbroken top to bottom
    sobel = sobel_edges(_step())
    assert sobel.max() == pytest.approx(1.0) and set(np.nonzero(sobel == 1.0)[1]) <= {15, 16}
    assert (sobel[:, :8] == 0).all()  # flat far from the step
    assert not canny_edges(np.full((16, 16, 3), 90, dtype=np.uint8)).any()


def test_canny_soft_map_thresholds_give_canny_with_hysteresis():
    img = photo((40, 48), seed=3)
    img = (ndimage.gaussian_filter(img.astype(float), (2, 2, 0)) + np.random.default_rng(0).normal(0, 8, img.shape))
    img = img.clip(0, 255).astype(np.uint8)
    gy, gx = image_gradient(img)
    nms = non_maximum_suppression(gy, gx)
    m = nms / nms.max()
    soft = canny_edges(img)
    for t in edge_thresholds(99)[[4, 19, 49, 79]]:
        np.testing.assert_array_equal(soft >= t, hysteresis(m, 0.4 * t, t) & (m > 0))
    assert (soft > 0).sum() > (soft >= 0.5).sum() > 0  # the sweep has range


def test_depth_baselines():
    img = np.zeros((5, 7, 3), dtype=np.uint8)
    assert (constant_depth(img) == 1).all() and constant_depth(img).shape == (5, 7)
    rows = row_depth(img)
    assert rows.shape == (5, 7) and rows[0, 0] == pytest.approx(2.0) and rows[-1, 0] == pytest.approx(1.0)
    assert (np.diff(rows[:, 3]) < 0).all() and (rows == rows[:, :1]).all()


# --- the command ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    write_bsds(root / "bsds")
    write_depth_png(root / "nyu")
    write_middlebury(root / "mb")
    return root


def _checkpoint(path: Path, tasks: list[str]) -> Path:
    from test_api import TINY, write_checkpoint

    from taskadapt.config import load_config

    cfg = load_config(None, [*TINY, f"data.tasks=[{','.join(tasks)}]"])
    write_checkpoint(path, cfg)  # untrained: enough to test the plumbing
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", ["semseg", "depth", "normals", "edge"])


def test_eval_real_end_to_end(folders, checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["eval-real", str(checkpoint), str(folders / "bsds"), str(folders / "nyu"), str(folders / "mb"),
            "--out", str(out)]
    assert main(argv) == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert [f["format"] for f in doc["folders"]] == ["bsds", "depth_png", "middlebury"]
    assert doc["checkpoint"] == str(checkpoint) and doc["skipped"] == []
    edge, nyu, mb = doc["folders"]
    size = doc["input_size"]  # resolution-matched baselines: the photo at the model's input size
    assert edge["methods"] == ["model", "sobel", "canny", f"sobel@{size}px", f"canny@{size}px"]
    assert edge["annotators"] == {"min": 2, "max": 2, "total": 4}
    assert set(edge["scores"]["canny"]) == {"odsF", "oisF", "AP", "ods_threshold"}
    assert 0 <= edge["scores"]["model"]["odsF"] <= 1 and set(edge["per_image"]) == {"101", "202"}
    assert nyu["methods"] == ["model", "constant", "rows"]
    assert set(nyu["scores"]["rows"]) == {"lsq", "median"} and 0 <= nyu["scores"]["rows"]["lsq"]["delta1"] <= 1
    assert mb["calibration"]["source"].endswith("calib.txt")
    # a scale fitted per image: the 'rows' prior is exact up to scale on the fixture's row-linear depth
    assert nyu["scores"]["rows"]["lsq"]["abs_rel"] < nyu["scores"]["constant"]["lsq"]["abs_rel"]
    report = (out / "report.md").read_text()
    assert "## bsds" in report and "ODS-F" in report and "SILog" in report and "squashed" in report
    for name, ids in (("bsds", ["101", "202"]), ("nyu", ["room_0001"]), ("mb", ["bike"])):
        for i in ids:
            with Image.open(out / "sheets" / name / f"{i}.png") as im:
                assert im.size[0] > 3 * im.size[1] // 2  # one row of panels
    assert "wrote" in capsys.readouterr().out

    # a second run into the same folder needs --overwrite
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "--overwrite" in err and err.startswith("error:") and "\n" not in err
    assert main([*argv, "--overwrite", "--no-sheets"]) == 0


def test_eval_real_baselines_only(folders, tmp_path):
    out = tmp_path / "base"
    assert main(["eval-real", "none", str(folders / "nyu"), "--out", str(out), "--no-sheets"]) == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["checkpoint"] is None and doc["folders"][0]["methods"] == ["constant", "rows"]
    assert not (out / "sheets").exists()


def test_eval_real_skips_a_task_the_checkpoint_lacks(folders, tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "nodepth.safetensors", ["semseg", "edge"])
    out = tmp_path / "out"
    assert main(["eval-real", str(ckpt), str(folders / "bsds"), str(folders / "nyu"), "--out", str(out),
                 "--no-sheets"]) == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert [f["name"] for f in doc["folders"]] == ["bsds"]
    assert "does not predict depth" in doc["skipped"][0]["reason"]
    assert "skipped" in capsys.readouterr().out and "## Skipped" in (out / "report.md").read_text()
    # nothing left to score: an error
    assert main(["eval-real", str(ckpt), str(folders / "nyu"), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err.strip()
    assert "nothing to score" in err and "\n" not in err


@pytest.mark.parametrize(("make", "needle"), [
    (lambda d: d / "missing", "does not exist"),
    (lambda d: (d / "junk").mkdir() or d / "junk", "no known real-image layout"),
    (lambda d: write_bsds(d / "b") and (d / "b" / "groundTruth" / "101.mat").write_bytes(b"xx") and d / "b",
     "101.mat"),
    (lambda d: write_middlebury(d / "m", calib=False) and d / "m", "--calib"),
])
def test_eval_real_bad_input_is_one_line_exit_2(checkpoint, tmp_path, capsys, make, needle):
    folder = make(tmp_path)
    out = tmp_path / "out"
    assert main(["eval-real", str(checkpoint), str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and err.startswith("error:") and "\n" not in err and "Traceback" not in err
    assert not (out / "metrics.json").exists()


def test_eval_real_bad_checkpoint_and_calib_exit_2(folders, tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    assert main(["eval-real", str(bad), str(folders / "nyu"), "--out", str(tmp_path / "o")]) == 2
    assert main(["eval-real", "none", str(folders / "mb"), "--calib", "f=1", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "bad.safetensors" in err and "--calib" in err and "Traceback" not in err


# --- the shared real images ----------------------------------------------------------------------

needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"the shared real images are not at {SHARED} "
                                                               "(they are not part of the repository)")


@needs_shared
def test_shared_real_folders_load_with_the_documented_sizes_and_counts():
    bsds = open_real_folder(SHARED / "bsds500")
    assert (bsds.format, bsds.ids) == ("bsds", ["2018", "3063", "5096", "6046", "8068"])
    for s in bsds:
        assert s.image.shape[:2] in ((321, 481), (481, 321)) and 5 <= s.target.shape[0] <= 6
        assert all((thin(b) == b).all() for b in s.target)  # BSDS boundaries are 1 px wide already
    nyud = open_real_folder(SHARED / "nyud_boundaries")
    assert nyud.format == "bsds" and len(nyud) == 5
    widths = []
    for s in nyud:
        assert s.image.shape == (224, 304, 3) and s.target.shape == (1, 224, 304)
        widths.append(1 - thin(s.target[0]).sum() / s.target[0].sum())
    assert 0.05 < np.mean(widths) < 0.3  # wider than 1 px: thinning removes ~16 % (real_images docstring)
    depth = open_real_folder(SHARED / "nyud_depth")
    (s,) = list(depth)
    assert depth.format == "depth_png" and s.image.shape == (120, 160, 3)
    assert np.isnan(s.target).mean() == pytest.approx(0.34, abs=0.01) and np.nanmax(s.target) <= 10.0
    with pytest.raises(DatasetError, match="--calib"):
        open_real_folder(SHARED / "middlebury_motorcycle")
    calib = parse_calib("f=994.978,baseline=0.193001,doffs=31.086")  # the README's values
    (m,) = list(open_real_folder(SHARED / "middlebury_motorcycle", calibration=calib))
    assert m.image.shape == (500, 741, 3) and m.target.shape == (500, 741)
    assert 2.0 < np.nanmin(m.target) < np.nanmax(m.target) < 5.1


def test_resolution_matched_baseline_sees_only_the_model_input_pixels():
    from taskadapt.settings.real_images import at_input_size

    seen = []

    def spy(image):
        seen.append(image.shape)
        return sobel_edges(image)

    img = _step()
    wide = np.concatenate([img, img], axis=1)  # (H, 2H): squashed to a square, as the model's input
    out = at_input_size(spy, 8)(wide)
    assert seen == [(8, 8, 3)] and out.shape == wide.shape[:2] and out.dtype == np.float32
    # a step seen at 8 px comes back as a band about 2 * (full / 8) px wide, not a 1-2 px line
    full = sobel_edges(wide)
    assert (out > 0.5).sum() > 3 * (full > 0.5).sum()


def test_each_real_task_has_one_protocol():
    from taskadapt.data.real import FORMATS
    from taskadapt.settings.real_images import PROTOCOLS, RealOptions

    assert set(PROTOCOLS) == set(FORMATS.values()) == {"edge", "depth"}
    edge, depth = PROTOCOLS["edge"](RealOptions()), PROTOCOLS["depth"](RealOptions())
    assert list(edge.baselines(None)) == ["sobel", "canny"]
    assert list(edge.baselines(16)) == ["sobel", "canny", "sobel@16px", "canny@16px"]
    assert list(depth.baselines(16)) == list(depth.baselines(None))  # depth baselines ignore the resolution
    assert edge.better({"F": 0.6}, {"F": 0.5}) and not depth.better({}, {"lsq/abs_rel": 0.3})
    wide = np.zeros((2, 9, 9), dtype=bool)
    wide[:, 3:6] = True  # a 3-px band: thinned to 1 px unless thin_gt=False
    assert edge.prepare_target(wide).sum() < wide.sum()
    assert np.array_equal(PROTOCOLS["edge"](RealOptions(thin_gt=False)).prepare_target(wide), wide)
    assert edge.folder_notes() == {"annotators": {"min": 2, "max": 2, "total": 2}}
    with pytest.raises(ConfigError, match="--edge-tolerance must be > 0"):
        PROTOCOLS["edge"].check(RealOptions(edge_tolerance=0.0))
