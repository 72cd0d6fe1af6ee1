"""``taskadapt export``: a trained run's inference network as an ONNX file, checked against PyTorch.

    from taskadapt.export import export_onnx
    report = export_onnx("runs/scenes/checkpoints/best.safetensors", "scenes.onnx")
    report.max_abs_diff   # {"semseg": 2e-06, "depth": 1e-06, ...}: ONNX Runtime against PyTorch
    report.prefix_runs    # 1: the shared backbone prefix runs once for every task, as in PyTorch

The file has one input and one output per task:

==========  ======================  ================================================================
name        array                   meaning
==========  ======================  ================================================================
``image``   float32 (B, 3, S, S)    RGB in [0, 1], S = ``run.input_size``; the model normalises it
                                    itself (mean and std in the metadata), so feed plain pixels / 255
``<task>``  float32 (B, C_t, S, S)  the raw prediction ``model(image)[task]`` (logits for semseg,
                                    parts, edge and saliency; metres for depth; unnormalised normals):
                                    apply the task's ``postprocess`` as :mod:`taskadapt.api` does
==========  ======================  ================================================================

Outputs come in ``run.tasks`` order. The batch axis B is dynamic unless a ``batch_size`` is given. The
model's ``metadata_props`` hold what a consumer needs without taskadapt (:func:`onnx_metadata`).

Exporter: the torch.export-based ``torch.onnx.export(..., dynamo=True)`` (needs onnxscript), the default
since PyTorch 2.9. The TorchScript-based one is deprecated, and it cannot express TAA's boolean-mask
scatter (the file it writes fails to load in ONNX Runtime); TorchScript itself (``torch.jit``) is
deprecated too, so neither is offered. Tracing runs with the math attention kernel: the fused CPU
kernel returns its output in a transposed memory layout, ``torch.export`` records the ``reshape`` after
attention as a plain ``view`` of that layout, and the exporter's decompositions then fail on it
(pytorch/pytorch#136543, #141107).

The file is serialised in memory, checked with ONNX Runtime (CPU) against the PyTorch model on random
images, and only then written, atomically (:mod:`taskadapt.io`): a failed export or check leaves nothing
behind, and an existing file is only replaced with ``overwrite``.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from taskadapt.api import Predictor, load
from taskadapt.errors import ConfigError, TaskadaptError
from taskadapt.io import atomic_open
from taskadapt.models.backbones import Backbone
from taskadapt.models.multitask import MultiTaskModel
from taskadapt.tasks import get_task
from taskadapt.version import __version__

#: what ``export`` can write (TorchScript is deprecated in PyTorch; see the module docstring)
FORMATS = ("onnx",)
INSTALL_HINT = 'pip install "taskadapt[export]"'
INPUT_NAME = "image"
#: the wrapper's attribute holding the network: ONNX initializers are named ``model.<state dict key>``
_WRAPPED = "model"
#: the largest single ONNX file (protobuf's limit); bigger models would need external data files
_MAX_PROTO_BYTES = 2**31 - 1
#: the tracing batch of a dynamic batch axis: torch.export specialises a dimension traced at size 1 to 1
_DYNAMIC_TRACE_BATCH = 2
#: the batches the check runs with a dynamic axis (neither is the tracing batch)
_DYNAMIC_CHECK_BATCHES = (1, 3)
CHECK_SEED = 0

#: what a task's raw output is, for consumers without taskadapt (metadata): by task, else by kind of task
_RAW_OUTPUT = {
    "depth": "metres (taskadapt's postprocess clamps them at 0)",
    "normals": "unnormalised normals, camera frame (taskadapt's postprocess L2-normalises them over C)",
    "classification": "logits over the classes (argmax gives the class id)",
    "binary": "one logit (sigmoid gives the probability)",
    "regression": "raw values",
}


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_onnx` wrote and how well it matches PyTorch.

    ``max_abs_diff``: per task, the largest |ONNX Runtime - PyTorch| over the checked batches (empty
    when ``check=False``). ``prefix_runs``: how often the graph applies the shared backbone prefix
    (:func:`count_prefix_runs`; 1 for every shared-backbone method, T for ``stl``; None if the graph
    keeps none of its weights under their names).
    """

    path: Path
    size_bytes: int
    exporter: str
    opset: int
    tasks: list[str]
    input_shape: tuple[int | str, ...]
    prefix_runs: int | None
    checked: bool
    checked_batches: tuple[int, ...] = ()
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    atol: float | None = None
    rtol: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["path"] = str(self.path)
        return out

    def summary(self) -> str:
        """A few lines for the command line."""
        lines = [f"wrote {self.path} ({self.size_bytes / 2**20:.1f} MiB, ONNX opset {self.opset}, {self.exporter})",
                 f"input '{INPUT_NAME}' {tuple(self.input_shape)}; outputs {', '.join(self.tasks)}",
                 f"shared backbone prefix runs: {self.prefix_runs if self.prefix_runs is not None else 'unknown'}"]
        if self.checked:
            diffs = ", ".join(f"{t} {d:.1e}" for t, d in self.max_abs_diff.items())
            lines.append(f"ONNX Runtime matches PyTorch on batches {list(self.checked_batches)} "
                         f"(atol {self.atol:g}, rtol {self.rtol:g}); max |diff|: {diffs}")
        else:
            lines.append("not checked against PyTorch (check=False)")
        return "\n".join(lines)


