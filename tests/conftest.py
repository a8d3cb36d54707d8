import pytest
import torch

import mmlavit  # noqa: F401  registers LaViT and the safe checkpoint loader


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
