"""mmengine's CheckpointHook with checkpoints that are whole or absent (what tools/train.py trains with).

mmengine's hook removes the checkpoints beyond ``max_keep_ckpts`` (and the
previous best one) before it writes the new one, and writes the new one in
place: a full disk or a kill while it writes leaves no complete checkpoint.
This hook keeps every rule of mmengine's, but writes each checkpoint under a
temporary name in the same folder, flushes it to disk and renames it into
place; only then are the older checkpoints removed and ``last_checkpoint``
written. A full disk stops the run with one line naming the folder, its free
space and the last complete checkpoint.
"""
import errno
import functools
import os
import os.path as osp
import shutil
from contextlib import contextmanager

from mmengine.dist import is_main_process
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import CheckpointHook

from mmlavit.registry import HOOKS
from mmlavit.utils.checkpoint import CheckpointError


class _RemovalsAfterSave:
    """A file backend whose removals wait in a list until the save they belong to is complete."""

    def __init__(self, backend, removals):
        self._backend, self._removals = backend, removals

    def remove(self, path):
        self._removals.append(path)

    def __getattr__(self, name):
        return getattr(self._backend, name)


def _write_under_a_temporary_name(save, out_dir, filename, *args, **kwargs):
    """``runner.save_checkpoint`` into ``.FILENAME.partial``, flushed to disk, then renamed to FILENAME."""
    partial = f'.{filename}.partial'
    try:
        save(out_dir, partial, *args, **kwargs)
        if is_main_process():
            with open(osp.join(out_dir, partial), 'rb+') as f:
                os.fsync(f.fileno())
            os.replace(osp.join(out_dir, partial), osp.join(out_dir, filename))
    except BaseException:
        if is_main_process() and osp.exists(osp.join(out_dir, partial)):
            os.remove(osp.join(out_dir, partial))
        raise


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """mmengine's CheckpointHook (every argument of it) whose checkpoints are whole or absent."""

    @contextmanager
    def _saving(self, runner):
        if not isinstance(self.file_backend, LocalBackend):  # other backends write objects whole
            yield
            return
        removals, backend, save = [], self.file_backend, runner.save_checkpoint
        self.file_backend = _RemovalsAfterSave(backend, removals)
        runner.save_checkpoint = functools.partial(_write_under_a_temporary_name, save)
        try:
            yield
        except OSError as error:
            if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            free = shutil.disk_usage(self.out_dir).free / 2**20
            last = runner.message_hub.get_info('last_ckpt')
            recorded = osp.join(runner.work_dir, 'last_checkpoint')
            latest = open(recorded).read().strip() if osp.isfile(recorded) else None
            raise CheckpointError(
                f'no space left to save a checkpoint in {self.out_dir} ({free:.0f} MiB free): the run stopped, and '
                f'{osp.basename(last)} was not written. ' + (
                    f'The last complete checkpoint is {latest}; free some space and continue with --resume.'
                    if latest else 'No checkpoint of this run is complete yet.')) from None
        finally:
            del runner.save_checkpoint
            self.file_backend = backend
        if is_main_process():
            for path in removals:
                if backend.isfile(path):
                    backend.remove(path)

    def _save_checkpoint_with_step(self, runner, step, meta):
        with self._saving(runner):
            super()._save_checkpoint_with_step(runner, step, meta)

    def _save_best_checkpoint(self, runner, metrics):
        with self._saving(runner):
            super()._save_best_checkpoint(runner, metrics)
