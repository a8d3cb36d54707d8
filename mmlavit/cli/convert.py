"""An mmpretrain LaViT checkpoint (or any model's with a LaViT under a prefix) as a backbone-only one
(tools/convert_checkpoint.py).

    python tools/convert_checkpoint.py work_dirs/lavit-s_16xb64_in1k/epoch_300.pth lavit_s_backbone.pth
        [--prefix backbone.] [--allow-custom-arch]

The output holds ``state_dict`` (the backbone's weights, prefix stripped) and
``meta``; it initialises the backbone of the detection and segmentation
configs under their usual ``prefix='backbone.'``:
``--cfg-options model.backbone.init_cfg.checkpoint=lavit_s_backbone.pth``.
Without ``--prefix`` the prefix is the one the LaViT weights are found under
(none for a backbone-only input). Weights that are no shipped LaViT arch are
not written unless ``--allow-custom-arch`` says they are meant to be.
"""
import argparse
import os
import os.path as osp
import sys

import torch
from mmengine.runner.checkpoint import CheckpointLoader

from mmlavit.models import LaViT
from mmlavit.models.pretrained import matching_arch
from mmlavit.utils.checkpoint import strip_prefix, weights_of
from .checkpoint_fit import describe_checkpoint, find_lavit_weights
from .errors import ToolArgumentError
from .outputs import check_outputs


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Extract the LaViT backbone of a checkpoint')
    parser.add_argument('src', help='checkpoint of a model with a LaViT backbone (e.g. mmpretrain\'s)')
    parser.add_argument('dst', help='where to write the backbone-only checkpoint')
    parser.add_argument('--prefix', help='the backbone\'s key prefix in src, \'\' for none (default: the prefix '
                                         'its LaViT weights are found under)')
    parser.add_argument('--allow-custom-arch', action='store_true',
                        help='write weights that match no shipped LaViT arch (a custom arch dict)')
    return parser.parse_args(argv)


def backbone_prefix(prefix, state_dict: dict) -> str:
    """The prefix to strip: ``--prefix`` ('' for none), else the one the LaViT weights are under."""
    if prefix is None:
        found = find_lavit_weights(state_dict)
        return found.prefix if found else 'backbone.'
    return prefix if not prefix or prefix.endswith('.') else prefix + '.'


def summarise(keys, limit=8):
    """At most ``limit`` names, then how many more."""
    names = ', '.join(keys[:limit])
    return names + (f' and {len(keys) - limit} more' if len(keys) > limit else '')


def main(argv=None):
    args = parse_args(argv)
    check_outputs([('dst', args.dst)], [('src', args.src)])
    if osp.isdir(args.dst):
        raise ToolArgumentError(f'dst {args.dst} is a folder: give the file to write, e.g. {args.dst}/backbone.pth')
    checkpoint = CheckpointLoader.load_checkpoint(args.src, map_location='cpu')
    state_dict = weights_of(checkpoint)
    prefix = backbone_prefix(args.prefix, state_dict)
    kept = strip_prefix(state_dict, prefix)
    dropped = [key for key in state_dict if not key.startswith(prefix)]
    if not kept:
        sys.exit(f'error: no key of {args.src} starts with {prefix!r} (it holds {describe_checkpoint(state_dict)}); '
                 f'name the backbone\'s prefix with --prefix (\'\' for none)')
    arch = matching_arch(kept, LaViT)
    if arch is None and not args.allow_custom_arch:
        sys.exit(f'error: the {len(kept)} tensors of {args.src} under {prefix!r} are no shipped LaViT arch '
                 f'({", ".join(map(repr, LaViT.arch_zoo))}): it holds {describe_checkpoint(state_dict)}. Nothing '
                 f'was written; to convert the weights of a custom arch, pass --allow-custom-arch.')
    params = sum(value.numel() for value in kept.values())
    print(f'kept {len(kept)} tensors of {prefix}* ({params / 1e6:.2f}M values), prefix stripped' if prefix else
          f'kept {len(kept)} tensors ({params / 1e6:.2f}M values), no prefix to strip')
    print(f'  matches LaViT arch={arch!r} exactly' if arch else
          '  matches no shipped LaViT arch exactly (a custom arch, or a different attn_residual)')
    print(f'dropped {len(dropped)} other weights: {summarise(dropped) or "none"}')
    other_entries = [] if state_dict is checkpoint else sorted(
        key for key, value in checkpoint.items() if value is not state_dict)
    print(f'dropped checkpoint entries: {", ".join(other_entries) or "none"}')
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    torch.save(dict(state_dict=kept, meta=dict(source=osp.abspath(args.src), prefix=prefix, arch=arch)),
               args.dst)
    print(f'wrote {args.dst}')
