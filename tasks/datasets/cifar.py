"""CIFAR-100 through torchvision, its augmentation as batched tensor ops, and a
writer of tiny CIFAR-100 directories in the real on-disk format (for tests).

The real data set is read with ``torchvision.datasets.CIFAR100``, which verifies
the files' MD5 checksums before unpickling them; downloading happens only when
the caller asks for it. :func:`write_cifar100_fixture` writes the same
``cifar-100-python/{train,test,meta}`` pickled dictionaries torchvision reads and
returns their checksums, which :func:`load_cifar100` accepts in place of the
official ones -- so tests exercise torchvision's own reader, integrity check
included, without a download.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from bayes_trainmap.core.errors import TaskError

#: Per-channel mean and standard deviation of the CIFAR-100 training images (in [0, 1]).
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
BASE_FOLDER = "cifar-100-python"


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def _cifar100_class(checksums: Mapping[str, str] | None):
    """torchvision's CIFAR100, or a subclass expecting the given file checksums."""
    from torchvision.datasets import CIFAR100

    if checksums is None:
        return CIFAR100
    missing = {"train", "test", "meta"} - set(checksums)
    if missing:
        raise TaskError(f"checksums must name 'train', 'test' and 'meta'; missing {sorted(missing)}")
    return type(
        "CIFAR100WithChecksums",
        (CIFAR100,),
        {
            "train_list": [["train", checksums["train"]]],
            "test_list": [["test", checksums["test"]]],
            "meta": {**CIFAR100.meta, "md5": checksums["meta"]},
        },
    )


def load_cifar100(
    root: str | os.PathLike, *, download: bool = False, checksums: Mapping[str, str] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """CIFAR-100 train and test splits as uint8 image tensors and label tensors.

    Parameters
    ----------
    root : path
        Directory holding (or to receive) ``cifar-100-python/``.
    download : bool
        Let torchvision download the archive when it is missing. Never implied.
    checksums : mapping with keys "train", "test", "meta", optional
        Expected MD5 of the three files instead of torchvision's checksums of the
        official release (as returned by :func:`write_cifar100_fixture`).

    Returns
    -------
    train_images : uint8 Tensor, shape (50000, 3, 32, 32)
    train_labels : int64 Tensor, shape (50000,)
    test_images : uint8 Tensor, shape (10000, 3, 32, 32)
    test_labels : int64 Tensor, shape (10000,)
        (Sizes of the official release; a fixture has its own.)
    """
    cls = _cifar100_class(checksums)
    try:
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=False)
    except RuntimeError as exc:  # torchvision's "Dataset not found or corrupted"
        raise TaskError(
            f"CIFAR-100 not found or corrupted under {os.fspath(root)!r} ({exc}); "
            "pass --download (download=True) to fetch it, or point root at a directory "
            f"containing {BASE_FOLDER}/"
        ) from exc

    def to_tensors(ds) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))  # HWC -> CHW
        return images, torch.as_tensor(ds.targets, dtype=torch.int64)

    return (*to_tensors(train), *to_tensors(test))


def normalize_images(images: torch.Tensor, mean=CIFAR100_MEAN, std=CIFAR100_STD) -> torch.Tensor:
    """uint8 ``(B, C, H, W)`` in [0, 255] -> float32, standardised per channel."""
    x = images.to(torch.float32) / 255.0
    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean_t) / std_t


def random_crop_flip(images: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Random crop after zero padding, then random horizontal flip, per image.

    Equivalent to torchvision's ``RandomCrop(size, padding)`` followed by
    ``RandomHorizontalFlip()``, vectorised over the batch with all randomness drawn
    from ``generator`` (a CPU generator; offsets are moved to the images' device).

    Parameters
    ----------
    images : Tensor, shape (B, C, H, W)
    generator : torch.Generator
    padding : int

    Returns
    -------
    Tensor, shape (B, C, H, W), same dtype
    """
    b, c, h, w = images.shape
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(images.device)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(images.device)
    flip = (torch.rand(b, generator=generator) < 0.5).to(images.device)
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
    rows = dy[:, None] + torch.arange(h, device=images.device)  # (B, H)
    cols = dx[:, None] + torch.arange(w, device=images.device)  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=images.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def write_cifar100_fixture(
    root: str | os.PathLike, n_train: int = 8, n_test: int = 4, seed: int = 0, n_classes: int = 100
) -> dict[str, str]:
    """Write a tiny CIFAR-100 in the official on-disk format and return its checksums.

    Creates ``root/cifar-100-python/`` with ``train`` and ``test`` (pickled dicts with
    ``filenames``, ``batch_label``, ``fine_labels``, ``coarse_labels`` and ``data``:
    uint8 ``(n, 3072)`` rows, channel-major 32x32 images) and ``meta``
    (``fine_label_names``, ``coarse_label_names``), as in the release.

    Parameters
    ----------
    root : path
    n_train, n_test : int
        Number of random images in each split.
    seed : int
        Seed of the random pixels and labels.
    n_classes : int
        Labels are drawn from ``0..n_classes-1`` (<= 100).

    Returns
    -------
    dict
        MD5 checksums ``{"train": ..., "test": ..., "meta": ...}`` for :func:`load_cifar100`.
    """
    folder = Path(root) / BASE_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        fine = rng.integers(0, n_classes, size=n)
        entry = {
            "filenames": [f"fixture_{split}_{i}.png" for i in range(n)],
            "batch_label": f"{split} fixture",
            "fine_labels": [int(v) for v in fine],
            "coarse_labels": [int(v) // 5 for v in fine],
            "data": rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8),
        }
        (folder / split).write_bytes(pickle.dumps(entry, protocol=2))
    meta = {
        "fine_label_names": [f"class_{i:02d}" for i in range(100)],
        "coarse_label_names": [f"superclass_{i:02d}" for i in range(20)],
    }
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    return {name: _md5(folder / name) for name in ("train", "test", "meta")}
