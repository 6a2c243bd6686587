import os

import h5py
import numpy as np
import pytest

import dataset_scripts.generate as generate
import the_well.data as the_well
from dataset_scripts import load_well_dataset
from dataset_scripts.the_well import check

SMALL = dict(resolution=16, n_trajectories=3, n_steps=6, trajectories_per_file=1, progress=False)


def read_all(folder):
    out = {}
    for split in ("train", "valid", "test"):
        for name in sorted(os.listdir(os.path.join(folder, "data", split))):
            with h5py.File(os.path.join(folder, "data", split, name)) as f:
                for group in ("t0_fields", "t1_fields"):
                    for field in f[group]:
                        out[f"{split}/{name}/{field}"] = f[group][field][()]
    return out


@pytest.mark.parametrize("name", ["gray_scott_reaction_diffusion", "euler_multi_quadrants", "acoustic_scattering"])
def test_generated_files_follow_the_format_and_load_everywhere(tmp_path, name):
    result = generate.generate_dataset(name, str(tmp_path), **SMALL)
    assert result["files_written"] == 3
    folder = str(tmp_path / name)
    assert check([folder]) == 0
    assert os.path.exists(os.path.join(folder, "stats.yaml"))
    ours = load_well_dataset(folder, split="train", n_steps_input=2, use_normalization=True)
    theirs = the_well.WellDataset(path=folder, well_split_name="train", n_steps_input=2, n_steps_output=1)
    assert len(ours) == len(theirs) == 1 * (6 - 2)
    assert ours[0]["input_fields"].shape == theirs[0]["input_fields"].shape


def test_split_sizes_follow_the_wells_ratios():
    assert generate.split_sizes(12) == {"train": 10, "valid": 1, "test": 1}
    assert generate.split_sizes(40) == {"train": 32, "valid": 4, "test": 4}
    with pytest.raises(ValueError, match="at least 3"):
        generate.split_sizes(2)


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    a = generate.generate_dataset("gray_scott_reaction_diffusion", str(tmp_path / "a"), seed=5, **SMALL)
    b = generate.generate_dataset("gray_scott_reaction_diffusion", str(tmp_path / "b"), seed=5, **SMALL)
    c = generate.generate_dataset("gray_scott_reaction_diffusion", str(tmp_path / "c"), seed=6, **SMALL)
    assert a["files_written"] == b["files_written"] == c["files_written"] == 3
    first = read_all(tmp_path / "a" / "gray_scott_reaction_diffusion")
    second = read_all(tmp_path / "b" / "gray_scott_reaction_diffusion")
    third = read_all(tmp_path / "c" / "gray_scott_reaction_diffusion")
    assert first.keys() == second.keys()
    assert all(np.array_equal(first[k], second[k]) for k in first)
    assert not all(np.array_equal(first[k], third[k]) for k in first)


def test_rerun_resumes_without_regenerating(tmp_path):
    generate.generate_dataset("euler_multi_quadrants", str(tmp_path), **SMALL)
    folder = tmp_path / "euler_multi_quadrants" / "data" / "train"
    done = folder / "euler_multi_quadrants_train_000.hdf5"
    stamp = os.path.getmtime(done)
    os.remove(folder / "euler_multi_quadrants_train_000.hdf5")
    (folder / "euler_multi_quadrants_train_000.hdf5.partial-999").write_bytes(b"half a file")
    result = generate.generate_dataset("euler_multi_quadrants", str(tmp_path), **SMALL)
    assert result == {**result, "files_written": 1, "files_skipped": 2}
    assert not list(folder.glob("*.partial-*"))
    assert os.path.getmtime(done) >= stamp


def test_an_interrupted_write_leaves_no_complete_looking_file(tmp_path, monkeypatch):
    original = h5py.Group.create_dataset
    calls = {"n": 0}

    def create_then_crash(self, *args, **kwargs):  # the process is killed half-way through writing a file
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", create_then_crash)
    with pytest.raises(KeyboardInterrupt):
        generate.generate_dataset("euler_multi_quadrants", str(tmp_path), **SMALL)
    folder = tmp_path / "euler_multi_quadrants" / "data" / "train"
    assert not list(folder.glob("*.hdf5")) and not list(folder.glob("*.partial-*"))


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        generate.main(["--dataset", "navier_stokes_4d", "--out", str(tmp_path)])
    assert "invalid choice: 'navier_stokes_4d'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        generate.main(["--dataset", "shear_flow", "--out", str(tmp_path), "--n-trajectories", "2"])
    assert "--n-trajectories must be at least 3" in capsys.readouterr().err
