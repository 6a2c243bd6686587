"""The Well and Mini-Well data as Hugging Face datasets.

- `load_well_dataset(...)`: windows of a dataset in The Well's format, map-style or streaming.
- `WellSplitReader`: the lazy HDF5 reader underneath (a torch `Dataset`); `split_reader(dataset)` hands back the one
  behind a dataset, with the split's metadata.
- `WellNormalizer`: normalisation from `stats.yaml`, and back.
- `WELL_DATASETS`: registry of The Well's datasets.
- `python -m pdefm.data.the_well check|info|stats PATH`: the command line.
"""

from .hf_datasets import collate_window_samples, load_well_dataset, open_well_split, split_reader, split_resolution
from .normalization import StatsError, WellNormalizer
from .registry import WELL_DATASETS, WellDatasetInfo, well_dataset_info
from .well_format import BC_CODES, WellFileMetadata, WellFormatError, read_file_metadata
from .well_reader import NonFiniteWindowError, WellSplitReader
from .window import WINDOW_KEYS, WellWindow

__all__ = [
    "BC_CODES", "NonFiniteWindowError", "WINDOW_KEYS", "WellWindow", "StatsError", "WELL_DATASETS", "WellDatasetInfo", "WellFileMetadata",
    "WellFormatError", "WellNormalizer", "WellSplitReader", "collate_window_samples", "load_well_dataset",
    "open_well_split", "read_file_metadata", "split_reader", "split_resolution", "well_dataset_info",
]
