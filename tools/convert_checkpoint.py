"""Turn an mmpretrain LaViT checkpoint (or any model's with a LaViT under a prefix) into a backbone-only one.

    python tools/convert_checkpoint.py work_dirs/lavit_s_imagenet/epoch_300.pth lavit_s_backbone.pth
        [--prefix backbone.]

The output holds ``state_dict`` (the backbone's weights, prefix stripped) and
``meta``; it initialises the backbone of the detection and segmentation
configs under their usual ``prefix='backbone.'``:
``--cfg-options model.backbone.init_cfg.checkpoint=lavit_s_backbone.pth``.
"""
import argparse
import os
import os.path as osp
import sys

import torch
from mmengine.runner.checkpoint import CheckpointLoader

import mmlavit  # noqa: F401  registers the safe loader of mmengine-written checkpoints
from mmlavit import LaViT
from mmlavit.cli.errors import exit_on_user_error
from mmlavit.utils import strip_prefix, weights_of


def parse_args():
    parser = argparse.ArgumentParser(description='Extract the LaViT backbone of a checkpoint')
    parser.add_argument('src', help='checkpoint of a model with a LaViT backbone (e.g. mmpretrain\'s)')
    parser.add_argument('dst', help='where to write the backbone-only checkpoint')
    parser.add_argument('--prefix', default='backbone.', help='the backbone\'s key prefix in src')
    return parser.parse_args()


def matching_arch(state_dict: dict):
    """The shipped LaViT arch whose keys and shapes the state dict has exactly, or None."""
    for arch in LaViT.arch_zoo:
        reference = LaViT(arch=arch).state_dict()
        if reference.keys() == state_dict.keys() and all(
                reference[key].shape == value.shape for key, value in state_dict.items()):
            return arch
    return None


def summarise(keys, limit=8):
    """At most ``limit`` names, then how many more."""
    names = ', '.join(keys[:limit])
    return names + (f' and {len(keys) - limit} more' if len(keys) > limit else '')


def main():
    args = parse_args()
    prefix = args.prefix if args.prefix.endswith('.') else args.prefix + '.'
    with exit_on_user_error():
        checkpoint = CheckpointLoader.load_checkpoint(args.src, map_location='cpu')
    state_dict = weights_of(checkpoint)
    kept = strip_prefix(state_dict, prefix)
    dropped = [key for key in state_dict if not key.startswith(prefix)]
    if not kept:
        sys.exit(f'error: no key of {args.src} starts with {prefix!r} (its keys start with e.g. '
                 f'{summarise(list(state_dict), 3)}); name the backbone\'s prefix with --prefix')
    arch = matching_arch(kept)
    params = sum(value.numel() for value in kept.values())
    print(f'kept {len(kept)} tensors of {prefix}* ({params / 1e6:.2f}M values), prefix stripped')
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


if __name__ == '__main__':
    main()
