"""`pip install .` into an existing OpenMMLab environment: what the built metadata declares, and what the package
loads."""
import ast
import contextlib
import io
import subprocess
import sys
from email.parser import Parser
from setuptools import build_meta

import pytest
from packaging.requirements import Requirement

from mmlavit.cli.tool_process import REPO


@pytest.fixture(scope='module')
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope='module')
def metadata(tmp_path_factory, monkeypatch_module):
    out_dir = tmp_path_factory.mktemp('metadata')
    monkeypatch_module.chdir(REPO)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        dist_info = build_meta.prepare_metadata_for_build_wheel(str(out_dir))
    return Parser().parsestr((out_dir / dist_info / 'METADATA').read_text())


def requirements(metadata, extra=None):
    found = {}
    for line in metadata.get_all('Requires-Dist'):
        requirement = Requirement(line)
        in_extra = requirement.marker is not None and requirement.marker.evaluate({'extra': extra or ''})
        if (requirement.marker is None) == (extra is None) and (extra is None or in_extra):
            found[requirement.name] = requirement.specifier
    return found


def test_declares_the_openmmlab_stack_and_a_torch_floor(metadata):
    declared = requirements(metadata)
    assert {'mmengine', 'mmcv', 'mmdet', 'mmsegmentation', 'mmpretrain'} <= set(declared)
    assert str(declared['torch']) == '>=2.6' and 'torchvision' not in declared
    # mmdet 3.3.0 and mmseg 1.2.2 refuse mmcv >= 2.2.
    assert '2.1.0' in declared['mmcv'] and '2.2.0' not in declared['mmcv'] and '1.7.2' not in declared['mmcv']
    for name, version in [('mmengine', '0.10.7'), ('mmdet', '3.3.0'), ('mmsegmentation', '1.2.2'),
                          ('mmpretrain', '1.2.0')]:
        assert version in declared[name], (name, declared[name])


def test_deploy_extra_brings_onnx_and_onnxruntime(metadata):
    assert {'onnx', 'onnxruntime'} <= set(requirements(metadata, extra='deploy'))
    assert 'deploy' in metadata.get_all('Provides-Extra')


def test_license_file_matches_the_declared_license(metadata):
    assert metadata['License-Expression'] == 'Apache-2.0'
    assert 'Apache License' in (REPO / 'LICENSE').read_text() and 'Version 2.0' in (REPO / 'LICENSE').read_text()


def test_import_mmlavit_loads_the_core_only():
    """`import mmlavit`, with mmlavit.instance_tta as the Mask R-CNN configs import it: at most 2,000 lines of the
    package, nothing of the tools (mmlavit.cli), in a fresh interpreter."""
    probe = ('import sys, mmlavit, mmlavit.instance_tta\n'
             'print("\\n".join(f"{name} {module.__file__}" for name, module in sys.modules.items()\n'
             '                 if name == "mmlavit" or name.startswith("mmlavit.")))')
    process = subprocess.run([sys.executable, '-c', probe], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-2000:]
    loaded = dict(line.split(' ', 1) for line in process.stdout.strip().splitlines())
    assert not [name for name in loaded if name.startswith('mmlavit.cli')]
    lines = sum(len(open(path).read().splitlines()) for path in loaded.values())
    assert lines <= 2000, lines


def imports_between_modules():
    """{module: the package's modules it imports}, from the source: every import statement, also inside functions."""
    files = {'.'.join(path.relative_to(REPO).with_suffix('').parts[:-1 if path.name == '__init__.py' else None]): path
             for path in (REPO / 'mmlavit').rglob('*.py')}

    def known(name):
        while name and name not in files:
            name = name.rpartition('.')[0]
        return name

    graph = {}
    for module, path in files.items():
        package = module if path.name == '__init__.py' else module.rpartition('.')[0]
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ''
                if node.level:
                    parts = package.split('.')[:len(package.split('.')) - node.level + 1]
                    base = '.'.join(parts + ([base] if base else []))
                names = [base] + [f'{base}.{alias.name}' for alias in node.names]
            else:
                continue
            imported.update(known(name) for name in names if name.startswith('mmlavit'))
        graph[module] = imported - {module, ''}
    return graph


def test_no_import_cycle_among_the_package_modules():
    graph = imports_between_modules()
    assert 'mmlavit.models.lavit' in graph and 'mmlavit.models.pretrained' in graph['mmlavit.models.lavit']

    def reaches(start, target, seen):
        return any(module == target or (module not in seen and not seen.add(module) and reaches(module, target, seen))
                   for module in graph.get(start, ()))

    cycles = sorted(module for module in graph if reaches(module, module, set()))
    assert not cycles, cycles
