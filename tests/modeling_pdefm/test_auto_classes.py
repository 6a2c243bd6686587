import json
import os
import subprocess
import sys
import textwrap

import torch
from transformers import AutoConfig, AutoModel

from modeling_pdefm import PDEFMConfig, PDEFMModel

from conftest import make_batch, tiny_config


def test_save_and_load_round_trip_is_bit_for_bit(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = PDEFMModel.from_pretrained(tmp_path).eval()
    original = tiny_model.state_dict()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, original[key]), key
    batch = make_batch("MHD_64")
    assert torch.equal(loaded(**batch).prediction, tiny_model(**batch).prediction)
    assert loaded.config.datasets == tiny_model.config.datasets


def test_loading_keeps_trained_mamba_parameters(tmp_path, tiny_model):
    with torch.no_grad():
        for name, param in tiny_model.named_parameters():
            if name.endswith(("A_log", "dt_bias", ".D")):
                param.add_(0.5)
    tiny_model.save_pretrained(tmp_path)
    loaded = PDEFMModel.from_pretrained(tmp_path)
    for name, param in loaded.named_parameters():
        assert torch.equal(param, tiny_model.get_parameter(name)), name


def test_added_dataset_survives_save_and_load(tmp_path, tiny_model):
    tiny_model.add_dataset("new_physics", n_fields=2, n_spatial_dims=2, field_names=["u", "v"])
    tiny_model.save_pretrained(tmp_path)
    loaded = PDEFMModel.from_pretrained(tmp_path)
    assert loaded.config.datasets["new_physics"]["field_names"] == ["u", "v"]
    assert "new_physics" in loaded.dataset_heads


def test_auto_classes(tmp_path, tiny_model):
    assert isinstance(AutoConfig.for_model("pdefm"), PDEFMConfig)
    assert isinstance(AutoModel.from_config(tiny_config()), PDEFMModel)
    tiny_model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "pdefm"
    assert config["auto_map"] == {"AutoConfig": "configuration_pdefm.PDEFMConfig", "AutoModel": "modeling_pdefm.PDEFMModel"}
    assert isinstance(AutoModel.from_pretrained(tmp_path), PDEFMModel)


def test_num_parameters_counts_every_weight(tiny_model):
    assert tiny_model.num_parameters() == sum(p.numel() for p in tiny_model.parameters())


def test_remote_code_loads_in_a_fresh_process_without_the_package(tmp_path, tiny_model):
    folder = tmp_path / "saved"
    tiny_model.save_pretrained(folder)
    # The code travels with the weights as flat files.
    assert {"configuration_pdefm.py", "modeling_pdefm.py", "ssd_scan.py", "mamba_layers.py"} <= set(os.listdir(folder))
    batch = make_batch("shear_flow", batch=1)
    torch.save({k: v for k, v in batch.items()}, tmp_path / "batch.pt")
    torch.save(tiny_model(**batch).prediction, tmp_path / "expected.pt")
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["modeling_pdefm"] = None  # importing the installed package would fail
        import torch
        from transformers import AutoModel
        model = AutoModel.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        batch = torch.load({str(tmp_path / 'batch.pt')!r})
        got = model(**batch).prediction
        assert torch.equal(got, torch.load({str(tmp_path / 'expected.pt')!r}))
        print("remote-code-ok", type(model).__name__)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_HOME"] = str(tmp_path / "hf_home")
    env["HF_HUB_OFFLINE"] = "1"
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "remote-code-ok PDEFMModel" in result.stdout
