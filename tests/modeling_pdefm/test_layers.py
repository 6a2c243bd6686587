import pytest
import torch

from modeling_pdefm.conditioning_layers import FiLM, PhysicsContextEncoder
from modeling_pdefm.mamba_layers import BidirectionalMamba, CausalDepthwiseConv, Mamba2Mixer
from modeling_pdefm.spectral_layers import SpectralConv, low_mode_index
from modeling_pdefm.tokenizer_layers import FieldLinear, PatchEmbedding, PatchUnembedding, SpectralTokenizer


def test_low_modes_keep_both_signs_except_on_the_last_axis():
    assert low_mode_index(16, 3, last_axis=False).tolist() == [0, 1, 2, 13, 14, 15]
    assert low_mode_index(16, 3, last_axis=True).tolist() == [0, 1, 2]
    # Clamped to what a small grid holds.
    assert low_mode_index(4, 8, last_axis=False).tolist() == [0, 1, 2, 3]
    assert low_mode_index(4, 8, last_axis=True).tolist() == [0, 1, 2]


@pytest.mark.parametrize("space", [(16, 12), (8, 6, 10)])
def test_spectral_conv_keeps_low_modes_and_drops_high_ones(space):
    conv = SpectralConv(1, 1, modes=2, n_spatial_dims=len(space))
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[..., 0] = 1.0  # identity on the kept modes
    grids = torch.meshgrid(*[torch.arange(n) / n for n in space], indexing="ij")
    low = torch.cos(2 * torch.pi * grids[0]) + torch.sin(2 * torch.pi * grids[-1])
    high = torch.cos(2 * torch.pi * 4 * grids[0])
    out = conv((low + high)[None, ..., None])  # channels last
    assert torch.allclose(out[0, ..., 0], low, atol=1e-5)


