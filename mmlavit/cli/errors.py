"""How the tools end on an error the user fixes: ``error: MESSAGE`` and exit code 1, no traceback."""
import re
import sys
from contextlib import contextmanager

from mmlavit.engine.dp_loss_hook import TrainingDivergedError
from mmlavit.models.errors import LaViTConfigError, LaViTInputError
from mmlavit.utils.checkpoint import CheckpointError
from .datasets import DataCheckError, DatasetNotFoundError
from .model_checks import ConfigError


class MissingDependencyError(ImportError):
    """An optional dependency a tool needs is not installed; the message says how to install it."""


class ToolArgumentError(ValueError):
    """A command-line argument that cannot work, e.g. an output path in a directory that does not exist."""


#: The errors whose message is all the user needs.
USER_ERRORS = (ConfigError, DatasetNotFoundError, DataCheckError, CheckpointError, MissingDependencyError,
               ToolArgumentError, LaViTConfigError, LaViTInputError, TrainingDivergedError)
# How mmcv's LoadImageFromFile reports an image it cannot decode (also inside a DataLoader worker's traceback).
_UNDECODABLE_IMAGE = re.compile(r'failed to load image: (.+)$', re.MULTILINE)
# What mmengine's registry puts before the message of an error raised while it builds a class, once per level.
_REGISTRY_PREFIX = re.compile(r'^(class `\w+` in [\w/.]+\.py: )+')
# How torch's allocators report memory they cannot get.
_OUT_OF_MEMORY = re.compile(r"not enough memory|can't allocate memory|out of memory", re.IGNORECASE)


def user_error_message(error: BaseException) -> str:
    """The message of a user error, without the registry's 'class `X` in path.py: ' prefixes."""
    return _REGISTRY_PREFIX.sub('', str(error))


@contextmanager
def exit_on_user_error():
    """Turns the errors a user fixes into ``error: MESSAGE`` and exit code 1.

    They are: a config that is missing, does not parse or does not fit LaViT
    (:class:`ConfigError`); a LaViT option or input LaViT refuses; a missing
    dataset, a cut-short annotation file or data the run would use wrongly; a
    checkpoint that is refused, incomplete, no checkpoint or does not fit the
    model; a missing optional dependency; an argument that cannot work; a
    diverged run; a dataset image that cannot be decoded (it stops the run
    instead of being skipped, so that a model is trained and evaluated on the
    dataset its config names); and memory the machine cannot give, with how
    to need less.
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
    except (RuntimeError, MemoryError) as error:
        if isinstance(error, RuntimeError) and not _OUT_OF_MEMORY.search(str(error)):
            raise
        sys.exit(f'error: out of memory ({str(error).splitlines()[0] if str(error) else type(error).__name__}). '
                 f'Smaller inputs need less: resize the images in the test pipeline (its Resize scale), or, for a '
                 f'segmentor, predict in sliding windows (--cfg-options model.test_cfg.mode=slide '
                 f'model.test_cfg.crop_size="(512,512)" model.test_cfg.stride="(341,341)"); in training, a smaller '
                 f'batch (train_dataloader.batch_size) or with_cp=True in model.backbone.')
