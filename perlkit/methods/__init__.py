"""Adaptation methods on a frozen CLIP: a registry and one file per method."""

from perlkit.methods import mma, mmrl, mmrlpp, perl, rmma, zeroshot  # noqa: F401  (registration side effects)
from perlkit.methods.base import TARGETS, Classifier, ClassSet, Method, OptionError, TrainOutput
from perlkit.methods.registry import build_method, get_method_class, list_methods, register_method

__all__ = [
    "TARGETS",
    "Classifier",
    "ClassSet",
    "Method",
    "OptionError",
    "TrainOutput",
    "build_method",
    "get_method_class",
    "list_methods",
    "register_method",
]
