"""The FNO baseline's spectral convolution (neuraloperator 0.3.0) on the pinned torch: it indexes with lists of
slices, which torch warns may one day mean something else; here it is checked against the same convolution written
with tuple indices and an explicit contraction, and the warning is silenced only where the baseline is loaded."""

import importlib.util
import warnings

import pytest
import torch

pytestmark = pytest.mark.skipif(importlib.util.find_spec("neuralop") is None, reason="needs neuraloperator")


def reference_spectral_conv(conv, x: torch.Tensor) -> torch.Tensor:
    """rfft -> keep the low modes (both signs on the non-last axes) -> multiply by the weights -> irfft, + bias."""
    order = x.ndim - 2
    dims = tuple(range(-order, 0))
    spectrum = torch.fft.rfftn(x, norm=conv.fft_norm, dim=dims)
    spectrum = torch.fft.fftshift(spectrum, dim=dims[:-1])
    weight = conv._get_weight(0).to_tensor()
    out = torch.zeros(x.shape[0], conv.out_channels, *spectrum.shape[2:], dtype=torch.cfloat)
    index = [slice(None), slice(None)]
    for size, modes in zip(spectrum.shape[2:-1], weight.shape[2:-1]):
        start = (size - modes) // 2
        index.append(slice(start, start + modes))
    index.append(slice(0, weight.shape[-1]))
    index = tuple(index)
    letters = "xyz"[:order]
    out[index] = torch.einsum(f"bi{letters},io{letters}->bo{letters}", spectrum[index], weight)
    out = torch.fft.fftshift(out, dim=dims[:-1])
    result = torch.fft.irfftn(out, s=x.shape[2:], dim=dims, norm=conv.fft_norm)
    return result + conv.bias[0] if conv.bias is not None else result


@pytest.mark.parametrize("shape, modes", [((16, 12), (6, 4)), ((8, 8, 8), (4, 4, 4))])
def test_the_fno_spectral_convolution_matches_a_tuple_indexed_reference(shape, modes):
    from pdefm.train.baselines.models import fno_class

    fno_class()  # loads the baseline as the benchmark does (its stand-ins, and the warning silenced there)
    from neuralop.layers.spectral_convolution import SpectralConv

    torch.manual_seed(0)
    conv = SpectralConv(3, 5, n_modes=modes)
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, 3, *shape)
    with warnings.catch_warnings(record=True) as caught:
        with torch.no_grad():
            result = conv(x)
    torch.testing.assert_close(result, reference_spectral_conv(conv, x), rtol=1e-4, atol=1e-5)
    assert not [w for w in caught if "non-tuple sequence" in str(w.message)]
