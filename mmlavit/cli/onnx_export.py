"""ONNX export of a LaViT model's tensor path, checked with ONNX Runtime at several input sizes (tools/export_onnx.py).

Exports, with dynamic batch, height and width, either the backbone alone
(image -> its stage features) or the model's tensor path (``--part model``):

- a segmentor (EncoderDecoder): image -> per-pixel class logits at the input
  size (backbone, neck, decode head, bilinear resize);
- a single-stage detector (RetinaNet): image -> its head's per-level class
  and box maps;
- a two-stage detector (Mask R-CNN): image -> the neck's (FPN) features; the
  RoI stages need NMS and RoIAlign;
- an image classifier: image -> class logits.

Post-processing (box decoding, NMS, mask pasting, argmax) stays out; mmdeploy
is the route for a full detector. The input is the image as the model's data
preprocessor hands it over: float32 NCHW, normalised and in its channel
order. Any height and width of at least 32 pixels, with no padding to a
multiple.

The model is captured by ``torch.export`` with symbolic batch, height and
width and translated by ``torch.onnx.export(..., dynamo=True)``; square
``nn.AdaptiveAvgPool2d`` modules of the heads (UperNet's pyramid pooling) are
replaced in the exported copy by the averaging matrices LaViT pools with. A
graph can still hold a size that only fits the traced example (a pooling
window or a padding computed from it), so after writing the file the tool
runs ONNX Runtime (CPU) at the export size (batch 2) and at the check sizes
(batch 1), prints the largest absolute difference to PyTorch per output, and
exits non-zero if any exceeds ``--rtol`` times the largest absolute value of
that output. ``--exporter torchscript`` exports with the TorchScript tracer
(``torch.onnx.export(..., dynamo=False)``, opset 17), the exporter mmdeploy
1.3 calls; it is checked the same way.

    python tools/export_onnx.py configs/demo/upernet_lavit_t_shapes_ade.py --out lavit_upernet.onnx
    python tools/export_onnx.py CONFIG CHECKPOINT --part backbone --out backbone.onnx --check-sizes 161x97
"""
import argparse
import copy
import inspect
import sys
import time
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import DictAction
from torch.nn.modules.utils import _pair

from mmlavit.models.grid import adaptive_avg_pool
from .errors import MissingDependencyError, ToolArgumentError
from .outputs import check_outputs
from .runner import add_allow_partial_option, build_model

#: The example batch that is traced: 2, since torch.export specialises a size of 1.
EXPORT_BATCH = 2
#: The example height and width that are traced (any size gives the same graph up to which of
#: two equivalent products the attention picks; see PooledAttention.folds_projections).
DEFAULT_SHAPE = (224, 288)
#: An odd, non-square size that every check includes.
ODD_SIZE = (161, 97)
DETECTION_SIZE = (800, 1333)
SEGMENTATION_SIZE = (512, 683)


def parse_size(text: str) -> Tuple[int, int]:
    """'800x1333' -> (800, 1333) (height, width)."""
    height, width = text.lower().split('x')
    return int(height), int(width)


class ExportableAdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d(P)`` as averaging matrices, which export with symbolic sizes.

    Stands in, in the exported copy only, for the adaptive pooling of heads
    such as UperNet's pyramid pooling module, whose windows ``torch.export``
    would otherwise freeze at the example's size.
    """

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, x):
        return adaptive_avg_pool(x, self.size)


def exportable_copy(module: nn.Module) -> nn.Module:
    """A deep copy with every square ``nn.AdaptiveAvgPool2d`` replaced by the matrix form."""
    module = copy.deepcopy(module)
    for parent in module.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.AdaptiveAvgPool2d):
                height, width = _pair(child.output_size)
                if isinstance(height, int) and height == width:
                    setattr(parent, name, ExportableAdaptiveAvgPool2d(height))
    return module


class SegmentationLogits(nn.Module):
    """Image -> per-pixel class logits (B, classes, H, W) of an EncoderDecoder, as its whole inference."""

    def __init__(self, segmentor):
        super().__init__()
        self.segmentor = segmentor

    def forward(self, image):
        head = self.segmentor.decode_head
        logits = head(self.segmentor.extract_feat(image))
        return F.interpolate(logits, size=image.shape[2:], mode='bilinear', align_corners=head.align_corners)


class DenseHeadMaps(nn.Module):
    """Image -> a single-stage detector head's maps, flattened: every output kind for every level."""

    def __init__(self, detector):
        super().__init__()
        self.detector = detector

    def forward(self, image):
        kinds = self.detector.bbox_head(self.detector.extract_feat(image))
        return tuple(level for kind in kinds for level in kind)


