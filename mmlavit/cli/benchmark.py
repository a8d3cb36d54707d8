"""Efficiency of LaViT beside PVTv2, Swin-T and MiT: params, FLOPs, latency, training memory (tools/benchmark.py).

Builds the backbones of tools/get_flops.py (LaViT-T/S/B, mmdet's PVTv2-b1/b2
and Swin-T, mmseg's MiT-b1/b2) and measures each at each input size, batch 1:

- params and FLOPs with :func:`mmlavit.cli.flops.measure` (mmengine's FlopAnalyzer, one
  multiply-add = one FLOP, the attention products counted);
- forward latency (eval mode, no grad) and forward+backward latency (train
  mode; loss = the sum of the output means, plus LaViT's DP loss): all models
  in one process, interleaved (each repeat runs every model once in turn),
  after warm-up rounds; the minimum of the repeats, since interference from
  other work on the machine only ever adds time;
- the peak memory of a training step (forward+backward), as
  :mod:`mmlavit.cli.memory` measures it;
- for LaViT, the time of each VA and LA layer and of its attention, per stage
  (forward hooks, in extra interleaved forward runs);
- with --onnxruntime (CPU), for LaViT, the forward latency of its backbone
  exported to ONNX (once, with dynamic sizes, by :mod:`mmlavit.cli.onnx_export`)
  and run by ONNX Runtime with the same thread count, interleaved with the
  PyTorch forwards;
- with --compile, every model also as ``torch.compile(model, dynamic=False)``
  (the inductor backend unless --compile-backend names another; compiled for
  each input size, as a fixed-size deployment runs it): its forward and
  forward+backward latency in the same interleaved rounds as the eager
  models, after its first call at that size and mode, whose time (compilation
  and one run) is reported apart as the compile time, and the warm-up rounds.
  A model that does not compile is reported with the error's first line. The
  training memory is the eager model's.

It prints the tables and the ratios against --reference (LaViT-S) (with
--compile also compiled / eager per model, and compiled model / compiled
reference) and writes benchmark.json, benchmark.png (ratio bar chart) and
layers.png (VA vs LA layers) to --out-dir. One CPU thread by default; the
default run measures every model at every size on a CPU for a long while
(--compile adds a compilation per model, size and mode), so narrow it with
--sizes/--models/--repeats.

    python tools/benchmark.py
    python tools/benchmark.py --sizes 800x1333 --models lavit-s pvtv2-b2 swin-t --repeats 5
    python tools/benchmark.py --device cuda --amp
    python tools/benchmark.py --models lavit-t lavit-s --sizes 224x224 512x512 --onnxruntime
    python tools/benchmark.py --compile --models lavit-s swin-t pvtv2-b2 --sizes 512x512 800x1333
"""
import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from mmlavit.models.lavit import LaViT
from .errors import ToolArgumentError
from .flops import BACKBONES, build_backbone, measure
from .memory import measure_memory, memory_method
from .onnx_export import BackboneFeatures, export_onnx, onnxruntime_session, parse_size, require_deploy
from .runner import positive_int
from .steps import forward, set_mode, synchronize, training_step, uncompiled

DEFAULT_SIZES = ('224x224', '512x512', '800x1333')
METRICS = (('gflops', 'GFLOPs'), ('fwd_ms', 'forward'), ('fwd_bwd_ms', 'forward+backward'),
           ('train_peak_mb', 'training peak memory'))
#: The timed steps: (key in the results, step, train mode).
STEPS = (('fwd', forward, False), ('fwd_bwd', training_step, True))


def compile_method(backend):
    """How --compile compiles and times, stated in the conditions."""
    return (f'torch.compile(model, dynamic=False, backend={backend!r}), compiled afresh at each size '
            '(torch._dynamo.reset()); compile time = the first call at that size and mode; then the warm-up '
            'rounds; timed in the same interleaved rounds as the eager models')


class OnnxRuntimeBackbone:
    """A backbone exported to ONNX with dynamic sizes and run by ONNX Runtime on the CPU; called like the model.

    Args:
        model (nn.Module): The backbone, in eval mode.
        threads (int): ONNX Runtime's intra-op threads.
    """

    def __init__(self, model, threads):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / 'backbone.onnx'
            export_onnx(BackboneFeatures(model), path)
            self.session = onnxruntime_session(path, threads)

    def __call__(self, inputs):
        return self.session.run(None, {'image': inputs.numpy()})


