"""Location, checksum and loading of the shipped mini CLIP weights (open_clip model name ``mini-clip``)."""

from __future__ import annotations

from pathlib import Path

import open_clip
import torch

from perlkit.files import PACKAGE_ROOT, in_checkout, package_path, sha256_file

MINI_MODEL = "mini-clip"
#: where the mini CLIP files ship inside the package (package data, so a wheel carries them)
MINI_ASSETS = ("assets", "mini")


def register_mini_config() -> None:
    """Make open_clip know the ``mini-clip`` model config (idempotent)."""
    if MINI_MODEL not in open_clip.list_models():
        open_clip.add_model_config(package_path("configs"))


def mini_weights_path() -> Path:
    """Path of the shipped weights file perlkit/assets/mini/mini-clip.pt (package data)."""
    return package_path(*MINI_ASSETS, "mini-clip.pt")


def restore_advice(name: str = "mini-clip.pt") -> str:
    """How to get a shipped mini file back: git or a reinstall first; a 43-minute retrain is the last resort."""
    where = f"in the perlkit checkout ({PACKAGE_ROOT.parent})" if in_checkout() else "in a perlkit checkout"
    return (f"restore the shipped file: `git checkout -- perlkit/{'/'.join(MINI_ASSETS)}/{name}` {where}, "
            "or reinstall perlkit; only if that is impossible, retrain it with "
            "`perlkit mini pretrain --ship` (about 43 minutes on 2 CPU cores, byte-identical)")


def expected_sha256() -> str:
    """The recorded sha256 of the shipped weights (perlkit/assets/mini/mini-clip.sha256)."""
    f = mini_weights_path().with_suffix(".sha256")
    if not f.is_file():
        raise FileNotFoundError(f"{f} is missing; {restore_advice(f.name)}.")
    words = f.read_text().split()
    if not words:
        raise ValueError(f"{f} is empty; {restore_advice(f.name)}.")
    return words[0].strip()


def verify_mini_weights(path: Path | str | None = None) -> Path:
    """Check the weights file against the recorded sha256; raise a ValueError saying how to restore it if it differs."""
    p = Path(path) if path is not None else mini_weights_path()
    shipped = p.resolve() == mini_weights_path().resolve()
    fix = restore_advice() if shipped else (
        f"copy the shipped {mini_weights_path()} over it (if that one fails too, {restore_advice()})")
    if not p.is_file():
        raise FileNotFoundError(f"mini CLIP weights {p} not found; {fix}.")
    exp, got = expected_sha256(), sha256_file(p)
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


def load_mini_model(path: Path | str | None = None, verify: bool = True) -> torch.nn.Module:
    """The pretrained mini CLIP in eval mode (float32), after checking the weights' checksum."""
    p = verify_mini_weights(path) if verify else Path(path or mini_weights_path())
    register_mini_config()
    model = open_clip.create_model(MINI_MODEL, pretrained=str(p))
    return model.eval()
