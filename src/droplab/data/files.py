"""Datasets read from local files (``data_dir``, the CLI's ``--data-dir``): MNIST and
Fashion-MNIST in the IDX format, CIFAR-10 as its python pickle batches.

Nothing is downloaded. When files are missing the error names the directories searched
and the exact files expected.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np

from droplab.data._checks import check_bool, resolve_n_val
from droplab.data.dataset import Dataset, from_arrays

__all__ = ["cifar10", "fashion_mnist", "mnist", "read_cifar_batch", "read_idx"]

# IDX type codes (the third magic byte) -> big-endian numpy dtypes.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _open(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): the format of the MNIST distribution.

    Layout: two zero bytes, a type byte (0x08 = uint8, ...), the number of dimensions
    ``k``, ``k`` big-endian uint32 sizes, then the data in C order.

    Returns:
        An array of shape ``(d1, ..., dk)`` in native byte order.
    """
    path = Path(path)
    with _open(path) as f:
        buf = f.read()
    if len(buf) < 4 or buf[0] != 0 or buf[1] != 0 or buf[2] not in _IDX_TYPES:
        raise ValueError(
            f"{path}: not an IDX file (magic bytes {buf[:4].hex() or 'missing'}; expected "
            "00 00 <type 08/09/0b/0c/0d/0e> <ndim>)"
        )
    ndim = buf[3]
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(buf)} bytes, need {header})")
    dims = struct.unpack(f">{ndim}I", buf[4:header])
    dtype = np.dtype(_IDX_TYPES[buf[2]])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(buf) - header != expected:
        raise ValueError(
            f"{path}: IDX data has {len(buf) - header} bytes, the header {dims} needs {expected}"
        )
    data = np.frombuffer(buf, dtype=dtype, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="))


def _data_dir(name: str, data_dir: str | None, expected: list[str]) -> Path:
    where = data_dir if data_dir is not None else os.environ.get("DROPLAB_DATA_DIR")
    if where is None:
        raise ValueError(
            f"dataset {name!r} is read from local files: pass data_dir=DIR (CLI: --data-dir "
            f"DIR) or set DROPLAB_DATA_DIR; expected files: {', '.join(expected)}"
        )
    path = Path(where).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"data_dir {str(path)!r} for dataset {name!r} is not a directory; it should "
            f"hold: {', '.join(expected)}"
        )
    return path


def _find(
    name: str, data_dir: str | None, subdirs: list[str], stems: list[str], gz: bool
) -> dict[str, Path]:
    """Locate every file of ``stems`` (or ``stem.gz``) in one candidate directory."""
    shown = [f"{s}[.gz]" if gz else s for s in stems]
    root = _data_dir(name, data_dir, shown)
    candidates = [root / sub for sub in subdirs] + [root]
    for base in candidates:
        found = {}
        for stem in stems:
            for cand in (base / stem, base / f"{stem}.gz") if gz else (base / stem,):
                if cand.is_file():
                    found[stem] = cand
                    break
        if len(found) == len(stems):
            return found
    raise FileNotFoundError(
        f"dataset {name!r}: expected the files {', '.join(shown)} in one of the directories "
        f"{', '.join(str(c) for c in candidates)}; none holds all of them"
    )


_IDX_STEMS = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]


def _idx_dataset(
    name: str, subdirs: list[str], seed: int, data_dir: str | None, opts: dict[str, Any]
) -> Dataset:
    paths = _find(name, data_dir, subdirs, _IDX_STEMS, gz=True)
    arrays = [read_idx(paths[s]) for s in _IDX_STEMS]
    x_pool, y_pool, x_test, y_test = arrays
    for x, y, split in ((x_pool, y_pool, "train"), (x_test, y_test, "t10k")):
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(
                f"dataset {name!r}: {split} images have shape {x.shape} and labels {y.shape}; "
                "expected (n, rows, cols) and (n,)"
            )
        if len(y) and (y.min() < 0 or y.max() > 9):
            raise ValueError(f"dataset {name!r}: {split} labels outside 0..9")
    x_pool = x_pool[:, None].astype(np.float32) / 255.0  # (n, 1, rows, cols) in [0, 1]
    x_test = x_test[:, None].astype(np.float32) / 255.0
    return from_arrays(
        name,
        "classification",
        x_pool,
        y_pool.astype(np.int64),
        x_test,
        y_test.astype(np.int64),
        seed=seed,
        n_val=resolve_n_val(name, len(y_pool), opts["val_fraction"], opts["n_val"]),
        n_classes=10,
        channels=1,
        flatten=check_bool(f"{name}: flatten", opts["flatten"]),
        standardize=check_bool(f"{name}: standardize", opts["standardize"]),
        meta={"files": {k: str(v) for k, v in paths.items()}},
    )


