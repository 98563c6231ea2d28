import pytest
import torch

from droplab import data


@pytest.mark.parametrize("name", ["mnist1d", "digits"])
def test_load_smoke(name):
    ds = data.load(name, seed=0)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.n_outputs == 10
    assert ds.x_train.shape[1:] == ds.input_shape
