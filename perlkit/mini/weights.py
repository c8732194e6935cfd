"""Location, checksum and loading of the shipped mini CLIP weights (open_clip model name ``mini-clip``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import open_clip
import torch

MINI_MODEL = "mini-clip"
_REPO = Path(__file__).resolve().parents[2]
_CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def register_mini_config() -> None:
    """Make open_clip know the ``mini-clip`` model config (idempotent)."""
    if MINI_MODEL not in open_clip.list_models():
        open_clip.add_model_config(_CONFIG_DIR)


def mini_weights_path() -> Path:
    """Path of the shipped weights file data/mini/mini-clip.pt."""
    return _REPO / "data" / "mini" / "mini-clip.pt"


def expected_sha256() -> str:
    """The recorded sha256 of the shipped weights (data/mini/mini-clip.sha256)."""
    f = mini_weights_path().with_suffix(".sha256")
    if not f.is_file():
        raise FileNotFoundError(f"{f} is missing; rebuild the mini CLIP with `perlkit mini pretrain`.")
    return f.read_text().split()[0].strip()


def sha256_file(path: Path) -> str:
    """Hex sha256 digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_mini_weights(path: Path | str | None = None) -> Path:
    """Check the weights file against the recorded sha256; raise a ValueError saying how to rebuild if it differs."""
    p = Path(path) if path is not None else mini_weights_path()
    if not p.is_file():
        raise FileNotFoundError(f"mini CLIP weights {p} not found; build them with `perlkit mini pretrain`.")
    exp, got = expected_sha256(), sha256_file(p)
    if got != exp:
        raise ValueError(f"mini CLIP weights {p} fail the checksum: expected sha256 {exp}, got {got}. "
                         "The file is corrupt or stale; rebuild it with `perlkit mini pretrain` "
                         "(or restore data/mini/mini-clip.pt from git).")
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
