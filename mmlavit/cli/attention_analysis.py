"""Pictures of LaViT's attention, and its attention saturation beside PVTv2's (tools/analyze_attention.py).

Builds the model of an OpenMMLab config whose backbone is LaViT (mmdet, mmseg
or mmpretrain), optionally loads a checkpoint, normalises one image with the
model's data preprocessor and runs it through the backbone, capturing every
VA and LA layer's attention probabilities (B, heads, K, N) with forward hooks.
It writes to --out-dir:

- attention_stage{1..4}.png: for each VA and LA layer of the stage (rows), the
  attention of chosen query points (columns, --points) over the P x P pooled
  key cells, drawn over the image (heads averaged; x marks the query);
- cell_attention.png: for each stage and layer, the K x K matrix A of
  mmlavit.models.diagonality.cell_attention (rows: query cells), whose
  diagonality the DP loss rewards, titled with L_sym and L_diag (L_diag in
  its difference form, whichever form the model was trained with);
- saturation.png and saturation.json: attention saturation, the cosine
  similarity of consecutive layers' attention maps within each stage, for
  LaViT and for --compare (PVTv2 or MiT, optionally --compare-checkpoint)
  fed the same normalised image. For layers l and l+1, every query's
  heads-averaged attention distribution over the keys in l is compared with
  the one in l+1; the similarity is the mean over the queries.

PVTv2's and MiT's attention is read from their nn.MultiheadAttention modules:
a forward pre-hook asks for per-head weights (need_weights=True,
average_attn_weights=False) and a forward hook keeps them, so nothing is
recomputed. Without checkpoints both models are at their initialisation, where
LaViT's LA layers repeat the previous attention exactly (Theta = identity,
Psi = delta): the saturation numbers mean something only for trained weights.

    python tools/analyze_attention.py configs/demo/mask_rcnn_lavit_t_shapes.py \\
        data/shapes_coco/val2017/000001.jpg --checkpoint work_dirs/demo_mask_rcnn/epoch_8.pth
"""
import argparse
import json
import os.path as osp
from pathlib import Path

import matplotlib.pyplot as plt
import mmcv
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.runner import load_checkpoint

from mmlavit.models.diagonality import REPORTED_DIAGONAL_FORM, cell_attention, layer_dp_terms
from mmlavit.models.lavit import LaViT
from .flops import BACKBONES, build_backbone
from .outputs import check_outputs
from .runner import build_model

#: What the tool writes into --out-dir.
OUTPUT_FILES = (*(f'attention_stage{stage}.png' for stage in range(1, 5)), 'cell_attention.png', 'saturation.png',
                'saturation.json')

COMPARE_CHOICES = [name for name in BACKBONES if name.startswith(('pvtv2', 'mit'))]
#: Default query points, as fractions (x, y) of the image width and height.
DEFAULT_POINTS = ((0.5, 0.5), (0.25, 0.25), (0.75, 0.7))


def load_inputs(model, image_path, size=None):
    """The image (RGB, as fed) and the preprocessed batch (1, 3, H', W') of the model."""
    image = mmcv.imread(image_path)  # BGR, as LoadImageFromFile gives it
    if size is not None:
        image = mmcv.imresize(image, (size[1], size[0]))
    batch = dict(inputs=[torch.from_numpy(image).permute(2, 0, 1).contiguous()])
    inputs = model.data_preprocessor(batch, False)['inputs']
    return image[..., ::-1], inputs


def capture_lavit(backbone, inputs):
    """Runs the backbone; per stage, per layer: dict(kind, attn (B, heads, K, N), hw)."""
    stages, handles = [], []
    for stage in backbone.stages:
        records = []
        stages.append(records)
        for layer in stage.layers:
            kind = 'LA' if layer.less_attention else 'VA'

            def keep(module, args, output, kind=kind, records=records):
                records.append(dict(kind=kind, attn=output[2], hw=tuple(args[0].shape[1:3])))

            handles.append(layer.attn.register_forward_hook(keep))
    with torch.no_grad():
        backbone(inputs)
    for handle in handles:
        handle.remove()
    return stages