@pytest.mark.parametrize("space, modes", [((16, 12), 3), ((9, 8, 7), 2), ((5, 6), 8), ((32, 32), 4)])
def test_spectral_conv_equals_the_full_fft_computation(space, modes):
    """The truncated transform (products with the kept DFT rows) against rfftn, mode selection, irfftn."""
    from modeling_pdefm.spectral_layers import low_mode_indices, weight_mode_index

    torch.manual_seed(0)
    conv = SpectralConv(3, 4, modes, len(space))
    x = torch.randn(2, *space, 3)
    dims = tuple(range(1, len(space) + 1))
    x_ft = torch.fft.rfftn(x, dim=dims, norm="ortho")
    indices = low_mode_indices(space, modes)
    weight = torch.view_as_complex(conv.weight)
    for axis, used in enumerate(indices):
        x_ft = x_ft.index_select(1 + axis, used)
        weight = weight.index_select(2 + axis, weight_mode_index(modes, used, axis == len(space) - 1))
    letters = "xyz"[: len(space)]
    out_modes = torch.einsum(f"b{letters}i,io{letters}->b{letters}o", x_ft, weight)
    full = torch.zeros(2, *space[:-1], space[-1] // 2 + 1, 4, dtype=out_modes.dtype)
    full[(slice(None), *torch.meshgrid(*indices, indexing="ij"))] = out_modes
    expected = torch.fft.irfftn(full, s=space, dim=dims, norm="ortho")
    assert torch.allclose(conv(x), expected, atol=1e-5)


def test_spectral_tokens_tell_apart_positive_and_negative_frequencies():
    tokenizer = SpectralTokenizer(1, 8)
    x, y = torch.meshgrid(torch.arange(16) / 16, torch.arange(16) / 16, indexing="ij")
    # Waves along +45 and -45 degrees differ only in the sign of the first-axis wavenumber.
    plus = torch.cos(2 * torch.pi * (x + y))[None, ..., None]
    minus = torch.cos(2 * torch.pi * (-x + y))[None, ..., None]
    tokens_plus, tokens_minus = tokenizer(plus, 2), tokenizer(minus, 2)
    assert tokens_plus.shape == (1, 4 * 2, 8)
    assert not torch.allclose(tokens_plus, tokens_minus, atol=1e-4)


@pytest.mark.parametrize("space,patch", [((13, 30), 4), ((9, 8, 7), 4), ((16, 16), 8)])
def test_patch_embedding_pads_and_unembedding_crops(space, patch):
    d = len(space)
    embed = PatchEmbedding(3, 16, patch, d)
    tokens, grid = embed(torch.randn(2, *space, 3))
    assert grid == tuple(-(-n // patch) for n in space)
    assert tokens.shape == (2, torch.Size(grid).numel(), 16)
    out = PatchUnembedding(16, 5, patch, d)(tokens, grid, space)
    assert out.shape == (2, *space, 5)


def test_patch_embedding_is_a_strided_convolution():
    """Reshape + linear layer equals a convolution with kernel and stride `patch` (the patch's values row-major,
    channels last)."""
    torch.manual_seed(0)
    embed = PatchEmbedding(3, 8, 4, 2)
    x = torch.randn(2, 8, 12, 3)
    weight = embed.proj.weight.view(8, 4, 4, 3).permute(0, 3, 1, 2)  # [hidden, C, p, p]
    conv = torch.nn.functional.conv2d(x.permute(0, 3, 1, 2), weight, embed.proj.bias, stride=4)
    tokens, grid = embed(x)
    codes = tokens - conv.flatten(2).transpose(1, 2)
    assert grid == (2, 3) and torch.allclose(codes[0], codes[1], atol=1e-5)  # what is left is the position code


def test_unembedding_puts_each_token_on_its_own_patch():
    unembed = PatchUnembedding(4, 1, 2, 2)
    with torch.no_grad():
        unembed.proj.weight.zero_()
        unembed.proj.bias.zero_()
        unembed.proj.weight[:, 0] = 1.0
    tokens = torch.zeros(1, 6, 4)
    tokens[0, :, 0] = torch.arange(6.0)  # grid 2 x 3 of patches
    out = unembed(tokens, (2, 3), (4, 6))[0, ..., 0]
    assert out[0:2, 0:2].eq(0).all() and out[0:2, 4:6].eq(2).all() and out[2:4, 2:4].eq(4).all()


def test_film_starts_as_identity_and_conditions_on_context():
    film = FiLM(8, 4)
    torch.nn.init.zeros_(film.proj.weight)
    torch.nn.init.zeros_(film.proj.bias)
    x = torch.randn(2, 5, 8)
    assert torch.equal(film(x, torch.randn(2, 4)), x)
    torch.nn.init.normal_(film.proj.weight)
    c = torch.randn(2, 4)
    out = film(x, c)
    assert not torch.allclose(out[0], film(x, c.flip(0))[0])


def test_physics_context_depends_on_boundaries_and_time_step():
    enc = PhysicsContextEncoder(16)
    extra = torch.zeros(2, 16)
    bc = torch.tensor([[[2, 2], [0, 0]], [[2, 2], [0, 0]]])
    base = enc(bc, torch.tensor([0.1, 0.1]), extra)
    assert torch.allclose(base[0], base[1])
    other_bc = enc(torch.tensor([[[2, 2], [0, 0]], [[1, 1], [0, 0]]]), torch.tensor([0.1, 0.1]), extra)
    assert not torch.allclose(other_bc[0], other_bc[1])
    other_dt = enc(bc, torch.tensor([0.1, float("nan")]), extra)
    assert torch.isfinite(other_dt).all() and not torch.allclose(other_dt[0], other_dt[1])


def test_mamba_mixer_is_causal_and_bidirectional_block_is_not():
    torch.manual_seed(0)
    mixer = Mamba2Mixer(16, state_size=8, head_dim=8, chunk_size=8)
    both = BidirectionalMamba(16, state_size=8, head_dim=8, chunk_size=8)
    x = torch.randn(1, 20, 16, requires_grad=True)
    mixer(x)[0, 0].sum().backward()
    assert x.grad[0, 1:].abs().sum() == 0
    x.grad = None
    both(x)[0, 0].sum().backward()
    assert x.grad[0, -1].abs().sum() > 0


def test_segmented_mixer_equals_one_pass():
    torch.manual_seed(0)
    mixer = Mamba2Mixer(16, state_size=8, head_dim=8, chunk_size=8, segment_size=0)
    x = torch.randn(2, 45, 16)
    whole = mixer(x)
    mixer.segment_size = 10  # segments of 10, 10, 10, 10, 5 tokens
    segmented = mixer(x)
    assert ((segmented - whole).norm() / whole.norm()) < 1e-5


@pytest.mark.parametrize("in_features, shape", [(4, (2, 6, 5)), (3, (1, 4, 3, 5)), (8, (2, 6, 5)), (4, (7,))])
def test_field_linear_is_the_same_map_on_every_path(in_features, shape):
    """Few input channels on a 2D/3D field take a 1x1 convolution, the rest a matrix product: both equal
    `F.linear`, gradients included."""
    torch.manual_seed(0)
    layer = FieldLinear(in_features, 5)
    x = torch.randn(*shape, in_features, requires_grad=True)
    out = layer(x)
    reference = torch.nn.functional.linear(x, layer.weight, layer.bias)
    torch.testing.assert_close(out, reference)
    grads = torch.autograd.grad(out.square().sum(), [x, layer.weight, layer.bias])
    reference_grads = torch.autograd.grad(reference.square().sum(), [x, layer.weight, layer.bias])
    for a, b in zip(grads, reference_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_mixer_causal_convolution_as_shifted_products_equals_the_conv1d_layer():
    """The mixer's depthwise convolution written as shifted products (its fast path) against the `Conv1d` layer it
    holds, called as itself (the path for an adapter-wrapped layer): outputs and every gradient, also in segments."""

    class WrappedConv1d(torch.nn.Conv1d):  # not the plain type: the mixer calls the layer
        pass

    torch.manual_seed(0)
    fast = Mamba2Mixer(16, state_size=8, head_dim=8, chunk_size=8, segment_size=16)
    layer = Mamba2Mixer(16, state_size=8, head_dim=8, chunk_size=8, segment_size=16)
    conv = fast.conv1d
    layer.conv1d = WrappedConv1d(conv.in_channels, conv.out_channels, conv.kernel_size[0], groups=conv.groups)
    layer.load_state_dict(fast.state_dict())
    x = torch.randn(2, 45, 16, requires_grad=True)
    outputs = [mixer(x) for mixer in (fast, layer)]
    torch.testing.assert_close(outputs[0], outputs[1])
    grads = [torch.autograd.grad(out.square().sum(), [x, *mixer.parameters()]) for out, mixer in zip(outputs, (fast, layer))]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("with_tail, with_bias", [(True, True), (False, True), (True, False)])
def test_causal_depthwise_conv_function_equals_conv1d_on_the_joined_input(with_tail, with_bias):
    """The written-out causal convolution against `F.conv1d` on the tail and the inputs joined, in float64:
    outputs and the gradients of the inputs, the tail, the weights and the bias (gradcheck)."""
    torch.manual_seed(0)
    x = torch.randn(2, 7, 5, dtype=torch.float64, requires_grad=True)
    tail = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True) if with_tail else None
    weight = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(5, dtype=torch.float64, requires_grad=True) if with_bias else None
    joined = torch.cat([tail if with_tail else torch.zeros(2, 3, 5, dtype=torch.float64), x], dim=1)
    reference = torch.nn.functional.conv1d(joined.transpose(1, 2), weight[:, None], bias, groups=5).transpose(1, 2)
    torch.testing.assert_close(CausalDepthwiseConv.apply(x, tail, weight, bias), reference)
    assert torch.autograd.gradcheck(CausalDepthwiseConv.apply, (x, tail, weight, bias))


def test_mixer_segments_shorter_than_the_convolution_tail_give_the_whole_result():
    """Segments of one token (shorter than the convolution's 3-input tail) take the layer's own path: the same
    outputs and gradients as the whole sequence at once."""
    torch.manual_seed(0)
    whole = Mamba2Mixer(16, state_size=8, head_dim=8, chunk_size=8, segment_size=0)
    short = Mamba2Mixer(16, state_size=8, head_dim=8, chunk_size=8, segment_size=1)
    short.load_state_dict(whole.state_dict())
    x = torch.randn(2, 6, 16, requires_grad=True)
    outputs = [mixer(x) for mixer in (whole, short)]
    torch.testing.assert_close(outputs[1], outputs[0], atol=1e-5, rtol=1e-4)
    grads = [torch.autograd.grad(out.square().sum(), [x, *m.parameters()]) for out, m in zip(outputs, (whole, short))]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
