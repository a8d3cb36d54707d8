"""Backbone variants trained under one detector, schedule and data set over several seeds (tools/ablate.py).

Each run (variant x seed) is a config written into its own work dir, which
inherits --config and swaps in the variant's backbone (the FPN's in_channels
follow its output channels; LaViT variants get the DPLossHook), and is
trained and validated by tools/train.py in its own process. Then the tool
measures each run's trained model on the validation images and prints one
table, mean and standard deviation over the seeds:

- params and GFLOPs of the backbone at the validation image size (mmengine's
  FlopAnalyzer, as tools/get_flops.py counts them);
- seconds per training iteration: the median of the logged iteration times,
  the first logging window left out;
- bbox and segm mAP from mmdet's CocoMetric on the validation split;
- attention saturation: per stage, the cosine similarity of consecutive
  layers' heads-averaged attention (as tools/analyze_attention.py measures
  it), averaged over the stages' layer pairs and the validation images (LaViT,
  and PVTv2/MiT through their nn.MultiheadAttention; '-' for others);
- for LaViT variants with LA layers, L_sym and L_diag of the trained LA layers
  on the validation images (L_diag in its difference form, whichever form
  was trained, so that runs compare on one scale; grids smaller than the
  P x P cells left out, as in training).

Beside the table it prints the validation images' own-cell colour share
(:mod:`mmlavit.cli.cell_cues`): how far their colours alone tell each token's
own 7 x 7 key cell from the others, the cue that a diagonal cell attention
starts from.

It writes ablation.json (every run and the summary) and ablation.png (mAP with
error bars against seconds per iteration) to --out-dir. Finished runs are
reused when they were trained from the config these options write (delete
a run's folder to train it again); a finished run of another config,
backbone or schedule in the same --work-dir is an error.

Data: each shipped ablation config trains on a generated set (300 training
and 80 validation images of 160x160, seed 0), written to the config's
data_root when missing (:data:`GENERATED_SETS`):

- configs/ablation/mask_rcnn_fpn_shapes.py (the default): Mask R-CNN with
  narrow heads on the shapes set (data/shapes_ablation: circles, squares and
  triangles apart on smooth backgrounds);
- configs/ablation/mask_rcnn_fpn_occluded_shapes_narrow.py: the default's
  narrow heads on the occluded shapes set (data/occluded_shapes_ablation:
  ellipses, triangles and stars on textured backgrounds, occluding each
  other, each annotated by its visible region);
- configs/ablation/mask_rcnn_fpn_occluded_shapes.py: mmdet's standard Mask
  R-CNN (256-channel FPN and heads) on the occluded shapes set.

Another config, or --data-root, names a COCO-format set that must exist.

Variants: the names of :data:`VARIANTS`, ``NAME=BASE,key=value,...`` (a named
variant with backbone arguments overridden, values as Python literals), or
``NAME={...}`` (any backbone dict of mmdet, mmseg or mmpretrain, e.g.
``"pvtv2-b0={'type': 'mmdet.PyramidVisionTransformerV2', 'embed_dims': 32}"``).
"""
import argparse
import ast
import functools
import json
import os
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import matplotlib.pyplot as plt
import mmcv
import torch
from mmengine.analysis import parameter_count
from mmengine.config import Config

from mmlavit.models.diagonality import REPORTED_DIAGONAL_FORM, layer_dp_terms
from mmlavit.models.lavit import LaViT
from .attention_analysis import capture_lavit, capture_multihead, consecutive_similarity, load_inputs
from .cell_cues import own_cell_colour_share
from .datasets import DatasetNotFoundError
from .demo_data import make_coco_occluded_shapes, make_coco_shapes
from .errors import ToolArgumentError
from .flops import BACKBONES, build_backbone, count_flops
from .runner import build_model, load_config
from .tool_process import REPO, run_tool

