"""The Well's own baseline models (from the `the_well` package), imported without its optional extras.

`the_well.benchmark.models` imports every baseline on package import (FNO needs `neuraloperator`, AFNO/AViT more);
this registers that package without running its `__init__`, so one model module loads with only what it needs.
Missing optional imports that the baselines never call get stand-ins that refuse to be used:
- `unet_convnext` imports timm's `DropPath`, used only for a stochastic-depth rate above 0 (the_well's default is 0);
  timm needs torchvision, which does not import beside torch's CPU wheel on these machines.
- `neuraloperator==0.3.0` (the version the_well pins; its FNO is the one The Well trained) imports `wandb` in its
  utilities and `torch_harmonics` for the spherical FNO; neither is used by the Cartesian FNO, and torch_harmonics
  pulls triton.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
import warnings

import torch
from torch import nn


def _register_models_package() -> None:
    if "the_well.benchmark.models" in sys.modules:
        return
    import the_well.benchmark  # noqa: F401 - the parent packages themselves are light

    path = os.path.join(os.path.dirname(sys.modules["the_well.benchmark"].__file__), "models")
    package = types.ModuleType("the_well.benchmark.models")
    package.__path__ = [path]
    sys.modules["the_well.benchmark.models"] = package


def _provide_drop_path() -> None:
    try:
        import timm.models.layers  # noqa: F401
        return
    except ImportError:
        pass

    class DropPath(nn.Module):
        def __init__(self, drop_prob: float = 0.0):
            super().__init__()
            if drop_prob > 0:
                raise NotImplementedError("stochastic depth > 0 needs timm (pip install timm torchvision)")

        def forward(self, x):
            return x

    for name in ("timm", "timm.models", "timm.models.layers"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["timm.models.layers"].DropPath = DropPath


def _provide_stand_in(module: str, names: tuple[str, ...], install: str) -> None:
    try:
        importlib.import_module(module)
        return
    except ImportError:
        pass

    def refuse(*args, **kwargs):
        raise NotImplementedError(f"this needs {module} ({install}); the baselines here do not use it")

    parts = module.split(".")
    for depth in range(1, len(parts) + 1):
        sys.modules.setdefault(".".join(parts[:depth]), types.ModuleType(".".join(parts[:depth])))
    for name in names:
        setattr(sys.modules[module], name, refuse)


def unet_convnext_class():
    """The Well's `UNetConvNext` (CNextU-Net)."""
    _register_models_package()
    _provide_drop_path()
    return importlib.import_module("the_well.benchmark.models.unet_convnext").UNetConvNext


def unet_classic_class():
    """The Well's `UNetClassic`."""
    _register_models_package()
    return importlib.import_module("the_well.benchmark.models.unet_classic").UNetClassic


def fno_class():
    """The Well's `FNO` (neuraloperator's FNO as The Well trained it); needs `pip install neuraloperator==0.3.0`."""
    _register_models_package()
    if importlib.util.find_spec("neuralop") is None:
        raise ImportError("the FNO baseline needs neuraloperator==0.3.0 (the version the_well pins): "
                          "pip install 'pdefm[benchmark]'")
    _provide_stand_in("wandb", ("init", "log", "login", "finish"), "pip install wandb")
    _provide_stand_in("torch_harmonics", ("RealSHT", "InverseRealSHT"), "pip install 'torch_harmonics<0.7'")
    _provide_stand_in("torch_harmonics.examples", ("ShallowWaterSolver",), "pip install 'torch_harmonics<0.7'")
    # neuraloperator 0.3.0 and tensorly-torch index with lists of slices, which torch 2.13 still reads as tuples but
    # warns may change; tests/train/test_fno_reference.py checks the spectral convolution against a computation with
    # tuple indices, so the warning is silenced for those two packages only.
    warnings.filterwarnings("ignore", message="Using a non-tuple sequence for multidimensional indexing",
                            category=UserWarning, module=r"(neuralop|tltorch)\.")
    return importlib.import_module("the_well.benchmark.models.fno").FNO


class WellBaseline(nn.Module):
    """A baseline of The Well's recipe around a channels-first network: input frames stacked into channels
    (`[B, T_in, *space, C]` -> `[B, T_in * C (+ C_const), *space]`), output the next frame `[B, 1, *space, C]`."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    @staticmethod
    def stack_inputs(input_fields: torch.Tensor, constant_fields: torch.Tensor | None = None) -> torch.Tensor:
        x = input_fields.movedim(1, -2).flatten(-2)  # [B, *space, T_in * C]
        if constant_fields is not None:
            x = torch.cat([x, constant_fields], dim=-1)
        return x.movedim(-1, 1)

    def forward(self, input_fields: torch.Tensor, constant_fields: torch.Tensor | None = None) -> torch.Tensor:
        out = self.network(self.stack_inputs(input_fields, constant_fields))
        return out.movedim(1, -1).unsqueeze(1)
