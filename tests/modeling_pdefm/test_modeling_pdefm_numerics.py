"""Numerics of the model: the normalisation floor, decoder padding at walls, group-wise norms, bf16."""

import pytest
import torch

from modeling_pdefm import PDEFMConfig, PDEFMModel
from modeling_pdefm.mamba_layers import Mamba2Mixer, RMSNorm
from modeling_pdefm.decoder_layers import DecoderBlock, FieldDecoder, PeriodicPad, WallPadding
from modeling_pdefm.tokenizer_layers import FieldLinear

from conftest import make_batch, tiny_config

WALL, PERIODIC = 0, 2


def _constant_output_model(field_scales):
    """A model whose decoder adds exactly +1 (in normalised units) to every field: the physical change it makes is
    then the std it divides by."""
    spec = {"n_fields": 2, "n_spatial_dims": 2, "field_scales": field_scales}
    model = PDEFMModel(PDEFMConfig.from_preset("tiny", datasets={"f": spec})).eval()
    with torch.no_grad():
        model.dataset_heads["f"].out_proj.weight.zero_()
        model.dataset_heads["f"].out_proj.bias.fill_(1.0)
    return model


def test_a_field_constant_over_the_window_can_still_change():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 16, 16, 2, generator=g)
    x[..., 0] = 5.0  # quiescent over the whole input window
    scaled = _constant_output_model([10.0, 1.0])
    prediction = scaled(input_fields=x).prediction
    change = (prediction[:, 0] - x[:, -1]).mean(dim=(1, 2))[0]
    assert change[0].item() == pytest.approx(0.05 * 10.0, rel=1e-4)  # norm_std_floor x the dataset's scale
    assert change[1].item() == pytest.approx(x[..., 1].std().item(), rel=1e-4)  # a moving field: its own std
    # The documented fallback without the dataset's scales: an absolute floor of 1e-6 (the field barely moves).
    unscaled = _constant_output_model(None)
    change = (unscaled(input_fields=x).prediction[:, 0] - x[:, -1]).mean(dim=(1, 2))[0]
    assert abs(change[0].item()) < 1e-5


def test_field_scales_are_checked_and_saved(tmp_path):
    with pytest.raises(ValueError, match=r"field_scales'\] must hold 2 finite numbers"):
        PDEFMConfig(datasets={"f": {"n_fields": 2, "n_spatial_dims": 2, "field_scales": [1.0]}})
    with pytest.raises(ValueError, match="field_scales"):
        PDEFMConfig(datasets={"f": {"n_fields": 1, "n_spatial_dims": 2, "field_scales": [float("nan")]}})
    model = _constant_output_model([3.0, 0.5])
    model.save_pretrained(tmp_path)
    assert PDEFMModel.from_pretrained(tmp_path).config.datasets["f"]["field_scales"] == [3.0, 0.5]


