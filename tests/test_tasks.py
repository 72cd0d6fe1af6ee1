"""Task specs: losses on hand-computed cases, ignore handling, post-processing, registry."""

from __future__ import annotations

import dataclasses
import importlib.util
import math

import numpy as np
import pytest
import torch

from taskadapt.data.sample import IGNORE_INDEX
from taskadapt.errors import ConfigError
from taskadapt.tasks import TASKS, TaskSpec, get_task, list_tasks, register_task
from taskadapt.tasks.parts import PartsTask
from taskadapt.tasks.semseg import ClassMapTask

NAN = math.nan
ALL = ("semseg", "parts", "depth", "normals", "edge", "saliency")

metrics_available = importlib.util.find_spec("taskadapt.metrics") is not None


def pixels(*values) -> torch.Tensor:
    """A (1, C, 1, N) tensor from N per-pixel tuples of C channels (or N scalars for C = 1)."""
    t = torch.tensor(values, dtype=torch.float32)
    if t.dim() == 1:
        t = t[:, None]
    return t.T[None, :, None, :].contiguous()


def random_batch(name: str, k: int = 5, b: int = 2, h: int = 6, w: int = 7, seed: int = 0):
    """Raw prediction (requires grad) and a target with a few ignored pixels."""
    g = torch.Generator().manual_seed(seed)
    spec = get_task(name)
    c = spec.out_channels(k if spec.kind == "classification" else None)
    pred = torch.randn(b, c, h, w, generator=g).requires_grad_()
    if spec.kind == "classification":
        target = torch.randint(0, c, (b, h, w), generator=g)
        target[:, :2] = IGNORE_INDEX
    elif name == "normals":
        target = torch.nn.functional.normalize(torch.randn(b, 3, h, w, generator=g), dim=1)
        target[:, :, :2] = NAN
    elif name == "depth":
        target = torch.rand(b, 1, h, w, generator=g) * 5
        target[:, :, :2] = NAN
    else:
        target = (torch.rand(b, 1, h, w, generator=g) < 0.3).float()
        target[:, :, :2] = NAN
    return spec, pred, target


# ------------------------------------------------------------------------------------- registry


def test_registry_lists_all_tasks_and_specs_are_consistent():
    assert list_tasks() == sorted(ALL)
    assert list_tasks("s*") == ["saliency", "semseg"]
    for name in ALL:
        spec = get_task(name)
        assert isinstance(spec, TaskSpec) and spec.name == name and spec.label_key == name
        assert TASKS.get(name) is spec



def test_register_task_registers_an_instance_of_the_class_under_its_name():
    parts = get_task("parts")
    assert type(parts) is PartsTask and isinstance(parts, ClassMapTask) and type(get_task("semseg")) is ClassMapTask
    assert parts.default_num_classes == 7 and get_task("semseg").default_num_classes is None
    with pytest.raises(ValueError, match="'parts' is registered twice"):
        register_task(PartsTask)
    assert TASKS.get("parts") is parts

def test_unknown_task_has_did_you_mean():
    with pytest.raises(ConfigError, match="did you mean 'semseg'"):
        get_task("smeseg")
    with pytest.raises(ConfigError, match="did you mean 'normals'"):
        get_task("normal")


@pytest.mark.parametrize(
    ("name", "kind", "primary", "higher", "weight"),
    [
        ("semseg", "classification", "mIoU", True, 1.0),
        ("parts", "classification", "mIoU", True, 2.0),
        ("depth", "regression", "rmse", False, 1.0),
        ("normals", "regression", "mean", False, 10.0),
        ("edge", "binary", "odsF", True, 50.0),
        ("saliency", "binary", "maxF", True, 5.0),
    ],
)
def test_spec_fields(name, kind, primary, higher, weight):
    spec = get_task(name)
    assert (spec.kind, spec.primary_metric, spec.higher_is_better, spec.default_loss_weight) == (
        kind, primary, higher, weight)



#: what a summary table shows per task, primary first (the metric classes' ``shown``)
SHOWN = {"semseg": ("mIoU",), "depth": ("rmse", "abs_rel"), "normals": ("mean", "median", "within_11.25"),
         "edge": ("odsF",), "parts": ("mIoU",), "saliency": ("maxF",)}