def mnist(
    seed: int,
    data_dir: str | None = None,
    *,
    val_fraction: float = 0.1,
    n_val: int | None = None,
    flatten: bool = False,
    standardize: bool = True,
) -> Dataset:
    """MNIST (LeCun et al. 1998) from the four IDX files in ``data_dir`` (also
    ``data_dir/mnist`` or torchvision's ``data_dir/MNIST/raw``; ``.gz`` accepted).

    60000 training images (val carved by ``seed``), 10000 test. Pixels scaled to [0, 1],
    then standardized with the train split's one mean and std.
    Shapes: x (n, 1, 28, 28), or (n, 784) with ``flatten=True``; y (n,) int64.
    """
    return _idx_dataset("mnist", ["mnist", "MNIST/raw"], seed, data_dir, locals())


def fashion_mnist(
    seed: int,
    data_dir: str | None = None,
    *,
    val_fraction: float = 0.1,
    n_val: int | None = None,
    flatten: bool = False,
    standardize: bool = True,
) -> Dataset:
    """Fashion-MNIST (Xiao et al. 2017): same files, format and shapes as ``mnist``; looked
    for in ``data_dir/fashion-mnist``, ``data_dir/FashionMNIST/raw``, then ``data_dir``."""
    subdirs = ["fashion-mnist", "FashionMNIST/raw"]
    return _idx_dataset("fashion-mnist", subdirs, seed, data_dir, locals())


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only what CIFAR batches hold (dicts, lists, bytes, numpy arrays), so a
    hostile file cannot run code."""

    _ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),  # how protocol 2 stores bytes (numpy buffers)
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"CIFAR batch refers to {module}.{name}; not allowed")


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch: a pickled dict with ``b'data'`` (n, 3072) uint8 (the
    1024 red, then green, then blue pixels of each 32x32 image, rows in order) and
    ``b'labels'`` (n ints in 0..9).

    Returns:
        images (n, 3, 32, 32) uint8 and labels (n,) int64.
    """
    path = Path(path)
    with open(path, "rb") as f:
        try:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
        except (pickle.UnpicklingError, EOFError, ValueError) as err:
            raise ValueError(f"{path}: not a CIFAR-10 python batch ({err})") from err
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(f"{path}: a CIFAR-10 batch is a dict with b'data' and b'labels'")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise ValueError(
            f"{path}: b'data' has shape {data.shape} and b'labels' {labels.shape}; "
            "expected (n, 3072) and (n,)"
        )
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{path}: labels outside 0..9")
    return data.reshape(-1, 3, 32, 32), labels  # (n, 3, 32, 32)


_CIFAR_STEMS = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def cifar10(
    seed: int,
    data_dir: str | None = None,
    *,
    val_fraction: float = 0.1,
    n_val: int | None = None,
    flatten: bool = False,
    standardize: bool = True,
) -> Dataset:
    """CIFAR-10 (Krizhevsky 2009) from the python batches in
    ``data_dir/cifar-10-batches-py`` (or ``data_dir``): ``data_batch_1`` .. ``_5`` (50000
    training images, val carved by ``seed``) and ``test_batch`` (10000).
    Pixels scaled to [0, 1], then standardized per channel with train statistics.
    Shapes: x (n, 3, 32, 32), or (n, 3072) with ``flatten=True``; y (n,) int64.
    """
    paths = _find("cifar10", data_dir, ["cifar-10-batches-py"], _CIFAR_STEMS, gz=False)
    train = [read_cifar_batch(paths[s]) for s in _CIFAR_STEMS[:5]]
    x_test, y_test = read_cifar_batch(paths["test_batch"])
    x_pool = np.concatenate([x for x, _ in train]).astype(np.float32) / 255.0  # (N, 3, 32, 32)
    y_pool = np.concatenate([y for _, y in train])
    return from_arrays(
        "cifar10",
        "classification",
        x_pool,
        y_pool,
        x_test.astype(np.float32) / 255.0,
        y_test,
        seed=seed,
        n_val=resolve_n_val("cifar10", len(y_pool), val_fraction, n_val),
        n_classes=10,
        channels=3,
        flatten=check_bool("cifar10: flatten", flatten),
        standardize=check_bool("cifar10: standardize", standardize),
        meta={"files": {k: str(v) for k, v in paths.items()}},
    )
