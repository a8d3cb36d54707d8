"""Self-check of the installed stack: fails loudly when a piece the project needs does not work.

Checks torch against the release mmlavit needs (its ``torch>=`` requirement), runs mmcv's compiled
ops and torchvision's nms on CPU and imports the model zoos of mmdet, mmseg and mmpretrain, which is
where a broken install (an mmcv wheel without ``_ext``, a torchvision built for another torch) shows
itself.
"""
import sys
from importlib.metadata import requires


def check(name, fn):
    try:
        detail = fn()
    except Exception as exc:  # noqa: BLE001 - every failure is reported, then we exit non-zero
        print(f'[check] FAIL {name}: {type(exc).__name__}: {exc}')
        return False
    print(f'[check] ok   {name}{": " + detail if detail else ""}')
    return True


def torch_release():
    import torch
    from packaging.requirements import Requirement
    from packaging.version import Version
    [needed] = [Requirement(line) for line in requires('mmlavit') if Requirement(line).name == 'torch']
    version = Version(torch.__version__)
    if not needed.specifier.contains(version, prereleases=True):
        raise RuntimeError(
            f'torch {torch.__version__} is too old: mmlavit needs {needed} (its weights-only checkpoint loading). '
            f'Install torch{needed.specifier} with the torchvision built for it, then mmcv with ops for that torch '
            f'(mim install "mmcv>=2.0.0,<2.2.0").')
    return f'torch {torch.__version__} ({needed})'


def mmcv_ops():
    import torch
    from mmcv.ops import RoIAlign, nms
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [50., 50., 60., 60.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    _, keep = nms(boxes, scores, 0.5)
    assert keep.tolist() == [0, 2], keep
    feats = torch.rand(1, 4, 16, 16)
    rois = torch.tensor([[0., 0., 0., 8., 8.]])
    out = RoIAlign((2, 2), 1.0, 2)(feats, rois)
    assert out.shape == (1, 4, 2, 2), out.shape
    import mmcv
    return f'mmcv {mmcv.__version__}, nms and RoIAlign ran'


def torchvision_ops():
    import torch
    import torchvision
    from torchvision.ops import nms
    keep = nms(torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.]]), torch.tensor([0.9, 0.8]), 0.5)
    assert keep.tolist() == [0], keep
    return f'torch {torch.__version__}, torchvision {torchvision.__version__}'


def model_zoos():
    import mmdet
    import mmdet.models  # noqa: F401
    import mmpretrain
    import mmpretrain.models  # noqa: F401
    import mmseg
    import mmseg.models  # noqa: F401
    return f'mmdet {mmdet.__version__}, mmseg {mmseg.__version__}, mmpretrain {mmpretrain.__version__}'


def lavit():
    from mmdet.registry import MODELS

    import mmlavit
    assert MODELS.get('mmlavit.LaViT') is mmlavit.LaViT
    return 'mmlavit.LaViT registered'


def main():
    results = [check('torch release', torch_release), check('mmcv.ops on CPU', mmcv_ops),
               check('torchvision.ops.nms on CPU', torchvision_ops),
               check('mmdet/mmseg/mmpretrain models import', model_zoos), check('mmlavit', lavit)]
    if not all(results):
        print('[check] the environment is broken: rerun `make install` after `rm -rf .venv`')
        sys.exit(1)


if __name__ == '__main__':
    main()
