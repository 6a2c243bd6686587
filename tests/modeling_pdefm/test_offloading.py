"""accelerate's big-model loading: a saved model dispatched with any top-level block or backbone layer offloaded
(to disk, or kept on the CPU by the device map) predicts what the in-memory model predicts. Every weight is reached
through its module's call, where accelerate's hooks load it (a fused path that reads weights directly is taken only
where no hook wraps the modules)."""

import pytest
import torch

from modeling_pdefm import PDEFMModel
from modeling_pdefm.tokenizer_layers import weights_readable

from conftest import make_batch, tiny_config

pytest.importorskip("accelerate")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = PDEFMModel(tiny_config()).eval()
    with torch.no_grad():  # a fresh head predicts no change: make every block reach the prediction
        for head in model.dataset_heads.values():
            head.out_proj.weight.normal_(std=0.1)
    folder = tmp_path_factory.mktemp("offload_model")
    model.save_pretrained(folder)
    batches = {name: {k: v for k, v in make_batch(name).items() if k != "labels"} for name in ("shear_flow", "MHD_64")}
    with torch.no_grad():
        expected = {name: model(**batch).prediction for name, batch in batches.items()}
    blocks = [n for n, _ in model.named_children() if n != "backbone"]
    blocks += [f"backbone.layers.{i}" for i in range(len(model.backbone.layers))] + ["backbone.final_norm"]
    return folder, batches, expected, blocks


BLOCKS = ["dataset_heads", "patch_embeddings", "decoders", "spectral_tokenizer", "fusion", "context_encoder", "film",
          "frame_proj", "backbone.layers.0", "backbone.layers.1", "backbone.final_norm"]


@pytest.mark.parametrize("where", ["disk", "cpu"])
@pytest.mark.parametrize("block", BLOCKS)
def test_a_model_with_one_block_offloaded_predicts_what_it_predicts_in_memory(saved, tmp_path, block, where):
    folder, batches, expected, blocks = saved
    assert block in blocks
    device_map = {name: "cpu" for name in blocks}
    device_map[block] = where
    model = PDEFMModel.from_pretrained(folder, device_map=device_map, offload_folder=str(tmp_path)).eval()
    for name, batch in batches.items():
        with torch.no_grad():
            prediction = model(**batch).prediction
        torch.testing.assert_close(prediction, expected[name], rtol=1e-4, atol=1e-5)


def test_weights_are_read_directly_only_where_no_hook_wraps_the_call():
    layer = torch.nn.Conv1d(2, 2, 3)
    assert weights_readable(layer)
    handle = layer.register_forward_pre_hook(lambda module, args: None)
    assert not weights_readable(layer)
    handle.remove()
    layer._hf_hook = object()  # what accelerate's add_hook_to_module leaves on a module
    assert not weights_readable(layer)
