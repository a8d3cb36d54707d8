"""Loading checkpoints without running code from them.

torch unpickles with ``weights_only=True``: tensors, containers, numbers and
strings, and any other class or function only where the load allows it by
name. Checkpoints written by mmengine, mmdet, mmseg and mmpretrain also hold
mmengine's ``HistoryBuffer`` (the message hub's logged scalars) and numpy
arrays, dtypes and scalars: :data:`SAFE_GLOBALS` allows exactly those, during
this module's loads only. Importing mmlavit routes every scheme of mmengine's
``CheckpointLoader`` through :func:`load_file_safely` (local files through
:func:`load_from_local`, URLs and model-zoo names through
:mod:`mmlavit.utils.remote_checkpoint`), so ``load_from``, resume, ``init_cfg``
Pretrained, ``init_detector`` and the tools all load that way.

A file that needs anything else is refused with :class:`UntrustedCheckpointError`
before any of it runs. A file the user vouches for is named (by path or URL) in
the environment variable ``MMLAVIT_TRUSTED_CHECKPOINTS`` and is then unpickled
in full.
"""
import logging
import os
import os.path as osp
import pickle
import re
import threading
import zipfile
from collections import OrderedDict
from contextlib import contextmanager
from typing import List, Sequence

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, print_log

#: Paths and URLs (separated by ``os.pathsep``) of checkpoints to unpickle in full, code included.
TRUST_ENV = 'MMLAVIT_TRUSTED_CHECKPOINTS'

# HistoryBuffer's default statistics methods, which it pickles with its state.
_HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')
_NUMERIC_DTYPES = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
                   np.float16, np.float32, np.float64)


def _history_buffer_statistic(owner, name):
    """``getattr`` as far as mmengine's checkpoints use it: a statistics method of HistoryBuffer.

    Pickle protocol 2 (torch.save's) writes a method as ``getattr(class, name)``.
    """
    if owner is not HistoryBuffer or name not in _HISTORY_BUFFER_STATISTICS:
        raise pickle.UnpicklingError(f'getattr({owner!r}, {name!r}) is not allowed in a checkpoint')
    return getattr(HistoryBuffer, name)


try:
    from numpy._core import multiarray as _multiarray
except ImportError:  # numpy < 2
    from numpy.core import multiarray as _multiarray
#: What a checkpoint may hold beyond torch's own allowlist: what the tests find in real mmengine, mmdet,
#: mmseg and mmpretrain checkpoints (tests/test_checkpoint_safety.py).
SAFE_GLOBALS = [
    HistoryBuffer,
    (_history_buffer_statistic, 'builtins.getattr'),
    np.ndarray,
    np.dtype,
    # numpy >= 2 writes these functions as numpy._core.multiarray.*, numpy < 2 as numpy.core.multiarray.*:
    # either numpy reads both.
    *((function, f'numpy.{core}.multiarray.{function.__name__}')
      for function in (_multiarray._reconstruct, _multiarray.scalar) for core in ('_core', 'core')),
    # A dtype is unpickled as an instance of its class (HistoryBuffer's are float64 and int64); all
    # numeric widths are allowed alike, object and other non-numeric dtypes are not.
    *(type(np.dtype(numeric)) for numeric in _NUMERIC_DTYPES),
]
_ALLOWLIST_LOCK = threading.Lock()


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be loaded; the message names the file and the way on."""


class UntrustedCheckpointError(CheckpointError):
    """A checkpoint that needs more than :data:`SAFE_GLOBALS` to unpickle: it could run code."""


class IncompleteCheckpointError(CheckpointError):
    """A checkpoint file that stops before its end."""


@contextmanager
def _allowlist():
    """Lets torch's weights-only unpickler build :data:`SAFE_GLOBALS` inside the block."""
    with _ALLOWLIST_LOCK:
        # safe_globals forgets on exit what it was given: leave out what the process allowed itself.
        allowed = set(torch.serialization.get_safe_globals())
        with torch.serialization.safe_globals([item for item in SAFE_GLOBALS if item not in allowed]):
            yield


def unsafe_globals(filename: str) -> List[str]:
    """The globals (``module.name``) the checkpoint names that neither torch nor :data:`SAFE_GLOBALS` allows."""
    with _allowlist():
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(filename))


def is_incomplete_checkpoint(filename: str) -> bool:
    """Whether the file stops short: empty, or a zip archive (torch.save's format) without its end record."""
    with open(filename, 'rb') as f:
        head = f.read(4)
    return not head or (head == b'PK\x03\x04' and not zipfile.is_zipfile(filename))


def incomplete_checkpoint_message(filename: str, fix: str) -> str:
    """The message of an :class:`IncompleteCheckpointError`, ending with ``fix``."""
    return (f'checkpoint {filename} is incomplete: the file stops before its end ({osp.getsize(filename)} '
            f'bytes), as when a run is killed while writing it or a copy is cut short. {fix}')


