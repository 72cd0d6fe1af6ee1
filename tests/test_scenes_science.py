"""configs/scenes_science.yaml: the science protocol of issue 13 is the bundled scenes setup with only the
declared changes (schedule, decoder layout, prefix LoRA), and every method it compares builds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from taskadapt.config import load_config
from taskadapt.models import create_model
from taskadapt.models.params import count_trainable

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_science_protocol_changes_only_the_schedule_and_the_decoder_layout():
    science, bundled = load_config(CONFIGS / "scenes_science.yaml"), load_config(CONFIGS / "scenes.yaml")
    assert (science.model.decoder, science.model.decoder_conv, science.model.prefix_lora) == (
        "per_task", "separable", True)
    assert (science.train.steps, science.train.warmup_steps) == (180, 15)
    assert science.train.eval_every == science.train.checkpoint_every == 180
    model = dataclasses.replace(science.model, decoder="shared", decoder_conv="full", prefix_lora=False)
    train = dataclasses.replace(science.train, steps=bundled.train.steps, warmup_steps=bundled.train.warmup_steps,
                                eval_every=bundled.train.eval_every, checkpoint_every=bundled.train.checkpoint_every)
    assert dataclasses.replace(science, model=model, train=train, out_dir=bundled.out_dir) == bundled


@pytest.mark.parametrize("method", ["adapters", "lora", "mtl_finetune", "frozen_heads"])
def test_every_science_method_builds_with_one_separable_decoder_per_task(method):
    cfg = load_config(CONFIGS / "scenes_science.yaml", [f"model.method={method}", "model.pretrained=null"])
    model = create_model(cfg)
    assert set(model.decoders) == set(cfg.data.tasks) and model.decoder is None
    # the counts in docs/results.md ("Science protocol")
    expected = {"adapters": 574_150, "lora": 369_038, "mtl_finetune": 5_701_838, "frozen_heads": 313_742}
    assert count_trainable(model) == expected[method]
