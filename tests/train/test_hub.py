"""Sharing on the Hub: the upload path against a local endpoint, and loading offline from the cache layout."""

import json
import os
import subprocess
import sys

import pytest
import torch
from accelerate.state import AcceleratorState

from modeling_pdefm import PDEFMConfig, PDEFMModel
from pdefm.train.model_files.model_card import write_model_card
from pdefm.train.finetune import main as finetune_main
from pdefm.train.training.batches import model_specs

from local_hub import LocalHub, place_in_cache
from well_files import write_base_and_new_system

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKEN = "hf_local_test_token"


def run_python(code: str, env_extra: dict, cwd: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(env_extra)
    env["PYTHONPATH"] = ROOT if "without_package" not in env_extra else ""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    """A base model and a LoRA adapter pushed to a local Hub; returns what the Hub received."""
    root = str(tmp_path_factory.mktemp("hub_data"))
    write_base_and_new_system(root)
    torch.manual_seed(0)
    base = PDEFMModel(PDEFMConfig.from_preset("tiny", datasets=model_specs(root, ["flow2d"]), n_steps_input=2))
    base_dir = str(tmp_path_factory.mktemp("base"))
    base.save_pretrained(base_dir)
    write_model_card(base_dir, title="PDE-FM test base", datasets=["flow2d"], description="A test model.",
                     report={"flow2d": {"vrmse": 0.5, "persistence_vrmse": 0.6, "windows": 4}})
    AcceleratorState._reset_state(True)
    out = str(tmp_path_factory.mktemp("ft"))
    assert finetune_main(["--base", base_dir, "--data", os.path.join(root, "waves"), "--adapter-name", "waves_lora",
                          "--output_dir", out, "--max_steps", "2", "--batch_size", "2", "--n_steps_input", "2",
                          "--eval_batches", "1", "--log_with", "none", "--lora-r", "2", "--warmup_steps", "1"]) == 0
    AcceleratorState._reset_state(True)
    with LocalHub() as hub:
        code = (f"from pdefm.train.model_files.hub import push_folder\nfrom pdefm.cli import main\n"
                f"print(push_folder({base_dir!r}, 'pdefm-org/tiny-base', token={TOKEN!r}))\n"
                f"main(['push', {os.path.join(out, 'waves_lora')!r}, 'pdefm-org/waves-lora'])\n")
        env = {"HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_TELEMETRY": "1", "HF_TOKEN": TOKEN}
        result = run_python(code, env, ROOT)
        assert result.returncode == 0, (hub.requests, result.stderr[-3000:])
        assert hub.endpoint in result.stdout
        denied = run_python(f"from pdefm.train.model_files.hub import push_folder\npush_folder({base_dir!r}, 'pdefm-org/x', token='hf_wrong')",
                            {"HF_ENDPOINT": hub.endpoint}, ROOT)
        assert run_python(f"from pdefm.cli import main\nraise SystemExit(main(['push', {root!r}, 'pdefm-org/y']))",
                          env, ROOT).returncode == 2
        return {"repos": hub.repos, "requests": hub.requests, "denied": denied, "base_dir": base_dir, "root": root}


def test_push_uploads_weights_code_and_card(pushed):
    base = pushed["repos"]["pdefm-org/tiny-base"]
    assert {"config.json", "model.safetensors", "configuration_pdefm.py", "modeling_pdefm.py", "README.md"} <= set(base)
    card = base["README.md"].decode()
    assert "library_name: transformers" in card and "datasets:" in card and "one-step VRMSE" in card
    adapter = pushed["repos"]["pdefm-org/waves-lora"]
    assert {"adapter_config.json", "adapter_model.safetensors", "pdefm_adapter.json", "README.md"} <= set(adapter)
    assert not any(p.startswith("checkpoints/") for p in adapter)
    assert ("POST", "/api/repos/create") in pushed["requests"]
    assert pushed["denied"].returncode != 0 and "401" in pushed["denied"].stderr


def test_offline_loading_from_the_cache_with_remote_code(pushed, tmp_path):
    cache = str(tmp_path / "hub_cache")
    place_in_cache(cache, "pdefm-org/tiny-base", pushed["repos"]["pdefm-org/tiny-base"])
    place_in_cache(cache, "pdefm-org/waves-lora", pushed["repos"]["pdefm-org/waves-lora"], commit="1" * 40)
    offline = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": cache, "HF_MODULES_CACHE": str(tmp_path / "modules")}
    # Without the pdefm package on the path: the repo's own code builds the model.
    code = ("from transformers import AutoModel\n"
            "m = AutoModel.from_pretrained('pdefm-org/tiny-base', trust_remote_code=True)\n"
            "print(type(m).__name__, type(m).__module__, sorted(m.config.datasets))")
    result = run_python(code, {**offline, "without_package": "1"}, str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "PDEFMModel" in result.stdout and "transformers_modules" in result.stdout and "flow2d" in result.stdout
    code = ("from pdefm.train.model_files.loading import load_pdefm\n"
            "m = load_pdefm('pdefm-org/tiny-base', adapter='pdefm-org/waves-lora')\n"
            "print(sorted(m.config.datasets))")
    result = run_python(code, offline, ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "['flow2d', 'waves']" in result.stdout


def test_an_id_missing_from_the_offline_cache_is_a_clear_error(tmp_path):
    code = ("from pdefm.train.model_files.loading import load_pdefm\n"
            "try:\n    load_pdefm('pdefm-org/not-cached')\n"
            "except OSError as e:\n    print('ERROR', e)\n")
    result = run_python(code, {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path)}, ROOT)
    assert "ERROR model 'pdefm-org/not-cached' is not in the Hugging Face cache" in result.stdout
    assert "HF_HUB_OFFLINE=1" in result.stdout


def test_push_sends_only_what_a_model_repository_needs(tmp_path):
    from pdefm.train.model_files.hub import files_to_push

    for name in ("model.safetensors", "README.md", "report.json", "figures/rollout_a.png",
                 "pretrain/events.out.tfevents.1700.myhost.1234.0", "checkpoints/step_1/x.json", "run_info/rank0.json",
                 ".pdefm_run.lock", "evaluation/evaluation.json", "notes.txt", "notes.md", "credentials.json",
                 "my_script.py", "unused_layers.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / "config.json").write_text(json.dumps({"auto_map": {"AutoConfig": "configuration_pdefm.PDEFMConfig",
                                                                   "AutoModel": "modeling_pdefm.PDEFMModel"}}))
    (tmp_path / "configuration_pdefm.py").write_text("from .config_versions import X\n")
    (tmp_path / "config_versions.py").write_text("X = 1\n")
    (tmp_path / "modeling_pdefm.py").write_text("import torch\nfrom .configuration_pdefm import PDEFMConfig\n"
                                                "from .spectral_layers import (\n    A,\n)\n")
    (tmp_path / "spectral_layers.py").write_text("A = 1\n")
    assert files_to_push(str(tmp_path)) == ["README.md", "config.json", "config_versions.py", "configuration_pdefm.py",
                                            "figures/rollout_a.png", "model.safetensors", "modeling_pdefm.py",
                                            "report.json", "spectral_layers.py"]


@pytest.mark.parametrize("link", ["report.md", "figures", "spectral_layers.py"])
def test_push_refuses_a_needed_file_that_is_a_link(tmp_path, link):
    from pdefm.train.model_files.hub import PushRefusedError, files_to_push

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("token")
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"auto_map": {"AutoModel": "modeling_pdefm.PDEFMModel"}}))
    (folder / "modeling_pdefm.py").write_text("from .spectral_layers import A\n")
    if link == "spectral_layers.py":
        (folder / link).symlink_to(outside / "secret.txt")
    elif link == "figures":
        (folder / link).symlink_to(outside)
    else:
        (folder / "spectral_layers.py").write_text("A = 1\n")
        (folder / link).symlink_to(outside / "secret.txt")
    with pytest.raises(PushRefusedError, match=f"{link}: a symbolic link"):
        files_to_push(str(folder))
