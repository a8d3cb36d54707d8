"""Where LaViT leaves autocast: the parts that must run in the parameters' precision."""
from contextlib import nullcontext

import torch


def autocast_disabled(device_type: str):
    """A context with autocast off for ``device_type``, entered only where autocast is on.

    Outside autocast it is a no-op, so an exported graph gets no autocast region from it.
    """
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return nullcontext()
