"""Checkpoints named by URL or model-zoo name, loaded as local files are: without running code from them.

mmengine's ``CheckpointLoader`` picks a loader by the name's scheme: ``http://``
and ``https://`` download into torch.hub's cache (``$TORCH_HOME/hub/checkpoints``);
``torchvision://`` (``modelzoo://``), ``open-mmlab://`` (``openmmlab://``) and
``mmcls://`` look the name up in mmengine's model-zoo lists first; ``pavi://``
and ``s3://`` (``petrel://``) fetch from those stores. mmengine's own loaders
unpickle what they fetch in full. The loaders here fetch the same file the same
way and unpickle it with :func:`~mmlavit.utils.checkpoint.load_file_safely`,
so a URL is refused, or trusted through ``MMLAVIT_TRUSTED_CHECKPOINTS``, like a
path. A downloaded file whose name carries a hash (``name-<hex>.pth``,
torch.hub's convention, which mmengine's model zoos follow) is checked against
it before it is loaded.
"""
import hashlib
import http.client
import logging
import os
import os.path as osp
import re
import urllib.error
from tempfile import TemporaryDirectory
from typing import Optional
from urllib.parse import urlparse

import torch
from mmengine.dist import get_dist_info
from mmengine.fileio import get_file_backend
from mmengine.logging import print_log
from mmengine.runner import checkpoint as mmengine_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader

from .checkpoint import CheckpointError, load_file_safely, load_from_local

#: ``name-<hex>.ext``: the hex digits (8 to 64) start the file's SHA-256, as torch.hub names its downloads.
HASH_IN_NAME = re.compile(r'-([0-9a-f]{8,64})\.[^-]+$')
_READ_CHUNK = 1 << 20


def is_remote_checkpoint(name: str) -> bool:
    """Whether ``CheckpointLoader`` fetches the checkpoint from elsewhere (a URL or a model-zoo name), not a path."""
    loader = CheckpointLoader._get_checkpoint_loader(str(name))
    return loader is not None and loader is not CheckpointLoader._schemes.get('')


def _sha256(filename: str) -> str:
    digest = hashlib.sha256()
    with open(filename, 'rb') as f:
        for chunk in iter(lambda: f.read(_READ_CHUNK), b''):
            digest.update(chunk)
    return digest.hexdigest()


def _check_hash(filename: str, url: str) -> None:
    """Removes the file and raises when its name carries a hash its content does not have."""
    expected = HASH_IN_NAME.search(osp.basename(filename))
    if expected is None:
        return
    digest = _sha256(filename)
    if not digest.startswith(expected.group(1)):
        os.remove(filename)
        raise CheckpointError(
            f'checkpoint {url} was not loaded: its name says its SHA-256 starts with {expected.group(1)}, the '
            f'downloaded file\'s is {digest}, so it is damaged or not the file the name promises; {filename} was '
            f'removed. Load it again, or download the file and pass its local path.')


def _download(url: str, filename: str, progress: bool, name: str) -> None:
    print_log(f'Downloading {url} to {filename}', logger='current')
    try:
        torch.hub.download_url_to_file(url, filename, progress=progress)
    except urllib.error.HTTPError as error:
        reason = f'HTTP {error.code} {error.reason}'
    except urllib.error.URLError as error:
        reason = str(error.reason)
    except (OSError, ValueError, http.client.HTTPException) as error:
        reason = f'{type(error).__name__}: {error}'
    else:
        return
    source = name if name == url else f'{name} ({url})'
    raise CheckpointError(f'checkpoint {source} could not be downloaded ({reason}). Download the file and pass '
                          f'its local path instead.') from None


def download_checkpoint(url: str, model_dir: Optional[str] = None, progress: bool = False,
                        name: Optional[str] = None) -> str:
    """Downloads a checkpoint into torch.hub's cache unless it is there, and checks a hash its name carries.

    In a distributed run rank 0 downloads first, as mmengine's
    ``load_from_http`` does; the other ranks then use its file, or download
    one themselves where they do not share its disk.

    Args:
        url (str): An ``http://`` or ``https://`` URL.
        model_dir (str, optional): The cache directory. Default:
            ``torch.hub.get_dir()/checkpoints``.
        progress (bool): Show a progress bar. Default: False.
        name (str, optional): The name the user gave (e.g. a model-zoo name),
            for messages. Default: the URL.

    Returns:
        str: The downloaded file.

    Raises:
        CheckpointError: The download failed, or the file does not have the
            hash its name carries (the file is then removed).
    """
    model_dir = model_dir or osp.join(torch.hub.get_dir(), 'checkpoints')
    basename = osp.basename(urlparse(url).path)
    if not basename:
        raise CheckpointError(f'checkpoint {name or url} names no file: a checkpoint URL ends with its file name')
    filename = osp.join(model_dir, basename)

    def fetch():
        if not osp.isfile(filename):
            os.makedirs(model_dir, exist_ok=True)
            _download(url, filename, progress, name or url)
        _check_hash(filename, name or url)

    rank, world_size = get_dist_info()
    if rank == 0:
        error = None
        try:
            fetch()
        except CheckpointError as raised:
            error = raised  # raised after the barrier, which the other ranks wait at
    if world_size > 1:
        torch.distributed.barrier()
    if rank == 0 and error is not None:
        raise error
    if rank > 0:
        fetch()
    return filename


