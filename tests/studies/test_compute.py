"""Compute counted, not timed (`pdefm.studies.compute`): the counts follow the textbook formulas, and a
`--budget-steps` benchmark gives every baseline the steps its share of PDE-FM's counted operations pays for."""

import json
import math

import pytest
import torch

from pdefm.studies import benchmark
from pdefm.studies.compute import count_flops, fft_flops, steps_for_flops

from well_files import write_two_system_suite


def test_a_linear_layers_step_counts_its_three_matrix_products():
    layer = torch.nn.Linear(16, 8, bias=False)
    x = torch.randn(4, 16, requires_grad=True)
    # forward x @ W^T: 2*4*16*8; backward: the same for the weight's and the input's gradients
    assert count_flops(lambda: layer(x).sum().backward()) == 3 * 2 * 4 * 16 * 8


def test_a_complex_matrix_product_counts_four_real_ones():
    a, b = torch.randn(5, 6, dtype=torch.complex64), torch.randn(6, 7, dtype=torch.complex64)
    assert count_flops(lambda: a @ b) == 4 * 2 * 5 * 6 * 7
    assert count_flops(lambda: torch.einsum("bij,bjk->bik", a[None].expand(3, 5, 6), b[None].expand(3, 6, 7))) == 3 * 4 * 2 * 5 * 6 * 7
    assert count_flops(lambda: a.real @ b.real) == 2 * 5 * 6 * 7


def test_fourier_transforms_are_counted_at_5_n_log2_n():
    x = torch.randn(4, 64)
    assert count_flops(lambda: torch.fft.rfft(x)) == 4 * 64 * 6 * 5 // 2  # real: half a complex transform
    z = torch.randn(3, 8, 16, dtype=torch.complex64)
    assert count_flops(lambda: torch.fft.fft2(z)) == fft_flops(3 * 8 * 16, 8 * 16, real=False) == 3 * 128 * 7 * 5
    y = torch.fft.rfft(torch.randn(2, 32))
    assert count_flops(lambda: torch.fft.irfft(y, n=32)) == fft_flops(2 * 32, 32, real=True)
    assert fft_flops(10, 1, real=False) == 0


def test_steps_for_flops_pays_whole_steps_and_at_least_one():
    assert steps_for_flops(1000, 300) == 3 and steps_for_flops(10, 300) == 1
    with pytest.raises(ValueError, match="expected > 0"):
        steps_for_flops(10, 0)


def test_a_step_budget_gives_each_baseline_its_counted_share(tmp_path):
    data_dir = write_two_system_suite(str(tmp_path / "data"))
    out, doc = tmp_path / "bench", tmp_path / "docs" / "benchmark.md"
    common = ["--budget-steps", "4", "--seeds", "0", "--data", data_dir, "--out", str(out), "--doc", str(doc),
              "--baselines", "unet_classic", "--baseline-sizes", "matched", "--eval-batches", "1", "--rollout-steps", "2"]
    with pytest.raises(SystemExit, match="no finished PDE-FM run"):  # the share is PDE-FM's count: it must exist
        benchmark.main([*common, "--parts", "baselines"])
    assert benchmark.main([*common, "--parts", "main"]) == 0
    pdefm = json.load(open(out / "seed0" / "pdefm" / "evaluation.json"))
    flops = pdefm["train_flops"]
    assert pdefm["train_steps"] == 4 and sum(flops["steps"].values()) == 4
    assert flops["total"] == sum(flops["per_step"][n] * flops["steps"][n] for n in ("flow2d", "waves")) > 0
    runs = json.load(open(out / "seed0" / "unet_classic_matched" / "evaluation.json"))["runs"]
    for name, run in runs.items():
        share = flops["total"] / 2
        assert run["steps"] == max(1, math.floor(share / run["flops_per_step"])), name
        assert run["train_flops"] == run["steps"] * run["flops_per_step"]
    # alone: each dataset's share of the mixture's count, in steps of PDE-FM on that dataset
    assert benchmark.main([*common, "--parts", "alone"]) == 0
    for name in ("flow2d", "waves"):
        alone = json.load(open(out / "seed0" / f"alone_{name}" / "evaluation.json"))
        assert alone["train_steps"] == max(1, math.floor(flops["total"] / 2 / flops["per_step"][name])), name
    text = doc.read_text()
    assert "**4 optimizer steps** (batch 8)" in text and "counted rather than timed" in text
    assert "| training TFLOP per seed (counted) |" in text


def test_a_step_budget_and_baseline_minutes_are_refused_together(tmp_path, capsys):
    with pytest.raises(SystemExit):
        benchmark.main(["--budget-steps", "4", "--baseline-minutes", "1", "--data", str(tmp_path), "--out",
                        str(tmp_path / "o")])
    assert "give one or the other" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        benchmark.main(["--budget-steps", "0", "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert "--budget-steps must be a whole number of steps >= 1" in capsys.readouterr().err