class BackboneFeatures(nn.Module):
    """Image -> a backbone's stage features."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, image):
        return tuple(self.backbone(image))


class NeckFeatures(nn.Module):
    """Image -> a detector's neck (FPN) features."""

    def __init__(self, detector):
        super().__init__()
        self.detector = detector

    def forward(self, image):
        return tuple(self.detector.extract_feat(image))


class ClassLogits(nn.Module):
    """Image -> an image classifier's class logits (B, classes)."""

    def __init__(self, classifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, image):
        return self.classifier.head(self.classifier.extract_feat(image))


def tensor_path(model: nn.Module, part: str) -> Tuple[nn.Module, List[str], str]:
    """What is exported of ``model``.

    Args:
        model (nn.Module): A segmentor, detector or classifier built from a config.
        part (str): 'backbone' or 'model'.

    Returns:
        tuple: The module (image -> tensors), its output names and a description.
    """
    # The task packages are imported only when a config's model is exported.
    from mmdet.models.detectors import SingleStageDetector, TwoStageDetector
    from mmpretrain.models.classifiers import ImageClassifier
    from mmseg.models.segmentors import EncoderDecoder

    if part == 'backbone':
        names = [f'stage{index + 1}' for index in model.backbone.out_indices]
        return BackboneFeatures(model.backbone), names, 'image -> backbone stage features'
    if isinstance(model, EncoderDecoder) and not isinstance(model.decode_head, nn.ModuleList):
        return SegmentationLogits(model), ['seg_logits'], 'image -> per-pixel class logits at the input size'
    probe = torch.rand(1, 3, 64, 64)
    if isinstance(model, SingleStageDetector):
        # Named after the head's predict_by_feat arguments, e.g. cls_scores_0 ... bbox_preds_4.
        kinds = inspect.signature(model.bbox_head.predict_by_feat).parameters
        with torch.no_grad():
            maps = model.bbox_head(model.extract_feat(probe))
        names = [f'{kind}_{level}' for kind, levels in zip(kinds, maps) for level in range(len(levels))]
        return DenseHeadMaps(model), names, 'image -> per-level detection head maps (before decoding and NMS)'
    if isinstance(model, TwoStageDetector):
        with torch.no_grad():
            num_levels = len(model.extract_feat(probe))
        return (NeckFeatures(model), [f'neck_{level}' for level in range(num_levels)],
                'image -> neck (FPN) features; the RoI stages need NMS and RoIAlign')
    if isinstance(model, ImageClassifier) and model.with_head:
        return ClassLogits(model), ['cls_score'], 'image -> class logits'
    raise TypeError(f'--part model exports segmentors (EncoderDecoder), single-stage and two-stage detectors '
                    f'and image classifiers, not {type(model).__name__}; --part backbone exports its backbone')


#: The ONNX exporters: torch.export with the dynamo translator, or the TorchScript tracer that mmdeploy uses.
EXPORTERS = ('dynamo', 'torchscript')


