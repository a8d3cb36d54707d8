"""The work dir of a training run: one run at a time, never over another run's checkpoints (tools/train.py).

Before the Runner is built, :func:`check_work_dir` checks what the folder
holds against what the run will do: a new run into a folder of checkpoints
stops (or, with ``--start-over``, moves them aside), and ``--resume`` finds
the checkpoint to continue from when ``last_checkpoint`` is missing or names
no complete file. :func:`lock_work_dir` then takes the folder's lock.
"""
import atexit
import glob
import json
import os
import os.path as osp
import re
import shutil
import socket
import time
from typing import Callable, List, Optional

from mmlavit.utils.checkpoint import IncompleteCheckpointError, incomplete_checkpoint_message, is_incomplete_checkpoint
from .errors import ToolArgumentError

#: The file that marks a work dir in use: the holder's pid, host and start time.
LOCK_NAME = '.train.lock'
_STEP = re.compile(r'(\d+)\.pth$')


class WorkDirError(ToolArgumentError):
    """A work dir that this run must not train into as things stand; the message names the choices."""


def checkpoints_in(work_dir: str) -> List[str]:
    """The checkpoints (``*.pth``) directly in a work dir, by the step in their name, then by modification time."""
    def order(path):
        found = _STEP.search(osp.basename(path))
        return int(found.group(1)) if found else -1, osp.getmtime(path)

    return sorted(glob.glob(osp.join(work_dir, '*.pth')), key=order)


def newest_complete_checkpoint(work_dir: str, exclude: Optional[str] = None) -> Optional[str]:
    """The complete checkpoint of the highest step in a work dir, or None."""
    return next((path for path in reversed(checkpoints_in(work_dir))
                 if path != exclude and not is_incomplete_checkpoint(path)), None)


def check_work_dir(cfg, resume: Optional[str], start_over: bool) -> None:
    """Checks ``cfg.work_dir`` for a training run; for ``--resume`` alone, sets ``cfg.load_from`` when the work
    dir's ``last_checkpoint`` is missing.

    Args:
        cfg (Config): The run's config, its ``work_dir`` set.
        resume (str, optional): ``'auto'`` for ``--resume`` without a path,
            a checkpoint for ``--resume PATH``, None for a new run.
        start_over (bool): ``--start-over``: a new run may go into a work dir
            that holds checkpoints (:func:`lock_work_dir` moves them aside).

    Raises:
        WorkDirError: The work dir is a file, holds another run's
            checkpoints (a new run without ``--start-over``), or holds no
            complete checkpoint to resume.
        IncompleteCheckpointError: ``last_checkpoint`` names an incomplete
            checkpoint (the message names the newest complete one).
    """
    work_dir = cfg.work_dir
    if osp.exists(work_dir) and not osp.isdir(work_dir):
        raise WorkDirError(f'--work-dir {work_dir} is a file: give a folder for the run\'s logs and checkpoints')
    checkpoints = checkpoints_in(work_dir) if osp.isdir(work_dir) else []
    record = osp.join(work_dir, 'last_checkpoint')
    if resume is None and (checkpoints or osp.isfile(record)) and not start_over:
        names = ', '.join(osp.basename(path) for path in checkpoints[-3:]) or 'last_checkpoint'
        raise WorkDirError(
            f'work dir {work_dir} holds the checkpoints of an earlier run ({names}'
            f'{" and more" if len(checkpoints) > 3 else ""}), which this run would write over: continue that run '
            f'with --resume, train into another --work-dir, or pass --start-over to move them into a subfolder of '
            f'{work_dir} and start a new run there')
    if resume != 'auto':
        return
    if not osp.isfile(record):
        latest = newest_complete_checkpoint(work_dir) if checkpoints else None
        if latest is None:
            raise WorkDirError(f'--resume continues the run in {work_dir}, which holds no complete checkpoint: '
                               f'train without --resume to start a run there, or name the work dir of the run to '
                               f'continue with --work-dir')
        print(f'{record} does not exist: resuming from the newest complete checkpoint, {latest}')
        cfg.load_from = latest
        return
    with open(record) as f:
        latest = f.read().strip()
    if latest and osp.isfile(latest) and not is_incomplete_checkpoint(latest):
        return
    previous = newest_complete_checkpoint(osp.dirname(latest) or work_dir, exclude=latest)
    fix = (f'Resume from the newest complete checkpoint instead: --resume {previous}' if previous else
           f'No complete checkpoint is left in {work_dir}: train without --resume to start over.')
    if latest and osp.isfile(latest):
        raise IncompleteCheckpointError(incomplete_checkpoint_message(latest, f'{record} names it. {fix}'))
    raise WorkDirError(f'--resume continues from the checkpoint that {record} names, and there is none at '
                       f'{latest!r}. {fix}')


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def lock_work_dir(cfg, resume: Optional[str], start_over: bool) -> Callable[[], None]:
    """Creates the work dir, takes its lock and, with ``--start-over``, moves the earlier run's checkpoints into
    a subfolder. A lock whose process on this host has ended is taken over, with a note.

    Returns:
        Callable: Releases the lock (also run at exit).

    Raises:
        WorkDirError: Another run holds the work dir.
    """
    work_dir = cfg.work_dir
    os.makedirs(work_dir, exist_ok=True)
    path = osp.join(work_dir, LOCK_NAME)
    holder = dict(pid=os.getpid(), host=socket.gethostname(), started=time.strftime('%Y-%m-%d %H:%M:%S'))
    while True:
        try:
            with open(path, 'x') as f:
                json.dump(holder, f)
            break
        except FileExistsError:
            try:
                with open(path) as f:
                    other = json.load(f)
            except (OSError, ValueError):
                other = {}
            if other.get('host') == holder['host'] and not _process_alive(other.get('pid', -1)):
                print(f'{work_dir} was locked by process {other.get("pid")}, which has ended: taking the lock over')
                os.remove(path)
                continue
            raise WorkDirError(
                f'work dir {work_dir} is in use by another run (process {other.get("pid", "?")} on host '
                f'{other.get("host", "?")}, since {other.get("started", "?")}): wait for it to end, or train into '
                f'another --work-dir. If that run is gone, remove {path}.') from None

    def release():
        try:
            with open(path) as f:
                if json.load(f).get('pid') == holder['pid']:
                    os.remove(path)
        except (OSError, ValueError):
            pass

    atexit.register(release)
    record = osp.join(work_dir, 'last_checkpoint')
    earlier = checkpoints_in(work_dir) + ([record] if osp.isfile(record) else [])
    if resume is None and start_over and earlier:
        aside = osp.join(work_dir, time.strftime('previous_run_%Y%m%d_%H%M%S'))
        os.makedirs(aside)
        for file in earlier:
            shutil.move(file, aside)
        print(f'--start-over: moved the earlier run\'s checkpoints into {aside}')
    return release