DEFAULT_CONFIG = 'configs/ablation/mask_rcnn_fpn_shapes.py'
#: Per shipped ablation config, the writer of its generated set (called with the folder), run when it is missing.
GENERATED_SETS = {
    DEFAULT_CONFIG: functools.partial(make_coco_shapes, num_train=300, num_val=80, size=160, seed=0),
    **dict.fromkeys(('configs/ablation/mask_rcnn_fpn_occluded_shapes.py',
                     'configs/ablation/mask_rcnn_fpn_occluded_shapes_narrow.py'),
                    functools.partial(make_coco_occluded_shapes, num_train=300, num_val=80, size=160, seed=0)),
}
LAVIT_T = LaViT.arch_zoo['t']
VARIANTS = {
    'lavit-t': dict(type='mmlavit.LaViT', arch='t'),
    # Every linear layer, the MixFFN's too, starts as in ViT (truncated normal, std 0.02).
    'lavit-t-vit-init': dict(type='mmlavit.LaViT', arch='t',
                             init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.)),
    'lavit-t-all-va': dict(type='mmlavit.LaViT', arch=dict(LAVIT_T, va_layers=LAVIT_T['depths'])),
    'lavit-t-no-ar': dict(type='mmlavit.LaViT', arch='t', attn_residual=False),
    'lavit-t-no-dp': dict(type='mmlavit.LaViT', arch='t', dp_weight=0.),
    'pvtv2-b1': BACKBONES['pvtv2-b1'],
    'swin-t': BACKBONES['swin-t'],
}
METRICS = ('bbox_mAP', 'segm_mAP', 'sec_per_iter', 'saturation', 'l_sym', 'l_diag')


def parse_variant(spec: str):
    """'NAME', 'NAME=BASE,key=value,...' or 'NAME={dict}' -> (name, backbone dict)."""
    if '=' not in spec:
        if spec not in VARIANTS:
            raise ValueError(f'unknown variant {spec!r}: name one of {sorted(VARIANTS)} or define it as '
                             f'NAME=BASE,key=value or NAME={{backbone dict}}')
        return spec, dict(VARIANTS[spec])
    name, definition = spec.split('=', 1)
    if definition.lstrip().startswith('{'):
        backbone = ast.literal_eval(definition)
        if not isinstance(backbone, dict) or 'type' not in backbone:
            raise ValueError(f'variant {name}: a backbone dict needs a type, got {definition}')
        return name, backbone
    base, *overrides = definition.split(',')
    _, backbone = parse_variant(base)
    for override in overrides:
        key, value = override.split('=', 1)
        backbone[key] = ast.literal_eval(value)
    return name, backbone


def is_lavit(backbone: dict) -> bool:
    """Whether a backbone dict builds LaViT (which trains its DP loss through the DPLossHook)."""
    return backbone['type'].split('.')[-1] == 'LaViT'


def output_channels(backbone: dict, scope: str):
    """The channels of the backbone's outputs, which the neck takes in."""
    with torch.no_grad():
        outs = build_backbone(backbone, scope)(torch.rand(1, 3, 64, 64))
    return [out.shape[1] for out in outs]


def run_config_text(base_config: str, backbone: dict, scope: str, seed: int, schedule: dict) -> str:
    """The run's config: --config with the variant's backbone, the seed and the schedule."""
    hooks = [dict(type='mmlavit.DPLossHook')] if is_lavit(backbone) else []
    iters, warmup = schedule['iters'], schedule['warmup']
    lines = [
        f'_base_ = {str(Path(base_config).resolve())!r}',
        f'model = dict(backbone=dict(_delete_=True, **{backbone!r}),',
        f'             neck=dict(in_channels={output_channels(backbone, scope)!r}))',
        f'custom_hooks = {hooks!r}',
        f'randomness = dict(seed={seed})',
        f'train_cfg = dict(max_iters={iters}, val_interval={iters})',
        'param_scheduler = [',
        f'    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end={warmup}),',
        f'    dict(type="CosineAnnealingLR", T_max={iters - warmup}, eta_min=0., by_epoch=False,',
        f'         begin={warmup}, end={iters}),',
        ']',
        f'optim_wrapper = dict(optimizer=dict(lr={schedule["lr"]!r}))',
        # At least two logging windows, since the first is left out of the iteration time.
        f'default_hooks = dict(checkpoint=dict(interval={iters}),',
        f'                     logger=dict(interval=min({max(1, iters // 2)}, _base_.default_hooks.logger.interval)))',
    ]
    return '\n'.join(lines) + '\n'


