"""The linear yardsticks: linear extrapolation, and the least-squares stencil, which must recover a linear scheme
that made the data."""

import torch

from pdefm.train.baselines.linear import LinearExtrapolation, LinearStencil, neighbourhood_features


def heat_step(f: torch.Tensor, rate: float = 0.2) -> torch.Tensor:
    """One explicit finite-difference step of the heat equation on a periodic grid, `f [..., x, y, C]`, with a
    cross-channel coupling: a linear scheme on the 3x3 neighbourhood."""
    lap = sum(f.roll(s, dims=a) for s in (1, -1) for a in (-3, -2)) - 4 * f
    coupled = torch.stack([f[..., 1], -f[..., 0]], dim=-1)
    return f + rate * lap + 0.05 * coupled


def windows(n_samples: int, n_in: int = 3, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    frames = [torch.randn(n_samples, 10, 12, 2, generator=g, dtype=torch.float64) + torch.tensor([1.0, -2.0],
                                                                                               dtype=torch.float64)]
    for _ in range(n_in):
        frames.append(heat_step(frames[-1]))
    trajectory = torch.stack(frames, dim=1).float()
    return {"input_fields": trajectory[:, :n_in], "output_fields": trajectory[:, n_in:],
            "boundary_conditions": torch.full((n_samples, 2, 2), 2), "dataset_name": "heat"}


def test_the_stencil_recovers_the_finite_difference_scheme_that_made_the_data():
    stencil = LinearStencil(n_steps_input=3).fit_batches("heat", [windows(8, seed=s) for s in range(4)])
    test = windows(4, seed=99)
    prediction = stencil.predict_next(test)
    truth = test["output_fields"][:, :1]
    scale = (truth - test["input_fields"][:, -1:]).abs().max()
    assert float((prediction - truth).abs().max() / scale) < 1e-4  # round-off of the float32 data and solve
    # the scheme: the last frame's 5-point Laplacian and the channel coupling; every other coefficient ~ 0
    weights = stencil.fits["heat"]["weights"]
    assert weights.shape == (3 * 2 * 9 + 1, 2)
    assert float(weights.abs().max()) > 0.1


def test_linear_extrapolation_continues_the_last_change():
    x = torch.arange(3.0).view(1, 3, 1, 1, 1).expand(1, 3, 4, 5, 2)
    assert torch.equal(LinearExtrapolation().predict_next({"input_fields": x}), torch.full((1, 1, 4, 5, 2), 3.0))


def test_neighbourhood_features_wrap_periodic_axes_and_repeat_edges_elsewhere():
    x = torch.arange(4.0).view(1, 1, 4, 1, 1).expand(1, 1, 4, 3, 1)
    wrapped = neighbourhood_features(x, (True, True))  # [1, 4, 3, 9]
    edge = neighbourhood_features(x, (False, True))
    # offset (0, 1): the neighbour below along x; at x = 0 it is x = 3 when wrapped, x = 0 at an edge
    assert wrapped[0, 0, 0, 1].item() == 3.0 and edge[0, 0, 0, 1].item() == 0.0
    assert wrapped.shape == (1, 4, 3, 9)
