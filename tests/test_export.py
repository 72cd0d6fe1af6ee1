"""``taskadapt.export``: ONNX files that ONNX Runtime runs like the PyTorch model, written atomically.

Two real exports per run (ours with three tasks and a dynamic batch; ``stl`` with a fixed batch); the tests
of overwriting, failed checks and missing packages reuse the first graph instead of exporting again.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from test_api import TINY

import taskadapt.export as export_module
from taskadapt.api import load
from taskadapt.checkpoint import save_checkpoint
from taskadapt.config import load_config, to_dict
from taskadapt.data.scenes import CLASS_NAMES
from taskadapt.errors import ConfigError, TaskadaptError
from taskadapt.export import count_prefix_runs, export_model, export_onnx, read_metadata
from taskadapt.models import create_model
from taskadapt.models.adapters import TaskAttentionBias, TaskScaledNorm
from taskadapt.version import __version__

ort = pytest.importorskip("onnxruntime")  # protection only: the dev extra installs it
onnx = pytest.importorskip("onnx")

OURS_TASKS = ["semseg", "depth", "normals"]
STL_TASKS = ["semseg", "depth"]


#: stl builds one backbone per task: two blocks each keep its export quick
SHALLOW = ["model.backbone_kwargs={patch_size: 8, embed_dim: 32, depth: 2, num_heads: 2}"]


def write_perturbed_checkpoint(path, method: str, tasks: list[str], seed: int = 0, extra=()) -> None:
    """An untrained checkpoint whose every float tensor is moved off its init: TSN, TAA and the bottleneck
    start at zero, and TROA's affinity at the identity, so without this they would not reach the outputs."""
    cfg = load_config(None, [*TINY, f"model.method={method}", f"data.tasks=[{','.join(tasks)}]", *extra])
    torch.manual_seed(seed)
    model = create_model(cfg, num_classes={"semseg": len(CLASS_NAMES)})
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.add_(torch.randn_like(value) * 0.05)
    meta = {"config": to_dict(cfg), "step": 7, "tasks": tasks, "num_classes": {"semseg": len(CLASS_NAMES)},
            "class_names": {"semseg": list(CLASS_NAMES)}, "backbone": cfg.model.backbone, "method": method,
            "affinity": None, "metrics": {}}
    save_checkpoint(path, model, meta)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("checkpoints")
    paths = {"ours": folder / "ours.safetensors", "ours_other": folder / "ours_other.safetensors",
             "stl": folder / "stl.safetensors"}
    write_perturbed_checkpoint(paths["ours"], "adapters", OURS_TASKS)
    write_perturbed_checkpoint(paths["ours_other"], "adapters", OURS_TASKS, seed=1)  # same graph, other weights
    write_perturbed_checkpoint(paths["stl"], "stl", STL_TASKS, extra=SHALLOW)
    return paths


@pytest.fixture(scope="module")
def ours(checkpoints, tmp_path_factory):
    """Ours exported with a dynamic batch axis (the default)."""
    out = tmp_path_factory.mktemp("ours") / "ours.onnx"
    return export_onnx(checkpoints["ours"], out)


@pytest.fixture(scope="module")
def stl(checkpoints, tmp_path_factory):
    """A baseline with one backbone per task, exported for a fixed batch of 2."""
    out = tmp_path_factory.mktemp("stl") / "stl.onnx"
    return export_onnx(checkpoints["stl"], out, batch_size=2)


@pytest.fixture
def reuse_graph(ours, monkeypatch):
    """Make export_onnx skip the (slow) exporter and take the graph of ``ours`` (a fresh copy each call)."""
    calls = []

    def cached(*args, **kwargs):
        calls.append(args)
        return onnx.load(str(ours.path))

    monkeypatch.setattr(export_module, "_to_onnx", cached)
    return calls


def run_onnx(path, x: torch.Tensor) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": x.numpy()})


# -- the graph computes what the PyTorch model computes ----------------------------------------------------

