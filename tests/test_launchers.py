"""The launchers as users run them: Slurm's srun, torchrun on two nodes, and the interpreter they start.

A stand-in ``srun`` (and ``scontrol``) on PATH starts a job's tasks on this machine with the variables a
real srun sets; the two "nodes" of the multi-node run are two torchrun agents here. Every run trains the
demo Mask R-CNN for 2 iterations in 2 processes on CPU (gloo), on 127.0.0.1 only, and each rank saves its
final weights so that the ranks can be compared (mmengine's checkpoints are rank 0's alone).
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import types

import pytest
import torch

from mmlavit.cli.demo_data import make_coco_shapes
from mmlavit.cli.tool_process import REPO
from test_readme import activated_env

#: Seconds a launched job may take (two processes start mmdet and train 2 iterations in well under this).
JOB_TIMEOUT = 600

pytestmark = pytest.mark.slow

STAND_IN_SRUN = '''#!{python}
"""srun on one node: runs the command in --ntasks tasks here, with the variables a real srun sets."""
import json
import os
import subprocess
import sys
import time

arguments = sys.argv[1:]
options = []
while arguments and arguments[0].startswith('-'):
    options.append(arguments.pop(0))
    if options[-1] in ('-p', '--partition', '-J', '--job-name'):
        options[-1] += '=' + arguments.pop(0)
values = dict(option.split('=', 1) for option in options if '=' in option)
with open(os.environ['SRUN_RECORD'], 'w') as record:
    json.dump(dict(options=options, command=arguments), record)
ntasks = int(values['--ntasks'])
assert int(values.get('--ntasks-per-node', ntasks)) >= ntasks, 'the stand-in runs one node'
job = dict(SLURM_JOB_ID='4242', SLURM_JOBID='4242', SLURM_STEP_ID='0', SLURM_JOB_NAME=values['--job-name'],
           SLURM_JOB_PARTITION=values['-p'], SLURM_NTASKS=str(ntasks), SLURM_NPROCS=str(ntasks),
           SLURM_STEP_NUM_TASKS=str(ntasks), SLURM_TASKS_PER_NODE=str(ntasks), SLURM_NNODES='1',
           SLURM_JOB_NUM_NODES='1', SLURM_NODEID='0', SLURM_NODELIST='127.0.0.1', SLURM_JOB_NODELIST='127.0.0.1',
           SLURM_STEP_NODELIST='127.0.0.1', SLURMD_NODENAME='127.0.0.1',
           SLURM_CPUS_PER_TASK=values.get('--cpus-per-task', '1'), SLURM_SUBMIT_DIR=os.getcwd())
tasks = [subprocess.Popen(arguments, env=dict(os.environ, **job, SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank)))
         for rank in range(ntasks)]
while any(task.poll() is None for task in tasks):
    if any(task.poll() for task in tasks):  # --kill-on-bad-exit: a failed task ends the step
        for task in tasks:
            task.kill()
    time.sleep(0.2)
sys.exit(next((task.returncode for task in tasks if task.returncode), 0))
'''
#: ``scontrol show hostname[s] LIST``: the hosts of a comma-separated list, one a line.
STAND_IN_SCONTROL = '''#!/usr/bin/env bash
[ "$1" = show ] && [[ "$2" = hostname* ]] || exit 1
tr ',' '\\n' <<< "$3"
'''
RANK_WEIGHTS_HOOK = '''
"""Saves each rank's final weights into the work dir as rank<RANK>_weights.pth."""
import os.path as osp