# -- optional dependencies ----------------------------------------------------------------------------

def _require(check: bool) -> None:
    """Import the optional packages the export needs (onnxscript drives torch's exporter, onnx holds the
    graph, onnxruntime runs the check) or raise one TaskadaptError naming what is missing."""
    wanted = ["onnx", "onnxscript"] + (["onnxruntime"] if check else [])
    missing = []
    for name in wanted:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise TaskadaptError(f"ONNX export needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                             f"not installed; install the export extra: {INSTALL_HINT}")


# -- the network as ONNX ------------------------------------------------------------------------------

class _TaskTuple(nn.Module):
    """``image -> tuple of raw predictions in task order``: ONNX outputs are positional, a dict is not."""

    def __init__(self, model: nn.Module, tasks: Sequence[str]):
        super().__init__()
        self.tasks = list(tasks)
        setattr(self, _WRAPPED, model)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = getattr(self, _WRAPPED)(image)
        return tuple(out[t] for t in self.tasks)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence what the exporter reports on every healthy export (its progress lines, torchvision's absence,
    the constant folder skipping multi-output ops, a pytree deprecation inside torch), not real warnings."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _to_onnx(model: nn.Module, tasks: Sequence[str], size: int, batch_size: int | None, opset: int | None) -> Any:
    """Trace ``model`` with torch.export and convert it -> ``onnx.ModelProto`` (weights inside). ``batch_size``
    None: a dynamic batch axis named ``batch``."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    wrapped = _TaskTuple(model, tasks).eval()
    example = torch.rand(batch_size or _DYNAMIC_TRACE_BATCH, 3, size, size,
                         generator=torch.Generator().manual_seed(CHECK_SEED))
    dynamic = {INPUT_NAME: {0: torch.export.Dim("batch")}} if batch_size is None else None
    try:
        # math kernel: see the module docstring (a fused kernel's output layout breaks the decompositions)
        with _quiet_exporter(), sdpa_kernel(SDPBackend.MATH):
            program = torch.onnx.export(wrapped, (example,), None, dynamo=True, input_names=[INPUT_NAME],
                                        output_names=list(tasks), dynamic_shapes=dynamic, opset_version=opset,
                                        optimize=True, verbose=False)
    except ImportError as err:  # an onnxscript too old for this torch misses the module torch asks for
        if not (err.name or "").startswith("onnx"):
            raise
        raise TaskadaptError(f"the ONNX exporter of torch {torch.__version__} cannot import {err.name} ({err}); "
                             f"onnxscript or onnx is too old for it: pip install -U onnxscript onnx") from None
    return program.model_proto


def onnx_metadata(predictor: Predictor) -> dict[str, str]:
    """The ``metadata_props`` written into the file: enough to use it without taskadapt (JSON values
    where a value is structured; class names as :attr:`Predictor.class_names` gives them)."""
    run = predictor.run
    backbone = next(m for m in predictor.model.modules() if isinstance(m, Backbone))
    size = run.input_size
    outputs = {}
    for t in run.tasks:
        spec = get_task(t)
        outputs[t] = {"channels": spec.out_channels(run.num_classes.get(t)), "kind": spec.kind,
                      "raw": _RAW_OUTPUT.get(t, _RAW_OUTPUT.get(spec.kind, "raw values"))}
    return {
        "taskadapt_version": __version__,
        "tasks": json.dumps(run.tasks),
        "num_classes": json.dumps(run.num_classes),
        "class_names": json.dumps(predictor.class_names),
        "input_size": str(size),
        "input": f"{INPUT_NAME}: float32 (batch, 3, {size}, {size}), RGB in [0, 1]; the model normalises it "
                 "itself as (x - pixel_mean) / pixel_std, so do not normalise before",
        "pixel_mean": json.dumps([float(v) for v in backbone.mean]),
        "pixel_std": json.dumps([float(v) for v in backbone.std]),
        "outputs": json.dumps(outputs),
        "method": run.method,
        "backbone": run.backbone,
        "step": str(run.step),
        "checkpoint": run.path.name,
        "torch_version": torch.__version__,
    }


def _set_metadata(proto: Any, meta: dict[str, str]) -> None:
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in meta.items():
        entry = existing.get(key) or proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = (f"taskadapt {__version__} {meta['method']} model ({meta['backbone']}): image (B, 3, "
                        f"{meta['input_size']}, {meta['input_size']}) RGB in [0, 1] -> raw predictions per task")


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (its weights are not loaded)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


# -- the shared prefix runs once ------------------------------------------------------------------------

def prefix_parameter_names(model: nn.Module) -> list[list[str]]:
    """Per backbone in ``model``: the state-dict names of its shared prefix's parameters (the stem and the
    steps before the split), the weights every task stream reads from one pass. One backbone for the
    shared-backbone methods, one per task for ``stl``."""
    names = {id(p): n for n, p in model.named_parameters()}
    groups = []
    for net in model.modules():
        if isinstance(net, MultiTaskModel):
            later = {id(p) for st in net.backbone.steps()[net.split:] for p in st.module.parameters()}
            groups.append([names[id(p)] for p in net.backbone.parameters() if id(p) not in later and id(p) in names])
    return groups


def _consumers(proto: Any) -> Counter:
    """How many nodes read each value, nodes inside control-flow subgraphs included."""
    uses: Counter = Counter()

    def walk(graph: Any) -> None:
        for node in graph.node:
            uses.update(n for n in node.input if n)
            for attr in node.attribute:
                for sub in [attr.g, *attr.graphs] if attr.HasField("g") else attr.graphs:
                    walk(sub)

    walk(proto.graph)
    return uses


def count_prefix_runs(proto: Any, groups: Sequence[Sequence[str]], prefix: str = f"{_WRAPPED}.") -> int | None:
    """How many times the graph applies the shared backbone prefix: for each backbone, the fewest nodes that
    read any one of its prefix weights (initializer ``prefix + name``), summed over the backbones.

    A graph that ran the prefix once per task stream would read every prefix weight at least T times. The
    fewest, not the most: the exporter stores equal tensors once (every norm bias still at zero, say), so
    such a shared initializer is read once per block that holds it. Weights the exporter folded into new
    constants (the transposed Linear weights) are not found under their name and are skipped; the stem's
    convolution, the biases and the norms keep theirs. None when a backbone has no prefix weight left in
    the graph under its name.
    """
    initializers = {i.name for i in proto.graph.initializer}
    uses = _consumers(proto)
    total = 0
    for names in groups:
        found = [uses[prefix + n] for n in names if prefix + n in initializers]
        if not found:
            return None
        total += min(found)
    return total


# -- ONNX Runtime against PyTorch ---------------------------------------------------------------------

def _check_inputs(size: int, batches: Sequence[int]) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(CHECK_SEED + 1)  # not the tracing example
    return [torch.rand(b, 3, size, size, generator=g) for b in batches]


def compare_with_onnxruntime(blob: bytes, model: nn.Module, tasks: Sequence[str], inputs: Sequence[torch.Tensor],
                             atol: float, rtol: float) -> dict[str, float]:
    """Run the serialised graph on the CPU provider and the PyTorch model on ``inputs`` -> {task: largest
    |difference|}. A shape that differs, or a value outside ``atol + rtol * |torch|``, raises a
    TaskadaptError naming the tasks."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: the runtime's notes on unused initializers are not ours
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # a few runs: idle threads sleep
    session = ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])
    worst = dict.fromkeys(tasks, 0.0)
    bad: dict[str, str] = {}
    for x in inputs:
        with torch.no_grad():
            expected = model(x)
        got = session.run(list(tasks), {INPUT_NAME: x.numpy()})
        for t, value in zip(tasks, got, strict=True):
            ref = expected[t].numpy()
            if value.shape != ref.shape:
                bad[t] = f"shape {value.shape} instead of {ref.shape} for a batch of {x.shape[0]}"
                continue
            diff = np.abs(value.astype(np.float64) - ref)
            diff[np.isnan(value) & np.isnan(ref)] = 0.0  # NaN on one side only counts as infinitely far
            worst[t] = max(worst[t], float(np.nan_to_num(diff, nan=np.inf).max(initial=0.0)))
            if not np.allclose(value, ref, atol=atol, rtol=rtol, equal_nan=True):
                bad.setdefault(t, f"differs by up to {worst[t]:.3g}")
    if bad:
        what = "; ".join(f"'{t}' {msg}" for t, msg in bad.items())
        raise TaskadaptError(
            f"the exported ONNX graph does not reproduce the PyTorch model: {what} (atol {atol:g}, rtol {rtol:g}); "
            "nothing was written. Try another opset (--opset), or raise the tolerance (--atol, --rtol) if such a "
            "difference is acceptable; check=False (--no-check) writes the file unchecked")
    return worst


