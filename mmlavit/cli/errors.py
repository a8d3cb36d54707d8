"""How the tools end on an error the user fixes: ``error: MESSAGE`` and exit code 1, no traceback."""
import re
import sys
from contextlib import contextmanager

from mmlavit.models.errors import LaViTConfigError, LaViTInputError
from mmlavit.utils.checkpoint import CheckpointError
from .model_checks import ConfigError
from .runner import DatasetNotFoundError


class MissingDependencyError(ImportError):
    """An optional dependency a tool needs is not installed; the message says how to install it."""


class ToolArgumentError(ValueError):
    """A command-line argument that cannot work, e.g. an output path in a directory that does not exist."""


#: The errors whose message is all the user needs.
USER_ERRORS = (ConfigError, DatasetNotFoundError, CheckpointError, MissingDependencyError, ToolArgumentError,
               LaViTConfigError, LaViTInputError)
# How mmcv's LoadImageFromFile reports an image it cannot decode (also inside a DataLoader worker's traceback).
_UNDECODABLE_IMAGE = re.compile(r'failed to load image: (.+)$', re.MULTILINE)
# What mmengine's registry puts before the message of an error raised while it builds a class, once per level.
_REGISTRY_PREFIX = re.compile(r'^(class `\w+` in [\w/.]+\.py: )+')


def user_error_message(error: BaseException) -> str:
    """The message of a user error, without the registry's 'class `X` in path.py: ' prefixes."""
    return _REGISTRY_PREFIX.sub('', str(error))


@contextmanager
def exit_on_user_error():
    """Turns the errors a user fixes into ``error: MESSAGE`` and exit code 1.

    They are: a config that is missing, does not parse or does not fit LaViT
    (:class:`ConfigError`); a LaViT option or input LaViT refuses; a missing
    dataset or a cut-short annotation file; a checkpoint that is refused,
    incomplete, no checkpoint or does not fit the model; a missing optional
    dependency; an argument that cannot work; a dataset image that cannot be
    decoded. Such an image stops the run instead of being skipped, so that a
    model is trained and evaluated on the dataset its config names.
    """
    try:
        yield
    except USER_ERRORS as error:
        sys.exit(f'error: {user_error_message(error)}')
    except AssertionError as error:
        found = _UNDECODABLE_IMAGE.search(str(error))
        if found is None:
            raise
        sys.exit(f'error: image {found.group(1)} cannot be decoded: the file is damaged, cut short or not an '
                 f'image. Replace it, or remove it from the annotations, and run again (a training run continues '
                 f'from its last checkpoint with --resume).')