import torch
from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module()
class RankWeightsHook(Hook):

    def after_train(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        torch.save(dict(world_size=get_world_size(), state_dict=model.state_dict()),
                   osp.join(runner.work_dir, f'rank{get_rank()}_weights.pth'))
'''
#: The demo config with every rank's weights saved at the end.
RANK_WEIGHTS_CONFIG = '''
_base_ = '{demo}'
custom_imports = dict(imports=['mmlavit', 'rank_weights_hook'], allow_failed_imports=False)
custom_hooks = [dict(type='mmlavit.DPLossHook'), dict(type='RankWeightsHook')]
'''
#: Variables of an enclosing launcher that must not leak into the launched job.
LAUNCHER_VARIABLES = re.compile(r'^(SLURM_\w+|RANK|WORLD_SIZE|LOCAL_RANK|LOCAL_WORLD_SIZE|MASTER_ADDR|MASTER_PORT|'
                                r'PYTHON)$')


def free_port():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


@pytest.fixture(scope='module')
def job_files(tmp_path_factory):
    """The stand-in srun and scontrol, the hook module and config that save each rank's weights, the data."""
    root = tmp_path_factory.mktemp('launchers')
    bin_dir = root / 'bin'
    bin_dir.mkdir()
    for name, text in (('srun', STAND_IN_SRUN.format(python=sys.executable)), ('scontrol', STAND_IN_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (root / 'rank_weights_hook.py').write_text(RANK_WEIGHTS_HOOK)
    (root / 'config.py').write_text(RANK_WEIGHTS_CONFIG.format(demo=REPO / 'configs/demo/mask_rcnn_lavit_t_shapes.py'))
    make_coco_shapes(str(root / 'coco'), num_train=8, num_val=4, seed=1)
    env = {key: value for key, value in activated_env().items() if not LAUNCHER_VARIABLES.match(key)}
    env.update(PATH=f'{bin_dir}{os.pathsep}{env["PATH"]}', PYTHONPATH=str(root), OMP_NUM_THREADS='1',
               GLOO_SOCKET_IFNAME='lo', SRUN_RECORD=str(root / 'srun.json'))
    return types.SimpleNamespace(root=root, config=str(root / 'config.py'), data_root=f'{root / "coco"}/', env=env)


def two_iterations(job_files):
    """8 images in batches of 4 per process, 2 processes: one iteration per epoch, two epochs."""
    return ['--cfg-options', f'data_root={job_files.data_root}', 'train_cfg.max_epochs=2',
            'default_hooks.checkpoint.interval=2', 'default_hooks.logger.interval=1']


def run_together(jobs, log_dir):
    """Starts each (command, env) at once in its own process group and waits for all.

    Returns:
        list[tuple[int, str]]: Each one's exit code and output. On a timeout every process group is killed.
    """
    started = []
    for index, (command, env) in enumerate(jobs):
        log_path = log_dir / f'launcher{index}.log'
        with open(log_path, 'w') as log:
            process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        started.append((process, log_path))
    deadline = time.monotonic() + JOB_TIMEOUT
    try:
        for process, _ in started:
            process.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        for process, _ in started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    return [(process.returncode, log_path.read_text()) for process, log_path in started]


def check_ranks_agree(work_dir):
    """Both ranks of a 2-process run saved their weights, and the weights are the same."""
    ranks = [torch.load(work_dir / f'rank{rank}_weights.pth', map_location='cpu') for rank in (0, 1)]
    assert [saved['world_size'] for saved in ranks] == [2, 2]
    first, second = (saved['state_dict'] for saved in ranks)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    # What rank 0 checkpointed is what it trained.
    checkpoint = torch.load(work_dir / 'epoch_2.pth', map_location='cpu', weights_only=False)
    assert all(torch.equal(checkpoint['state_dict'][key], first[key]) for key in first)


@pytest.fixture(scope='module')
def slurm_training(job_files):
    """tools/slurm_train.sh with 2 tasks on one node: its exit code, output, work dir and srun call."""
    work_dir = job_files.root / 'slurm'
    work_dir.mkdir()
    env = dict(job_files.env, GPUS='2', GPUS_PER_NODE='2', CPUS_PER_TASK='1', SRUN_ARGS='--exclusive --time=10',
               MASTER_PORT=str(free_port()))
    [(code, log)] = run_together([(['bash', 'tools/slurm_train.sh', 'cpu', 'lavit-t-shapes', job_files.config,
                                    str(work_dir), *two_iterations(job_files)], env)], work_dir)
    srun = json.loads((job_files.root / 'srun.json').read_text())
    return types.SimpleNamespace(code=code, log=log, work_dir=work_dir, srun=srun)


def test_slurm_train_runs_a_task_per_rank(job_files, slurm_training):
    log, work_dir, srun = slurm_training.log, slurm_training.work_dir, slurm_training.srun
    assert slurm_training.code == 0, log[-3000:]
    assert srun['options'] == ['-p=cpu', '--job-name=lavit-t-shapes', '--gres=gpu:2', '--ntasks=2',
                               '--ntasks-per-node=2', '--cpus-per-task=1', '--kill-on-bad-exit=1', '--exclusive',
                               '--time=10']
    assert srun['command'][:6] == ['python', '-u', 'tools/train.py', job_files.config, f'--work-dir={work_dir}',
                                   '--launcher=slurm']
    assert 'Distributed launcher: slurm' in log and 'Distributed training: True' in log
    assert re.search(r'Epoch\(train\) \[2\]\[1/1\].*loss_dp: ', log), log[-3000:]
    check_ranks_agree(work_dir)


def test_slurm_test_evaluates_on_every_task(job_files, slurm_training, tmp_path):
    assert slurm_training.code == 0, slurm_training.log[-3000:]
    work_dir = slurm_training.work_dir
    env = dict(job_files.env, GPUS='2', GPUS_PER_NODE='2', CPUS_PER_TASK='1', MASTER_PORT=str(free_port()))
    [(code, log)] = run_together([(['bash', 'tools/slurm_test.sh', 'cpu', 'lavit-t-test', job_files.config,
                                    str(work_dir / 'epoch_2.pth'), '--work-dir', str(tmp_path), '--cfg-options',
                                    f'data_root={job_files.data_root}'], env)], tmp_path)
    assert code == 0, log[-3000:]
    assert 'Distributed launcher: slurm' in log
    assert re.search(r'coco/bbox_mAP: [0-9.]+', log) and re.search(r'coco/segm_mAP: [0-9.]+', log), log[-3000:]


def test_dist_train_on_two_nodes(job_files):
    """NNODES=2 NODE_RANK=0|1 MASTER_ADDR PORT tools/dist_train.sh CONFIG 1, started twice, trains as one job."""
    work_dir = job_files.root / 'two_nodes'
    work_dir.mkdir()
    env = dict(job_files.env, NNODES='2', MASTER_ADDR='127.0.0.1', PORT=str(free_port()))
    command = ['bash', 'tools/dist_train.sh', job_files.config, '1', '--work-dir', str(work_dir),
               *two_iterations(job_files)]
    nodes = run_together([(command, dict(env, NODE_RANK=str(rank))) for rank in (0, 1)], work_dir)
    for code, log in nodes:
        assert code == 0, log[-3000:]
    assert re.search(r'Epoch\(train\) \[2\]\[1/1\].*loss_dp: ', nodes[0][1]), nodes[0][1][-3000:]
    check_ranks_agree(work_dir)


@pytest.mark.parametrize('launcher', ['dist_launch.sh', 'slurm_launch.sh'])
def test_launchers_use_the_activated_interpreter(job_files, tmp_path, launcher):
    """tools/dist_*.sh and tools/slurm_*.sh run `python` from PATH (the activated environment) unless PYTHON names
    another."""
    script = tmp_path / 'prefix.py'
    script.write_text('import sys\nprint("prefix", sys.prefix)\n')
    arguments = ['1'] if launcher == 'dist_launch.sh' else ['cpu', 'prefix']
    env = dict(job_files.env, PORT=str(free_port()), GPUS='1')
    process = subprocess.run(['bash', f'tools/{launcher}', *arguments, str(script)], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 0, process.stderr[-2000:]
    assert f'prefix {sys.prefix}' in process.stdout