def export_onnx(module: nn.Module, path: str, shape: Sequence[int] = DEFAULT_SHAPE,
                output_names: Sequence[str] = None, opset_version: int = None, exporter: str = 'dynamo') -> int:
    """Exports image -> tensors to ONNX with dynamic batch, height and width.

    Args:
        module (nn.Module): Takes one NCHW image batch; in eval mode.
        path (str): The .onnx file to write.
        shape (Sequence[int]): The example (height, width) traced.
        output_names (Sequence[str], optional): Names of the graph outputs.
        opset_version (int, optional): ONNX opset; None takes the exporter's default (17 for TorchScript).
        exporter (str): 'dynamo': ``torch.export`` with symbolic sizes, translated by
            ``torch.onnx.export(..., dynamo=True)``; 'torchscript': ``torch.onnx.export(..., dynamo=False)``,
            the tracer mmdeploy 1.3 calls, which records sizes as values. Default: 'dynamo'.

    Returns:
        int: The opset of the file written.
    """
    example = torch.randn(EXPORT_BATCH, 3, *shape)
    with torch.no_grad():
        if exporter == 'torchscript':
            outputs = module(example)
            outputs = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
            axes = {name: {0: 'batch', **({out.dim() - 2: f'{name}_height', out.dim() - 1: f'{name}_width'}
                                          if out.dim() >= 3 else {})} for name, out in zip(output_names, outputs)}
            opset_version = opset_version or 17
            torch.onnx.export(module, (example, ), str(path), input_names=['image'], output_names=output_names,
                              dynamic_axes={'image': {0: 'batch', 2: 'height', 3: 'width'}, **axes},
                              opset_version=opset_version, dynamo=False)
            return opset_version
        dynamic = torch.export.Dim.DYNAMIC
        # One non-strict capture whose errors surface as they are (torch.onnx.export would retry strict).
        program = torch.export.export(module, (example, ), dynamic_shapes={'image': {0: dynamic, 2: dynamic,
                                                                                      3: dynamic}}, strict=False)
        onnx_program = torch.onnx.export(program, input_names=['image'], output_names=output_names,
                                         opset_version=opset_version, dynamo=True, verbose=False)
    onnx_program.save(str(path))
    return next(entry.version for entry in onnx_program.model_proto.opset_import if entry.domain == '')


def require_deploy():
    """The onnxruntime module, once onnx, onnxscript and onnxruntime (the ``deploy`` extra) all import."""
    try:
        import onnx  # noqa: F401  torch.onnx.export(dynamo=True) writes with onnx and onnxscript
        import onnxruntime
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise MissingDependencyError(f'{error.name} is not installed: ONNX export and its check need onnx, '
                                     f'onnxscript and onnxruntime. pip install -e ".[deploy]" installs them '
                                     f'(or pip install -r requirements.txt)') from error
    return onnxruntime


def onnxruntime_session(path: str, threads: int = 0):
    """A CPU ONNX Runtime ``InferenceSession``; ``threads`` intra-op threads (0: ONNX Runtime's default)."""
    onnxruntime = require_deploy()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])


def compare(session, module: nn.Module, output_names: Sequence[str], image: torch.Tensor) -> List[dict]:
    """ONNX Runtime against PyTorch on one batch: per output, the shape, max |diff| and max |output|."""
    with torch.no_grad():
        expected = module(image)
    expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
    outputs = session.run(list(output_names), {'image': image.numpy()})
    rows = []
    for name, reference, output in zip(output_names, expected, outputs):
        reference = reference.numpy()
        if output.shape != reference.shape:
            raise AssertionError(f'{name}: ONNX Runtime gives shape {output.shape}, PyTorch {reference.shape}')
        rows.append(dict(output=name, shape=tuple(reference.shape),
                         max_abs_diff=float(np.abs(output - reference).max()),
                         max_abs=float(np.abs(reference).max())))
    return rows


def check(path: str, module: nn.Module, output_names: Sequence[str], export_shape: Sequence[int],
          sizes: Sequence[Sequence[int]], rtol: float, seed: int = 0) -> List[dict]:
    """Runs ONNX Runtime on ``path`` at the export size (batch 2) and ``sizes`` (batch 1) against PyTorch.

    Returns:
        list[dict]: One row per size and output with ``size``, ``batch``,
        ``shape``, ``max_abs_diff``, ``max_abs``, ``relative`` (diff / max
        |output|) and ``ok`` (relative <= rtol).
    """
    session = onnxruntime_session(path)
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for batch, size in [(EXPORT_BATCH, tuple(export_shape))] + [(1, tuple(size)) for size in sizes]:
        image = torch.randn(batch, 3, *size, generator=generator)
        for row in compare(session, module, output_names, image):
            relative = row['max_abs_diff'] / max(row['max_abs'], 1e-12)
            rows.append(dict(row, size=f'{size[0]}x{size[1]}', batch=batch, relative=relative,
                             ok=relative <= rtol))
    return rows


