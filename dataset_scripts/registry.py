"""Registry of The Well's datasets: what each holds, so that `load_well_dataset("shear_flow", well_base_path=...)`
works and a model config can be built before any file is opened.

Source: the per-dataset metadata files of PolymathicAI/the_well (`datasets/<name>/<name>.yaml`). Channel names follow
The Well's flattening of tensor fields (`velocity_x`, `C_xy`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .well_format import model_spec


@dataclass(frozen=True)
class WellDatasetInfo:
    """Static description of one dataset of The Well.

    `fields` and `constant_fields` map tensor order (0 scalar, 1 vector, 2 rank-2 tensor) to channel names.
    `n_steps` is the (min, max) number of saved steps per trajectory.
    """

    name: str
    n_spatial_dims: int
    resolution: tuple[int, ...]
    fields: dict[int, list[str]]
    constant_fields: dict[int, list[str]] = field(default_factory=dict)
    constant_scalars: tuple[str, ...] = ()
    boundary_types: tuple[str, ...] = ()
    grid_type: str = "cartesian"
    n_steps: tuple[int, int] | None = None

    @property
    def field_names(self) -> list[str]:
        return [name for order in sorted(self.fields) for name in self.fields[order]]

    @property
    def constant_field_names(self) -> list[str]:
        return [name for order in sorted(self.constant_fields) for name in self.constant_fields[order]]

    def model_spec(self) -> dict:
        """The entry `PDEFMConfig(datasets={name: ...})` expects for this dataset."""
        return model_spec(self.field_names, self.constant_field_names, self.n_spatial_dims, len(self.constant_scalars))


_DATASETS = (
    WellDatasetInfo(
        name='acoustic_scattering_discontinuous', n_spatial_dims=2, resolution=(256, 256),
        fields={0: ['pressure'], 1: ['velocity_x', 'velocity_y']},
        constant_fields={0: ['density', 'speed_of_sound']}, constant_scalars=(),
        boundary_types=('OPEN', 'WALL'), grid_type='cartesian',
        n_steps=(102, 102),
    ),
    WellDatasetInfo(
        name='acoustic_scattering_inclusions', n_spatial_dims=2, resolution=(256, 256),
        fields={0: ['pressure'], 1: ['velocity_x', 'velocity_y']},
        constant_fields={0: ['density', 'speed_of_sound']}, constant_scalars=(),
        boundary_types=('OPEN', 'WALL'), grid_type='cartesian',
        n_steps=(102, 102),
    ),
    WellDatasetInfo(
        name='acoustic_scattering_maze', n_spatial_dims=2, resolution=(256, 256),
        fields={0: ['pressure'], 1: ['velocity_x', 'velocity_y']},
        constant_fields={0: ['density', 'speed_of_sound']}, constant_scalars=(),
        boundary_types=('OPEN', 'WALL'), grid_type='cartesian',
        n_steps=(202, 202),
    ),
    WellDatasetInfo(
        name='active_matter', n_spatial_dims=2, resolution=(256, 256),
        fields={0: ['concentration'], 1: ['velocity_x', 'velocity_y'], 2: ['D_xx', 'D_xy', 'D_yx', 'D_yy', 'E_xx', 'E_xy', 'E_yx', 'E_yy']},
        constant_fields={}, constant_scalars=('L', 'zeta', 'alpha'),
        boundary_types=('PERIODIC',), grid_type='cartesian',
        n_steps=(81, 81),
    ),
    WellDatasetInfo(
        name='convective_envelope_rsg', n_spatial_dims=3, resolution=(256, 128, 256),
        fields={0: ['density', 'energy', 'pressure'], 1: ['velocity_r', 'velocity_theta', 'velocity_phi']},
        constant_fields={}, constant_scalars=(),
        boundary_types=('OPEN', 'PERIODIC'), grid_type='spherical',
        n_steps=(100, 100),
    ),
    WellDatasetInfo(
        name='euler_multi_quadrants_openBC', n_spatial_dims=2, resolution=(512, 512),
        fields={0: ['energy', 'density', 'pressure'], 1: ['momentum_x', 'momentum_y']},
        constant_fields={}, constant_scalars=('gamma',),
        boundary_types=('OPEN',), grid_type='cartesian',
        n_steps=(101, 101),
    ),
    WellDatasetInfo(
        name='euler_multi_quadrants_periodicBC', n_spatial_dims=2, resolution=(512, 512),
        fields={0: ['energy', 'density', 'pressure'], 1: ['momentum_x', 'momentum_y']},
        constant_fields={}, constant_scalars=('gamma',),
        boundary_types=('PERIODIC',), grid_type='cartesian',
        n_steps=(101, 101),
    ),
    WellDatasetInfo(
        name='gray_scott_reaction_diffusion', n_spatial_dims=2, resolution=(128, 128),
        fields={0: ['A', 'B']},
        constant_fields={}, constant_scalars=('F', 'k'),
        boundary_types=('PERIODIC',), grid_type='cartesian',
        n_steps=(1001, 1001),
    ),
    WellDatasetInfo(
        name='helmholtz_staircase', n_spatial_dims=2, resolution=(1024, 256),
        fields={0: ['pressure_re', 'pressure_im']},
        constant_fields={0: ['mask']}, constant_scalars=('omega',),
        boundary_types=('OPEN', 'WALL'), grid_type='cartesian',
        n_steps=(50, 50),
    ),
    WellDatasetInfo(
        name='MHD_256', n_spatial_dims=3, resolution=(256, 256, 256),
        fields={0: ['density'], 1: ['magnetic_field_x', 'magnetic_field_y', 'magnetic_field_z', 'velocity_x', 'velocity_y', 'velocity_z']},
        constant_fields={}, constant_scalars=('Ma', 'Ms'),
        boundary_types=('PERIODIC',), grid_type='cartesian',
        n_steps=(100, 100),
    ),
    WellDatasetInfo(
        name='MHD_64', n_spatial_dims=3, resolution=(64, 64, 64),
        fields={0: ['density'], 1: ['magnetic_field_x', 'magnetic_field_y', 'magnetic_field_z', 'velocity_x', 'velocity_y', 'velocity_z']},
        constant_fields={}, constant_scalars=('Ma', 'Ms'),
        boundary_types=('PERIODIC',), grid_type='cartesian',
        n_steps=(100, 100),
    ),
    WellDatasetInfo(
        name='planetswe', n_spatial_dims=2, resolution=(256, 512),
        fields={0: ['height'], 1: ['velocity_theta', 'velocity_phi']},
        constant_fields={}, constant_scalars=(),
        boundary_types=('OPEN', 'PERIODIC'), grid_type='equiangular',
        n_steps=(1008, 1008),
    ),
    WellDatasetInfo(
        name='post_neutron_star_merger', n_spatial_dims=3, resolution=(192, 128, 66),
        fields={0: ['density', 'internal_energy', 'pressure', 'temperature', 'electron_fraction', 'entropy'], 1: ['magnetic_field_log_r', 'magnetic_field_theta', 'magnetic_field_phi', 'velocity_log_r', 'velocity_theta', 'velocity_phi']},
        constant_fields={}, constant_scalars=(),
        boundary_types=('OPEN', 'PERIODIC'), grid_type='spherical',
        n_steps=(181, 181),
    ),
    WellDatasetInfo(
        name='rayleigh_benard', n_spatial_dims=2, resolution=(512, 128),
        fields={0: ['buoyancy', 'pressure'], 1: ['velocity_x', 'velocity_y']},
        constant_fields={}, constant_scalars=('Rayleigh', 'Prandtl'),
        boundary_types=('PERIODIC', 'WALL'), grid_type='cartesian',
        n_steps=(200, 200),
    ),
    WellDatasetInfo(
        name='rayleigh_benard_uniform', n_spatial_dims=2, resolution=(512, 128),
        fields={0: ['buoyancy', 'pressure'], 1: ['velocity_x', 'velocity_y']},
        constant_fields={}, constant_scalars=('Rayleigh', 'Prandtl'),
        boundary_types=('PERIODIC', 'WALL'), grid_type='cartesian',
        n_steps=(200, 200),
    ),
    WellDatasetInfo(
        name='rayleigh_taylor_instability', n_spatial_dims=3, resolution=(128, 128, 128),
        fields={0: ['density'], 1: ['velocity_x', 'velocity_y', 'velocity_z']},
        constant_fields={}, constant_scalars=('At',),
        boundary_types=('PERIODIC', 'WALL'), grid_type='cartesian',
        n_steps=(119, 119),
    ),
    WellDatasetInfo(
        name='shear_flow', n_spatial_dims=2, resolution=(256, 512),
        fields={0: ['tracer', 'pressure'], 1: ['velocity_x', 'velocity_y']},
        constant_fields={}, constant_scalars=('Rayleigh', 'Schmidt'),
        boundary_types=('PERIODIC',), grid_type='cartesian',
        n_steps=(200, 200),
    ),
    WellDatasetInfo(
        name='supernova_explosion_128', n_spatial_dims=3, resolution=(128, 128, 128),
        fields={0: ['density', 'pressure', 'temperature'], 1: ['velocity_x', 'velocity_y', 'velocity_z']},
        constant_fields={}, constant_scalars=('Msun', 'rho0', 'Z', 'T0'),
        boundary_types=('OPEN',), grid_type='cartesian',
        n_steps=(59, 59),
    ),
    WellDatasetInfo(
        name='supernova_explosion_64', n_spatial_dims=3, resolution=(64, 64, 64),
        fields={0: ['density', 'pressure', 'temperature'], 1: ['velocity_x', 'velocity_y', 'velocity_z']},
        constant_fields={}, constant_scalars=('Msun', 'rho0', 'Z', 'T0'),
        boundary_types=('OPEN',), grid_type='cartesian',
        n_steps=(59, 59),
    ),
    WellDatasetInfo(
        name='turbulence_gravity_cooling', n_spatial_dims=3, resolution=(64, 64, 64),
        fields={0: ['density', 'pressure', 'temperature'], 1: ['velocity_x', 'velocity_y', 'velocity_z']},
        constant_fields={}, constant_scalars=('rho0', 'Z', 'T0'),
        boundary_types=('OPEN',), grid_type='cartesian',
        n_steps=(50, 50),
    ),
    WellDatasetInfo(
        name='turbulent_radiative_layer_2D', n_spatial_dims=2, resolution=(128, 384),
        fields={0: ['density', 'pressure'], 1: ['velocity_x', 'velocity_y']},
        constant_fields={}, constant_scalars=('tcool',),
        boundary_types=('OPEN', 'PERIODIC'), grid_type='cartesian',
        n_steps=(101, 101),
    ),
    WellDatasetInfo(
        name='turbulent_radiative_layer_3D', n_spatial_dims=3, resolution=(128, 128, 256),
        fields={0: ['density', 'pressure'], 1: ['velocity_x', 'velocity_y', 'velocity_z']},
        constant_fields={}, constant_scalars=('tcool',),
        boundary_types=('OPEN', 'PERIODIC'), grid_type='cartesian',
        n_steps=(101, 101),
    ),
    WellDatasetInfo(
        name='viscoelastic_instability', n_spatial_dims=2, resolution=(512, 512),
        fields={0: ['pressure', 'c_zz'], 1: ['velocity_x', 'velocity_y'], 2: ['C_xx', 'C_xy', 'C_yx', 'C_yy']},
        constant_fields={}, constant_scalars=('Re', 'Wi', 'beta', 'epsilon', 'Lmax'),
        boundary_types=('PERIODIC', 'WALL'), grid_type='cartesian',
        n_steps=(20, 60),
    ),
)

WELL_DATASETS: dict[str, WellDatasetInfo] = {info.name: info for info in _DATASETS}


def well_dataset_info(name: str) -> WellDatasetInfo:
    """Look a dataset up by its folder name; the error lists the known names."""
    if name not in WELL_DATASETS:
        raise KeyError(f"{name!r} is not a dataset of The Well; known: {sorted(WELL_DATASETS)}")
    return WELL_DATASETS[name]
