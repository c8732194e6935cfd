"""CLIP image transforms, an image-list Dataset and a deterministic DataLoader factory."""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable, Sequence

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from .core import Datum
from .images import image_problem, open_image

CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)


def build_transform(
    image_size: int,
    train: bool,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
    crop_scale: tuple[float, float] = (0.5, 1.0),
) -> Callable:
    """The image pipeline every method shares.

    Evaluation: CLIP's preprocessing (bicubic resize of the short side, center crop, CLIP mean/std).
    Training: Dassl's ``random_resized_crop`` plus a horizontal flip; ``crop_scale`` (0.5, 1) as in MMRL's configs
    (the unified protocol's, for every method), Dassl's default (0.08, 1) where a method's configs leave it.
    """
    bicubic = T.InterpolationMode.BICUBIC
    tail = [T.ToTensor(), T.Normalize(mean=list(mean), std=list(std))]
    if train:
        crop = T.RandomResizedCrop(image_size, scale=tuple(crop_scale), interpolation=bicubic)
        return T.Compose([crop, T.RandomHorizontalFlip(), *tail])
    return T.Compose([T.Resize(image_size, interpolation=bicubic), T.CenterCrop(image_size), *tail])


class ImageListDataset(Dataset):
    """A list of :class:`Datum` served as ``(image_tensor, label)`` pairs.

    An unreadable image raises DatasetError naming the file. With ``skip_corrupt`` every image is decoded
    once at construction, each unreadable one is reported with ``warnings.warn`` and dropped, so that
    indices stay valid for samplers; ``skipped`` lists the dropped paths.
    """

    def __init__(self, items: Sequence[Datum], transform: Callable | None, skip_corrupt: bool = False) -> None:
        self.transform = transform
        self.skipped: list[str] = []
        if not skip_corrupt:
            self.items = list(items)
            return
        verdict: dict[str, str | None] = {}
        kept = []
        for d in items:
            if d.impath not in verdict:
                verdict[d.impath] = problem = image_problem(d.impath)
                if problem is not None:
                    self.skipped.append(d.impath)
                    warnings.warn(f"skipping unreadable image {d.impath}: {problem}", stacklevel=2)
            if verdict[d.impath] is None:
                kept.append(d)
        self.items = kept

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        d = self.items[index]
        img = open_image(d.impath)
        out = self.transform(img) if self.transform is not None else T.functional.pil_to_tensor(img)
        return out, d.label


def _seed_worker(worker_id: int) -> None:
    """Give each worker's ``random`` (and NumPy, if present) a seed derived from the loader's generator."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:  # pragma: no cover
        pass


def make_loader(
    items: Sequence[Datum],
    transform: Callable | None,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    seed: int = 0,
    skip_corrupt: bool = False,
    drop_last: bool = False,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader over ``items`` whose shuffle order depends only on ``seed``, with 0..N workers.

    Exists so that two runs with the same seed see the same batches, whatever the worker count.
    """
    dataset = ImageListDataset(items, transform, skip_corrupt=skip_corrupt)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        generator=generator,
        worker_init_fn=_seed_worker if num_workers > 0 else None,
        drop_last=drop_last,
        pin_memory=pin_memory,
    )
