"""Running the scripts of tools/ in a fresh interpreter, as a user does (demos, ablation, tests)."""
import glob
import os.path as osp
import subprocess
import sys
import threading
from pathlib import Path

#: The repository root: tools/ and configs/ live there.
REPO = Path(__file__).resolve().parents[2]


def run_tool(*args, cwd=REPO, env=None, echo=False, timeout=None) -> subprocess.CompletedProcess:
    """Runs ``python ARGS...`` (this interpreter) and captures its text output.

    Args:
        *args: The script and its arguments (converted with ``str``).
        cwd (str | Path): Working directory. Default: the repository root.
        env (dict, optional): The environment; None inherits this one.
        echo (bool): Print the command and its output as it comes; stderr is
            then merged into stdout. Default: False.
        timeout (float, optional): Seconds before the process is killed and
            ``subprocess.TimeoutExpired`` is raised.

    Returns:
        subprocess.CompletedProcess: With ``returncode``, ``stdout`` and ``stderr``.
    """
    command = [sys.executable, *map(str, args)]
    if not echo:
        return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    print('$ python', ' '.join(command[1:]), flush=True)
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    expired = threading.Event()

    def kill():
        expired.set()
        process.kill()

    watchdog = threading.Timer(timeout, kill) if timeout is not None else None
    if watchdog is not None:
        watchdog.start()
    lines = []
    try:
        for line in process.stdout:
            print(line, end='', flush=True)
            lines.append(line)
        returncode = process.wait()
    finally:
        if watchdog is not None:
            watchdog.cancel()
    if expired.is_set():
        raise subprocess.TimeoutExpired(command, timeout, output=''.join(lines))
    return subprocess.CompletedProcess(command, returncode, ''.join(lines), '')


def run_tool_or_exit(*args, env=None) -> str:
    """:func:`run_tool` with echo; exits with the tool's name when it fails. Returns its output."""
    process = run_tool(*args, env=env, echo=True)
    if process.returncode != 0:
        sys.exit(f'error: {" ".join(map(str, args[:2]))} failed with exit code {process.returncode}')
    return process.stdout


def train_once(config: str, work_dir: str) -> str:
    """Trains ``config`` with tools/train.py unless ``work_dir`` already holds its final checkpoint.

    Returns:
        str: The checkpoint, relative to the repository root.
    """
    last = osp.join(REPO, work_dir, 'last_checkpoint')
    if osp.isfile(last):
        print(f'Reusing the trained model in {work_dir}; delete that directory to train again')
    else:
        # A run that stopped before its last checkpoint was recorded continues from its newest one.
        unfinished = glob.glob(osp.join(REPO, work_dir, '*.pth'))
        run_tool_or_exit('tools/train.py', config, '--work-dir', work_dir, *(['--resume'] if unfinished else []))
    with open(last) as f:
        return osp.relpath(f.read().strip(), REPO)