@pytest.mark.parametrize("name", ALL)
def test_metric_facts_are_read_from_the_metric_class(name):
    spec = get_task(name)
    cls = spec.metric_class
    assert spec.primary_metric == cls.primary and spec.directions == cls.directions
    assert spec.higher_is_better is cls.directions[cls.primary]
    assert spec.shown_metrics == SHOWN[name] == cls.shown
    assert spec.shown_metrics[0] == spec.primary_metric and set(spec.shown_metrics) <= set(spec.directions)
    spec.directions[spec.primary_metric] = None  # a copy: the metric class keeps its directions
    assert cls.directions[spec.primary_metric] is spec.higher_is_better
    fields = {f.name for f in dataclasses.fields(spec)}
    assert not fields & {"primary_metric", "higher_is_better", "directions", "shown_metrics"}
    with pytest.raises(ConfigError, match="unknown option 'primary_metric'"):
        spec.configure(primary_metric="x")


def test_positive_pixels_are_named_by_the_binary_tasks():
    assert (get_task("edge").positive_name, get_task("saliency").positive_name) == ("edge", "salient")

def test_out_channels():
    assert get_task("semseg").out_channels(40) == 40
    assert get_task("parts").out_channels() == 7
    assert get_task("parts").out_channels(3) == 3
    assert [get_task(n).out_channels() for n in ("depth", "normals", "edge", "saliency")] == [1, 3, 1, 1]
    assert get_task("depth").out_channels(40) == 1
    with pytest.raises(ConfigError, match="needs num_classes"):
        get_task("semseg").out_channels()
    with pytest.raises(ConfigError, match="num_classes"):
        get_task("semseg").out_channels(300)


def test_ignore_values():
    assert get_task("semseg").ignore_value == 255
    assert math.isnan(get_task("depth").ignore_value)
    mask = get_task("normals").valid_mask(torch.tensor([[[[1.0, NAN]], [[0.0, NAN]], [[0.0, NAN]]]]))
    assert mask.tolist() == [[[True, False]]]


def test_configure_returns_a_new_spec_and_checks_options():
    base = get_task("depth")
    berhu = get_task("depth", depth_loss="berhu")
    assert berhu.depth_loss == "berhu" and base.depth_loss == "l1"
    assert get_task("depth") is base
    with pytest.raises(ConfigError, match="did you mean 'depth_loss'"):
        base.configure(depth_los="berhu")
    with pytest.raises(ConfigError, match="depth_loss must be one of"):
        base.configure(depth_loss="l2")
    with pytest.raises(ConfigError, match="unknown option 'name'"):
        base.configure(name="other")
    with pytest.raises(ConfigError, match="pos_weight"):
        get_task("edge", pos_weight=1.5)
    assert get_task("normals", default_loss_weight=3.0).default_loss_weight == 3.0


# ------------------------------------------------------------------------------ hand-computed losses


def test_cross_entropy_hand_case():
    # pixel 0: logits (0, 0), class 1 -> log 2; pixel 1: logits (ln 3, 0), class 0 -> -log(3/4);
    # pixel 2: ignored with an extreme logit that would dominate if it counted
    pred = pixels((0.0, 0.0), (math.log(3.0), 0.0), (50.0, -50.0))
    target = torch.tensor([[[1, 0, IGNORE_INDEX]]])
    loss = get_task("semseg").loss(pred, target)
    assert loss.item() == pytest.approx((math.log(2) + math.log(4 / 3)) / 2, rel=1e-6)
    assert get_task("parts").loss(pred, target).item() == pytest.approx(loss.item())


def test_cross_entropy_rejects_labels_outside_the_classes():
    pred = torch.zeros(1, 3, 1, 2)
    with pytest.raises(ConfigError, match=r"label value 5 is outside \[0, 3\)"):
        get_task("semseg").loss(pred, torch.tensor([[[0, 5]]]))


