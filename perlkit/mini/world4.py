"""Candidate world 4's captions (issue 13, stop 40): world 2's caption code run with other naming rates.

World 3 grounded the class names of objects, cars and aircraft in its 4,800 pretraining steps (zero-shot base
ImageNet 65.0, Caltech101 87.5, Stanford Cars 57.8, FGVC Aircraft 36.0 against probes of 60.6, 89.7, 65.5 and
38.2), so world 4 names objects less often and puts more cars, aircraft and textures in swapped pairs: a swapped pair
keeps its images separable and holds zero-shot down however long the pretraining (data/candidates/README.md).

World 2's code is part of its pixels' fingerprint, which every shipped result carries, so it is not edited here: its
``caption`` and ``swap_partners`` run unchanged with world 4's rates in place of ``NAME_RATE`` and ``SWAPS``.
"""

from __future__ import annotations

import functools
import types

from perlkit.mini import world2

NAME_RATE = {**world2.NAME_RATE, "object": 0.75}
SWAPS = {**world2.SWAPS, "car": (0.3, 0.6), "aircraft": (0.3, 0.6), "texture": (0.3, 0.6)}


def _with_rates(function: types.FunctionType) -> types.FunctionType:
    """``function`` (a world-2 function) reading world 4's rates and pairs instead of world 2's."""
    names = {**vars(world2), "NAME_RATE": NAME_RATE, "SWAPS": SWAPS, "swap_partners": swap_partners}
    return types.FunctionType(function.__code__, names, function.__name__, function.__defaults__)


@functools.cache
def swap_partners(domain: str) -> dict[str, str]:
    """World 2's swapped pairs (same draws, same rule) at world 4's fractions."""
    return _with_rates(world2.swap_partners.__wrapped__)(domain)


#: world 2's caption with world 4's naming rates and swapped pairs
caption = _with_rates(world2.caption)
