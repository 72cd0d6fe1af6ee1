"""Typed configuration: the schema (:mod:`.schema`), building it from YAML and overrides
(:mod:`.loading`) and checking it (:mod:`.validation`).

    from taskadapt.config import load_config
    cfg = load_config("configs/scenes.yaml", ["data.batch_size=8"])
"""

from taskadapt.config.loading import build_config, load_config, parse_overrides, read_yaml, to_dict, to_yaml
from taskadapt.config.schema import (
    DEFAULT_TASKS,
    AdaptConfig,
    AugmentConfig,
    Config,
    DataConfig,
    LoRAConfig,
    ModelConfig,
    ScenesConfig,
    TAAConfig,
    TrainConfig,
    TROAConfig,
    TSNConfig,
    ZeroShotConfig,
)
from taskadapt.config.validation import validate

__all__ = ["DEFAULT_TASKS", "AdaptConfig", "AugmentConfig", "Config", "DataConfig", "LoRAConfig", "ModelConfig",
           "ScenesConfig", "TAAConfig", "TROAConfig", "TSNConfig", "TrainConfig", "ZeroShotConfig", "build_config",
           "load_config", "parse_overrides", "read_yaml", "to_dict", "to_yaml", "validate"]