def test_depth_l1_and_berhu_hand_case():
    pred = pixels(1.0, 2.0, 3.0, 4.0)
    target = pixels(1.5, NAN, 2.0, 4.0)
    # |d| over valid pixels: 0.5, 1.0, 0.0
    assert get_task("depth").loss(pred, target).item() == pytest.approx(0.5)
    # berHu: c = 0.2 * 1.0; 0.5 -> (0.25 + 0.04) / 0.4, 1.0 -> (1 + 0.04) / 0.4, 0 -> 0
    berhu = get_task("depth", depth_loss="berhu").loss(pred, target).item()
    assert berhu == pytest.approx((0.725 + 2.6 + 0.0) / 3, rel=1e-6)
    # below c, berHu is L1
    small = get_task("depth", depth_loss="berhu").loss(pixels(1.0, 1.1), pixels(1.0, 1.0)).item()
    assert small == pytest.approx((0 + (0.01 + 0.0004) / 0.04) / 2, rel=1e-4)


def test_normals_l1_and_cosine_hand_case():
    # pixel 0: pred (2, 0, 0) -> unit (1, 0, 0) vs (0, 1, 0): |.| sum 2; pixel 1: exact; pixel 2: ignored
    pred = pixels((2.0, 0.0, 0.0), (0.0, 0.0, 5.0), (1.0, 1.0, 1.0))
    target = pixels((0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (NAN, NAN, NAN))
    assert get_task("normals").loss(pred, target).item() == pytest.approx(2 / 6)
    cos = get_task("normals", normals_loss="cosine").loss(pred, target).item()
    assert cos == pytest.approx((1.0 + 0.0) / 2)


def test_edge_weighted_bce_hand_case():
    # logit 0 on an edge: -0.95 log(1/2); logit 0 off an edge: -0.05 log(1/2);
    # logit ln 3 (p = 0.75) on an edge: -0.95 log(0.75); ignored pixel
    pred = pixels(0.0, 0.0, math.log(3.0), 9.0)
    target = pixels(1.0, 0.0, 1.0, NAN)
    expected = (0.95 * math.log(2) + 0.05 * math.log(2) - 0.95 * math.log(0.75)) / 3
    assert get_task("edge").loss(pred, target).item() == pytest.approx(expected, rel=1e-6)
    unweighted = get_task("edge", pos_weight=0.5).loss(pred, target).item()
    assert unweighted == pytest.approx(0.5 * (2 * math.log(2) - math.log(0.75)) / 3, rel=1e-6)


def test_saliency_bce_hand_case():
    # logit 0 -> log 2 for either label; logit ln 3 with label 0 -> -log(1 - 0.75) = log 4
    pred = pixels(0.0, math.log(3.0), -4.0)
    target = pixels(1.0, 0.0, NAN)
    assert get_task("saliency").loss(pred, target).item() == pytest.approx((math.log(2) + math.log(4)) / 2)


def test_losses_are_stable_for_extreme_logits():
    pred = pixels(100.0, -100.0)
    target = pixels(0.0, 1.0)
    for name in ("edge", "saliency"):
        loss = get_task(name).loss(pred, target)
        assert torch.isfinite(loss) and loss.item() > 10


# --------------------------------------------------------------------------------- ignore handling


@pytest.mark.parametrize(
    ("name", "options"),
    [(n, {}) for n in ALL] + [("depth", {"depth_loss": "berhu"}), ("normals", {"normals_loss": "cosine"})],
)
def test_ignored_pixels_do_not_affect_loss_or_gradient(name, options):
    _, pred, target = random_batch(name)
    spec = get_task(name, **options)
    loss = spec.loss(pred, target)
    loss.backward()
    ignored = ~spec.valid_mask(target)  # (B, H, W)
    assert ignored.any() and (~ignored).any()
    grad = pred.grad
    assert torch.isfinite(grad).all()
    assert (grad.permute(1, 0, 2, 3)[:, ignored] == 0).all()
    assert (grad.permute(1, 0, 2, 3)[:, ~ignored] != 0).any()
    # changing the prediction at ignored pixels leaves the loss unchanged
    other = pred.detach().clone()
    other.permute(1, 0, 2, 3)[:, ignored] = 1e3
    assert spec.loss(other, target).item() == pytest.approx(loss.item(), rel=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_all_ignored_batch_gives_zero_and_finite_gradient(name):
    spec, pred, target = random_batch(name)
    target = torch.full_like(target, IGNORE_INDEX) if spec.kind == "classification" else torch.full_like(
        target, NAN)
    loss = spec.loss(pred, target)
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))


