import pytest

from .specs import LAYERS, LayerSpec


@pytest.fixture(params=LAYERS, ids=[s.name for s in LAYERS])
def spec(request) -> LayerSpec:
    return request.param
