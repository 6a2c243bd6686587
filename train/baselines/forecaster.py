"""The Well's baselines as forecasters (`BaselineForecaster`: one network and its normalisation per dataset), and
`load_forecaster`, which opens a saved baseline, a folder of them, or a saved PDE-FM."""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..model_files.loading import load_pdefm
from ..evaluation.forecasters import PDEFMForecaster
from .models import WellBaseline, fno_class, unet_classic_class, unet_convnext_class

BASELINE_CONFIG = "baseline_config.json"
BASELINE_WEIGHTS = "baseline.safetensors"
BASELINE_KINDS = ("cnextunet", "unet_classic", "fno")
# What the network predicts (both are The Well's): the next frame z-scored ("next", its published baselines), or the
# change over the step scaled by the `*_delta` statistics ("delta", its `DeltaWellDataset`).
BASELINE_TARGETS = ("next", "delta")


def build_baseline_network(kind: str, dim_in: int, dim_out: int, n_spatial_dims: int, resolution: tuple[int, ...],
                           **sizes) -> nn.Module:
    """One of The Well's baselines at its constructor's default size unless `sizes` say otherwise."""
    if kind == "cnextunet":
        return unet_convnext_class()(dim_in=dim_in, dim_out=dim_out, n_spatial_dims=n_spatial_dims,
                                     spatial_resolution=resolution, **sizes)
    if kind == "unet_classic":
        return unet_classic_class()(dim_in=dim_in, dim_out=dim_out, n_spatial_dims=n_spatial_dims,
                                    spatial_resolution=resolution, **sizes)
    if kind == "fno":
        modes = sizes.pop("modes", 16)
        modes = min([modes, *(n // 2 for n in resolution)])
        return fno_class()(dim_in=dim_in, dim_out=dim_out, n_spatial_dims=n_spatial_dims, spatial_resolution=resolution,
                           modes1=modes, modes2=modes, modes3=modes, **sizes)
    raise ValueError(f"unknown baseline {kind!r}; expected one of {BASELINE_KINDS}")


# The constructor argument that sets each baseline's width (everything else keeps The Well's default).
WIDTH_ARGUMENT = {"cnextunet": "init_features", "unet_classic": "init_features", "fno": "hidden_channels"}


def matched_sizes(kind: str, target_parameters: int, dim_in: int, dim_out: int, n_spatial_dims: int,
                  resolution: tuple[int, ...]) -> dict:
    """The constructor sizes (`{width argument: value}`) whose parameter count is closest to `target_parameters`:
    the baseline at PDE-FM's capacity, its depth and the rest of its recipe unchanged."""
    key = WIDTH_ARGUMENT[kind]
    best = None
    for width in range(2, 257, 2):  # parameters grow with the width: stop once past the best
        network = build_baseline_network(kind, dim_in, dim_out, n_spatial_dims, resolution, **{key: width})
        gap = abs(sum(p.numel() for p in network.parameters()) - target_parameters)
        if best is not None and gap > best[0]:
            break
        best = (gap, width)
    return {key: best[1]}


class BaselineForecaster(nn.Module):
    """A baseline network for one dataset together with its z-score normalisation (from the dataset's stats.yaml),
    so it takes and returns physical fields while training on normalised ones, as in The Well's recipe."""

    def __init__(self, kind: str, dataset: str, n_steps_input: int, n_fields: int, n_constant_fields: int,
                 n_spatial_dims: int, resolution: tuple[int, ...], sizes: dict | None = None, target: str = "next"):
        super().__init__()
        if target not in BASELINE_TARGETS:
            raise ValueError(f"baseline target must be one of {BASELINE_TARGETS}, got {target!r}")
        self.kind, self.dataset, self.n_steps_input, self.target = kind, dataset, n_steps_input, target
        self.settings = {"kind": kind, "dataset": dataset, "n_steps_input": n_steps_input, "n_fields": n_fields,
                         "n_constant_fields": n_constant_fields, "n_spatial_dims": n_spatial_dims,
                         "resolution": list(resolution), "sizes": dict(sizes or {}), "target": target}
        self.label = {"cnextunet": "CNextU-Net", "unet_classic": "U-Net", "fno": "FNO"}.get(kind, kind)
        network = build_baseline_network(kind, n_steps_input * n_fields + n_constant_fields, n_fields, n_spatial_dims,
                                         tuple(resolution), **dict(sizes or {}))
        self.net = WellBaseline(network)
        self.register_buffer("field_shift", torch.zeros(n_fields))
        self.register_buffer("field_scale", torch.ones(n_fields))
        self.register_buffer("constant_shift", torch.zeros(n_constant_fields))
        self.register_buffer("constant_scale", torch.ones(n_constant_fields))
        self.register_buffer("delta_shift", torch.zeros(n_fields))
        self.register_buffer("delta_scale", torch.ones(n_fields))

    def set_normalization(self, normalizer) -> None:
        """Take the shift and scale of a `pdefm.data.WellNormalizer` (and of the one-step change, for `target="delta"`)."""
        self.field_shift.copy_(torch.as_tensor(normalizer.shift["fields"]))
        self.field_scale.copy_(torch.as_tensor(normalizer.scale["fields"]))
        if self.target == "delta":
            if normalizer.delta_scale is None:
                raise ValueError(f"{normalizer.source}: the delta target needs the one-step change's statistics "
                                 "(`mean_delta`/`std_delta`, or `rms_delta`); recompute them with "
                                 "`python -m pdefm.data.the_well stats DATASET_DIR`")
            self.delta_shift.copy_(torch.as_tensor(normalizer.delta_shift))
            self.delta_scale.copy_(torch.as_tensor(normalizer.delta_scale))
        if self.constant_shift.numel():
            self.constant_shift.copy_(torch.as_tensor(normalizer.shift["constant_fields"]))
            self.constant_scale.copy_(torch.as_tensor(normalizer.scale["constant_fields"]))

    def knows(self, dataset: str) -> bool:
        return dataset == self.dataset

    def forward(self, input_fields: torch.Tensor, constant_fields: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised in, normalised target out: `[B, T_in, *space, C]` (+ `[B, *space, C_const]`) -> `[B, 1, *space, C]`,
        the next frame or its change over the step (`target`)."""
        return self.net(input_fields[:, -self.n_steps_input :], constant_fields)

    def training_target(self, input_fields: torch.Tensor, output_fields: torch.Tensor) -> torch.Tensor:
        """What `forward` should return, from z-scored inputs `[B, T_in, *space, C]` and next frames `[B, 1, *space, C]`."""
        if self.target == "next":
            return output_fields
        change = (output_fields - input_fields[:, -1:]) * self.field_scale
        return (change - self.delta_shift) / self.delta_scale

    @torch.no_grad()
    def predict_next(self, batch: dict[str, Any]) -> torch.Tensor:
        device = self.field_shift.device
        x = (batch["input_fields"].to(device) - self.field_shift) / self.field_scale
        constants = batch.get("constant_fields")
        if self.constant_shift.numel():
            constants = (constants.to(device) - self.constant_shift) / self.constant_scale
        else:
            constants = None
        out = self(x, constants)
        if self.target == "delta":
            last = batch["input_fields"][:, -1:].to(device)
            return (last + out * self.delta_scale + self.delta_shift).float()
        return (out * self.field_scale + self.field_shift).float()

    def save(self, folder: str) -> None:
        os.makedirs(folder, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, os.path.join(folder, BASELINE_WEIGHTS))
        with open(os.path.join(folder, BASELINE_CONFIG), "w") as f:
            json.dump(self.settings, f, indent=2)

    @classmethod
    def load(cls, folder: str, device="cpu") -> "BaselineForecaster":
        with open(os.path.join(folder, BASELINE_CONFIG)) as f:
            settings = json.load(f)
        model = cls(**{k: settings[k] for k in ("kind", "dataset", "n_steps_input", "n_fields", "n_constant_fields",
                                                "n_spatial_dims")}, resolution=tuple(settings["resolution"]),
                    sizes=settings["sizes"], target=settings.get("target", "next"))
        weights = load_file(os.path.join(folder, BASELINE_WEIGHTS))
        for key in ("delta_shift", "delta_scale"):  # saved before baselines could predict the change: never used
            weights.setdefault(key, getattr(model, key))
        model.load_state_dict(weights)
        return model.to(device).eval()


class BaselineSet:
    """One baseline per dataset (The Well trains its baselines per dataset), as one forecaster."""

    def __init__(self, members: dict[str, BaselineForecaster], label: str):
        self.members, self.label = members, label

    def knows(self, dataset: str) -> bool:
        return dataset in self.members

    @property
    def n_steps_input(self) -> int:
        """The members' common input window (the longest, should they differ: each reads its own last frames)."""
        return max(member.n_steps_input for member in self.members.values())

    def predict_next(self, batch: dict[str, Any]) -> torch.Tensor:
        names = batch["dataset_name"]
        name = names[0] if isinstance(names, (list, tuple)) else names
        return self.members[name].predict_next(batch)


def load_forecaster(path: str, adapter: str | None = None, device="cpu"):
    """A saved PDE-FM (folder or Hub id, optionally with a LoRA adapter), a saved baseline folder, or a folder of
    per-dataset baseline folders."""
    if os.path.isfile(os.path.join(path, BASELINE_CONFIG)):
        member = BaselineForecaster.load(path, device)
        return BaselineSet({member.dataset: member}, member.label)
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "config.json")):
        members = {}
        for sub in sorted(os.listdir(path)):
            if os.path.isfile(os.path.join(path, sub, BASELINE_CONFIG)):
                member = BaselineForecaster.load(os.path.join(path, sub), device)
                members[member.dataset] = member
        if not members:
            raise FileNotFoundError(f"{path}: neither a saved PDE-FM (config.json) nor baseline folders ({BASELINE_CONFIG})")
        return BaselineSet(members, next(iter(members.values())).label)
    return PDEFMForecaster(load_pdefm(path, adapter=adapter).to(device))