def is_trusted(name: str) -> bool:
    """Whether :data:`TRUST_ENV` names the checkpoint: a path (as the same file) or a URL (as written)."""
    named = os.environ.get(TRUST_ENV, '')
    if '://' in name:
        # A URL holds os.pathsep (':') itself: it is found whole, between separators.
        separator = re.escape(os.pathsep)
        return re.search(f'(?:^|{separator}){re.escape(name)}(?:{separator}|$)', named) is not None
    paths = {osp.realpath(osp.expanduser(path)) for path in named.split(os.pathsep) if path and '://' not in path}
    return osp.realpath(osp.expanduser(name)) in paths


def _reason(error: Exception) -> str:
    """What failed: the last paragraph of the error's message before torch's general advice."""
    paragraphs = [text.strip() for text in str(error).split('Check the documentation')[0].split('\n\n')]
    return ([text for text in paragraphs if text] or [''])[-1]


def _untrusted(filename: str, name: str, needs: str) -> UntrustedCheckpointError:
    where = f' ({filename})' if name != filename else ''
    trust = name if '://' in name else osp.abspath(name)
    return UntrustedCheckpointError(
        f'checkpoint {name} was not loaded: unpickling it needs {needs}, and checkpoints are only loaded '
        f'with tensors, containers, numbers, strings, numpy arrays and mmengine\'s HistoryBuffer, so that '
        f'loading one cannot run code from the file{where}.\n'
        f'  If you trust this file (you wrote it, or its source is one you would run code from), name it in '
        f'the environment: {TRUST_ENV}={trust}\n'
        f'  Its pickle is then loaded in full, code included (README: "Checkpoints and safety").')


def _load_error(filename: str, name: str, error: Exception, trusted: bool) -> Exception:
    """What a failed load raises: an incomplete file, a refusal, a file that is no checkpoint, or ``error``."""
    if isinstance(error, EOFError) or is_incomplete_checkpoint(filename):
        fix = ('Load an earlier checkpoint, or copy the file again.' if name == filename else
               f'It was fetched from {name}: delete it and load {name} again.')
        return IncompleteCheckpointError(incomplete_checkpoint_message(filename, fix))
    archive = zipfile.is_zipfile(filename)  # torch.save's format; older torch wrote a bare pickle stream
    if isinstance(error, pickle.UnpicklingError) and not trusted:
        if archive:
            return _untrusted(filename, name, ', '.join(unsafe_globals(filename)) or _reason(error))
        found = re.search(r'unsupported (?:global: )?GLOBAL (\S+)', str(error), re.IGNORECASE)
        if found:
            return _untrusted(filename, name, found.group(1))
    where = f' ({filename})' if name != filename else ''
    return error if archive else CheckpointError(
        f'{name}{where} is not a checkpoint torch can read ({type(error).__name__}: {_reason(error)})')


def load_file_safely(filename: str, map_location=None, sources: Sequence[str] = ()):
    """Unpickles a checkpoint file with :data:`SAFE_GLOBALS`, or in full when :data:`TRUST_ENV` names it.

    Args:
        filename (str): The local file.
        map_location: As for :func:`torch.load`. Default: None.
        sources (Sequence[str]): The names the file was fetched by (a URL, a
            model-zoo name). Messages name the first; naming any of them, or
            the file, in :data:`TRUST_ENV` trusts it. Default: none.

    Returns:
        The checkpoint (usually a dict).

    Raises:
        UntrustedCheckpointError: The file needs a global outside the allowlist.
        IncompleteCheckpointError: The file stops before its end.
        CheckpointError: The file is not a checkpoint torch can read.
    """
    name = sources[0] if sources else filename
    trusted_as = next((candidate for candidate in (*sources, filename) if is_trusted(candidate)), None)
    if trusted_as:
        print_log(f'{TRUST_ENV} names {trusted_as}: unpickling it in full, code included', logger='current',
                  level=logging.WARNING)
    try:
        with _allowlist():
            return torch.load(filename, map_location=map_location, weights_only=trusted_as is None)
    except Exception as error:  # which one torch raises depends on where the file goes wrong
        raise _load_error(filename, name, error, trusted_as is not None) from None


def load_from_local(filename: str, map_location=None):
    """Loads a local checkpoint without running code from it: mmengine's local loader, made safe.

    The file is unpickled with ``weights_only=True`` and :data:`SAFE_GLOBALS`;
    one that ``MMLAVIT_TRUSTED_CHECKPOINTS`` names is unpickled in full.

    Args:
        filename (str): The checkpoint file.
        map_location: As for :func:`torch.load`. Default: None.

    Returns:
        The checkpoint (usually a dict).

    Raises:
        FileNotFoundError: The file does not exist.
        UntrustedCheckpointError: The file needs a global outside the allowlist.
        IncompleteCheckpointError: The file stops before its end.
        CheckpointError: The file is not a checkpoint torch can read.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} can not be found.')
    return load_file_safely(filename, map_location)


def weights_of(checkpoint: dict) -> dict:
    """The state dict of a checkpoint: its ``state_dict`` or ``model`` entry, or the checkpoint itself."""
    for entry in ('state_dict', 'model'):
        if entry in checkpoint:
            return checkpoint[entry]
    return checkpoint


def strip_prefix(state_dict: dict, prefix: str) -> OrderedDict:
    """The entries whose key starts with ``prefix`` (ending in '.'), with the prefix removed."""
    return OrderedDict((key[len(prefix):], value) for key, value in state_dict.items() if key.startswith(prefix))