def read_scalars(run_dir: Path):
    """The logged training iteration times and the final validation metrics of a finished run."""
    scalars = sorted(run_dir.glob('*/vis_data/scalars.json'))[-1]
    records = [json.loads(line) for line in scalars.read_text().splitlines()]
    times = [record['time'] for record in records if 'loss' in record]
    metrics = [record for record in records if 'coco/bbox_mAP' in record][-1]
    return dict(bbox_mAP=metrics['coco/bbox_mAP'], segm_mAP=metrics.get('coco/segm_mAP'),
                sec_per_iter=statistics.median(times[1:] or times))


def attention_measures(model, images):
    """Saturation (and L_sym, L_diag for LaViT) of a trained model, averaged over images."""
    backbone = model.backbone
    saturation, l_sym, l_diag = [], [], []
    for image_path in images:
        _, inputs = load_inputs(model, str(image_path))
        if isinstance(backbone, LaViT):
            stages = capture_lavit(backbone, inputs)
            maps = [[record['attn'].transpose(-2, -1) for record in records] for records in stages]
            for records in stages:
                for record in records:
                    terms = (layer_dp_terms(record['attn'], record['hw'], backbone.pool_size, REPORTED_DIAGONAL_FORM)
                             if record['kind'] == 'LA' else None)
                    if terms is not None:
                        l_sym.append(terms[0].item())
                        l_diag.append(terms[1].item())
        else:
            maps = capture_multihead(backbone, inputs)
        pairs = [value for stage_maps in maps for value in consecutive_similarity(stage_maps)]
        if pairs:
            saturation.append(statistics.mean(pairs))
    return dict(saturation=_mean_or_none(saturation), l_sym=_mean_or_none(l_sym), l_diag=_mean_or_none(l_diag))


def _mean_or_none(values):
    return statistics.mean(values) if values else None


def measure_run(run_dir: Path, config: Path, val_images, config_text: str):
    """Trained-model measures of a finished run, written to result.json with the config it was written from.

    The config is kept there because mmengine's Runner writes its own dump of
    the config over ``config.py`` in the work dir.
    """
    model = build_model(str(config), (run_dir / 'last_checkpoint').read_text().strip())
    result = dict(read_scalars(run_dir), **attention_measures(model, val_images), run_config=config_text)
    (run_dir / 'result.json').write_text(json.dumps(result, indent=1))
    return result


