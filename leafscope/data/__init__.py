"""Data: image sets in [0, 1], Planetoid graphs, file search, checksums, splits."""

from leafscope.data.builtin import noise_like
from leafscope.data.dataset import ImageDataset, to_unit_images
from leafscope.data.download import download_file, file_digest, verify_file
from leafscope.data.idx import read_idx
from leafscope.data.images import load_images
from leafscope.data.planetoid import SafeUnpickler, load_planetoid, safe_load_pickle
from leafscope.data.registry import MIRRORS, canonical_name
from leafscope.data.search import cache_dir, data_search_path, locate
from leafscope.data.splits import load_point, parse_point_spec, train_val_split
from leafscope.data.transforms import random_rotation, rotate

__all__ = [
    "MIRRORS",
    "ImageDataset",
    "SafeUnpickler",
    "cache_dir",
    "canonical_name",
    "data_search_path",
    "download_file",
    "file_digest",
    "load_images",
    "load_planetoid",
    "load_point",
    "locate",
    "noise_like",
    "parse_point_spec",
    "random_rotation",
    "read_idx",
    "rotate",
    "safe_load_pickle",
    "to_unit_images",
    "train_val_split",
    "verify_file",
]
