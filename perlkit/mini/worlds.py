"""The mini worlds perlkit can build, by version: world 2 (the default, behind the book's results: issue 13's world
with few-shot headroom, calibrated run 5) and world 1 (the first world, whose features held little beyond what the
prompts say; kept so its shipped results, store ``mini-world1``, can still be re-run and verified). A world is
its module (vocabularies, renderers, benchmarks), its caption generator, its pretraining schedule and the folder of
its shipped mini CLIP weights; ``build``, ``pretrain``, ``calibrate`` and ``results`` take ``--world``. Candidate
designs under trial (``CANDIDATE_WORLDS``) change only the pretraining of a shipped world's benchmarks: `mini
pretrain --world 3 --out DIR` makes one, and it is calibrated as ``--world 2 --weights DIR/mini-clip.pt``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from types import ModuleType

WORLDS = ("1", "2")
DEFAULT_WORLD = "2"
#: pretraining designs under trial (issue 13's adaptation bar): they ship no weights, pretrain with `--out` and are
#: calibrated as ``--world 2 --weights <file>``, since they keep world 2's benchmarks (data/candidates/README.md)
CANDIDATE_WORLDS = ("3", "4")
#: run 6's framings of pretraining images (half cropped to 15-100% of the area, half mirrored)
REFRAMING_VIEWS = {"crop_p": 0.5, "crop_scale": (0.15, 1.0), "flip_p": 0.5}


@dataclass(frozen=True)
class World:
    """What a world version decides: its images and benchmarks, its captions and its pretraining schedule."""

    version: str
    module: ModuleType
    caption: Callable
    phases: list[dict]
    #: random framings of pretraining images (``pretrain.pretrain_view``'s options), or None: images as rendered
    views: dict | None = None
    #: the first phase (index into ``phases``) whose images get the views; earlier phases see them as rendered
    views_from: int = 0
    #: the package folder of the world's shipped mini CLIP (mini-clip.pt, its .sha256 and pretraining log)
    weights_dir: tuple[str, ...] = ("assets", "mini")
    #: about how long `perlkit mini pretrain` takes for it on 2 CPU cores (the restore advice quotes it)
    pretrain_minutes: int = 43
    #: for a candidate pretraining design (``CANDIDATE_WORLDS``): the shipped world whose benchmarks it keeps; it
    #: ships no weights, so it has no profile, no world folder and no results of its own (``shipped_world``)
    candidate_of: str | None = None


def get_world(version: str = DEFAULT_WORLD) -> World:
    """The world of a version, or an error listing the versions there are (built on each call, so a test that
    patches a world's schedule is seen)."""
    version = str(version)
    if version == "1":
        from perlkit.mini import pretrain, world

        return World("1", world, pretrain.caption, pretrain.PHASES)
    if version == "2":
        from perlkit.mini import world2

        # no views: reframing pretraining images (runs 6 and 7, data/candidates/README.md) taught the mini CLIP to
        # read crops but cost whole-image zero-shot on every benchmark, so world 2 stays run 5's design
        return World("2", world2, world2.caption, world2.PHASES, weights_dir=("assets", "mini-2"), pretrain_minutes=88)
    if version == "3":
        from perlkit.mini import world2

        # candidate (stop 39): world 2's benchmarks and captions, run 6's reframed views from the first step, and
        # twice run 5's schedule, since run 6 continued for 1,200 more steps read crops better and won back zero-shot
        phases = [{**ph, "steps": 2 * ph["steps"]} for ph in world2.PHASES]
        return World("3", world2, world2.caption, phases, views=dict(REFRAMING_VIEWS), weights_dir=(),
                     pretrain_minutes=75, candidate_of="2")
    if version == "4":
        from perlkit.mini import world4

        # candidate (stop 40): world 3 with its names held down where its zero-shot rose to its probe (objects named
        # less often, more cars, aircraft and textures in swapped pairs: world4.py) and textures only mirrored, since
        # every run with crops lost DTD's probe (47.6 on run 5 against 35.6, 41.2 and 39.1 on runs 6, 7 and world 3)
        return replace(get_world("3"), version="4", caption=world4.caption,
                       views={**REFRAMING_VIEWS, "uncropped_domains": ("texture",)})
    raise ValueError(f"unknown mini world {version!r}; there are {', '.join(WORLDS + CANDIDATE_WORLDS)}")


def shipped_world(version: str = DEFAULT_WORLD) -> World:
    """``get_world`` for what needs a world's shipped weights, folder or results; a candidate design is refused with
    how to use it instead."""
    world = get_world(version)
    if world.candidate_of is not None:
        raise ValueError(f"mini world {world.version} is a candidate pretraining design that ships no weights and "
                         f"keeps world {world.candidate_of}'s benchmarks: make its weights with `perlkit mini "
                         f"pretrain --world {world.version} --out DIR`, then use them as `--world "
                         f"{world.candidate_of} --weights DIR/mini-clip.pt`")
    return world
