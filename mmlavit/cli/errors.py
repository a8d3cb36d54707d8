"""How the tools end on an error the user fixes: ``error: MESSAGE`` and exit code 1, no traceback."""
import re
import sys
from contextlib import contextmanager

from mmlavit.utils import CheckpointError
from .runner import DatasetNotFoundError


class MissingDependencyError(ImportError):
    """An optional dependency a tool needs is not installed; the message says how to install it."""


# How mmcv's LoadImageFromFile reports an image it cannot decode (also inside a DataLoader worker's traceback).
_UNDECODABLE_IMAGE = re.compile(r'failed to load image: (.+)$', re.MULTILINE)


@contextmanager
def exit_on_user_error():
    """Turns the errors a user fixes into ``error: MESSAGE`` and exit code 1.

    They are: a missing dataset; a checkpoint that is refused, incomplete or no
    checkpoint; a missing optional dependency; a dataset image that cannot be
    decoded. Such an image stops the run instead of being skipped, so that a
    model is trained and evaluated on the dataset its config names.
    """
    try:
        yield
    except (DatasetNotFoundError, CheckpointError, MissingDependencyError) as error:
        sys.exit(f'error: {error}')
    except AssertionError as error:
        found = _UNDECODABLE_IMAGE.search(str(error))
        if found is None:
            raise
        sys.exit(f'error: image {found.group(1)} cannot be decoded: the file is damaged, cut short or not an '
                 f'image. Replace it, or remove it from the annotations, and run again (a training run continues '
                 f'from its last checkpoint with --resume).')
