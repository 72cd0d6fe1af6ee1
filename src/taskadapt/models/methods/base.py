"""What a method is: a class that builds its network from (backbone, tasks, options).

LibMTL keeps one class per architecture; timm's builders are told by the model what it needs. Here a
:class:`Method` decides which pretrained weights train and which layers it adds, and returns a
:class:`~taskadapt.models.network.TaskNetwork` that describes itself to the trainer. Methods are
registered with ``@register_method`` in their own file; ``model.method`` names one.

``options`` are the model options of the configuration as keyword arguments (the factory,
:mod:`taskadapt.models.factory`, maps the config keys to them); a method reads the ones it uses.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from taskadapt.models.backbones import Backbone
from taskadapt.models.multitask import MultiTaskModel
from taskadapt.models.network import TaskNetwork
from taskadapt.registry import Registry

#: options of the decoder and heads, taken by every method
DECODER_OPTIONS = ("decoder_channels", "decoder", "decoder_conv", "decoder_resample")
#: the LoRA factors' rank and scale (the lora method; ours with prefix_lora)
LORA_OPTIONS = ("lora_rank", "lora_alpha")

BackboneSource = Backbone | Callable[[], Backbone]


class Method(abc.ABC):
    """Builds one method's network. Subclasses set ``name``, ``summary`` and ``options`` (the option names
    they read besides the decoder's) and implement :meth:`build`."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    options: ClassVar[tuple[str, ...]] = ()
    #: the network learns a task affinity (TROA) that ``taskadapt affinity`` can show
    learns_affinity: ClassVar[bool] = False

    @abc.abstractmethod
    def build(self, backbone: BackboneSource, tasks: Sequence[str], num_classes: Mapping[str, int] | None = None,
              **options: Any) -> TaskNetwork:
        """The network for ``tasks``. ``backbone`` is a backbone or a function making a fresh one (methods
        with one model per task call it once per task); unknown option names raise TypeError."""
        ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class SingleStreamMethod(Method):
    """A baseline: the tasks share one backbone pass (one stream), a decoder and per-task heads. Subclasses
    say whether the backbone's own weights train and what they add to the backbone before the decoder is
    built (:meth:`adapt_backbone`, so parameters are initialised in data-flow order)."""

    train_backbone: ClassVar[bool] = False

    def adapt_backbone(self, backbone: Backbone, options: Mapping[str, Any]) -> None:
        """Change the (already frozen or trainable) backbone, e.g. wrap layers; nothing by default."""

    def build(self, backbone: BackboneSource, tasks: Sequence[str], num_classes: Mapping[str, int] | None = None,
              **options: Any) -> MultiTaskModel:
        check_options(options)
        net = make_backbone(backbone).requires_grad_(self.train_backbone)
        self.adapt_backbone(net, options)
        return MultiTaskModel(net, tasks, num_classes, **pick(options, DECODER_OPTIONS))


def check_options(options: Mapping[str, Any]) -> None:
    """TypeError for option names no registered method takes. Every method receives the options of
    every method (the configuration holds them all), so only a name nobody reads is a mistake."""
    known = set(DECODER_OPTIONS).union(*(m.options for m in METHODS.values()))
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"unknown model option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")


def pick(options: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """The given options among ``names``."""
    return {k: options[k] for k in names if k in options}


def make_backbone(source: BackboneSource) -> Backbone:
    return source if isinstance(source, Backbone) else source()


METHODS: Registry[Method] = Registry("method")


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: register an instance of a method under its ``name``."""
    METHODS.register(cls.name, cls())
    return cls