def load_from_http(filename: str, map_location=None, model_dir: Optional[str] = None,
                   progress: bool = os.isatty(0), name: Optional[str] = None):
    """mmengine's ``load_from_http``, made safe: downloads into torch.hub's cache, then loads safely.

    Args:
        filename (str): The URL.
        map_location: As for :func:`torch.load`. Default: None.
        model_dir (str, optional): The cache directory (see
            :func:`download_checkpoint`).
        progress (bool): Show a progress bar. Default: whether stdin is a terminal.
        name (str, optional): The model-zoo name that resolved to the URL:
            messages name it, and naming it in ``MMLAVIT_TRUSTED_CHECKPOINTS``
            trusts the file too. Default: None.

    Returns:
        The checkpoint (usually a dict).
    """
    downloaded = download_checkpoint(filename, model_dir, progress, name)
    return load_file_safely(downloaded, map_location, sources=(name, filename) if name else (filename, ))


def _zoo_url(zoo: dict, model_name: str, filename: str, zoo_name: str) -> str:
    if model_name not in zoo:
        raise CheckpointError(f'unknown checkpoint {filename}: mmengine\'s list of {zoo_name} has no '
                              f'{model_name!r}. Download the file and pass its local path.')
    return zoo[model_name]


def load_from_torchvision(filename: str, map_location=None):
    """mmengine's ``load_from_torchvision`` (``torchvision://NAME``, ``modelzoo://NAME``), made safe."""
    if filename.startswith('modelzoo://'):
        print_log('The URL scheme of "modelzoo://" is deprecated, please use "torchvision://" instead',
                  logger='current', level=logging.WARNING)
    model_name = filename.split('://', 1)[1]
    url = _zoo_url(mmengine_checkpoint.get_torchvision_models(), model_name, filename, 'torchvision models')
    return load_from_http(url, map_location=map_location, name=filename)


def load_from_openmmlab(filename: str, map_location=None):
    """mmengine's ``load_from_openmmlab`` (``open-mmlab://NAME``, ``openmmlab://NAME``), made safe.

    The name resolves to a URL, or to a file under ``$MMENGINE_HOME``.
    """
    scheme, model_name = filename.split('://', 1)
    deprecated = mmengine_checkpoint.get_deprecated_model_names()
    if model_name in deprecated:
        print_log(f'{scheme}://{model_name} is deprecated in favor of {scheme}://{deprecated[model_name]}',
                  logger='current', level=logging.WARNING)
        model_name = deprecated[model_name]
    url = _zoo_url(mmengine_checkpoint.get_external_models(), model_name, filename, 'OpenMMLab models')
    if url.startswith(('http://', 'https://')):
        return load_from_http(url, map_location=map_location, name=filename)
    local = osp.join(mmengine_checkpoint._get_mmengine_home(), url)
    if not osp.isfile(local):
        raise FileNotFoundError(f'{local} can not be found.')
    return load_file_safely(local, map_location, sources=(filename, ))


def load_from_mmcls(filename: str, map_location=None):
    """mmengine's ``load_from_mmcls`` (``mmcls://NAME``), made safe: the backbone's weights, prefix stripped."""
    url = _zoo_url(mmengine_checkpoint.get_mmcls_models(), filename[len('mmcls://'):], filename, 'mmcls models')
    return mmengine_checkpoint._process_mmcls_checkpoint(load_from_http(url, map_location=map_location,
                                                                        name=filename))


def load_from_pavi(filename: str, map_location=None):
    """mmengine's ``load_from_pavi`` (``pavi://PATH``), made safe: downloads into a temporary directory."""
    try:
        from pavi import modelcloud
    except ImportError:
        raise ImportError('Please install pavi to load checkpoint from modelcloud.')
    model = modelcloud.get(filename[len('pavi://'):])
    with TemporaryDirectory() as directory:
        downloaded = osp.join(directory, model.name)
        model.download(downloaded)
        return load_file_safely(downloaded, map_location, sources=(filename, ))


def load_from_ceph(filename: str, map_location=None, backend: str = 'petrel'):
    """mmengine's ``load_from_ceph`` (``s3://``, ``petrel://``, optionally ``CLUSTER:`` first), made safe."""
    data = get_file_backend(filename, backend_args={'backend': backend}).get(filename)
    with TemporaryDirectory() as directory:
        fetched = osp.join(directory, osp.basename(urlparse(filename).path) or 'checkpoint.pth')
        with open(fetched, 'wb') as f:
            f.write(data)
        return load_file_safely(fetched, map_location, sources=(filename, ))


#: mmengine's loader of each scheme and the one that loads the same checkpoint safely.
SAFE_LOADERS = {
    mmengine_checkpoint.load_from_local: load_from_local,
    mmengine_checkpoint.load_from_http: load_from_http,
    mmengine_checkpoint.load_from_torchvision: load_from_torchvision,
    mmengine_checkpoint.load_from_openmmlab: load_from_openmmlab,
    mmengine_checkpoint.load_from_mmcls: load_from_mmcls,
    mmengine_checkpoint.load_from_pavi: load_from_pavi,
    mmengine_checkpoint.load_from_ceph: load_from_ceph,
}


def register_safe_checkpoint_loaders() -> None:
    """Makes mmengine's ``CheckpointLoader`` load every scheme safely (:data:`SAFE_LOADERS`).

    Only mmengine's own loaders are replaced: a loader that other code
    registered for a scheme stays.
    """
    for prefix, loader in list(CheckpointLoader._schemes.items()):
        if loader in SAFE_LOADERS:
            CheckpointLoader.register_scheme(prefixes=prefix, loader=SAFE_LOADERS[loader], force=True)
