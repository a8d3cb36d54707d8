"""Runs the project's tools as a user does: a fresh interpreter in the repository root."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_tool(*args, cwd=REPO, env=None) -> subprocess.CompletedProcess:
    """``python ARGS...`` with captured text output; ``env=None`` inherits the environment."""
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=900)
