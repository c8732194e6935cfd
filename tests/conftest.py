"""Shared fixtures: a tiny 12-block CLIP (random weights) so that J=7, K=4 mean what they mean in the paper."""

from __future__ import annotations

import pytest
import torch

from perlkit.backbone import FrozenCLIP, create_backbone

# the tests' models are tiny: one thread avoids thread hand-off costs that dominate on a shared 2-core machine
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_backbone() -> FrozenCLIP:
    """A 12-layer, 32-wide CLIP with random weights (open_clip config shipped in perlkit/configs)."""
    torch.manual_seed(0)
    return create_backbone("tiny-clip", None)


@pytest.fixture(scope="session")
def vitb16_backbone() -> FrozenCLIP:
    """OpenAI's ViT-B/16 architecture with random weights (no download)."""
    torch.manual_seed(0)
    return create_backbone("ViT-B-16", None)


@pytest.fixture()
def tiny_batch(tiny_backbone: FrozenCLIP) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Four random 32x32 images, their labels, and three class prompts."""
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(4, 3, 32, 32, generator=gen)
    labels = torch.tensor([0, 1, 2, 1])
    prompts = ["a photo of a red circle.", "a photo of a blue square.", "a photo of a green star."]
    return images, labels, prompts


@pytest.fixture
def book_style():
    """A test that draws does so in the book's style; matplotlib's settings come back and its figures close after."""
    import matplotlib
    import matplotlib.pyplot as plt

    from perlkit import plots

    with matplotlib.rc_context():
        plots.book_style()
        yield
    plt.close("all")


@pytest.fixture
def error_segments():  # noqa: ANN201
    """(low, high) of every vertical error bar drawn on an axis, in drawing order (seaborn draws a bar and its caps
    as one line broken by NaNs)."""
    import numpy as np

    def segments(ax) -> list[tuple[float, float]]:  # noqa: ANN001
        out = []
        for line in ax.lines:
            xs, ys = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
            for i in range(len(xs) - 1):
                if xs[i] == xs[i + 1] and ys[i] != ys[i + 1] and not np.isnan(ys[i:i + 2]).any():
                    out.append((round(min(ys[i:i + 2]), 4), round(max(ys[i:i + 2]), 4)))
        return out

    return segments

