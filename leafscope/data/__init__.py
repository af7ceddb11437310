"""Data: images (N, C, H, W) in [0, 1] and vectors (N, D) at their own shape, Planetoid graphs,
file search, checksums, splits, transforms (grey, resize, rotations), model/data checks, texts
(.csv / .jsonl / .txt as :class:`TextPointSet`).

Every set opens as a lazy :class:`PointSet` (:meth:`DataSpec.open`, :func:`open_points`) that
decodes only the points asked for; :func:`load_images` loads them all at once."""

from leafscope.data.builtin import noise_like
from leafscope.data.check import check_model_input, expected_input_shape
from leafscope.data.dataset import ImageDataset, to_data, to_unit_images, to_vectors
from leafscope.data.download import download_file, file_digest, verify_file
from leafscope.data.idx import read_idx
from leafscope.data.images import load_images
from leafscope.data.planetoid import SafeUnpickler, load_planetoid, safe_load_pickle
from leafscope.data.pointsets import DatasetPointSet
from leafscope.data.registry import MIRRORS, canonical_name
from leafscope.data.search import cache_dir, data_search_path, locate
from leafscope.data.sets import open_points
from leafscope.data.spec import DataSpec, PointSet, select_points
from leafscope.data.splits import load_point, parse_point_spec, train_val_split
from leafscope.data.text import TextBatch, TextPointSet
from leafscope.data.transforms import (
    apply_transforms,
    parse_size,
    random_rotation,
    resize,
    rotate,
    to_grey,
)

#: The container holds images or vectors; ``Dataset`` is the neutral name for it.
Dataset = ImageDataset

__all__ = [
    "MIRRORS",
    "DataSpec",
    "Dataset",
    "DatasetPointSet",
    "ImageDataset",
    "PointSet",
    "SafeUnpickler",
    "TextBatch",
    "TextPointSet",
    "apply_transforms",
    "cache_dir",
    "canonical_name",
    "check_model_input",
    "data_search_path",
    "download_file",
    "expected_input_shape",
    "file_digest",
    "load_images",
    "load_planetoid",
    "load_point",
    "locate",
    "noise_like",
    "open_points",
    "parse_point_spec",
    "parse_size",
    "random_rotation",
    "read_idx",
    "resize",
    "rotate",
    "safe_load_pickle",
    "select_points",
    "to_data",
    "to_grey",
    "to_unit_images",
    "to_vectors",
    "train_val_split",
    "verify_file",
]