# -- the entry points -----------------------------------------------------------------------------------

def _target(out: str | os.PathLike, overwrite: bool) -> Path:
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"'{out}' is a folder; give the path of the .onnx file to write")
    if out.exists() and not overwrite:
        raise ConfigError(f"'{out}' already exists; pass --overwrite (overwrite=True) to replace it, or choose "
                          "another path")
    return out


def export_onnx(checkpoint: str | os.PathLike, out: str | os.PathLike, *, batch_size: int | None = None,
                opset: int | None = None, check: bool = True, atol: float = 1e-4, rtol: float = 1e-4,
                overwrite: bool = False, backbone_weights: str | os.PathLike | None = None) -> ExportReport:
    """Export the network of ``checkpoint`` to the ONNX file ``out``.

    ``checkpoint`` and ``backbone_weights`` are what :func:`taskadapt.load` takes (a ``.safetensors``
    written by ``taskadapt train``, an adapter-only checkpoint with its backbone's weights, a hub id).

    ``batch_size``: None (default) for a dynamic batch axis, or the one batch size the file accepts.
    ``opset``: the ONNX opset (default: the exporter's). With ``check`` (default) ONNX Runtime runs the
    graph on random images (fixed seed; batches 1 and 3 with a dynamic axis, else two of ``batch_size``)
    and every task must match PyTorch within ``atol + rtol * |torch|``, else a TaskadaptError and nothing
    is written. Missing optional packages, an existing ``out`` without ``overwrite`` and a bad checkpoint
    are TaskadaptErrors too.
    """
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1 (or None for a dynamic batch axis), got {batch_size}")
    if not (atol >= 0 and rtol >= 0):
        raise ConfigError(f"the check's tolerances must be >= 0, got atol={atol}, rtol={rtol}")
    target = _target(out, overwrite)
    _require(check)
    import onnx

    predictor = load(checkpoint, device="cpu", backbone_weights=backbone_weights)
    model, tasks, size = predictor.model, predictor.tasks, predictor.input_size
    proto = _to_onnx(model, tasks, size, batch_size, opset)
    _set_metadata(proto, onnx_metadata(predictor))
    if proto.ByteSize() > _MAX_PROTO_BYTES:
        raise TaskadaptError(f"the {predictor.run.backbone} model is larger than 2 GiB, the limit of one ONNX file; "
                             "exporting with external weight files is not supported yet")
    onnx.checker.check_model(proto)
    blob = proto.SerializeToString()
    batches = _DYNAMIC_CHECK_BATCHES if batch_size is None else (batch_size, batch_size)
    diffs = compare_with_onnxruntime(blob, model, tasks, _check_inputs(size, batches), atol, rtol) if check else {}
    with atomic_open(target, "wb") as f:
        f.write(blob)
    return ExportReport(
        path=target, size_bytes=len(blob), exporter=f"torch.onnx dynamo (torch.export), torch {torch.__version__}",
        opset=_opset(proto), tasks=list(tasks), input_shape=_input_shape(proto),
        prefix_runs=count_prefix_runs(proto, prefix_parameter_names(model)), checked=check,
        checked_batches=batches if check else (), max_abs_diff=diffs,
        atol=atol if check else None, rtol=rtol if check else None)


def _opset(proto: Any) -> int:
    return int(next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")))


def _input_shape(proto: Any) -> tuple[int | str, ...]:
    """The image input's shape as the graph declares it (a named dimension is dynamic)."""
    (image,) = [i for i in proto.graph.input if i.name == INPUT_NAME]
    return tuple(d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim)


def export_model(checkpoint: str | os.PathLike, out: str | os.PathLike, *, format: str = "onnx",
                 **options: Any) -> ExportReport:
    """``taskadapt export CKPT --format FORMAT --out PATH``: dispatch on ``format`` (only ``onnx``)."""
    if format == "torchscript":
        raise ConfigError("TorchScript export is not offered: torch.jit is deprecated in PyTorch; use --format onnx")
    if format not in FORMATS:
        raise ConfigError(f"export format '{format}' is unknown; use one of {', '.join(FORMATS)}")
    return export_onnx(checkpoint, out, **options)


__all__ = ["FORMATS", "ExportReport", "compare_with_onnxruntime", "count_prefix_runs", "export_model",
           "export_onnx", "onnx_metadata", "prefix_parameter_names", "read_metadata"]