def test_ours_matches_pytorch_at_a_batch_it_was_neither_traced_nor_checked_at(ours, checkpoints):
    assert ours.input_shape == ("batch", 3, 32, 32)
    assert ours.checked and ours.checked_batches == (1, 3)
    assert set(ours.max_abs_diff) == set(OURS_TASKS) and max(ours.max_abs_diff.values()) < 1e-4
    session = ort.InferenceSession(str(ours.path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == OURS_TASKS  # run.tasks order
    model = load(checkpoints["ours"], device="cpu").model
    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = model(x)
    got = session.run(None, {"image": x.numpy()})
    for task, value in zip(OURS_TASKS, got, strict=True):
        assert value.shape == tuple(expected[task].shape)
        np.testing.assert_allclose(value, expected[task].numpy(), atol=1e-4, rtol=1e-4)
    # the comparison covers the task layers: TSN's and TAA's zero-initialised maps and TROA's mixing are live
    tsn = [m for m in model.modules() if isinstance(m, TaskScaledNorm)]
    taa = [m for m in model.modules() if isinstance(m, TaskAttentionBias)]
    assert tsn and taa and all(m.film[1].weight.abs().min() > 0 for m in tsn)
    assert all(m.film.weight.abs().min() > 0 for m in taa)
    assert not torch.allclose(model.affinity_matrix(), torch.eye(len(OURS_TASKS)), atol=1e-3)


def test_stl_baseline_matches_pytorch_at_its_fixed_batch(stl, checkpoints):
    assert stl.input_shape == (2, 3, 32, 32) and stl.checked_batches == (2, 2)
    model = load(checkpoints["stl"], device="cpu").model
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        expected = model(x)
    for task, value in zip(STL_TASKS, run_onnx(stl.path, x), strict=True):
        np.testing.assert_allclose(value, expected[task].numpy(), atol=1e-4, rtol=1e-4)
    with pytest.raises(Exception, match="(?i)dimension"):  # fixed means fixed: another batch is refused
        run_onnx(stl.path, torch.rand(3, 3, 32, 32))


# -- the shared prefix runs once ---------------------------------------------------------------------------

def test_the_shared_prefix_runs_once_in_ours_and_once_per_task_in_stl(ours, stl):
    assert ours.prefix_runs == 1
    assert stl.prefix_runs == len(STL_TASKS)  # one backbone per task: the counter sees each pass
    # the stem's weight itself is read by one convolution in ours
    graph = onnx.load(str(ours.path))
    readers = [n for n in graph.graph.node if "model.backbone.patch_embed.proj.weight" in n.input]
    assert [n.op_type for n in readers] == ["Conv"]


def _graph_reading(weight: str, readers: int, nested: bool = False):
    """A hand-made graph whose initializer ``weight`` is read by ``readers`` Relu-after-Add nodes."""
    h = onnx.helper
    init = h.make_tensor(weight, onnx.TensorProto.FLOAT, [1], [1.0])
    nodes = [h.make_node("Add", ["x", weight], [f"a{i}"]) for i in range(readers)]
    if nested:  # one more read inside an If branch
        branch = h.make_graph([h.make_node("Add", ["x", weight], ["b"])], "branch", [],
                              [h.make_tensor_value_info("b", onnx.TensorProto.FLOAT, [1])])
        nodes.append(h.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=branch))
    return h.make_model(h.make_graph(nodes, "g", [], [], initializer=[init]))


def test_count_prefix_runs_counts_readers_of_prefix_weights():
    w = "model.backbone.patch_embed.proj.weight"
    groups = [["backbone.patch_embed.proj.weight", "backbone.blocks.0.attn.qkv.weight"]]  # the second is absent
    assert count_prefix_runs(_graph_reading(w, 1), groups) == 1
    assert count_prefix_runs(_graph_reading(w, 3), groups) == 3
    assert count_prefix_runs(_graph_reading(w, 1, nested=True), groups) == 3  # both If branches read it
    assert count_prefix_runs(_graph_reading(w, 1), groups * 2) == 2  # two backbones: their passes add up
    assert count_prefix_runs(_graph_reading("model.other", 1), groups) is None  # nothing to count
    # the exporter stores equal tensors once (zero biases of untrained norms): such a shared initializer is
    # read by every block holding it, so the count is the fewest reads of any prefix weight
    h = onnx.helper
    two = _graph_reading(w, 1)
    bias = "model.backbone.blocks.0.norm1.bias"
    two.graph.initializer.append(h.make_tensor(bias, onnx.TensorProto.FLOAT, [1], [0.0]))
    two.graph.node.extend(h.make_node("Add", ["x", bias], [f"n{i}"]) for i in range(4))
    assert count_prefix_runs(two, [[*groups[0], "backbone.blocks.0.norm1.bias"]]) == 1


# -- metadata ------------------------------------------------------------------------------------------------

def test_metadata_says_how_to_feed_the_model_and_read_its_outputs(ours):
    meta = read_metadata(ours.path)
    assert json.loads(meta["tasks"]) == OURS_TASKS
    assert json.loads(meta["num_classes"]) == {"semseg": len(CLASS_NAMES)}
    assert json.loads(meta["class_names"]) == {"semseg": list(CLASS_NAMES)}
    assert meta["input_size"] == "32" and "[0, 1]" in meta["input"]
    assert json.loads(meta["pixel_mean"]) == [0.5, 0.5, 0.5] and json.loads(meta["pixel_std"]) == [0.5, 0.5, 0.5]
    outputs = json.loads(meta["outputs"])
    assert outputs["semseg"]["channels"] == len(CLASS_NAMES) and outputs["normals"]["channels"] == 3
    assert outputs["semseg"]["kind"] == "classification" and outputs["depth"]["kind"] == "regression"
    assert meta["taskadapt_version"] == __version__ and meta["method"] == "adapters" and meta["step"] == "7"
    assert meta["checkpoint"] == "ours.safetensors"


def test_report_describes_the_file(ours):
    assert ours.size_bytes == ours.path.stat().st_size > 0
    assert "torch.export" in ours.exporter and ours.opset >= 18
    summary = ours.summary()
    assert str(ours.path) in summary and "runs: 1" in summary
    assert json.loads(json.dumps(ours.to_dict()))["prefix_runs"] == 1


# -- writing: refuse to overwrite, atomic, nothing written on a failed check ----------------------------------

def test_an_existing_file_is_kept_without_overwrite(checkpoints, tmp_path, reuse_graph):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"precious")
    with pytest.raises(ConfigError, match="already exists.*overwrite") as err:
        export_onnx(checkpoints["ours"], out)
    assert "\n" not in str(err.value)
    assert out.read_bytes() == b"precious" and not reuse_graph  # refused before any export work
    with pytest.raises(ConfigError, match="is a folder"):
        export_onnx(checkpoints["ours"], tmp_path)
    report = export_onnx(checkpoints["ours"], out, overwrite=True)
    assert reuse_graph and out.read_bytes() != b"precious"
    assert json.loads(read_metadata(out)["tasks"]) == OURS_TASKS and report.prefix_runs == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temporary file left behind


