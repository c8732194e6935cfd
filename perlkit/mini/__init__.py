"""The perlkit mini world: synthetic CoOp-layout benchmarks and a small CLIP pretrained on them."""

from perlkit.mini.build import build_mini_world, default_mini_root, ensure_mini_world
from perlkit.mini.weights import MINI_MODEL, expected_sha256, mini_weights_path, verify_mini_weights
from perlkit.mini.world import WORLD_VERSION


def pretrain_mini_clip(*args, **kwargs) -> dict:  # noqa: ANN002, ANN003
    """Pretrain the mini CLIP (lazy import; see perlkit.mini.pretrain.pretrain_mini_clip)."""
    from perlkit.mini.pretrain import pretrain_mini_clip as _p
    return _p(*args, **kwargs)


__all__ = ["WORLD_VERSION", "MINI_MODEL", "build_mini_world", "default_mini_root", "ensure_mini_world",
           "expected_sha256", "mini_weights_path", "pretrain_mini_clip", "verify_mini_weights"]