def test_training_settings_are_part_of_the_config():
    config = tiny_config(n_steps_input=6, n_steps_output=2, spectral_loss_weight=0.3)
    again = PDEFMConfig.from_dict(config.to_dict())
    assert (again.n_steps_input, again.n_steps_output, again.spectral_loss_weight) == (6, 2, 0.3)
    for bad in ({"n_steps_input": 0}, {"spectral_loss_weight": -1.0}, {"wall_padding": 2.0}, {"norm_std_floor": "x"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            tiny_config(**bad)


def _boundaries(codes):
    return torch.tensor(codes).expand(2, -1, -1)


def test_periodic_fields_are_decoded_as_before_and_walls_are_padded():
    torch.manual_seed(0)
    padded = PDEFMModel(tiny_config(decoder_type="fno")).eval()  # wall padding is for Fourier layers
    with torch.no_grad():  # a fresh adapter predicts "no change" whatever the decoder does
        padded.dataset_heads["shear_flow"].out_proj.weight.normal_()
    unpadded = PDEFMModel(tiny_config(decoder_type="fno", wall_padding=0.0)).eval()
    unpadded.load_state_dict(padded.state_dict())
    batch = make_batch("shear_flow", space=(16, 24))
    with torch.no_grad():
        periodic = {**batch, "boundary_conditions": _boundaries([[PERIODIC, PERIODIC], [PERIODIC, PERIODIC]])}
        assert torch.equal(padded(**periodic).prediction, unpadded(**periodic).prediction)
        walls = _boundaries([[WALL, WALL], [PERIODIC, PERIODIC]])
        assert padded.decoders["2d"].wall_padding.widths(PDEFMModel._periodic_axes(walls), (16, 24)) == (2, 0)
        walled = {**batch, "boundary_conditions": walls}
        a, b = padded(**walled).prediction, unpadded(**walled).prediction
        assert a.shape == b.shape and not torch.allclose(a, b)


def test_decoder_treats_walled_axes_as_bounded_and_periodic_ones_as_periodic():
    """Without padding the Fourier layers are exactly equivariant to circular shifts (the last row is the first
    row's neighbour); padding a walled axis ends that along it, and only along it."""
    torch.manual_seed(0)
    config = tiny_config(patch_size=4, decoder_type="fno", decoder_skip_frames=1)
    decoder = FieldDecoder(config, 2).eval()
    tokens = torch.zeros(1, 16, config.hidden_size)  # a constant token field: the skip carries the structure
    skip = torch.randn(1, 16, 16, config.latent_channels)  # channels last

    def shift_gap(periodic, axis):
        with torch.no_grad():
            shifted_first = decoder(tokens, (4, 4), skip.roll(4, dims=axis), periodic)
            shifted_after = decoder(tokens, (4, 4), skip, periodic).roll(4, dims=axis)  # a whole patch
        return ((shifted_first - shifted_after).norm() / shifted_after.norm()).item()

    assert decoder.wall_padding.widths((False, True), (16, 16)) == (2, 0)
    assert shift_gap((True, True), 1) < 1e-5 and shift_gap((True, True), 2) < 1e-5
    assert shift_gap((False, True), 1) > 100 * max(shift_gap((True, True), 1), 1e-6)  # the walled axis
    assert shift_gap((False, True), 2) < 1e-5  # the periodic one


def test_conv_decoder_wraps_periodic_axes_and_zero_pads_walls():
    """With `decoder_conv_padding="boundary"` the 3x3 blocks are exactly equivariant to circular shifts along a
    periodic axis (the last row is the first row's neighbour) and not along a walled one; zero padding (the old
    behaviour) breaks that on both. Walls need no extra `wall_padding` then: the conv decoder skips it."""
    torch.manual_seed(0)
    tokens = torch.zeros(1, 16, 32)  # a constant token field: the skip carries the structure
    skip = torch.randn(1, 16, 16, 8)

    def decoder(padding):
        torch.manual_seed(0)
        config = tiny_config(patch_size=4, decoder_type="conv", decoder_conv_padding=padding, hidden_size=32,
                             latent_channels=8, decoder_skip_frames=1)  # the skip below holds one frame
        return FieldDecoder(config, 2).eval()

    def shift_gap(module, periodic, axis):
        with torch.no_grad():
            shifted_first = module(tokens, (4, 4), skip.roll(4, dims=axis), periodic)
            shifted_after = module(tokens, (4, 4), skip, periodic).roll(4, dims=axis)
        return ((shifted_first - shifted_after).norm() / shifted_after.norm()).item()

    wrapping, zero_padded = decoder("boundary"), decoder("zeros")
    assert shift_gap(wrapping, (True, True), 1) < 1e-5 and shift_gap(wrapping, (True, True), 2) < 1e-5
    assert shift_gap(zero_padded, (True, True), 1) > 1e-3 and shift_gap(zero_padded, (True, True), 2) > 1e-3
    assert shift_gap(wrapping, (False, True), 1) > 1e-3  # the walled axis
    assert shift_gap(wrapping, (False, True), 2) < 1e-5  # the periodic one
    # A "boundary" 3x3 decoder skips the wall padding (it has no Fourier layer to decouple); a "zeros" one pads.
    assert wrapping.wall_padding.widths((False, True), (16, 16)) == (0, 0)
    assert zero_padded.wall_padding.widths((False, True), (16, 16)) == (2, 0)
    with pytest.raises(ValueError, match="decoder_conv_padding must be one of"):
        tiny_config(decoder_conv_padding="circular")


@pytest.mark.parametrize("axes, shape", [((1, 2), (2, 5, 6, 3)), ((2,), (2, 5, 6, 3)), ((1, 2, 3), (1, 4, 3, 5, 2))])
def test_periodic_pad_copies_the_opposite_edges_and_folds_their_gradient_back(axes, shape):
    """`PeriodicPad` equals padding with edge slices through `torch.cat` (corners included), and its hand-written
    backward is the true gradient (checked in float64 against finite differences)."""
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    reference = x
    for axis in axes:
        reference = torch.cat([reference.narrow(axis, reference.shape[axis] - 1, 1), reference,
                               reference.narrow(axis, 0, 1)], dim=axis)
    assert torch.equal(PeriodicPad.apply(x, axes), reference)
    assert torch.autograd.gradcheck(lambda t: PeriodicPad.apply(t, axes), (x,))


@pytest.mark.parametrize("periodic", [None, (True, True), (False, True)])
def test_decoder_block_folding_its_pointwise_map_into_the_3x3_centre_tap_changes_nothing(periodic):
    """The fast path (W as the 3x3 kernel's centre tap, one convolution) against the same block computing the
    convolution and W apart, as it does when an adapter wraps a layer: outputs and every gradient."""

    class WrappedLinear(FieldLinear):  # not the plain type: the block takes its unfolded path
        pass

    torch.manual_seed(0)
    fast = DecoderBlock(6, 3, 2, "conv")
    apart = DecoderBlock(6, 3, 2, "conv")
    apart.pointwise = WrappedLinear(6, 6)
    apart.load_state_dict(fast.state_dict())
    x = torch.randn(2, 9, 8, 6, requires_grad=True)
    outputs = [block(x, periodic) for block in (fast, apart)]
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-5, rtol=1e-5)
    grads = [torch.autograd.grad(out.square().sum(), [x, *block.parameters()]) for out, block in zip(outputs, (fast, apart))]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_the_model_passes_its_periodic_axes_to_the_decoder():
    walls = _boundaries([[WALL, WALL], [PERIODIC, PERIODIC]])
    assert PDEFMModel._periodic_axes(walls) == (False, True)
    mixed = torch.tensor([[[PERIODIC, PERIODIC], [PERIODIC, PERIODIC]], [[PERIODIC, WALL], [PERIODIC, PERIODIC]]])
    assert PDEFMModel._periodic_axes(mixed) == (False, True)  # one walled sample makes the axis walled for the batch
    torch.manual_seed(0)
    model = PDEFMModel(tiny_config(decoder_type="conv", decoder_conv_padding="boundary")).eval()
    with torch.no_grad():
        model.dataset_heads["shear_flow"].out_proj.weight.normal_()
    zero_padded = PDEFMModel(tiny_config(decoder_type="conv", decoder_conv_padding="zeros", wall_padding=0.0)).eval()
    zero_padded.load_state_dict(model.state_dict())
    batch = make_batch("shear_flow", space=(16, 16))
    with torch.no_grad():
        all_walls = {**batch, "boundary_conditions": _boundaries([[WALL, WALL], [WALL, WALL]])}
        assert torch.allclose(model(**all_walls).prediction, zero_padded(**all_walls).prediction, atol=1e-6)
        periodic = {**batch, "boundary_conditions": _boundaries([[PERIODIC, PERIODIC], [PERIODIC, PERIODIC]])}
        assert not torch.allclose(model(**periodic).prediction, zero_padded(**periodic).prediction, atol=1e-4)


def test_group_wise_rms_norm():
    norm = RMSNorm(8, group_size=4)
    x = torch.cat([torch.randn(3, 4), 100 * torch.randn(3, 4)], dim=-1)
    y = norm(x)
    for group in (y[:, :4], y[:, 4:]):
        assert torch.allclose(group.pow(2).mean(-1), torch.ones(3), rtol=1e-4)
    assert torch.allclose(RMSNorm(8)(x), RMSNorm(8, group_size=8)(x))
    with pytest.raises(ValueError, match="RMSNorm: width 8 is not a multiple of group_size 3"):
        RMSNorm(8, group_size=3)
    mixer = Mamba2Mixer(32, state_size=8, head_dim=16, n_groups=2)  # 4 heads in 2 groups
    assert mixer.norm.group_size == 32 and mixer(torch.randn(1, 10, 32)).shape == (1, 10, 32)
    with pytest.raises(ValueError, match="n_groups=3 must be a positive divisor of the 4 heads"):
        Mamba2Mixer(32, state_size=8, head_dim=16, n_groups=3)


def test_the_model_trains_under_bf16_autocast_on_cpu():
    torch.manual_seed(0)
    model = PDEFMModel(tiny_config())
    batch = make_batch("acoustic_scattering", space=(16, 16))
    reference = model(**batch).prediction.detach()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(**batch)
    assert torch.isfinite(out.loss) and out.prediction.dtype in (torch.float32, torch.bfloat16)
    relative = (out.prediction.float() - reference).norm() / reference.norm()
    assert relative < 0.05  # bf16 keeps about 3 digits
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_wall_padding_pads_walled_axes_only_and_unpads_to_the_same_field():
    padding = WallPadding(0.125)
    assert padding.widths((False, True), (16, 24)) == (2, 0)
    assert padding.widths((False, False), (4, 40)) == (1, 5)  # at least one point on a walled axis
    assert WallPadding(0.0).widths((False, False), (16, 16)) == (0, 0)
    x = torch.randn(2, 16, 24, 3)
    padded = padding.pad(x, (2, 0))
    assert padded.shape == (2, 20, 24, 3) and padded[:, :2].abs().max() == 0 and padded[:, -2:].abs().max() == 0
    assert torch.equal(padding.unpad(padded, (2, 0)), x)
