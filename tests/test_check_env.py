"""tools/check_env.py names a torch older than mmlavit needs, and the way to a newer one."""
import importlib.util

import torch

from mmlavit.cli.tool_process import REPO


def load_check_env():
    spec = importlib.util.spec_from_file_location('check_env', REPO / 'tools' / 'check_env.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_installed_torch_passes(capsys):
    check_env = load_check_env()
    assert check_env.check('torch release', check_env.torch_release)
    assert f'[check] ok   torch release: torch {torch.__version__} (torch>=2.6)' in capsys.readouterr().out


def test_too_old_torch_is_named_with_the_fix(monkeypatch, capsys):
    check_env = load_check_env()
    monkeypatch.setattr(torch, '__version__', '2.5.1+cu124')
    assert not check_env.check('torch release', check_env.torch_release)
    out = capsys.readouterr().out
    assert '[check] FAIL torch release: RuntimeError: torch 2.5.1+cu124 is too old: mmlavit needs torch>=2.6' in out
    assert 'Install torch>=2.6 with the torchvision built for it' in out
