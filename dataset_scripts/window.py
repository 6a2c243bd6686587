"""The window format, written down once: what `WellSplitReader.sample`, `load_well_dataset` and every batch carry.

One window of `n_steps_input + n_steps_output` frames of one trajectory, in The Well's layout (time first, channels
last). A batch (`collate_window_samples`, or `dataset[i:j]` of `load_well_dataset`) is the same with a leading batch
axis on every tensor and lists for the names. Entries a dataset lacks (no constant fields, no time-varying scalars)
are left out, as in The Well.
"""

from __future__ import annotations

from typing import TypedDict

import torch


class _WellWindowRequired(TypedDict):
    input_fields: torch.Tensor  # [T_in, *space, C] float32: the frames given
    output_fields: torch.Tensor  # [T_out, *space, C] float32: the frames to predict
    boundary_conditions: torch.Tensor  # [n_dims, 2] int: low and high side per axis, WALL=0, OPEN=1, PERIODIC=2
    space_grid: torch.Tensor  # [*space, n_dims] float32: coordinates of every grid point
    input_time_grid: torch.Tensor  # [T_in] float: frame times relative to the window's first frame
    output_time_grid: torch.Tensor  # [T_out] float
    dataset_name: str  # the files' dataset_name attribute
    field_names: list[str]  # the C channel names, tensor components flattened (`velocity_x`, ...)


class WellWindow(_WellWindowRequired, total=False):
    constant_fields: torch.Tensor  # [*space, C_const] float32: fields that do not change in time
    constant_scalars: torch.Tensor  # [S] float32: parameters of the trajectory (Reynolds, ...)
    input_scalars: torch.Tensor  # [T_in, S_t] float32: time-varying scalars
    output_scalars: torch.Tensor  # [T_out, S_t] float32


WINDOW_KEYS = frozenset(WellWindow.__required_keys__ | WellWindow.__optional_keys__)
