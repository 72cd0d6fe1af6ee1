"""taskadapt: parameter-efficient multitask dense prediction with vision-transformer adapters.

    import taskadapt
    backbone = taskadapt.create_backbone("vit_small_patch16_224", pretrained="model.safetensors")
    model = taskadapt.create_model(taskadapt.load_config("configs/scenes.yaml"))
"""

from __future__ import annotations

from taskadapt.version import __version__

_LAZY = {
    "create_model": ("taskadapt.models.factory", "create_model"),
    "create_backbone": ("taskadapt.models.backbones", "create_backbone"),
    "list_backbones": ("taskadapt.models.backbones", "list_backbones"),
    "load_config": ("taskadapt.config", "load_config"),
    "load": ("taskadapt.api", "load"),
}


def __getattr__(name: str):
    # keep `import taskadapt` light (no torch model code imported until used)
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'taskadapt' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
