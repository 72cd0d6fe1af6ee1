"""How much of a model an adapter-only checkpoint stores, per backbone and decoder layout.

Counts tensor elements of the state dict: all of them (the full checkpoint) against those that are not the
backbone's frozen pretrained weights (``TaskNetwork.frozen_pretrained_keys``, what ``save-adapters`` keeps).
Structure only: the models are built without weights. The four scenes tasks, ours.

    python benchmarks/adapter_share.py
"""

from __future__ import annotations

from taskadapt.config import load_config
from taskadapt.models import create_model

BACKBONES = [("vit_tiny_patch8_64", 64), ("vit_small_patch16_224", 224), ("vit_base_patch16_224", 224)]
LAYOUTS = {"shared dense decoder (configs/scenes.yaml)": [],
           "separable decoder per task + prefix LoRA (configs/demo.yaml)":
               ["model.decoder=per_task", "model.decoder_conv=separable", "model.prefix_lora=true"]}


def main() -> None:
    print("| backbone | layout | all values | adapter-only values | share |")
    print("|---|---|---:|---:|---:|")
    for backbone, size in BACKBONES:
        for layout, extra in LAYOUTS.items():
            cfg = load_config("configs/scenes.yaml", [f"model.backbone={backbone}", "model.pretrained=null",
                                                      f"data.crop_size={size}", *extra])
            model = create_model(cfg, num_classes={"semseg": 9})
            state, frozen = model.state_dict(), model.frozen_pretrained_keys()
            total = sum(v.numel() for v in state.values())
            kept = sum(v.numel() for k, v in state.items() if k not in frozen)
            print(f"| {backbone} | {layout} | {total:,} | {kept:,} | {100 * kept / total:.1f} % |")


if __name__ == "__main__":
    main()
