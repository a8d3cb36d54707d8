"""`pip install .` into an existing OpenMMLab environment: what the built metadata declares."""
import contextlib
import io
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
