"""Loading checkpoints through mmengine's own loaders without running code from them.

torch unpickles with ``weights_only=True`` unless told otherwise; what mmengine, mmdet, mmseg and mmpretrain write
also needs :data:`SAFE_GLOBALS`. :func:`register_safe_checkpoint_loaders` (run by ``import mmlavit``) wraps every
scheme loader of mmengine's ``CheckpointLoader`` so that torch's allowlist holds them during its load, and routes
mmengine's download path (``load_url``, which unpickles in full) through :func:`load_url`. A file named (by path,
URL or model-zoo name) in ``MMLAVIT_TRUSTED_CHECKPOINTS`` is unpickled in full.
"""
import http.client
import logging
import os
import os.path as osp
import pickle
import re
import threading
import warnings
import zipfile
from collections import OrderedDict
from contextlib import contextmanager
from functools import wraps
from hashlib import sha256
from typing import Sequence
from urllib.error import HTTPError, URLError
from urllib.parse import urlparse

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, print_log
from mmengine.runner import checkpoint as mmengine_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader

#: Paths, URLs and model-zoo names (separated by ``os.pathsep``) of checkpoints to unpickle in full, code included.
TRUST_ENV = 'MMLAVIT_TRUSTED_CHECKPOINTS'
#: ``name-<hex>.ext``: the hex digits (8 to 64) start the file's SHA-256, as torch.hub names its downloads.
HASH_IN_NAME = re.compile(r'-([0-9a-f]{8,64})\.[^-]+$')


def _history_buffer_statistic(owner, name):
    """``getattr`` as pickle writes a method: a statistics method of HistoryBuffer, pickled with its state."""
    if owner is not HistoryBuffer or name not in ('min', 'max', 'current', 'mean'):
        raise pickle.UnpicklingError(f'getattr({owner!r}, {name!r}) is not allowed in a checkpoint')
    return getattr(HistoryBuffer, name)


