"""perlkit: PERL (Parameter Efficient Reasoning in CLIP Latent Space) and its rivals in one harness."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from perlkit.fit import FittedModel

__version__ = "0.1.0"


def load(path: str | os.PathLike, **kwargs: Any) -> FittedModel:
    """Load a checkpoint written by ``perlkit fit``: ``perlkit.load(F).predict(images)``; imported lazily, so that
    ``import perlkit`` stays light (keywords: see ``perlkit.fit.load``)."""
    from perlkit.fit import load as _load

    return _load(path, **kwargs)