def onnxruntime_name(name):
    """The key of a model's ONNX Runtime counterpart among the timed models."""
    return f'{name} (onnxruntime)'


def compiled_name(name):
    """The key of a model's torch.compile'd counterpart among the timed models."""
    return f'{name} (compiled)'


def compile_models(models, backend):
    """``torch.compile(model, dynamic=False, backend=backend)`` of each model: {compiled name: wrapper}.

    The wrapper shares the model's parameters and modes; it compiles at its
    first call in a mode at a size, as :func:`first_calls` makes it.
    """
    return {compiled_name(name): torch.compile(model, dynamic=False, backend=backend)
            for name, model in models.items()}


def error_line(error):
    """The type and first line of an error; for a compiler backend's failure, of the error it raised."""
    inner = getattr(error, 'inner_exception', error)
    lines = str(inner).strip().splitlines()
    where = f'{error.backend_name}: ' if hasattr(error, 'backend_name') else ''
    return f'{where}{type(inner).__name__}: {lines[0] if lines else ""}'


def first_calls(compiled, run, inputs, device, amp):
    """Calls each compiled model once (it compiles there).

    Returns:
        tuple[dict, dict]: {name: seconds of the first call} of the models
        that compiled, {name: first line of the error} of those that did not.
    """
    seconds, errors = {}, {}
    for name, model in compiled.items():
        print(f'compiling {name}: {run.__name__} ...', flush=True)
        synchronize(device)
        start = time.perf_counter()
        try:
            run(model, inputs, device, amp)
            synchronize(device)
        except Exception as error:  # a peer that does not compile is reported, not fatal
            errors[name] = error_line(error)
            uncompiled(model).zero_grad(set_to_none=True)
            continue
        seconds[name] = time.perf_counter() - start
    return seconds, errors


def time_step(models, compiled, run, inputs, device, amp, warmup, repeats):
    """The interleaved rounds of one step, eager and compiled models together.

    Returns:
        tuple[dict, dict, dict]: {name: [ms]} of every model that ran,
        {compiled name: compile seconds}, {compiled name: error line}.
    """
    compile_seconds, errors = first_calls(compiled, run, inputs, device, amp)
    timed = {**models, **{name: model for name, model in compiled.items() if name in compile_seconds}}
    return time_interleaved(timed, run, inputs, device, amp, warmup, repeats), compile_seconds, errors


def time_interleaved(models, run, inputs, device, amp, warmup, repeats):
    """Runs every model once per round; returns {name: [ms of each timed round]}."""
    samples = defaultdict(list)
    for round_index in range(warmup + repeats):
        for name, model in models.items():
            synchronize(device)
            start = time.perf_counter()
            run(model, inputs, device, amp)
            synchronize(device)
            if round_index >= warmup:
                samples[name].append((time.perf_counter() - start) * 1e3)
    return samples


class LayerTimer:
    """Forward hooks timing each LaViT layer and its attention.

    Args:
        model (LaViT): The backbone.
        device (torch.device): Synchronised around each timed module on CUDA.
    """

    def __init__(self, model, device):
        self.device = device
        self.samples = defaultdict(list)
        self.kinds = {}
        self._starts = {}
        self._handles = []
        for stage_index, stage in enumerate(model.stages):
            for layer_index, layer in enumerate(stage.layers):
                self.kinds[(stage_index, layer_index)] = 'LA' if layer.less_attention else 'VA'
                for part, module in (('layer', layer), ('attn', layer.attn)):
                    self._hook(module, (stage_index, layer_index, part))

    def _hook(self, module, key):
        def start(*_):
            synchronize(self.device)
            self._starts[key] = time.perf_counter()

        def stop(*_):
            synchronize(self.device)
            self.samples[key].append((time.perf_counter() - self._starts[key]) * 1e3)

        self._handles += [module.register_forward_pre_hook(start), module.register_forward_hook(stop)]

    def remove(self):
        for handle in self._handles:
            handle.remove()

    def summary(self):
        """Per stage: the mean over its VA (LA) layers of each layer's minimum time, and LA/VA."""
        stages = defaultdict(lambda: defaultdict(list))
        for (stage, layer, part), samples in self.samples.items():
            stages[stage][(self.kinds[(stage, layer)], part)].append(min(samples))
        rows = []
        for stage, times in sorted(stages.items()):
            row = dict(stage=stage + 1, va_layers=len(times[('VA', 'layer')]),
                       la_layers=len(times[('LA', 'layer')]))
            for part in ('layer', 'attn'):
                for kind in ('VA', 'LA'):
                    values = times[(kind, part)]
                    row[f'{kind.lower()}_{part}_ms'] = statistics.mean(values) if values else None
                if row['la_layers']:
                    row[f'la_va_{part}'] = row[f'la_{part}_ms'] / row[f'va_{part}_ms']
            if row['la_layers']:
                # What LA/VA would be if an LA layer's attention cost nothing: the rest of the
                # layer (norms, MixFFN, residuals), which VA and LA layers share, bounds it.
                row['la_va_layer_floor'] = 1 - row['va_attn_ms'] / row['va_layer_ms']
            rows.append(row)
        return rows