_multiarray = (np._core if hasattr(np, '_core') else np.core).multiarray  # numpy >= 2, numpy < 2
#: What a checkpoint may hold beyond torch's own allowlist: what real mmengine, mmdet, mmseg and mmpretrain
#: checkpoints hold (tests/test_checkpoint_safety.py checks one of each).
SAFE_GLOBALS = [
    HistoryBuffer, (_history_buffer_statistic, 'builtins.getattr'), np.ndarray, np.dtype,
    # numpy >= 2 writes these as numpy._core.multiarray.*, numpy < 2 as numpy.core.multiarray.*: either reads both.
    *((function, f'numpy.{core}.multiarray.{function.__name__}')
      for function in (_multiarray._reconstruct, _multiarray.scalar) for core in ('_core', 'core')),
    # A dtype unpickles as an instance of its class: every numeric width, no object or other dtype.
    *(type(np.dtype(numeric)) for numeric in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8,
                                              np.uint16, np.uint32, np.uint64, np.float16, np.float32, np.float64)),
]
# torch's allowlist and environment are the process's: one load changes them at a time.
_LOCK = threading.RLock()
# The names of the checkpoint being loaded, outermost first (a model-zoo name, its URL, the downloaded file).
_names = ()


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be loaded; the message names the file and the way on."""


class UntrustedCheckpointError(CheckpointError):
    """A checkpoint that needs more than :data:`SAFE_GLOBALS` to unpickle: it could run code."""


class IncompleteCheckpointError(CheckpointError):
    """A checkpoint file that stops before its end."""


class CheckpointMismatchError(CheckpointError, ValueError):
    """A checkpoint whose weights do not fit the model."""


def is_trusted(name: str) -> bool:
    """Whether ``MMLAVIT_TRUSTED_CHECKPOINTS`` names the checkpoint: a path (as the same file) or a URL (as
    written)."""
    named = os.environ.get(TRUST_ENV, '')
    if '://' in name:  # a URL holds os.pathsep (':') itself: it is found whole, between separators
        separator = re.escape(os.pathsep)
        return re.search(f'(?:^|{separator}){re.escape(name)}(?:{separator}|$)', named) is not None
    paths = {osp.realpath(osp.expanduser(path)) for path in named.split(os.pathsep) if path and '://' not in path}
    return osp.realpath(osp.expanduser(name)) in paths


def _trusted(names: Sequence[str]) -> bool:
    trusted_as = next((name for name in names if is_trusted(name)), None)
    if trusted_as:
        print_log(f'{TRUST_ENV} names {trusted_as}: unpickling it in full, code included', logger='current',
                  level=logging.WARNING)
    return trusted_as is not None


@contextmanager
def _unpickling(trusted: bool):
    """Inside: weights-only loads allow :data:`SAFE_GLOBALS` too; if ``trusted``, the loads that do not choose
    (mmengine's) unpickle in full."""
    force = 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'
    before = os.environ.get(force)
    with _LOCK, warnings.catch_warnings():
        allowed = set(torch.serialization.get_safe_globals())  # safe_globals forgets them on exit
        if trusted:
            os.environ[force] = '1'
            warnings.filterwarnings('ignore', message=f'Environment variable {force} detected')
        try:
            with torch.serialization.safe_globals([item for item in SAFE_GLOBALS if item not in allowed]):
                yield
        finally:
            if trusted:
                os.environ.pop(force) if before is None else os.environ.update({force: before})


def is_incomplete_checkpoint(filename: str) -> bool:
    """Whether the file stops short: empty, or a zip archive (torch.save's format) without its end record."""
    with open(filename, 'rb') as f:
        head = f.read(4)
    return not head or (head == b'PK\x03\x04' and not zipfile.is_zipfile(filename))


def incomplete_checkpoint_message(filename: str, fix: str) -> str:
    """The message of an :class:`IncompleteCheckpointError`, ending with ``fix``."""
    return (f'checkpoint {filename} is incomplete: the file stops before its end ({osp.getsize(filename)} '
            f'bytes), as when a run is killed while writing it or a copy is cut short. {fix}')


def _reason(error: Exception) -> str:
    """What failed: the last paragraph of the error's message before torch's general advice."""
    paragraphs = [text.strip() for text in str(error).split('Check the documentation')[0].split('\n\n')]
    return ([text for text in paragraphs if text] or [''])[-1]


def _load_error(names: Sequence[str], error: Exception, trusted: bool) -> Exception:
    """What a failed load raises: a refusal, an incomplete file, a file that is no checkpoint, or ``error``."""
    name, local = names[0], next((name for name in reversed(names) if osp.isfile(name)), None)
    fetched = f' (fetched to {local})' if local and local != name else ''
    needs = re.search(r'GLOBAL (\S+)', str(error))
    if isinstance(error, pickle.UnpicklingError) and not trusted and (needs or local and zipfile.is_zipfile(local)):
        return UntrustedCheckpointError(
            f'checkpoint {name} was not loaded: unpickling it needs {needs.group(1) if needs else _reason(error)}, '
            f'and checkpoints are only loaded with tensors, containers, numbers, strings, numpy arrays and '
            f'mmengine\'s HistoryBuffer, so that loading one cannot run code from the file{fetched}.\n'
            f'  If you trust this file (you wrote it, or its source is one you would run code from), name it in '
            f'the environment: {TRUST_ENV}={name if "://" in name else osp.abspath(name)}\n'
            f'  Its pickle is then loaded in full, code included (README: "Checkpoints and safety").')
    if local and (isinstance(error, EOFError) or is_incomplete_checkpoint(local)):
        fix = ('Load an earlier checkpoint, or copy the file again.' if local == name else
               f'It was fetched from {name}: delete it and load {name} again.')
        return IncompleteCheckpointError(incomplete_checkpoint_message(local, fix))
    if local:
        return CheckpointError(f'{name}{fetched} is not a checkpoint torch can read ({type(error).__name__}: '
                               f'{_reason(error)}): the file is damaged, or was not written by torch.save')
    return error


def _loaded_safely(loader):
    """mmengine's scheme ``loader``, unpickling as :func:`_unpickling` says, failing as :func:`_load_error` says."""

    @wraps(loader)
    def load(filename, map_location=None):
        global _names
        with _LOCK:
            outer, _names = _names, _names + (str(filename), )
            trusted = _trusted(_names)
            try:
                with _unpickling(trusted):
                    return loader(filename, map_location)
            except CheckpointError:
                raise
            except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
                raise _load_error(_names, error, trusted) from None
            finally:
                _names = outer

    load.loads_safely = True
    return load


def _check_hash(filename: str, url: str) -> None:
    """Removes the file and raises when its name carries a hash its content does not have."""
    expected = HASH_IN_NAME.search(osp.basename(filename))
    if expected is None:
        return
    digest = sha256()
    with open(filename, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    if not digest.hexdigest().startswith(expected.group(1)):
        os.remove(filename)
        raise CheckpointError(
            f'checkpoint {url} was not loaded: its name says its SHA-256 starts with {expected.group(1)}, the '
            f'downloaded file\'s is {digest.hexdigest()}, so it is damaged or not the file the name promises; '
            f'{filename} was removed. Load it again, or download the file and pass its local path.')


def load_url(url: str, model_dir=None, map_location=None, progress=True, check_hash=False, file_name=None):
    """mmengine's ``load_url`` (its URL and model-zoo loaders download with it), made safe.

    Downloads into torch.hub's cache (or ``model_dir``) unless the file is there, checks the SHA-256 that its
    name carries whatever ``check_hash`` says (removing a file that differs), and unpickles it weights-only, or in
    full where ``MMLAVIT_TRUSTED_CHECKPOINTS`` names it, its URL or the name it was asked by.

    Raises:
        CheckpointError: The URL names no file, the download failed, or the file lacks its name's hash.
    """
    global _names
    name = _names[0] if _names else url
    source = url if name == url else f'{name} ({url})'
    basename = file_name or osp.basename(urlparse(url).path)
    if not basename:
        raise CheckpointError(f'checkpoint {source} names no file: a checkpoint URL ends with its file name')
    model_dir = model_dir or osp.join(torch.hub.get_dir(), 'checkpoints')
    filename = osp.join(model_dir, basename)
    if not osp.isfile(filename):
        try:
            os.makedirs(model_dir, exist_ok=True)
        except OSError as error:
            raise CheckpointError(f'checkpoint {source} cannot be downloaded into torch.hub\'s cache {model_dir} '
                                  f'({type(error).__name__}: {error}): set TORCH_HOME to a folder you can write, or '
                                  f'download the file and pass its local path.') from None
        print_log(f'Downloading {url} to {filename}', logger='current')
        try:
            torch.hub.download_url_to_file(url, filename, progress=progress)
        except (OSError, ValueError, http.client.HTTPException) as error:
            reason = (f'HTTP {error.code} {error.reason}' if isinstance(error, HTTPError) else
                      str(error.reason) if isinstance(error, URLError) else f'{type(error).__name__}: {error}')
            raise CheckpointError(f'checkpoint {source} could not be downloaded ({reason}). Download the file and '
                                  f'pass its local path instead.') from None
    _check_hash(filename, name)
    outer, _names = _names, _names + (url, filename)
    trusted = any(map(is_trusted, outer)) or _trusted(_names)  # an outer name was announced already
    try:
        return torch.load(filename, map_location=map_location, weights_only=not trusted)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise _load_error(_names, error, trusted) from None
    finally:
        _names = outer


def register_safe_checkpoint_loaders() -> None:
    """Wraps mmengine's own scheme loaders (a loader other code registered stays) and replaces its ``load_url``."""
    for prefix, loader in list(CheckpointLoader._schemes.items()):
        if loader.__module__ == mmengine_checkpoint.__name__ and not getattr(loader, 'loads_safely', False):
            CheckpointLoader.register_scheme(prefixes=prefix, loader=_loaded_safely(loader), force=True)
    mmengine_checkpoint.load_url = load_url


def weights_of(checkpoint: dict) -> dict:
    """The state dict of a checkpoint: its ``state_dict`` or ``model`` entry, or the checkpoint itself."""
    return next((checkpoint[entry] for entry in ('state_dict', 'model') if entry in checkpoint), checkpoint)


def strip_prefix(state_dict: dict, prefix: str) -> OrderedDict:
    """The entries whose key starts with ``prefix`` (ending in '.'), with the prefix removed."""
    return OrderedDict((key[len(prefix):], value) for key, value in state_dict.items() if key.startswith(prefix))