@pytest.mark.parametrize("name", ALL)
def test_wrong_prediction_shape_is_reported(name):
    spec, pred, target = random_batch(name)
    with pytest.raises(ValueError, match="upsample"):
        spec.loss(pred.detach()[..., :3, :], target)
    if name != "semseg" and name != "parts":
        with pytest.raises(ValueError, match="prediction must be"):
            spec.loss(torch.zeros(2, 4, 6, 7), target)


# ----------------------------------------------------------------------------------- postprocess


def test_postprocess_shapes_and_ranges():
    logits = torch.randn(2, 5, 4, 6)
    seg = get_task("semseg").postprocess(logits)
    assert seg.shape == (2, 4, 6) and seg.dtype == torch.int64
    assert torch.equal(seg, logits.argmax(1))
    depth = get_task("depth").postprocess(torch.randn(2, 1, 4, 6))
    assert depth.shape == (2, 1, 4, 6) and depth.min() >= 0 and (depth > 0).any()
    normals = get_task("normals").postprocess(torch.randn(2, 3, 4, 6) * 7)
    assert torch.allclose(normals.norm(dim=1), torch.ones(2, 4, 6), atol=1e-5)
    for name in ("edge", "saliency"):
        raw = torch.randn(2, 1, 4, 6) * 3
        p = get_task(name).postprocess(raw)
        assert p.shape == raw.shape and p.min() > 0 and p.max() < 1
        assert torch.equal(p > 0.5, raw > 0)


# ------------------------------------------------------------------------------------- visualize


@pytest.mark.parametrize("name", ALL)
def test_visualize_returns_rgb_uint8(name):
    spec, pred, target = random_batch(name)
    for value in (target[0], spec.postprocess(pred.detach())[0]):
        rgb = spec.visualize(value, num_classes=5 if spec.kind == "classification" else None)
        assert isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.shape == (6, 7, 3)
    # ignored pixels are drawn black, labelled ones are not all black
    rgb = spec.visualize(target[0], num_classes=5 if spec.kind == "classification" else None)
    assert (rgb[:2] == 0).all()
    if name != "edge":
        assert rgb[2:].any()


# ---------------------------------------------------------------------------------------- metrics


@pytest.mark.skipif(not metrics_available, reason="taskadapt.metrics not written yet")
@pytest.mark.parametrize("name", ALL)
def test_make_metric_builds_the_primary_metric(name):
    spec = get_task(name)
    k = 5 if spec.kind == "classification" else None
    metric = spec.make_metric(k)
    assert metric.higher_is_better == spec.higher_is_better
    _, pred, target = random_batch(name, k=5)
    metric.update(spec.postprocess(pred.detach()), target)
    result = metric.compute()
    assert spec.primary_metric in result
    assert math.isfinite(float(result[spec.primary_metric]))


def test_make_metric_needs_num_classes_for_semseg():
    with pytest.raises(ConfigError, match="needs num_classes"):
        get_task("semseg").make_metric()


@pytest.mark.parametrize("name", ALL)
def test_make_metric_takes_the_same_arguments_for_every_task(name):
    spec = get_task(name)
    k = 5 if spec.kind == "classification" else None
    metric = spec.make_metric(k, boundary_tolerance=0.02, exact=False)
    assert type(metric) is spec.metric_class
    if name == "edge":
        assert (metric.tolerance, metric.exact) == (0.02, False)
        default = spec.make_metric()
        assert (default.tolerance, default.exact) == (0.011, True)
    with pytest.raises(TypeError):
        spec.make_metric(k, tolerance=0.02)


# ------------------------------------------------------------------------------ label checks (data check)


def _map(*rows) -> np.ndarray:
    """A (C, H, W) float32 label from H rows of W per-pixel values (tuples of C channels or scalars)."""
    a = np.asarray(rows, dtype=np.float32)
    return a[None] if a.ndim == 2 else np.moveaxis(a, -1, 0).copy()


