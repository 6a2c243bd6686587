"""PDE-FM under PyTorch FSDP2 (`fully_shard`, one unit per backbone layer, as `train/accelerate_configs/fsdp.yaml`
wraps it) on CPU ranks over gloo, against the same training in one process.

Run by `tests/train/test_fit_fsdp.py` with `torchrun --nproc_per_node 2`. Every rank trains on the same batches, so the
averaged gradients equal one process's and so must the losses. Prints one JSON line on rank 0.
"""

import json
import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from torch.distributed.device_mesh import init_device_mesh  # noqa: E402
from torch.distributed.fsdp import fully_shard  # noqa: E402

from modeling_pdefm import PDEFMConfig, PDEFMModel  # noqa: E402
from modeling_pdefm.backbone_layers import BackboneLayer  # noqa: E402


def train(model, steps: int, batches) -> list[float]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for x, y in batches[:steps]:
        loss = model(input_fields=x, labels=y).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def main() -> None:
    dist.init_process_group("gloo")
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    config = PDEFMConfig.from_preset("tiny", datasets={"flow": {"n_fields": 2, "n_spatial_dims": 2}}, n_steps_input=2)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(2, 2, 16, 16, 2, generator=g), torch.randn(2, 1, 16, 16, 2, generator=g)) for _ in range(3)]
    torch.manual_seed(0)
    sharded = PDEFMModel(config)
    with torch.no_grad():  # a fresh adapter predicts "no change"; give it weights so every layer learns
        sharded.dataset_heads["flow"].out_proj.weight.normal_(std=0.1)
    single = PDEFMModel(config)
    single.load_state_dict(sharded.state_dict())
    for module in sharded.modules():
        if isinstance(module, BackboneLayer):
            fully_shard(module, mesh=mesh)
    fully_shard(sharded, mesh=mesh)
    sharded_losses = train(sharded, 3, batches)
    if dist.get_rank() == 0:
        single_losses = train(single, 3, batches)
        shards = sum(1 for p in sharded.parameters() if hasattr(p, "placements"))
        print(json.dumps({"sharded": sharded_losses, "single": single_losses, "sharded_parameters": shards,
                          "world_size": dist.get_world_size()}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
