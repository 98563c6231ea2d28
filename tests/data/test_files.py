"""MNIST / Fashion-MNIST (IDX) and CIFAR-10 (pickle batches) read from tiny files that
the tests write in the real formats."""

import datetime
import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from droplab import data
from droplab.data.files import read_cifar_batch, read_idx

IDX_FILES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX format: 0, 0, type 0x08 (uint8), ndim, big-endian uint32 sizes, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_set(folder, gen, *, n_train=30, n_test=10, rows=5, cols=7, gz=False):
    """Non-square 5x7 images, labels cycling through 0..9."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        IDX_FILES[0]: gen.integers(0, 256, (n_train, rows, cols)),
        IDX_FILES[1]: np.arange(n_train) % 10,
        IDX_FILES[2]: gen.integers(0, 256, (n_test, rows, cols)),
        IDX_FILES[3]: (np.arange(n_test) * 3) % 10,
    }
    for stem, array in arrays.items():
        raw = idx_bytes(array)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / stem).write_bytes(raw)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reads_idx_files(tmp_path, gz):
    arrays = write_idx_set(tmp_path, np.random.default_rng(0), gz=gz)
    raw = data.load("mnist", data_dir=tmp_path, n_val=5, standardize=False)
    assert raw.input_shape == (1, 5, 7) and raw.n_classes == 10
    assert (len(raw.y_train), len(raw.y_val), len(raw.y_test)) == (25, 5, 10)
    want = torch.from_numpy(arrays[IDX_FILES[2]].astype(np.float32) / 255).unsqueeze(1)
    torch.testing.assert_close(raw.x_test, want)  # the test set keeps the file's order
    assert raw.y_test.tolist() == arrays[IDX_FILES[3]].tolist()
    assert sorted(torch.cat([raw.y_train, raw.y_val]).tolist()) == sorted(list(range(10)) * 3)

    ds = data.load("mnist", data_dir=str(tmp_path), n_val=5)  # one channel: one mean/std
    pixels = torch.cat([raw.x_train]).double()
    assert ds.x_mean.item() == pytest.approx(pixels.mean().item(), rel=1e-5)
    assert ds.x_std.item() == pytest.approx(pixels.std(unbiased=False).item(), rel=1e-5)

    flat = data.load("mnist", data_dir=tmp_path, n_val=5, flatten=True)
    assert flat.input_shape == (35,)
    torch.testing.assert_close(flat.x_test, ds.x_test.reshape(10, 35))


def test_fashion_mnist_and_torchvision_layouts(tmp_path):
    gen = np.random.default_rng(1)
    fashion = write_idx_set(tmp_path / "FashionMNIST" / "raw", gen, n_test=4)
    mnist = write_idx_set(tmp_path / "MNIST" / "raw", gen, n_test=6)
    f = data.load("fashion-mnist", data_dir=tmp_path, standardize=False)
    m = data.load("mnist", data_dir=tmp_path, standardize=False)
    assert len(f.y_test) == 4 and len(m.y_test) == 6
    assert f.y_test.tolist() == fashion[IDX_FILES[3]].tolist()
    assert m.y_test.tolist() == mnist[IDX_FILES[3]].tolist()


def test_idx_missing_files_error_names_directory_and_files(tmp_path):
    write_idx_set(tmp_path, np.random.default_rng(0))
    (tmp_path / IDX_FILES[3]).unlink()
    with pytest.raises(FileNotFoundError) as err:
        data.load("mnist", data_dir=tmp_path)
    message = str(err.value)
    assert str(tmp_path) in message
    assert all(f"{stem}[.gz]" in message for stem in IDX_FILES)


def test_no_data_dir_says_how_to_give_one(monkeypatch, tmp_path):
    monkeypatch.delenv("DROPLAB_DATA_DIR", raising=False)
    with pytest.raises(ValueError, match=r"data_dir=DIR \(CLI: --data-dir DIR\).*test_batch"):
        data.load("cifar10")
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        data.load("mnist", data_dir=tmp_path / "nowhere")
    write_idx_set(tmp_path, np.random.default_rng(0))
    monkeypatch.setenv("DROPLAB_DATA_DIR", str(tmp_path))
    assert len(data.load("mnist").y_test) == 10


def test_read_idx_rejects_bad_files(tmp_path):
    bad_magic = tmp_path / "bad"
    bad_magic.write_bytes(b"\x01\x02\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(ValueError, match=r"bad: not an IDX file \(magic bytes 01020801"):
        read_idx(bad_magic)
    short = tmp_path / "short"
    short.write_bytes(idx_bytes(np.zeros((3, 2, 2)))[:-1])
    with pytest.raises(ValueError, match=r"short: IDX data has 11 bytes.*needs 12"):
        read_idx(short)


def test_read_idx_other_types_and_byte_order(tmp_path):
    values = np.array([[1, -2, 70000], [3, 4, -5]], dtype=">i4")
    path = tmp_path / "ints"
    path.write_bytes(bytes([0, 0, 0x0C, 2]) + struct.pack(">2I", 2, 3) + values.tobytes())
    out = read_idx(path)
    assert out.dtype.isnative and out.tolist() == values.tolist()


def write_cifar(folder, gen, sizes=(4, 3, 5, 2, 4), n_test=3, protocol=2):
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name, n in zip(names, [*sizes, n_test]):
        batch = {
            b"batch_label": b"fake",
            b"data": gen.integers(0, 256, (n, 3072)).astype(np.uint8),
            b"labels": [int(v) for v in gen.integers(0, 10, n)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
        batches[name] = batch
    return batches


def test_cifar10_reads_python_batches(tmp_path):
    batches = write_cifar(tmp_path / "cifar-10-batches-py", np.random.default_rng(2))
    raw = data.load("cifar10", data_dir=tmp_path, n_val=3, standardize=False)
    assert raw.input_shape == (3, 32, 32)
    assert (len(raw.y_train), len(raw.y_val), len(raw.y_test)) == (15, 3, 3)
    test = batches["test_batch"]
    # Row layout: 1024 red values, then green, then blue, each a 32x32 image row by row.
    want = torch.from_numpy(test[b"data"].reshape(3, 3, 32, 32).astype(np.float32) / 255)
    torch.testing.assert_close(raw.x_test, want)
    assert raw.x_test[1, 2, 0, 5].item() == pytest.approx(test[b"data"][1, 2048 + 5] / 255)
    assert raw.y_test.tolist() == test[b"labels"]

    ds = data.load("cifar10", data_dir=tmp_path, n_val=3)
    assert ds.standardization == "channel" and ds.x_mean.shape == (3,)
    per_channel = ds.x_train.double().mean(dim=(0, 2, 3))
    assert per_channel.abs().max() < 1e-6
    flat = data.load("cifar10", data_dir=tmp_path, n_val=3, flatten=True)
    torch.testing.assert_close(flat.x_val, ds.x_val.reshape(3, 3072))


def test_cifar10_also_found_directly_in_data_dir_and_missing_files_named(tmp_path):
    write_cifar(tmp_path, np.random.default_rng(3))
    assert len(data.load("cifar10", data_dir=tmp_path).y_test) == 3
    (tmp_path / "data_batch_4").unlink()
    with pytest.raises(FileNotFoundError) as err:
        data.load("cifar10", data_dir=tmp_path)
    message = str(err.value)
    assert "data_batch_1" in message and "data_batch_5" in message and "test_batch" in message
    assert str(tmp_path / "cifar-10-batches-py") in message


def test_cifar_reader_refuses_code_and_bad_layouts(tmp_path):
    hostile = tmp_path / "hostile"
    hostile.write_bytes(pickle.dumps({b"data": datetime.date(2020, 1, 1), b"labels": []}))
    with pytest.raises(ValueError, match=r"datetime.date; not allowed"):
        read_cifar_batch(hostile)
    wrong = tmp_path / "wrong"
    wrong.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(ValueError, match=r"expected \(n, 3072\) and \(n,\)"):
        read_cifar_batch(wrong)
    not_dict = tmp_path / "list"
    not_dict.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ValueError, match="b'data' and b'labels'"):
        read_cifar_batch(not_dict)
