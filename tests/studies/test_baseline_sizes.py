"""A matched baseline is given the size of the model the suite's config trains, `model_overrides` included."""
import argparse

from pdefm.studies import benchmark
from pdefm.train.training.batches import model_specs
from pdefm.train.training.config import config_from_file

from modeling_pdefm import PDEFMConfig, PDEFMModel
from well_files import write_two_system_suite


def test_pdefms_size_is_the_size_of_the_model_the_suite_config_builds(tmp_path):
    data_dir = write_two_system_suite(str(tmp_path / "data"))
    args = argparse.Namespace(suite="mini_well", data=data_dir)
    config = config_from_file("mini_well").config
    assert config.model_overrides  # the suite changes the preset's model, so the two counts below can differ
    for name, spec in model_specs(data_dir, ["flow2d", "waves"]).items():
        built = PDEFMModel(PDEFMConfig.from_preset(config.model_preset, datasets={name: spec},
                                                   n_steps_input=config.n_steps_input, **config.model_overrides))
        preset_only = PDEFMModel(PDEFMConfig.from_preset(config.model_preset, datasets={name: spec},
                                                         n_steps_input=config.n_steps_input))
        assert built.num_parameters() != preset_only.num_parameters()
        assert benchmark.pdefm_parameters(args, name, spec) == built.num_parameters()