def time_layers(models, inputs, device, amp, warmup, repeats):
    """Per-stage VA/LA layer times of the LaViT models among ``models``."""
    lavits = {name: model for name, model in models.items() if isinstance(model, LaViT)}
    if not lavits:
        return {}
    set_mode(lavits, False)
    time_interleaved(lavits, forward, inputs, device, amp, warmup, 0)
    timers = {name: LayerTimer(model, device) for name, model in lavits.items()}
    time_interleaved(lavits, forward, inputs, device, amp, 0, repeats)
    for timer in timers.values():
        timer.remove()
    return {name: timer.summary() for name, timer in timers.items()}


def cpu_name():
    with open('/proc/cpuinfo') as cpuinfo:
        for line in cpuinfo:
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    return platform.processor()


def conditions(args, device):
    """What the figures depend on, stated in the output."""
    info = dict(device=str(device), amp=args.amp, torch=torch.__version__, warmup=args.warmup,
                repeats=args.repeats, statistic='minimum of the repeats, models interleaved',
                batch=1, memory_method=memory_method(device),
                flops_method='mmengine FlopAnalyzer (multiply-add = 1 FLOP), backbone only, eval mode',
                load_average=os.getloadavg())
    if args.compile:
        info['compile'] = compile_method(args.compile_backend)
    if args.onnxruntime:
        version = require_deploy().__version__
        info['onnxruntime'] = (f'onnxruntime {version}, CPU, {args.threads} intra-op thread(s); '
                               'each LaViT backbone exported once (dynamic batch, height and width) and run at '
                               'every size')
    if device.type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(device)
    else:
        info.update(threads=torch.get_num_threads(), interop_threads=torch.get_num_interop_threads(),
                    cpu=cpu_name(), cpu_count=os.cpu_count())
    return info


def compiled_row(key, samples, compile_seconds, errors):
    """A model's compiled figures per step: ms (min of the repeats), samples, compile seconds, or the error."""
    row = {}
    for step, _, _ in STEPS:
        row.update({f'{step}_ms': min(samples[step][key]) if key in samples[step] else None,
                    f'{step}_samples_ms': samples[step].get(key, []),
                    f'{step}_compile_s': compile_seconds[step].get(key),
                    f'{step}_error': errors[step].get(key)})
    return row


def compiled_ratios(results, reference):
    """{size: {model: {step: ratio}}}: compiled / eager ('fwd_ms', 'fwd_bwd_ms') and compiled / compiled
    reference ('fwd_ms_vs_reference', ...); None where a model (or the reference) did not compile."""
    table = {}
    for size, rows in results.items():
        base = rows.get(reference, {}).get('compiled', {})
        table[size] = {}
        for name, row in rows.items():
            ratio = table[size][name] = {}
            for step, _, _ in STEPS:
                key, value = f'{step}_ms', row['compiled'][f'{step}_ms']
                ratio[key] = value / row[key] if value is not None else None
                ratio[f'{key}_vs_reference'] = (value / base[key] if value is not None and base.get(key)
                                                else None)
    return table


def ratios(results, reference):
    """{size: {model: {metric: value / reference's value}}}."""
    table = {}
    for size, rows in results.items():
        if reference not in rows:
            continue
        table[size] = {name: {key: row[key] / rows[reference][key] for key, _ in METRICS}
                       for name, row in rows.items()}
    return table