def format_check(rows: Sequence[dict], rtol: float) -> str:
    """The check's table (markdown)."""
    lines = [f'ONNX Runtime (CPU) against PyTorch; tolerance: max |difference| <= {rtol:g} x max |PyTorch output|',
             '', '| size | batch | output | shape | max abs diff | max abs output | diff / max | ok |',
             '|---|---:|---|---|---:|---:|---:|---|']
    lines += [f'| {row["size"]} | {row["batch"]} | {row["output"]} | {"x".join(map(str, row["shape"]))} '
              f'| {row["max_abs_diff"]:.2e} | {row["max_abs"]:.3g} | {row["relative"]:.1e} '
              f'| {"yes" if row["ok"] else "NO"} |' for row in rows]
    return '\n'.join(lines)


def default_check_sizes(model: nn.Module) -> List[Tuple[int, int]]:
    """161x97 and 800x1333 for a detector, 161x97 and 512x683 otherwise."""
    from mmdet.models.detectors import BaseDetector
    return [ODD_SIZE, DETECTION_SIZE if isinstance(model, BaseDetector) else SEGMENTATION_SIZE]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', nargs='?', help='checkpoint file (default: the weights as built)')
    parser.add_argument('--out', required=True, help='the .onnx file to write')
    parser.add_argument('--part', choices=['model', 'backbone'], default='model',
                        help='the whole tensor path (default) or the backbone alone')
    parser.add_argument('--shape', type=parse_size, default=DEFAULT_SHAPE, metavar='HxW',
                        help='example size traced (default: 224x288); the graph takes any size')
    parser.add_argument('--check-sizes', type=parse_size, nargs='+', metavar='HxW',
                        help='sizes checked besides the export size (default: 161x97 and 800x1333 for '
                             'detectors, 161x97 and 512x683 otherwise)')
    parser.add_argument('--rtol', type=float, default=1e-4,
                        help='largest max |difference| allowed, relative to max |PyTorch output|')
    parser.add_argument('--opset', type=int, help='ONNX opset (default: the exporter\'s)')
    parser.add_argument('--exporter', choices=EXPORTERS, default='dynamo',
                        help='dynamo (torch.export, the default) or torchscript (torch.onnx.export(..., '
                             'dynamo=False), the exporter mmdeploy uses)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings')
    add_allow_partial_option(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    check_outputs([('--out', args.out)], [('the config', args.config), ('the checkpoint', args.checkpoint)])
    out_dir = Path(args.out).parent
    if not out_dir.is_dir():
        raise ToolArgumentError(f'--out {args.out}: the directory {out_dir} does not exist; create it first')
    require_deploy()  # before the model is built and exported
    torch.manual_seed(0)
    model = build_model(args.config, args.checkpoint, args.cfg_options, args.allow_partial_checkpoint)
    module, output_names, description = tensor_path(model, args.part)
    sizes = args.check_sizes or default_check_sizes(model)
    start = time.perf_counter()
    opset = export_onnx(exportable_copy(module), args.out, args.shape, output_names, args.opset, args.exporter)
    print(f'Wrote {args.out} ({Path(args.out).stat().st_size / 2**20:.1f} MiB, opset {opset}, '
          f'{time.perf_counter() - start:.0f} s): {description}.')
    print('Input "image": (batch, 3, height, width) float32 as the data preprocessor gives it '
          '(normalised); dynamic batch, height and width (>= 32).')
    print(f'Outputs: {", ".join(output_names)}.\n')
    rows = check(args.out, module, output_names, args.shape, sizes, args.rtol)
    print(format_check(rows, args.rtol))
    failed = [row for row in rows if not row['ok']]
    if failed:
        sys.exit(f'error: {len(failed)} output(s) differ from PyTorch beyond the tolerance')
    print(f'\nAll {len(rows)} outputs within the tolerance.')