def capture_multihead(backbone, inputs):
    """Runs a PVTv2 / MiT backbone; per stage, each layer's attention (B, heads, N, M)."""
    stages, handles = {}, []

    def per_head_weights(module, args, kwargs):
        return args, dict(kwargs, need_weights=True, average_attn_weights=False)

    for name, module in backbone.named_modules():
        if isinstance(module, nn.MultiheadAttention):
            # mmdet's PVTv2 and mmseg's MiT name them layers.<stage>.1.<layer>.attn.attn.
            records = stages.setdefault(int(name.split('.')[1]), [])
            handles.append(module.register_forward_pre_hook(per_head_weights, with_kwargs=True))
            handles.append(module.register_forward_hook(
                lambda module, args, output, records=records: records.append(output[1])))
    with torch.no_grad():
        backbone(inputs)
    for handle in handles:
        handle.remove()
    return [stages[index] for index in sorted(stages)]


def consecutive_similarity(maps):
    """Cosine similarity of consecutive attention maps (B, heads, queries, keys), heads averaged.

    Returns:
        list[float]: For each pair (l, l+1), the mean over batch and queries of
        the cosine similarity of the two layers' distributions over the keys.
    """
    means = [attn.float().mean(dim=1) for attn in maps]
    return [F.cosine_similarity(prev, nxt, dim=-1).mean().item() for prev, nxt in zip(means, means[1:])]


def saturation(lavit_stages, other_stages):
    """{'lavit': [[{pair, kinds, cosine}, ...] per stage], 'compare': [[...]]}."""
    lavit = []
    for records in lavit_stages:
        values = consecutive_similarity([record['attn'].transpose(-2, -1) for record in records])
        lavit.append([dict(pair=f'{index + 1}-{index + 2}',
                           kinds=f'{records[index]["kind"]}-{records[index + 1]["kind"]}', cosine=value)
                      for index, value in enumerate(values)])
    compare = [[dict(pair=f'{index + 1}-{index + 2}', cosine=value)
                for index, value in enumerate(consecutive_similarity(maps))] for maps in other_stages]
    return dict(lavit=lavit, compare=compare)