def test_a_graph_that_does_not_match_is_never_written(checkpoints, tmp_path, reuse_graph):
    """The graph of ``ours`` checked against a model with other weights: the check must catch it, and
    neither the target nor a temporary file may appear (nor may a good file be replaced)."""
    out = tmp_path / "model.onnx"
    with pytest.raises(TaskadaptError, match="does not reproduce.*nothing was written") as err:
        export_onnx(checkpoints["ours_other"], out)
    assert all(f"'{t}'" in str(err.value) for t in OURS_TASKS) and "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []
    out.write_bytes(b"good")
    with pytest.raises(TaskadaptError, match="does not reproduce"):
        export_onnx(checkpoints["ours_other"], out, overwrite=True)
    assert out.read_bytes() == b"good" and sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    unchecked = export_onnx(checkpoints["ours_other"], out, overwrite=True, check=False)
    assert not unchecked.checked and unchecked.max_abs_diff == {} and out.read_bytes() != b"good"


# -- missing packages and formats ---------------------------------------------------------------------------

@pytest.mark.parametrize("package", ["onnxruntime", "onnxscript", "onnx"])
def test_a_missing_package_is_one_clear_error_with_the_install_command(package, checkpoints, tmp_path,
                                                                       monkeypatch, reuse_graph):
    monkeypatch.setitem(sys.modules, package, None)  # import raises ImportError, as when it is not installed
    with pytest.raises(TaskadaptError, match=rf"needs {package}\b.*pip install \"taskadapt\[export\]\"") as err:
        export_onnx(checkpoints["ours"], tmp_path / "model.onnx")
    assert "\n" not in str(err.value) and not reuse_graph and list(tmp_path.iterdir()) == []


def test_onnxruntime_is_only_needed_for_the_check(checkpoints, tmp_path, monkeypatch, reuse_graph):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    report = export_onnx(checkpoints["ours"], tmp_path / "model.onnx", check=False)
    assert report.path.is_file() and not report.checked


def test_an_onnxscript_too_old_for_torch_is_named(checkpoints, tmp_path, monkeypatch):
    def old_onnxscript(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'onnxscript._framework_apis.torch_2_11'",
                                  name="onnxscript._framework_apis.torch_2_11")

    monkeypatch.setattr(torch.onnx, "export", old_onnxscript)
    with pytest.raises(TaskadaptError, match="too old.*pip install -U onnxscript"):
        export_onnx(checkpoints["ours"], tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == []


def test_export_model_dispatches_on_the_format(checkpoints, tmp_path, reuse_graph):
    with pytest.raises(ConfigError, match="TorchScript.*deprecated"):
        export_model(checkpoints["ours"], tmp_path / "m.pt", format="torchscript")
    with pytest.raises(ConfigError, match="'tflite' is unknown; use one of onnx"):
        export_model(checkpoints["ours"], tmp_path / "m.tflite", format="tflite")
    assert not reuse_graph
    report = export_model(checkpoints["ours"], tmp_path / "m.onnx", format="onnx", check=False)
    assert report.path == tmp_path / "m.onnx" and report.path.is_file()
