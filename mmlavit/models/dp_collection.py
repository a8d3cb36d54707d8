"""Where LaViT's DP loss goes: the collection open during one model forward.

A LaViT forward that records gradients in train mode adds ``dp_weight * L_DP``
to the innermost open collection, and computes nothing when none is open.
:class:`~mmlavit.DPLossHook` opens one around each ``mode='loss'`` forward of
the model, so the terms live exactly as long as that forward.
"""
from contextlib import contextmanager
from typing import Dict, List, Optional

import torch
from torch import Tensor


class DPLossCollection:
    """The DP terms of the LaViT forwards inside one collection.

    Attributes:
        losses (list[Tensor]): Each forward's ``dp_weight * L_DP``, a scalar
            with its graph (zero when no LA layer's grid held the cells).
        terms (list[Tensor]): Each forward's unweighted (L_sym, L_diag),
            shape (2, ), detached, where an LA layer's grid held the cells.
    """

    def __init__(self):
        self.losses: List[Tensor] = []
        self.terms: List[Tensor] = []

    def add(self, loss: Tensor, terms: Optional[Tensor]) -> None:
        self.losses.append(loss)
        if terms is not None:
            self.terms.append(terms.detach())

    @property
    def loss(self) -> Optional[Tensor]:
        """The sum of the forwards' ``dp_weight * L_DP``, or None when none added one."""
        return torch.stack(self.losses).sum() if self.losses else None

    def logged_terms(self) -> Optional[Dict[str, Tensor]]:
        """``dict(dp_sym=L_sym, dp_diag=L_diag)``, each the mean over the forwards, or None without terms."""
        if not self.terms:
            return None
        sym, diag = torch.stack(self.terms).mean(dim=0).unbind()
        return dict(dp_sym=sym, dp_diag=diag)


# The open collections, innermost last: open_dp_collection() appends one, close_dp_collection() removes it.
_open_collections: List[DPLossCollection] = []


def open_dp_collection() -> DPLossCollection:
    _open_collections.append(DPLossCollection())
    return _open_collections[-1]


def close_dp_collection(collection: DPLossCollection) -> None:
    _open_collections.remove(collection)


def current_dp_collection() -> Optional[DPLossCollection]:
    return _open_collections[-1] if _open_collections else None


@contextmanager
def collect_dp_loss():
    """Collects the DP terms of the LaViT forwards inside the block.

    Yields:
        DPLossCollection: e.g. ``loss = task_loss(backbone(images)) + dp.loss`` inside ``with collect_dp_loss()
        as dp:``; its ``loss`` is None when no forward computed a term (eval mode, no grad, ``dp_weight=0``).
    """
    collection = open_dp_collection()
    try:
        yield collection
    finally:
        close_dp_collection(collection)
