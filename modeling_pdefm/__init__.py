"""PDE-FM model package: `PDEFMConfig`, `PDEFMModel`, registered with transformers' Auto classes on import."""

from transformers import AutoConfig, AutoModel

from .configuration_pdefm import PRESETS, PDEFMConfig
from .modeling_pdefm import PDEFMModel, PDEFMOutput, PDEFMPreTrainedModel
from .well_forecaster import WellForecaster

AutoConfig.register("pdefm", PDEFMConfig, exist_ok=True)
AutoModel.register(PDEFMConfig, PDEFMModel, exist_ok=True)
# Saved folders carry `auto_map` and the code, so `trust_remote_code=True` loads them without this package.
PDEFMConfig.register_for_auto_class()
PDEFMModel.register_for_auto_class("AutoModel")

__all__ = ["PRESETS", "PDEFMConfig", "PDEFMModel", "PDEFMOutput", "PDEFMPreTrainedModel", "WellForecaster"]
