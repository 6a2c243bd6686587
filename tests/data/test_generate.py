import os

import h5py
import numpy as np
import pytest
import the_well.data as the_well

import pdefm.data.generate as generate
from pdefm.data import load_well_dataset
from pdefm.data.the_well import check

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


@pytest.mark.parametrize("name", ["gray_scott_reaction_diffusion", "euler_multi_quadrants", "acoustic_scattering",
                                  "turbulent_radiative_layer_2D", "viscoelastic_instability", "helmholtz_staircase",
                                  "supernova_explosion_64"])
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
    for argument, value, message in [("--n-trajectories", "2", "--n-trajectories must be at least 3"),
                                     ("--resolution", "0", "--resolution must be a whole number of grid points"),
                                     ("--resolution", "-8", "--resolution must be"),
                                     ("--n-steps", "0", "--n-steps must be at least 2"),
                                     ("--seed", "-1", "--seed must be a whole number >= 0")]:
        assert generate.main(["--dataset", "shear_flow", "--out", str(tmp_path), argument, value]) == 2
        assert message in capsys.readouterr().err
    assert not os.listdir(tmp_path)  # refused before any work


def test_a_rerun_with_other_settings_is_refused_never_mixed(tmp_path, capsys):
    generate.generate_dataset("euler_multi_quadrants", str(tmp_path), **SMALL)
    other = {**SMALL, "resolution": 8}
    with pytest.raises(generate.GenerationSettingsError, match=r"resolution 16 there, 8 now.*--overwrite"):
        generate.generate_dataset("euler_multi_quadrants", str(tmp_path), **other)
    with pytest.raises(generate.GenerationSettingsError, match=r"n_trajectories 3 there, 4 now"):
        generate.generate_dataset("euler_multi_quadrants", str(tmp_path), **{**SMALL, "n_trajectories": 4})
    folder = str(tmp_path / "euler_multi_quadrants")
    assert {f["input_fields"].shape[1] for f in load_well_dataset(folder, split="train", n_steps_input=2)} == {16}
    result = generate.generate_dataset("euler_multi_quadrants", str(tmp_path), overwrite=True, **other)
    assert result["files_written"] == 3 and check([folder]) == 0
    assert {f["input_fields"].shape[1] for f in load_well_dataset(folder, split="train", n_steps_input=2)} == {8}
    # Files without a manifest (by hand, or an older version) are not adopted silently either.
    os.remove(os.path.join(folder, generate.MANIFEST))
    assert generate.main(["--dataset", "euler_multi_quadrants", "--out", str(tmp_path), "--resolution", "8",
                          "--n-trajectories", "3", "--n-steps", "6", "--trajectories-per-file", "1"]) == 2
    assert "no generation.json" in capsys.readouterr().err


def test_an_interrupted_suite_is_completed_with_its_own_settings(tmp_path, monkeypatch):
    monkeypatch.setitem(generate.SUITES, "mini_well", ("euler_multi_quadrants", "acoustic_scattering"))

    def interrupt(result):
        raise KeyboardInterrupt("killed after the first dataset")

    settings = {k: v for k, v in SMALL.items() if k != "progress"}
    with pytest.raises(KeyboardInterrupt):
        generate.generate_suite(str(tmp_path), on_dataset_done=interrupt, progress=False, **settings)
    assert not (tmp_path / "acoustic_scattering").exists()
    results = generate.complete_suite(str(tmp_path), progress=False)
    assert [r["files_written"] for r in results] == [0, 3]
    sample = load_well_dataset(str(tmp_path / "acoustic_scattering"), split="valid", n_steps_input=2)[0]
    assert sample["input_fields"].shape[1:3] == (16, 16)  # the suite's resolution, not the default 64
    # A folder of other data is left alone.
    other = tmp_path / "mine"
    (other / "my_data" / "data" / "train").mkdir(parents=True)
    assert generate.complete_suite(str(other), progress=False) == [] and os.listdir(other) == ["my_data"]


def test_a_refused_suite_rerun_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(generate.SUITES, "mini_well", ("euler_multi_quadrants", "acoustic_scattering"))
    settings = {k: v for k, v in SMALL.items() if k != "progress"}
    generate.generate_suite(str(tmp_path), progress=False, **settings)
    manifest = tmp_path / "mini_well_suite.json"
    before = manifest.read_text()
    with pytest.raises(generate.GenerationSettingsError, match="resolution 16 there, 8 now"):
        generate.generate_suite(str(tmp_path), progress=False, **{**settings, "resolution": 8})
    assert manifest.read_text() == before
    assert [r["files_written"] for r in generate.complete_suite(str(tmp_path), progress=False)] == [0, 0]


def test_a_suite_of_an_earlier_mini_well_version_is_refused_by_name_and_left_alone(tmp_path):
    """The frame spacings changed in Mini-Well version 2: a version-1 folder is not completed or trained on as if it
    were today's suite (the main job would have used it silently)."""
    import json

    generate.generate_dataset("euler_multi_quadrants", str(tmp_path), **SMALL)
    manifest = tmp_path / "euler_multi_quadrants" / generate.MANIFEST
    old = json.loads(manifest.read_text())
    old.pop("frame_spacing")
    old["version"] = 1
    manifest.write_text(json.dumps(old))
    files = sorted(p.name for p in (tmp_path / "euler_multi_quadrants" / "data" / "train").iterdir())
    with pytest.raises(generate.GenerationSettingsError, match=r"earlier pdefm \(Mini-Well version 1; .* version 2"):
        generate.generate_dataset("euler_multi_quadrants", str(tmp_path), **SMALL)
    assert sorted(p.name for p in (tmp_path / "euler_multi_quadrants" / "data" / "train").iterdir()) == files


def test_each_system_saves_its_own_frames_and_the_manifest_records_their_spacing(tmp_path):
    settings = generate.dataset_settings("MHD_64", None, None, None, 0, 2)
    assert (settings["n_steps"], settings["n_trajectories"]) == (generate.SYSTEMS["MHD_64"].n_steps,
                                                                 generate.SYSTEMS["MHD_64"].n_trajectories)
    assert settings["frame_spacing"] == generate.SYSTEMS["MHD_64"].regime(32, settings["n_steps"]).frame_spacing
    assert generate.dataset_settings("gray_scott_reaction_diffusion", None, None, None, 0, 2)["n_steps"] == 60
