"""The peak memory of one training step of a backbone, on CUDA or CPU (tools/benchmark.py).

On CUDA: torch.cuda.max_memory_allocated above what was allocated before the
step. On CPU: in a fresh process, the rise of the peak resident set size
(Linux VmHWM, reset through /proc/self/clear_refs) over the resident size
before the step, with glibc's mmap threshold fixed (MALLOC_MMAP_THRESHOLD_) so
that freed tensors go back to the OS and each step starts from a clean slate.
"""
import gc
import multiprocessing
import os

import torch

from .flops import build_backbone
from .steps import synchronize, training_step

#: Warms the kernels of a fresh memory worker before the first measured step.
WARMUP_SHAPE = (64, 64)


def resident_mib(field):
    """A field of /proc/self/status (VmRSS, VmHWM) in MiB."""
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f'{field} not in /proc/self/status')


def train_peak_mib(model, inputs, device, amp):
    """Peak memory of one training step above the memory held before it, in MiB."""
    gc.collect()
    if device.type == 'cuda':
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        training_step(model, inputs, device, amp)
        synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    before = resident_mib('VmRSS')
    with open('/proc/self/clear_refs', 'w') as clear_refs:
        clear_refs.write('5')  # resets VmHWM to the current resident size
    training_step(model, inputs, device, amp)
    return resident_mib('VmHWM') - before


def memory_worker(names, shapes, device_name, amp, threads):
    """Builds each model in turn and measures a training step at each shape: {name: [MiB]}."""
    torch.set_num_threads(threads)
    device = torch.device(device_name)
    peaks = {}
    for name in names:
        model = build_backbone(name).to(device)
        model.train()
        training_step(model, torch.rand(1, 3, *WARMUP_SHAPE, device=device), device, amp)
        peaks[name] = [train_peak_mib(model, torch.rand(1, 3, *shape, device=device), device, amp)
                       for shape in shapes]
        del model
    return peaks


def measure_memory(names, shapes, device, amp, threads):
    """Training-step peaks; on CPU in a fresh spawned process (see the module docstring)."""
    if device.type == 'cuda':
        return memory_worker(names, shapes, str(device), amp, threads)
    previous = os.environ.get('MALLOC_MMAP_THRESHOLD_')
    os.environ['MALLOC_MMAP_THRESHOLD_'] = '65536'
    try:
        with multiprocessing.get_context('spawn').Pool(1) as pool:
            return pool.apply(memory_worker, (names, shapes, 'cpu', amp, threads))
    finally:
        if previous is None:
            del os.environ['MALLOC_MMAP_THRESHOLD_']
        else:
            os.environ['MALLOC_MMAP_THRESHOLD_'] = previous


def memory_method(device):
    if device.type == 'cuda':
        return 'torch.cuda.max_memory_allocated above the allocation before the step'
    return ('peak RSS (VmHWM, reset via /proc/self/clear_refs) above RSS before the step, in a fresh '
            'process with MALLOC_MMAP_THRESHOLD_=65536')
