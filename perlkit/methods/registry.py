"""A registry of adaptation methods, timm style: one file a method, one decorator, one factory."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from perlkit.backbone import FrozenCLIP
    from perlkit.methods.base import Method

_REGISTRY: dict[str, type[Method]] = {}


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator that makes a method buildable by name."""

    def wrap(cls: type[Method]) -> type[Method]:
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def list_methods() -> list[str]:
    """Names of every registered method."""
    return sorted(_REGISTRY)


def get_method_class(name: str) -> type[Method]:
    """The class behind a name, with the list of names when it is unknown."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(list_methods())}") from None


def build_method(name: str, backbone: FrozenCLIP, **config: Any) -> Method:
    """Build a registered method on a frozen backbone; unknown options raise with the valid ones listed."""
    return get_method_class(name)(backbone, **config)


def parse_option(text: str) -> tuple[str, Any]:
    """A command-line method option ``key=value``, the value read as JSON when it parses (``steps=2``,
    ``split=[7,9]``), else a string; ``make_config`` then checks its type."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw
