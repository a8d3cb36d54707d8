"""What `make demo` and `make demo-seg` share: running the user-facing tools and training once."""
import os.path as osp
import subprocess
import sys

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def run_tool(*args: str) -> str:
    """Runs a tool of tools/ from the repository root, echoing its output as it comes and returning it."""
    print('$ python', ' '.join(args), flush=True)
    process = subprocess.Popen([sys.executable, *args], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in process.stdout:
        print(line, end='', flush=True)
        lines.append(line)
    if process.wait() != 0:
        sys.exit(f'error: {" ".join(args[:2])} failed with exit code {process.returncode}')
    return ''.join(lines)


def train_once(config: str, work_dir: str) -> str:
    """Trains ``config`` with tools/train.py unless ``work_dir`` already holds its final checkpoint.

    Returns:
        str: The checkpoint, relative to the repository root.
    """
    last = osp.join(REPO, work_dir, 'last_checkpoint')
    if osp.isfile(last):
        print(f'Reusing the trained model in {work_dir}; delete that directory to train again')
    else:
        run_tool('tools/train.py', config, '--work-dir', work_dir)
    with open(last) as f:
        return osp.relpath(f.read().strip(), REPO)
