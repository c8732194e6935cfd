"""Readers, few-shot sampling, prompts and loaders for the 15 CoOp/Dassl benchmarks.

Users already hold the CoOp dataset folders; this package reads them as they are, samples shots exactly as
Dassl does, and fails with a message naming the path and the fix when something is missing or broken.
"""

from .check import DatasetReport, check_dataset, format_report
from .core import DatasetError, DatasetSplits, Datum
from .custom import load_own_data, own_split_file, require_shots, write_image_folder
from .fewshot import dassl_fewshot, fewshot_cache_path, sample_fewshot, subsample_classes
from .images import image_problem, open_image
from .loading import CLIP_MEAN, CLIP_STD, ImageListDataset, build_transform, make_loader
from .prompts import clean_classname, format_prompts, get_template
from .readers import dataset_folder, expected_counts, load_dataset, resolve_data_root
from .registry import (
    B2N_DATASETS,
    DATASET_NAMES,
    DG_TARGETS,
    DISPLAY_NAMES,
    PUBLISHED_COUNTS,
    XD_TARGETS,
    Expected,
    canonical_name,
)

__all__ = [
    "B2N_DATASETS",
    "CLIP_MEAN",
    "CLIP_STD",
    "DATASET_NAMES",
    "DG_TARGETS",
    "DISPLAY_NAMES",
    "PUBLISHED_COUNTS",
    "XD_TARGETS",
    "DatasetError",
    "DatasetReport",
    "DatasetSplits",
    "Datum",
    "Expected",
    "ImageListDataset",
    "build_transform",
    "canonical_name",
    "check_dataset",
    "clean_classname",
    "dassl_fewshot",
    "dataset_folder",
    "expected_counts",
    "fewshot_cache_path",
    "format_prompts",
    "format_report",
    "get_template",
    "image_problem",
    "load_dataset",
    "load_own_data",
    "make_loader",
    "open_image",
    "own_split_file",
    "require_shots",
    "resolve_data_root",
    "sample_fewshot",
    "subsample_classes",
    "write_image_folder",
]