def train_run(run_dir: Path, config: Path, cfg_options, threads: int, continue_run: bool):
    """tools/train.py on the run's config, continuing its checkpoints with ``continue_run`` (else starting over);
    the log goes to run_dir/train.log."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    process = run_tool('tools/train.py', config, '--work-dir', run_dir, '--resume' if continue_run else '--start-over',
                       '--cfg-options', *cfg_options, env=env)
    (run_dir / 'train.log').write_text(process.stdout + process.stderr)
    if process.returncode != 0:
        raise RuntimeError(f'training {config} failed (exit code {process.returncode}); see '
                           f'{run_dir / "train.log"}:\n{process.stderr[-2000:]}')


def summarise(runs, variants, shape):
    """Per variant: params, GFLOPs and mean/std over seeds of each metric."""
    rows = {}
    for name, (backbone, scope) in variants.items():
        model = build_backbone(backbone, scope)
        with torch.no_grad():
            flops = count_flops(model, (torch.rand(1, 3, *shape), )).total() / 1e9
        row = dict(params_m=parameter_count(model)[''] / 1e6, gflops=flops, seeds=sorted(runs[name]))
        for metric in METRICS:
            values = [result[metric] for result in runs[name].values() if result.get(metric) is not None]
            row[metric] = statistics.mean(values) if values else None
            row[metric + '_std'] = statistics.stdev(values) if len(values) > 1 else 0. if values else None
        rows[name] = row
    return rows


def format_table(rows):
    """The summary as a markdown table."""
    def cell(row, metric, digits=3):
        if row[metric] is None:
            return '-'
        return f'{row[metric]:.{digits}f} ± {row[metric + "_std"]:.{digits}f}'

    lines = ['| variant | params (M) | GFLOPs | s/iter | bbox mAP | segm mAP | saturation | L_sym | L_diag |',
             '|---|---:|---:|---:|---:|---:|---:|---:|---:|']
    for name, row in rows.items():
        lines.append(f'| {name} | {row["params_m"]:.2f} | {row["gflops"]:.2f} | {row["sec_per_iter"]:.2f} | '
                     f'{cell(row, "bbox_mAP")} | {cell(row, "segm_mAP")} | {cell(row, "saturation")} | '
                     f'{cell(row, "l_sym", 4)} | {cell(row, "l_diag", 4)} |')
    return '\n'.join(lines)


def plot(rows, title, path):
    """bbox and segm mAP (mean, error bar: standard deviation over seeds) against seconds per iteration.

    Each variant has its own marker and colour, named in one legend beside the plots: variants of
    nearly the same speed and accuracy overlap, and so would labels written beside their points.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    markers = 'osD^vP*Xh<>p'
    for ax, metric in zip(axes, ('bbox_mAP', 'segm_mAP')):
        for index, (name, row) in enumerate(rows.items()):
            if row[metric] is not None:
                ax.errorbar(row['sec_per_iter'], row[metric], yerr=row[metric + '_std'],
                            fmt=markers[index % len(markers)], markersize=7, color=f'C{index % 10}', capsize=4,
                            label=name)
        ax.set_xlabel('seconds per training iteration')
        ax.set_ylabel(metric.replace('_', ' '))
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc='center left', bbox_to_anchor=(1.0, 0.5), fontsize='small')
    fig.suptitle(title, fontsize='medium')
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches='tight')
    plt.close(fig)


def generated_set(config: str):
    """The writer of a shipped ablation config's generated set (see :data:`GENERATED_SETS`); None for others."""
    for shipped, write in GENERATED_SETS.items():
        if (REPO / shipped).resolve() == Path(config).resolve():
            return write
    return None