def format_report(report):
    """The markdown tables of a report."""
    lines = [f'Conditions: {json.dumps(report["conditions"])}', '']
    for size, rows in report['results'].items():
        lines += [f'### {size}', '', '| model | params (M) | GFLOPs | forward (ms) | fwd+bwd (ms) '
                  '| train peak (MiB) |', '|---|---:|---:|---:|---:|---:|']
        lines += [f'| {name} | {row["params_m"]:.2f} | {row["gflops"]:.1f} | {row["fwd_ms"]:.1f} '
                  f'| {row["fwd_bwd_ms"]:.1f} | {row["train_peak_mb"]:.0f} |' for name, row in rows.items()]
        if size in report['ratios']:
            lines += ['', f'Ratios against {report["reference"]} (model / {report["reference"]}):', '',
                      '| model | ' + ' | '.join(label for _, label in METRICS) + ' |',
                      '|---|' + '---:|' * len(METRICS)]
            lines += [f'| {name} | ' + ' | '.join(f'{row[key]:.2f}' for key, _ in METRICS) + ' |'
                      for name, row in report['ratios'][size].items()]
        lines.append('')
    onnx_rows = [(size, name, row) for size, rows in report['results'].items() for name, row in rows.items()
                 if 'onnxruntime_fwd_ms' in row]
    if onnx_rows:
        lines += ['### ONNX Runtime (CPU) beside PyTorch: forward (eval, batch 1), same run', '',
                  '| model | size | PyTorch (ms) | ONNX Runtime (ms) | ONNX Runtime / PyTorch |',
                  '|---|---|---:|---:|---:|']
        lines += [f'| {name} | {size} | {row["fwd_ms"]:.1f} | {row["onnxruntime_fwd_ms"]:.1f} '
                  f'| {row["onnxruntime_fwd_ms"] / row["fwd_ms"]:.2f} |' for size, name, row in onnx_rows]
        lines.append('')
    if 'compiled_ratios' in report:
        lines += format_compiled(report)
    if report['layers']:
        lines += ['### LaViT layers (forward, eval): mean per VA / LA layer of each stage', '',
                  '| model | size | stage | VA/LA layers | VA layer (ms) | LA layer (ms) | LA/VA '
                  '| VA attn (ms) | LA attn (ms) | LA/VA attn | LA/VA floor |',
                  '|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|']
        for name, sizes in report['layers'].items():
            for size, stages in sizes.items():
                for row in stages:
                    la = (f'{row["la_layer_ms"]:.1f} | {row["la_va_layer"]:.2f} | {row["va_attn_ms"]:.1f} | '
                          f'{row["la_attn_ms"]:.1f} | {row["la_va_attn"]:.2f} | {row["la_va_layer_floor"]:.2f}'
                          if row['la_layers'] else f'- | - | {row["va_attn_ms"]:.1f} | - | - | -')
                    lines.append(f'| {name} | {size} | {row["stage"]} | {row["va_layers"]}/{row["la_layers"]} '
                                 f'| {row["va_layer_ms"]:.1f} | {la} |')
        lines += ['', 'LA/VA floor: the LA/VA layer ratio if an LA layer\'s attention cost nothing '
                  '(1 - VA attention / VA layer), set by what both layers share (norms, MixFFN).', '']
    return '\n'.join(lines)


def format_compiled(report):
    """The lines of the torch.compile table: per model, size and step."""
    reference = report['reference']
    lines = ['### torch.compile beside eager (batch 1, same interleaved rounds)', '',
             f'| model | size | step | compile (s) | eager (ms) | compiled (ms) | compiled / eager '
             f'| compiled / compiled {reference} |', '|---|---|---|---:|---:|---:|---:|---:|']
    for size, rows in report['results'].items():
        for name, row in rows.items():
            compiled, ratio = row['compiled'], report['compiled_ratios'][size][name]
            for step, label in (('fwd', 'forward'), ('fwd_bwd', 'fwd+bwd')):
                eager = row[f'{step}_ms']
                if compiled[f'{step}_error']:
                    lines.append(f'| {name} | {size} | {label} | - | {eager:.1f} '
                                 f'| not compiled: {compiled[f"{step}_error"].replace("|", "/")} | - | - |')
                    continue
                versus = ratio[f'{step}_ms_vs_reference']
                lines.append(f'| {name} | {size} | {label} | {compiled[f"{step}_compile_s"]:.1f} | {eager:.1f} '
                             f'| {compiled[f"{step}_ms"]:.1f} | {ratio[f"{step}_ms"]:.2f} '
                             f'| {"-" if versus is None else f"{versus:.2f}"} |')
    lines += ['', 'compile (s): the first call at that size and mode (compilation and one run), before the '
              'warm-up rounds.', '']
    return lines