def query_cell_map(attn, hw, point, stride, pool_size):
    """The heads-averaged attention of the query token under ``point`` on the token grid (H, W)."""
    row = min(int(point[1] // stride), hw[0] - 1)
    col = min(int(point[0] // stride), hw[1] - 1)
    cells = attn[0, :, :, row * hw[1] + col].float().mean(0).view(1, 1, pool_size, pool_size)
    return F.interpolate(cells, size=hw, mode='nearest')[0, 0]


def plot_query_attention(image, records, stage_index, points, pool_size, path):
    """Rows: the stage's layers; columns: the query points; attention over the image."""
    stride = 4 * 2**stage_index
    height, width = image.shape[:2]
    fig, axes = plt.subplots(len(records), len(points), figsize=(3 * len(points), 3 * len(records)),
                             squeeze=False)
    for layer_index, record in enumerate(records):
        hw = record['hw']
        for ax, point in zip(axes[layer_index], points):
            cell_map = query_cell_map(record['attn'], hw, point, stride, pool_size)
            ax.imshow(image)
            ax.imshow(cell_map.numpy(), cmap='inferno', alpha=0.6, interpolation='nearest',
                      extent=(0, hw[1] * stride, hw[0] * stride, 0))
            ax.plot(*point, marker='x', color='cyan', markersize=10, markeredgewidth=2)
            ax.set_xlim(0, width)
            ax.set_ylim(height, 0)
            ax.set_title(f'layer {layer_index + 1} ({record["kind"]}), query ({point[0]:.0f}, {point[1]:.0f})',
                         fontsize='small')
            ax.axis('off')
    fig.suptitle(f'Stage {stage_index + 1}: attention over the {pool_size}x{pool_size} pooled key cells')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_cell_attention(stages, pool_size, path):
    """A grid of K x K query-cell-to-key-cell matrices (rows: query cells), stages by layers."""
    columns = max(len(records) for records in stages)
    fig, axes = plt.subplots(len(stages), columns, figsize=(2.6 * columns, 2.8 * len(stages)), squeeze=False)
    for ax in axes.flat:
        ax.axis('off')
    for stage_index, records in enumerate(stages):
        for layer_index, record in enumerate(records):
            attn, hw = record['attn'].float(), record['hw']
            matrix = cell_attention(attn, hw, pool_size).mean(dim=(0, 1))
            dp_terms = layer_dp_terms(attn, hw, pool_size, REPORTED_DIAGONAL_FORM)
            ax = axes[stage_index][layer_index]
            ax.imshow(matrix.numpy(), cmap='viridis')
            dp_text = ('L_sym={:.4f} L_diag={:.4f}'.format(*dp_terms.tolist()) if dp_terms is not None
                       else f'L_sym, L_diag: - (grid < {pool_size}x{pool_size})')
            ax.set_title(f'S{stage_index + 1} L{layer_index + 1} {record["kind"]}\n{dp_text}', fontsize='small')
    fig.suptitle('K x K cell attention (rows: query cells), heads averaged')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_saturation(result, labels, path):
    """One panel per stage: consecutive-layer cosine similarity of LaViT and the comparison."""
    stages = max(len(result['lavit']), len(result['compare']))
    fig, axes = plt.subplots(1, stages, figsize=(3.5 * stages, 3.2), squeeze=False)
    for stage_index, ax in enumerate(axes[0]):
        for label, rows in zip(labels, (result['lavit'], result['compare'])):
            if stage_index < len(rows) and rows[stage_index]:
                pairs = rows[stage_index]
                ax.plot([row['pair'] for row in pairs], [row['cosine'] for row in pairs], marker='o',
                        label=label)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel('layers l-(l+1)')
        ax.set_title(f'stage {stage_index + 1}')
    axes[0][0].set_ylabel('cosine similarity')
    axes[0][0].legend(fontsize='small')
    fig.suptitle('Attention saturation: similarity of consecutive layers\' attention maps')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def format_saturation(result, labels):
    lines = ['| model | stage | layers | kinds | cosine similarity |', '|---|---:|---|---|---:|']
    for label, rows in zip(labels, (result['lavit'], result['compare'])):
        for stage_index, pairs in enumerate(rows):
            lines += [f'| {label} | {stage_index + 1} | {row["pair"]} | {row.get("kinds", "")} '
                      f'| {row["cosine"]:.4f} |' for row in pairs]
    return '\n'.join(lines)


def parse_point(text):
    x, y = text.split(',')
    return float(x), float(y)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='an mmdet / mmseg / mmpretrain config with a LaViT backbone')
    parser.add_argument('image')
    parser.add_argument('--checkpoint', help='weights of the config\'s model')
    parser.add_argument('--size', type=int, nargs=2, metavar=('H', 'W'), help='resize the image first')
    parser.add_argument('--points', type=parse_point, nargs='+', metavar='X,Y',
                        help='query points in pixels of the (resized) image; default: centre and two more')
    parser.add_argument('--compare', default='pvtv2-b2', choices=COMPARE_CHOICES)
    parser.add_argument('--compare-checkpoint', help='backbone weights of --compare')
    parser.add_argument('--out-dir', default='outputs/attention')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    written = [osp.join(args.out_dir, name) for name in OUTPUT_FILES]
    check_outputs([('--out-dir', path) for path in written], [('the image', args.image), ('the config', args.config),
                                                             ('the checkpoint', args.checkpoint)])
    torch.manual_seed(0)
    model = build_model(args.config, args.checkpoint)
    if not isinstance(model.backbone, LaViT):
        raise TypeError(f'{args.config} has a {type(model.backbone).__name__} backbone, not LaViT')
    image, inputs = load_inputs(model, args.image, args.size)
    height, width = image.shape[:2]
    points = args.points or [(fx * width, fy * height) for fx, fy in DEFAULT_POINTS]
    lavit_stages = capture_lavit(model.backbone, inputs)

    other = build_backbone(args.compare)
    if args.compare_checkpoint:
        load_checkpoint(other, args.compare_checkpoint, map_location='cpu',
                        revise_keys=[(r'^module\.', ''), (r'^backbone\.', '')])
    result = saturation(lavit_stages, capture_multihead(other, inputs))
    # Untrained weights are labelled: their saturation says little (see the module docstring).
    labels = ('LaViT' if args.checkpoint else 'LaViT (init)',
              args.compare if args.compare_checkpoint else f'{args.compare} (init)')

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pool_size = model.backbone.pool_size
    for stage_index, records in enumerate(lavit_stages):
        plot_query_attention(image, records, stage_index, points, pool_size,
                             out_dir / f'attention_stage{stage_index + 1}.png')
    plot_cell_attention(lavit_stages, pool_size, out_dir / 'cell_attention.png')
    plot_saturation(result, labels, out_dir / 'saturation.png')
    report = dict(config=args.config, checkpoint=args.checkpoint, image=args.image,
                  input_shape=list(inputs.shape), compare=args.compare,
                  compare_checkpoint=args.compare_checkpoint,
                  definition='mean over queries of the cosine similarity between layers l and l+1 of '
                             'the heads-averaged attention distribution over the keys', saturation=result)
    (out_dir / 'saturation.json').write_text(json.dumps(report, indent=1))
    print(format_saturation(result, labels))
    print(f'\nWrote the pictures, saturation.png and saturation.json to {out_dir}')
    return report

