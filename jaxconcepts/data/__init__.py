"""Data: sources (tfds, idx, digits, planted) as in-memory `Dataset`s, and fixed-shape batching."""

from jaxconcepts.data.batching import batches
from jaxconcepts.data.batching import epoch_permutation
from jaxconcepts.data.batching import mean_image
from jaxconcepts.data.batching import num_batches
from jaxconcepts.data.planted import PlantedParts
from jaxconcepts.data.sources import DATASETS
from jaxconcepts.data.sources import DEFAULT_IDX_DIRS
from jaxconcepts.data.sources import Dataset
from jaxconcepts.data.sources import SOURCES
from jaxconcepts.data.sources import load_dataset
from jaxconcepts.data.sources import read_idx
from jaxconcepts.data.sources import resize_nearest

__all__ = ("batches", "epoch_permutation", "mean_image", "num_batches", "PlantedParts",
           "DATASETS", "DEFAULT_IDX_DIRS", "Dataset", "SOURCES", "load_dataset", "read_idx",
           "resize_nearest")
