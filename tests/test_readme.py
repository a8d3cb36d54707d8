"""The README and the pages of docs/, followed literally: their commands exist as written, the cheap ones run,
their links resolve."""
import os
import os.path as osp
import re
import shlex
import subprocess
import sys
from functools import lru_cache

import pytest

from mmlavit.cli.tool_process import REPO
from tool_calls import call_tool

#: The documentation: the README and every page of docs/, relative to the repository root.
PAGES = ['README.md'] + sorted(str(path.relative_to(REPO)) for path in (REPO / 'docs').glob('*.md'))
#: Commands of the pages cheap enough to run verbatim here (in the shell the README sets up).
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
    process = call_tool(script, '--help')
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


def text_of(page):
    return (REPO / page).read_text()


def page_commands():
    """(page, command) for every command of every page."""
    return [(page, command) for page in PAGES for command in commands(text_of(page))]


def test_pages_have_the_commands_they_are_checked_with():
    assert commands(text_of('README.md')), 'no ```bash blocks found'
    every_command = {command for _, command in page_commands()}
    for command in RUN_VERBATIM:
        assert command in every_command, command


@pytest.mark.parametrize('page,command', page_commands())
def test_every_command_names_what_exists(page, command):
    tokens = [token.strip('[]') for token in shlex.split(command)]
    tokens = [token for token in tokens if token and not re.match(r'^[A-Z_]+=', token)]  # env assignments
    if not tokens or tokens[0] in ('export', 'mkdir'):
        return
    if any(token.startswith('$') and token.endswith('.py') for token in tokens):  # another project's tool
        check_paths(tokens, command)
        return
    if tokens[0] == 'make':
        assert set(tokens[1:]) <= make_targets(), command
        return
    if tokens[0] in ('source', 'pip', 'mim', 'git', 'cd'):
        if tokens[0] == 'source':
            assert (REPO / tokens[1]).parent.name == 'bin' and tokens[1].startswith('.venv/'), command
        if tokens[0] == 'mim':
            check_paths(tokens[1:], command)
        return
    script = script_of(tokens)
    assert script is not None, f'a command of {page} that is neither make nor a tool: {command}'
    assert (REPO / script).is_file(), command
    if tokens[0] not in ('python', 'bash') and not script.endswith('.sh'):
        pytest.fail(f'run tools with `python` (the activated environment): {command}')
    check_paths(tokens[tokens.index(script) + 1:], command)
    options = [token.split('=')[0] for token in tokens if token.startswith('--')]
    if script.endswith('.py') and options:
        usage = help_text(script)
        for option in options:
            assert re.search(rf'{re.escape(option)}\b', usage), f'{script} has no option {option}'


def check_paths(tokens, command):
    """The configs/ and tools/ paths among ``tokens`` (also as ``key=PATH``) exist."""
    for token in tokens:
        for path in expand_braces(token.split('=', 1)[-1]):
            if path.startswith(('configs/', 'tools/')):
                assert (REPO / path).exists(), f'{path} in: {command}'


@pytest.mark.slow
@pytest.mark.parametrize('command', RUN_VERBATIM)
def test_cheap_commands_run_as_written(command):
    process = subprocess.run(command, shell=True, cwd=REPO, env=activated_env(), capture_output=True, text=True,
                             timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]


def anchors(page):
    """The anchors GitHub gives the headings of ``page``."""
    return {re.sub(r'[^\w\- ]', '', heading).strip().lower().replace(' ', '-')
            for heading in re.findall(r'^#+ (.+)$', text_of(page), flags=re.M)}


@pytest.mark.parametrize('page', PAGES)
def test_relative_links_resolve(page):
    for target in re.findall(r'\]\(([^)\s]+)\)', text_of(page)):
        if target.startswith(('http://', 'https://')):
            continue
        path, _, anchor = target.partition('#')
        linked = osp.normpath(osp.join(osp.dirname(page), path)) if path else page
        assert (REPO / linked).exists(), f'{target} in {page}'
        if anchor:
            assert anchor in anchors(linked), f'{target} in {page}'


def test_every_page_is_linked_from_the_readme():
    linked = {osp.normpath(target.split('#')[0]) for target in re.findall(r'\]\(([^)\s#]+)', text_of('README.md'))}
    assert set(PAGES[1:]) <= linked, set(PAGES[1:]) - linked


@pytest.mark.parametrize('page', PAGES)
def test_paths_named_in_the_text_exist(page):
    """Every `configs/...` and `tools/...` path a page names in inline code exists (one brace group expanded)."""
    for named in re.findall(r'`((?:configs|tools)/[^`\s*]+)`', text_of(page)):
        for path in expand_braces(named):
            assert (REPO / path).exists(), f'{path} in {page}'