def plot_ratios(report, path):
    """One panel per metric: bars of model / reference, grouped by input size."""
    sizes = list(report['ratios'])
    names = list(report['ratios'][sizes[0]])
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.5 * len(METRICS), 4), squeeze=False)
    width = 0.8 / len(names)
    for ax, (key, label) in zip(axes[0], METRICS):
        for index, name in enumerate(names):
            values = [report['ratios'][size][name][key] for size in sizes]
            ax.bar([pos + index * width for pos in range(len(sizes))], values, width, label=name)
        ax.axhline(1.0, color='black', linewidth=0.8)
        ax.set_xticks([pos + 0.4 - width / 2 for pos in range(len(sizes))], sizes)
        ax.set_title(f'{label} / {report["reference"]}')
    axes[0][-1].legend(fontsize='small', loc='upper left', bbox_to_anchor=(1.02, 1))
    cond = report['conditions']
    where = cond.get('gpu') or f'CPU, {cond["threads"]} thread(s)'
    amp = ', AMP' if cond['amp'] else ''
    fig.suptitle(f'Backbones at batch 1 relative to {report["reference"]} ({where}{amp})')
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches='tight')
    plt.close(fig)


def plot_layers(report, path):
    """Per LaViT model (largest size measured): VA vs LA time per stage, whole layer and attention."""
    layers = report['layers']
    fig, axes = plt.subplots(1, len(layers), figsize=(5 * len(layers), 4), squeeze=False)
    for ax, (name, sizes) in zip(axes[0], layers.items()):
        size, stages = list(sizes.items())[-1]
        bars = (('va_layer_ms', 'VA layer'), ('la_layer_ms', 'LA layer'), ('va_attn_ms', 'VA attention'),
                ('la_attn_ms', 'LA attention'))
        for index, (key, label) in enumerate(bars):
            values = [row[key] or 0. for row in stages]
            ax.bar([row['stage'] + (index - 1.5) * 0.2 for row in stages], values, 0.2, label=label)
        ax.set_xticks([row['stage'] for row in stages], [f'stage {row["stage"]}' for row in stages])
        ax.set_ylabel('ms per layer (forward)')
        ax.set_title(f'{name} at {size}')
    axes[0][0].legend(fontsize='small')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_benchmark(args):
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # The conditions first: the load average before the run, and a missing ONNX Runtime before anything is built.
    report = dict(conditions=conditions(args, device), reference=args.reference, results={}, layers={})
    sizes = [parse_size(size) for size in args.sizes]
    models = {name: build_backbone(name).to(device) for name in args.models}
    runtimes = {}
    if args.onnxruntime:
        for name, model in models.items():
            if isinstance(model, LaViT):
                print(f'exporting {name} to ONNX ...', flush=True)
                runtimes[onnxruntime_name(name)] = OnnxRuntimeBackbone(model, args.threads)
    compiled = compile_models(models, args.compile_backend) if args.compile else {}
    peaks = measure_memory(args.models, sizes, device, args.amp, args.threads)
    for size_index, shape in enumerate(sizes):
        size = f'{shape[0]}x{shape[1]}'
        print(f'measuring {size} ...', flush=True)
        inputs = torch.rand(1, 3, *shape, device=device)
        if compiled:
            # Afresh at each size: the compiled LaViTs share one forward, which dynamo recompiles at most
            # torch._dynamo.config.recompile_limit (8) times; one size takes 6 (LaViT-T/S/B, 2 modes).
            torch._dynamo.reset()
        samples, compile_seconds, compile_errors = {}, {}, {}
        for step, run, train in STEPS:
            set_mode(models, train)
            timed = {**models, **runtimes} if step == 'fwd' else models  # ONNX Runtime runs forwards only
            samples[step], compile_seconds[step], compile_errors[step] = time_step(
                timed, compiled, run, inputs, device, args.amp, args.warmup, args.repeats)
        fwd, fwd_bwd = samples['fwd'], samples['fwd_bwd']
        for name, rows in time_layers(models, inputs, device, args.amp, args.warmup, args.repeats).items():
            report['layers'].setdefault(name, {})[size] = rows
        rows = report['results'][size] = {}
        for name in args.models:
            count = measure(name, shape)
            rows[name] = dict(params_m=count.params_m, gflops=count.gflops, fwd_ms=min(fwd[name]),
                              fwd_bwd_ms=min(fwd_bwd[name]), train_peak_mb=peaks[name][size_index],
                              fwd_samples_ms=fwd[name], fwd_bwd_samples_ms=fwd_bwd[name])
            if onnxruntime_name(name) in runtimes:
                onnx_samples = fwd[onnxruntime_name(name)]
                rows[name].update(onnxruntime_fwd_ms=min(onnx_samples), onnxruntime_fwd_samples_ms=onnx_samples)
            if compiled:
                rows[name]['compiled'] = compiled_row(compiled_name(name), samples, compile_seconds,
                                                      compile_errors)
    report['conditions']['load_average_end'] = os.getloadavg()
    report['ratios'] = ratios(report['results'], args.reference)
    if compiled:
        report['compiled_ratios'] = compiled_ratios(report['results'], args.reference)
    return report


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', nargs='+', default=list(BACKBONES), choices=list(BACKBONES))
    parser.add_argument('--sizes', nargs='+', default=list(DEFAULT_SIZES), metavar='HxW')
    parser.add_argument('--reference', default='lavit-s', choices=list(BACKBONES),
                        help='the model the ratios are taken against')
    parser.add_argument('--repeats', type=positive_int, default=3, help='timed rounds per measurement')
    parser.add_argument('--warmup', type=int, default=1, help='untimed rounds before them')
    parser.add_argument('--threads', type=positive_int, default=1, help='torch CPU threads (torch.set_num_threads)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--amp', action='store_true', help='fp16 autocast (CUDA only)')
    parser.add_argument('--onnxruntime', action='store_true',
                        help='also time the LaViT backbones exported to ONNX in ONNX Runtime (CPU only)')
    parser.add_argument('--compile', action='store_true',
                        help='also time every model compiled with torch.compile(model, dynamic=False) in the '
                             'same rounds; the compile time is reported apart')
    parser.add_argument('--compile-backend', default='inductor', metavar='BACKEND',
                        help='the torch.compile backend of --compile (torch._dynamo.list_backends()); '
                             'default: inductor')
    parser.add_argument('--out-dir', default='outputs/benchmark')
    args = parser.parse_args(argv)
    for size in args.sizes:
        try:
            parse_size(size)
        except ValueError:
            parser.error(f'--sizes takes HxW sizes such as 800x1333, got {size!r}')
    if args.amp and not args.device.startswith('cuda'):
        parser.error('--amp needs a CUDA device (--device cuda)')
    if args.compile and args.compile_backend not in torch._dynamo.list_backends(exclude_tags=()):
        parser.error(f'--compile-backend {args.compile_backend!r} is not a torch.compile backend; '
                     'torch._dynamo.list_backends(exclude_tags=()) lists them, e.g. inductor, aot_eager')
    if args.onnxruntime and args.device != 'cpu':
        parser.error('--onnxruntime compares with ONNX Runtime on the CPU: it needs --device cpu')
    return args


def main(argv=None):
    args = parse_args(argv)
    if Path(args.out_dir).exists() and not Path(args.out_dir).is_dir():
        raise ToolArgumentError(f'--out-dir {args.out_dir} is a file: give a folder for the report and charts')
    report = run_benchmark(args)
    print(format_report(report))
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / 'benchmark.json').write_text(json.dumps(report, indent=1))
    if report['ratios']:
        plot_ratios(report, out_dir / 'benchmark.png')
    if report['layers']:
        plot_layers(report, out_dir / 'layers.png')
    print(f'\nWrote {out_dir}/benchmark.json and the charts beside it.')
    return report

