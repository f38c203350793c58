"""`params.yaml`, loaded once into typed sections (`Params`) with errors that name the key and the rule."""

from mllmcl.config.loader import describe, load_params, parse_params
from mllmcl.config.schema import (
    AdapterConfig,
    BaseConfig,
    ClusterConfig,
    ComputeConfig,
    DataConfig,
    DriftConfig,
    EvaluateConfig,
    ExpertConfig,
    GateConfig,
    Params,
    RouterConfig,
    RoutingConfig,
    ServeConfig,
    TrainingConfig,
    ValidateConfig,
)
from mllmcl.errors import ConfigError

__all__ = [
    "AdapterConfig",
    "BaseConfig",
    "ClusterConfig",
    "ComputeConfig",
    "ConfigError",
    "DataConfig",
    "DriftConfig",
    "EvaluateConfig",
    "ExpertConfig",
    "GateConfig",
    "Params",
    "RouterConfig",
    "RoutingConfig",
    "ServeConfig",
    "TrainingConfig",
    "ValidateConfig",
    "describe",
    "load_params",
    "parse_params",
]
