"""The README, followed literally: its commands exist as written, the cheap ones run, its links resolve."""
import os
import re
import shlex
import subprocess
import sys
from functools import lru_cache

import pytest

from mmlavit.cli.tool_process import REPO

README = (REPO / 'README.md').read_text()
#: README commands cheap enough to run verbatim here (in the shell the README sets up).
RUN_VERBATIM = (
    'python tools/get_flops.py --shape 512 683 --models lavit-t swin-t',
)


def shell_blocks(text):
    """The fenced ```bash blocks of a markdown text."""
    return re.findall(r'```bash\n(.*?)```', text, flags=re.S)


def commands(text):
    """Each command of the bash blocks: continuation lines joined, comments dropped."""
    found = []
    for block in shell_blocks(text):
        for line in block.replace('\\\n', ' ').splitlines():
            line = line.split(' #')[0].strip()
            if line and not line.startswith('#'):
                found.append(line)
    return found


def expand_braces(token):
    """'configs/x_{t,s}.py' -> ['configs/x_t.py', 'configs/x_s.py'] (one brace group)."""
    match = re.search(r'\{([^{}]*,[^{}]*)\}', token)
    if not match:
        return [token]
    return [token[:match.start()] + part + token[match.end():] for part in match.group(1).split(',')]


def activated_env():
    """The environment after `source .venv/bin/activate`: the interpreter running the tests first on PATH."""
    return dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ['PATH'],
                VIRTUAL_ENV=os.path.dirname(os.path.dirname(sys.executable)))


@lru_cache(maxsize=None)
def help_text(script):
    process = subprocess.run([sys.executable, script, '--help'], cwd=REPO, capture_output=True, text=True,
                             timeout=300)
    assert process.returncode == 0, f'{script} --help failed:\n{process.stderr[-2000:]}'
    return process.stdout


def make_targets():
    return set(re.findall(r'^([\w-]+):', (REPO / 'Makefile').read_text(), flags=re.M))


def script_of(tokens):
    """The tools/ script a command runs (python tools/x.py, tools/x.sh, .venv/bin/python tools/x.py)."""
    for token in tokens:
        if token.startswith('tools/'):
            return token
    return None


def test_readme_has_the_commands_it_is_checked_with():
    assert commands(README), 'no ```bash blocks found'
    for command in RUN_VERBATIM:
        assert command in commands(README), command


@pytest.mark.parametrize('command', commands(README))
def test_every_command_names_what_exists(command):
    tokens = [token.strip('[]') for token in shlex.split(command)]
    tokens = [token for token in tokens if token and not re.match(r'^[A-Z_]+=', token)]  # env assignments
    if tokens[0] == 'make':
        assert set(tokens[1:]) <= make_targets(), command
        return
    if tokens[0] in ('source', 'pip', 'mim', 'git', 'cd'):
        if tokens[0] == 'source':
            assert (REPO / tokens[1]).parent.name == 'bin' and tokens[1].startswith('.venv/'), command
        return
    script = script_of(tokens)
    assert script is not None, f'a README command that is neither make nor a tool: {command}'
    assert (REPO / script).is_file(), command
    if tokens[0] not in ('python', 'bash') and not script.endswith('.sh'):
        pytest.fail(f'run tools with `python` (the activated environment): {command}')
    for token in tokens[tokens.index(script) + 1:]:
        for path in expand_braces(token.split('=', 1)[-1]):
            if path.startswith(('configs/', 'tools/')):
                assert (REPO / path).exists(), f'{path} in: {command}'
    if script.endswith('.py'):
        options = [token.split('=')[0] for token in tokens if token.startswith('--')]
        usage = help_text(script)
        for option in options:
            assert re.search(rf'{re.escape(option)}\b', usage), f'{script} has no option {option}'


@pytest.mark.parametrize('command', RUN_VERBATIM)
def test_cheap_commands_run_as_written(command):
    process = subprocess.run(command, shell=True, cwd=REPO, env=activated_env(), capture_output=True, text=True,
                             timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]


def test_launchers_use_the_activated_interpreter(tmp_path):
    """tools/dist_*.sh run `python` from PATH (the activated environment) unless PYTHON names another."""
    script = tmp_path / 'prefix.py'
    script.write_text('import sys\nprint("prefix", sys.prefix)\n')
    env = dict(activated_env(), PORT=str(29500 + os.getpid() % 1000 + 7))
    env.pop('PYTHON', None)
    process = subprocess.run(['bash', 'tools/dist_launch.sh', '1', str(script)], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 0, process.stderr[-2000:]
    assert f'prefix {sys.prefix}' in process.stdout


def test_relative_links_resolve():
    anchors = {re.sub(r'[^\w\- ]', '', heading).strip().lower().replace(' ', '-')
               for heading in re.findall(r'^#+ (.+)$', README, flags=re.M)}
    for target in re.findall(r'\]\(([^)\s]+)\)', README):
        if target.startswith(('http://', 'https://')):
            continue
        if target.startswith('#'):
            assert target[1:] in anchors, target
        else:
            assert (REPO / target.split('#')[0]).exists(), target
