"""The benchmark's floors, stated as met or missed from the numbers (the model issue's targets)."""

from pdefm.studies.benchmark_report import targets


def test_each_floor_is_met_or_missed_by_the_numbers():
    names = ["a", "b"]
    one_step = {"pdefm": {"a": 0.10, "b": 0.30}, "fno": {"a": 0.20, "b": 0.20},
                "fno_matched": {"a": 0.30, "b": 0.30}, "unet_classic_matched": {"a": 0.15, "b": 0.20},
                "linear_stencil": {"a": 0.12, "b": 0.25}}
    rollout = {"6:12": {"pdefm": {"a": 0.5, "b": 0.9}, "fno": {"a": 0.6, "b": 0.8},
                        "linear_stencil": {"a": 0.7, "b": 2.0}},
               "13:30": {"pdefm": {"a": 0.9, "b": 1.3}}}
    lines = targets(one_step, rollout, {"a": 0.5, "b": 0.5}, names, late_floor={"a": 1.0, "b": 1.2})
    text = "\n".join(lines)
    # mean 0.20 against FNO's 0.20: at the floor, met; against U-Net (its size)'s 0.175: 1.14x, missed
    assert "- PDE-FM's mean one-step VRMSE is 1.00x FNO's (floor: at most 1.0x): met." in lines
    assert ("- PDE-FM's mean one-step VRMSE is 1.14x that of the best baseline of its size (2 of the 3 run at its "
            "size), U-Net (PDE-FM's size) (floor: at most 1.0x): missed.") in lines
    assert "- PDE-FM one step below persistence on 2 of 2 datasets (floor: all): met." in lines
    assert "- PDE-FM one step below the linear stencil on 1 of 2 datasets (floor: all): missed (b)." in lines
    assert "is the lowest of all 3 models (the linear yardsticks included) on 1 of 2 datasets (floor: 4): missed." in text
    assert "- PDE-FM's rollout VRMSE 13:30 is below persistence's on 1 of 2 datasets (floor: 5 of 6): missed." in lines
    # the yardsticks are not counted among the baselines that should beat persistence
    assert "Baselines beating persistence (one-step) on at least 4 of 2 datasets: 0 of 3 (FNO 2" in text


def test_the_setup_names_the_seeds_and_sizes_each_model_has():
    """A benchmark whose models were run with different seeds says which: a cell without a ± is one seed's number."""
    from pdefm.studies.benchmark_report import seeds_per_model, sizes_present

    doc = {"datasets": {}}
    runs = {"pdefm": {0: doc, 1: doc, 2: doc}, "fno": {0: doc, 1: doc, 2: doc}, "unet_classic": {0: doc},
            "fno_matched": {0: doc}, "linear_stencil": {0: doc}}
    assert seeds_per_model(runs) == "; PDE-FM, FNO: seeds 0, 1, 2; U-Net, FNO (PDE-FM's size): seed 0"
    assert sizes_present(runs) == ["default", "matched"]
    same = {"pdefm": {0: doc, 1: doc}, "fno": {0: doc, 1: doc}, "linear_stencil": {0: doc}}
    assert seeds_per_model(same) == "" and sizes_present(same) == ["default"]
    assert sizes_present({"pdefm": {0: doc}, "fno_matched": {0: doc}}) == ["matched"]
