"""Energy per band of |k| / k_Nyquist, and the flags the reports raise from it."""

import math

import numpy as np
import torch

from pdefm.train.evaluation.metrics import NYQUIST_BANDS, nyquist_band_energies
from pdefm.train.evaluation.spectra import spectral_flags


def wave(k_fraction: float, n: int = 64) -> torch.Tensor:
    """`[n, n, 1]` a plane wave along x at `k_fraction` of the Nyquist wavenumber."""
    x = torch.arange(n, dtype=torch.float64)
    return torch.cos(math.pi * k_fraction * x)[:, None, None].expand(n, n, 1)


def test_band_energies_sum_to_the_mean_square_and_place_a_wave_in_its_band():
    fields = torch.stack([wave(1 / 16), wave(3 / 16), wave(6 / 16), wave(12 / 16)])  # [4, 64, 64, 1]
    energies = nyquist_band_energies(fields, 2)  # [4, bands, 1]
    torch.testing.assert_close(energies.sum(-2), fields.pow(2).mean((1, 2)))
    assert energies.shape[-2] == len(NYQUIST_BANDS)
    for sample in range(4):
        assert energies[sample, :, 0].argmax().item() == sample  # each wave in the band of its wavenumber
        assert energies[sample, sample, 0] / energies[sample, :, 0].sum() > 0.999


def band_energy(predicted, true):
    return {"bands": list(NYQUIST_BANDS), "predicted": predicted, "true": true}


def test_flags_name_a_band_off_where_the_truth_has_energy_and_energy_added_where_it_has_none():
    true = np.array([[0.7, 0.2, 0.0999, 0.0001]]).T  # [bands, 1]: the upper half holds 0.01% of the energy
    good = true * np.array([[1.1, 0.9, 1.5, 5.0]]).T  # within 2x where it matters, under 10x where the truth is empty
    bad = true * np.array([[1.0, 0.3, 1.0, 50.0]]).T
    rollout = {"band_energy": band_energy([good.tolist()] * 12, [true.tolist()] * 12)}
    assert spectral_flags(rollout, ["u"]) == []
    rollout = {"band_energy": band_energy([good.tolist()] * 5 + [bad.tolist()] * 7, [true.tolist()] * 12)}
    flags = spectral_flags(rollout, ["u"])
    assert len(flags) == 4  # steps 6 and 12, two bands each
    assert flags[0].startswith("u, band 1/8-1/4 k_Nyquist, step 6: 0.3x the truth's energy (a band holding 0.2 of it)")
    assert flags[1].startswith("u, band 1/2- k_Nyquist, step 6: adds 50x the truth's energy where the truth holds 0.0001 of it")
