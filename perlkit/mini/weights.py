"""Location, checksum and loading of the shipped mini CLIP weights (open_clip model name ``mini-clip``), one file per
mini world (``worlds.World.weights_dir``)."""

from __future__ import annotations

from pathlib import Path

import open_clip
import torch

from perlkit.files import PACKAGE_ROOT, in_checkout, package_path, sha256_file
from perlkit.mini.worlds import DEFAULT_WORLD, get_world, shipped_world

MINI_MODEL = "mini-clip"


def register_mini_config() -> None:
    """Make open_clip know the ``mini-clip`` model config (idempotent)."""
    if MINI_MODEL not in open_clip.list_models():
        open_clip.add_model_config(package_path("configs"))


def mini_weights_path(world: str = DEFAULT_WORLD) -> Path:
    """Path of a world's shipped weights file, e.g. perlkit/assets/mini-2/mini-clip.pt for world 2 (package data)."""
    return package_path(*shipped_world(world).weights_dir, "mini-clip.pt")


def restore_advice(name: str = "mini-clip.pt", world: str = DEFAULT_WORLD) -> str:
    """How to get a shipped mini file back: git or a reinstall first; a retrain (43 minutes for world 1, 88 for
    world 2) is the last resort."""
    w = get_world(world)
    where = f"in the perlkit checkout ({PACKAGE_ROOT.parent})" if in_checkout() else "in a perlkit checkout"
    retrain = "`perlkit mini pretrain --ship" + ("`" if world == DEFAULT_WORLD else f" --world {world}`")
    return (f"restore the shipped file: `git checkout -- perlkit/{'/'.join(w.weights_dir)}/{name}` {where}, "
            f"or reinstall perlkit; only if that is impossible, retrain it with "
            f"{retrain} (about {w.pretrain_minutes} minutes on 2 CPU cores, byte-identical)")


def expected_sha256(world: str = DEFAULT_WORLD) -> str:
    """The recorded sha256 of a world's shipped weights (e.g. perlkit/assets/mini-2/mini-clip.sha256)."""
    f = mini_weights_path(world).with_suffix(".sha256")
    if not f.is_file():
        raise FileNotFoundError(f"{f} is missing; {restore_advice(f.name, world)}.")
    words = f.read_text().split()
    if not words:
        raise ValueError(f"{f} is empty; {restore_advice(f.name, world)}.")
    return words[0].strip()


def verify_mini_weights(path: Path | str | None = None, world: str = DEFAULT_WORLD) -> Path:
    """Check the weights file against the world's recorded sha256; raise a ValueError saying how to restore it if it
    differs."""
    shipped_path = mini_weights_path(world)
    p = Path(path) if path is not None else shipped_path
    shipped = p.resolve() == shipped_path.resolve()
    fix = restore_advice(world=world) if shipped else (
        f"copy the shipped {shipped_path} over it (if that one fails too, {restore_advice(world=world)})")
    if not p.is_file():
        raise FileNotFoundError(f"mini CLIP weights {p} not found; {fix}.")
    exp, got = expected_sha256(world), sha256_file(p)
    if got != exp:
        raise ValueError(f"mini CLIP weights {p} fail the checksum (expected sha256 {exp}, got {got}): the file is "
                         f"corrupt or stale; {fix}.")
    return p


def create_mini_model() -> torch.nn.Module:
    """A randomly initialised mini CLIP (float32, CPU)."""
    register_mini_config()
    return open_clip.create_model(MINI_MODEL)


def get_mini_tokenizer():  # noqa: ANN201
    """open_clip's standard SimpleTokenizer with the mini context length (32)."""
    register_mini_config()
    return open_clip.get_tokenizer(MINI_MODEL)


def load_mini_model(path: Path | str | None = None, verify: bool = True, world: str = DEFAULT_WORLD) -> torch.nn.Module:
    """The pretrained mini CLIP in eval mode (float32), after checking the weights' checksum."""
    p = verify_mini_weights(path, world) if verify else Path(path or mini_weights_path(world))
    register_mini_config()
    model = open_clip.create_model(MINI_MODEL, pretrained=str(p))
    return model.eval()
