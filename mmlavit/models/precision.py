"""Where LaViT leaves autocast: the parts that must run in the parameters' precision."""
from contextlib import nullcontext

import torch


def autocast_disabled(device_type: str):
    """A context with autocast off for ``device_type``, entered only where autocast is on.

    Outside autocast (and on devices without it, such as 'meta') it is a no-op, so an exported graph gets no
    autocast region from it.
    """
    if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return nullcontext()