#: task, num_classes, a good label and its summary, a bad label and its problem
LABEL_CHECKS = [
    ("semseg", 5, np.array([[0, 1], [255, 1]]), "2/5 classes, 75% labelled",
     np.array([[0, 7], [255, -1]]), "semseg values out of range [0, 5) and not 255: -1, 7"),
    ("parts", None, np.array([[0, 6], [255, 255]]), "2/7 classes, 50% labelled",
     np.array([[9, 0], [0, 0]]), "parts values out of range [0, 7) and not 255: 9"),
    ("depth", None, _map((1.5, NAN), (4.0, 2.0)), "1.5-4 m, 75% valid",
     _map((-1.0, 2.0), (0.0, NAN)), "depth has 2 non-positive values where valid (min -1)"),
    ("normals", None, _map(((0, 0, 1), (NAN, NAN, NAN)), ((1, 0, 0), (0, 1, 0))), "75% valid",
     _map(((0, 0, 1), (0, 0, 2)), ((1, 0, 0), (0, -1, 0))),
     "normals: 1 valid pixels are not unit vectors (|n| from 1 to 2; tolerance 0.01)"),
    ("edge", None, _map((1.0, 0.0), (0.0, NAN)), "33.3% edge, 75% valid",
     _map((0.5, 1.0), (2.0, 0.0)), "edge values must be 0 or 1 (or NaN), found 0.5, 2"),
    ("saliency", None, _map((1.0, 0.0), (0.0, NAN)), "33.3% salient, 75% valid",
     _map((0.0, 3.0), (0.0, 0.0)), "saliency values must be 0 or 1 (or NaN), found 3"),
]


@pytest.mark.parametrize(("name", "k", "good", "summary", "bad", "problem"), LABEL_CHECKS,
                         ids=[c[0] for c in LABEL_CHECKS])
def test_label_stats_flag_bad_labels_and_summarise_good_ones(name, k, good, summary, bad, problem):
    stats = get_task(name).label_stats(k)
    assert stats.summary() == "not checked" and (stats["pixels"], stats["valid"]) == (0, 0)
    assert stats.update(good) is None
    assert stats.summary() == summary
    assert stats["pixels"] == 4
    assert get_task(name).label_stats(k).update(bad) == problem
    assert stats.update(bad) == problem and stats["pixels"] == 8  # a bad map still counts


def test_label_stats_kinds_are_shared_and_fresh():
    from taskadapt.tasks.label_checks import BinaryStats, ClassMapStats, DepthStats, UnitVectorStats
    from taskadapt.tasks.normals import NORMAL_TOL

    kinds = {name: type(get_task(name).label_stats(5)) for name in ALL}
    assert kinds == {"semseg": ClassMapStats, "parts": ClassMapStats, "depth": DepthStats,
                     "normals": UnitVectorStats, "edge": BinaryStats, "saliency": BinaryStats}
    assert get_task("depth").label_stats() is not get_task("depth").label_stats()
    assert get_task("normals").label_stats().tolerance == NORMAL_TOL == 1e-2
    with pytest.raises(ConfigError, match="needs num_classes"):
        get_task("semseg").label_stats()


def test_label_stats_other_problems_and_numbers():
    depth = get_task("depth").label_stats()
    assert depth.update(_map((np.inf, 1.0))) == "depth has infinite values (use NaN for invalid pixels)"
    assert depth.update(_map((NAN, NAN))) is None and depth.summary() == "no valid depth"
    assert depth.update(_map((2.0, 0.5))) is None and (depth["min"], depth["max"]) == (0.5, 2.0)
    normals = get_task("normals").label_stats()
    assert normals.update(_map(((NAN, 0, 1), (0, 0, 1)))) == "normals: 1 pixels with NaN in some but not all channels"
    assert normals.update(_map(((0, 0, 1.005),))) is None
    assert normals["max_norm_error"] == pytest.approx(0.005, rel=1e-3)
    seg = get_task("semseg").label_stats(40)
    seg.update(np.array([[3, 3, 255, 39]]))
    assert dict(seg) == {"pixels": 4, "valid": 3, "num_classes": 40, "classes_present": {3, 39}}
    edge = get_task("edge").label_stats()
    edge.update(_map((1.0, 1.0, 0.0, NAN)))
    assert (edge["positive"], edge["valid"]) == (2, 3)
