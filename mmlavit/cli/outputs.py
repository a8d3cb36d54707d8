"""No tool writes over what it reads: the output paths of a tool checked against its inputs before any work.

An output file may not be an input file (the checkpoint, the config, an
image), and no output, file or folder, may lie in a folder the tool reads
(a data set's images or annotations, a folder of images to draw on).
Writing over the tool's own earlier output stays allowed.
"""
import os.path as osp
from typing import Iterable, Tuple

from .datasets import dataset_paths, iter_datasets
from .errors import ToolArgumentError

#: (what it is, e.g. '--out', path): an output path of a tool, or an input it reads.
Named = Tuple[str, str]


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(osp.sep) + osp.sep)


def check_outputs(outputs: Iterable[Named], inputs: Iterable[Named]) -> None:
    """Refuses outputs that would write over inputs.

    Args:
        outputs: The files a tool writes and the folders it writes into.
        inputs: The files and folders it reads (a folder's files all count).

    Raises:
        ToolArgumentError: Naming the output and the input.
    """
    inputs = [(what, osp.realpath(path)) for what, path in inputs if path]
    for option, path in outputs:
        real = osp.realpath(path)
        for what, source in inputs:
            if real == source:
                raise ToolArgumentError(f'{option} {path} would write over {what} {source}, which this run reads: '
                                        f'choose another {option}')
            if osp.isdir(source) and _inside(real, source):
                raise ToolArgumentError(f'{option} {path} lies in {what} {source}, which this run reads: choose '
                                        f'a {option} outside it')


def config_inputs(cfg, config_path: str, loaders, checkpoint=None) -> list:
    """The inputs of a Runner tool: its config, the checkpoint it loads, the folders and files of its data sets."""
    inputs = [('the config', config_path), ('the checkpoint', checkpoint if checkpoint and '://' not in checkpoint
                                            else None)]
    for dataset in iter_datasets(cfg, loaders):
        inputs += [('the data set\'s', path) for path in dataset_paths(dataset) if osp.exists(path)]
    return inputs