def prepare_data(cfg: Config, data_root: str, write=None):
    """The validation images of the set, written first with ``write(data_root)`` when missing and given."""
    ann_file = Path(data_root) / cfg.val_dataloader.dataset.ann_file
    if not ann_file.is_file():
        if write is None:
            raise DatasetNotFoundError(f'{ann_file} does not exist: point --data-root at the COCO-format set '
                                       f'that the config reads')
        print(f'Generating the data set in {data_root} ...', flush=True)
        write(data_root)
    images = json.loads(ann_file.read_text())['images']
    image_dir = Path(data_root) / cfg.val_dataloader.dataset.data_prefix['img']
    return [image_dir / image['file_name'] for image in images]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', default=DEFAULT_CONFIG, help='the detector, data and schedule')
    parser.add_argument('--data-root', help='a COCO-format set (default: the config\'s; a shipped config\'s '
                                            'generated set is written there when missing)')
    parser.add_argument('--variants', nargs='+', default=list(VARIANTS), metavar='VARIANT')
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    parser.add_argument('--iters', type=int, help='training iterations (default: the config\'s)')
    parser.add_argument('--lr', type=float, help='AdamW learning rate (default: the config\'s)')
    # On a CPU, runs of one thread each use the cores better than one run of several threads.
    parser.add_argument('--jobs', type=int, default=1 if torch.cuda.is_available() else 2,
                        help='runs at once, each with cores / jobs threads (default: 2 on CPU, 1 with CUDA)')
    parser.add_argument('--work-dir', default='work_dirs/ablation', help='one folder per variant and seed')
    parser.add_argument('--out-dir', default='outputs/ablation')
    args = parser.parse_args(argv)
    try:
        args.variants = dict(map(parse_variant, args.variants))
    except (ValueError, SyntaxError) as error:
        parser.error(f'--variants: {error}')
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config)
    scope = cfg.get('default_scope', 'mmdet')
    data_root = str(Path(args.data_root or cfg.data_root).resolve()) + '/'
    val_images = prepare_data(cfg, data_root, None if args.data_root else generated_set(args.config))
    iters = args.iters or cfg.train_cfg.max_iters
    schedule = dict(iters=iters, warmup=min(cfg.param_scheduler[0].end, max(iters // 2, 1)),
                    lr=args.lr or cfg.optim_wrapper.optimizer.lr)
    variants = {name: (backbone, scope) for name, backbone in args.variants.items()}
    cfg_options = [f'data_root={data_root}']
    threads = max(1, (os.cpu_count() or 1) // args.jobs)

    todo, runs = [], {name: {} for name in variants}
    for name, (backbone, _) in variants.items():
        for seed in args.seeds:
            run_dir = Path(args.work_dir).resolve() / name / f'seed{seed}'
            run_dir.mkdir(parents=True, exist_ok=True)
            # Beside the work dir: the Runner writes its own copy of the config into it.
            config = run_dir.parent / f'{run_dir.name}.py'
            config_text = run_config_text(args.config, backbone, scope, seed, schedule)
            if (run_dir / 'result.json').is_file():
                result = json.loads((run_dir / 'result.json').read_text())
                if result.get('run_config', config_text) != config_text:
                    raise ToolArgumentError(
                        f'{run_dir} holds a finished run of another config, backbone or schedule than '
                        f'{name} seed {seed} with these options: pass another --work-dir, or delete that '
                        f'folder to train it again')
                runs[name][seed] = result
                print(f'{name} seed {seed}: reusing {run_dir}', flush=True)
                continue
            continue_run = (run_dir / 'last_checkpoint').is_file() and config.is_file() and \
                config.read_text() == config_text
            config.write_text(config_text)
            todo.append((name, seed, run_dir, config, config_text, continue_run))

    def train_and_measure(job):
        name, seed, run_dir, config, _, continue_run = job
        print(f'{name} seed {seed}: training in {run_dir} ...', flush=True)
        train_run(run_dir, config, cfg_options, threads, continue_run)
        return job

    pool = ThreadPoolExecutor(max_workers=args.jobs)
    try:
        for name, seed, run_dir, config, config_text, _ in pool.map(train_and_measure, todo):
            runs[name][seed] = result = measure_run(run_dir, config, val_images, config_text)
            print(f'{name} seed {seed}: ' + ', '.join(f'{metric} {result[metric]:.3f}' for metric in METRICS
                                                      if result.get(metric) is not None), flush=True)
    finally:
        pool.shutdown(cancel_futures=True)  # after a failed run, queued runs do not start

    shape = tuple(mmcv.imread(str(val_images[0])).shape[:2])
    rows = summarise(runs, variants, shape)
    colour_share = statistics.mean(own_cell_colour_share(mmcv.imread(str(path))) for path in val_images)
    title = (f'{Path(args.config).name}: {iters} iterations, lr {schedule["lr"]}, seeds {args.seeds}, '
             f'{threads} thread(s) per run')
    report = dict(config=args.config, data_root=data_root, schedule=schedule, seeds=args.seeds, jobs=args.jobs,
                  threads_per_run=threads, flops_shape=list(shape), own_cell_colour_share=colour_share,
                  variants={name: backbone for name, (backbone, _) in variants.items()},
                  runs={name: {str(seed): result for seed, result in seeds.items()} for name, seeds in runs.items()},
                  summary=rows)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / 'ablation.json').write_text(json.dumps(report, indent=1))
    plot(rows, title, out_dir / 'ablation.png')
    print(f'\n{title}; mean ± std over seeds\n')
    print(format_table(rows))
    print(f'\nOwn-cell colour share of the validation images: {colour_share:.3f} (the share of 4x4-pixel '
          f'tokens whose nearest 7x7 key cell in mean colour holds them; 0.04 on images of uniform noise)')
    print(f'\nWrote {out_dir / "ablation.json"} and {out_dir / "ablation.png"}')
    return report
