from __future__ import annotations

import numpy as np
import pytest
import torch

from compress.data import DATASETS, DataConfig, get_datasets, get_loaders, stratified_split
from compress.errors import DataError


def test_registry_names():
    assert set(DATASETS) == {"mnist5k", "cifar10", "food11", "imagefolder"}


def test_mnist5k_split_is_stratified_padded_and_seeded():
    train, val, classes = get_datasets("mnist5k", DataConfig(augment=False))
    assert (len(train), len(val), classes) == (4000, 1000, 10)
    x, _ = train[0]
    assert tuple(x.shape) == (3, 32, 32)
    assert torch.bincount(val.labels, minlength=10).tolist() == [100] * 10
    again, _, _ = get_datasets("mnist5k", DataConfig(augment=False))
    assert torch.equal(train.images, again.images)
    other, _, _ = get_datasets("mnist5k", DataConfig(augment=False, seed=1))
    assert not torch.equal(train.images, other.images)


def test_mnist5k_channels_size_and_normalisation_are_configurable():
    train, _, _ = get_datasets("mnist5k", DataConfig(channels=1, image_size=64, augment=False))
    assert tuple(train[0][0].shape) == (1, 64, 64)
    raw, _, _ = get_datasets("mnist5k", DataConfig(normalize=False, augment=False))
    assert float(raw.images.min()) == 0.0 and float(raw.images.max()) <= 1.0
    assert abs(float(get_datasets("mnist5k", DataConfig())[0].images.mean())) < 0.2


def test_loaders_give_batches():
    loaders = get_loaders("mnist5k", DataConfig(batch_size=64))
    x, y = next(iter(loaders.train))
    assert x.shape == (64, 3, 32, 32) and y.shape == (64,)
    assert loaders.num_classes == 10 and loaders.in_channels == 3


@pytest.mark.parametrize("val_fraction", [0.1, 0.2, 0.5])
def test_stratified_split_partitions(val_fraction):
    labels = np.repeat(np.arange(5), 20)
    tr, va = stratified_split(labels, val_fraction, seed=3)
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(100))
    assert np.bincount(labels[va]).tolist() == [round(20 * val_fraction)] * 5


def test_unknown_dataset_names_the_choices():
    with pytest.raises(DataError, match="unknown data set 'mnist'.*mnist5k"):
        get_datasets("mnist", DataConfig())


def _write_cifar(root, n_train=4, n_test=3):
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}.bin", n_train) for i in range(1, 6)] + [
        ("test_batch.bin", n_test)
    ]:
        rec = rng.integers(0, 256, (n, 3073), dtype=np.uint8)
        rec[:, 0] = np.arange(n) % 10
        rec.tofile(folder / name)


def test_cifar10_reads_the_binary_format(tmp_path):
    _write_cifar(tmp_path)
    train, val, classes = get_datasets("cifar10", DataConfig(root=str(tmp_path), augment=False))
    assert (len(train), len(val), classes) == (20, 3, 10)
    assert tuple(train[0][0].shape) == (3, 32, 32)
    assert val.labels.tolist() == [0, 1, 2]


def test_cifar10_missing_root_says_how_to_download(tmp_path):
    with pytest.raises(DataError, match="--download"):
        get_datasets("cifar10", DataConfig(root=str(tmp_path)))


def test_cifar10_truncated_file(tmp_path):
    _write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-bin" / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError, match="3,073-byte records"):
        get_datasets("cifar10", DataConfig(root=str(tmp_path)))


def test_food11_layout(tmp_path, write_images):
    write_images(tmp_path / "training", ["0_0.jpg", "0_1.jpg", "10_0.jpg", "3_7.jpg"])
    write_images(tmp_path / "validation", ["1_0.jpg", "10_3.jpg"])
    config = DataConfig(root=str(tmp_path), image_size=16)
    train, val, classes = get_datasets("food11", config)
    assert (len(train), len(val), classes) == (4, 2, 11)
    x, y = val[1]
    assert tuple(x.shape) == (3, 16, 16) and y == 10
    loaders = get_loaders("food11", config)
    xb, _ = next(iter(loaders.train))
    assert xb.shape == (4, 3, 16, 16)


def test_food11_unparsable_name(tmp_path, write_images):
    write_images(tmp_path / "training", ["0_0.jpg", "pizza.jpg"])
    write_images(tmp_path / "validation", ["1_0.jpg"])
    with pytest.raises(DataError, match=r"cannot parse 'pizza.jpg'.*<class>_<n>.jpg"):
        get_datasets("food11", DataConfig(root=str(tmp_path)))


def test_food11_class_out_of_range(tmp_path, write_images):
    write_images(tmp_path / "training", ["11_0.jpg"])
    write_images(tmp_path / "validation", ["1_0.jpg"])
    with pytest.raises(DataError, match="class 0-10"):
        get_datasets("food11", DataConfig(root=str(tmp_path)))


def test_food11_missing_and_empty_folders(tmp_path, write_images):
    with pytest.raises(DataError, match="does not exist"):
        get_datasets("food11", DataConfig(root=str(tmp_path / "nowhere")))
    (tmp_path / "training").mkdir()
    (tmp_path / "validation").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        get_datasets("food11", DataConfig(root=str(tmp_path)))
    with pytest.raises(DataError, match="--data-root"):
        get_datasets("food11", DataConfig())


def test_imagefolder_single_folder_is_split(tmp_path, write_images):
    for c in ("cat", "dog"):
        write_images(tmp_path / c, [f"{i}.png" for i in range(5)])
    train, val, classes = get_datasets("imagefolder", DataConfig(root=str(tmp_path)))
    assert (len(train), len(val), classes) == (8, 2, 2)
    assert sorted(label for _, label in val.items) == [0, 1]


def test_imagefolder_train_val_and_grayscale(tmp_path, write_images):
    for part in ("train", "val"):
        for c in ("a", "b", "c"):
            write_images(tmp_path / part / c, ["x.png", "y.png"])
    config = DataConfig(root=str(tmp_path), channels=1, image_size=8)
    train, val, classes = get_datasets("imagefolder", config)
    assert (len(train), len(val), classes) == (6, 6, 3)
    assert tuple(train[0][0].shape) == (1, 8, 8)


def test_imagefolder_without_classes(tmp_path, write_images):
    with pytest.raises(DataError, match="no class subfolders"):
        get_datasets("imagefolder", DataConfig(root=str(tmp_path)))
