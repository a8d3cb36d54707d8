"""The tools as the tests run them: in this process as their command line runs them (:func:`call_tool`), or as
a user runs them, in a fresh interpreter with a time limit (:func:`run_tool`)."""
import contextlib
import functools
import importlib
import io
import itertools
import os
import subprocess
import traceback
import warnings

from mmengine.logging import MMLogger
from mmengine.utils import ManagerMixin

from mmlavit.cli import warning_filters
from mmlavit.cli.errors import exit_on_user_error
from mmlavit.cli.tool_process import REPO
from mmlavit.cli.tool_process import run_tool as run_tool_without_limit

#: Seconds a tool may run in a test as its own process (the slowest take a few minutes on 2 cores).
TOOL_TIMEOUT = 900

run_tool = functools.partial(run_tool_without_limit, timeout=TOOL_TIMEOUT)
_calls = itertools.count()

#: The module whose ``main(argv)`` each script of tools/ runs inside ``exit_on_user_error``.
TOOL_MODULES = {
    'tools/train.py': 'mmlavit.cli.training',
    'tools/test.py': 'mmlavit.cli.testing',
    'tools/infer.py': 'mmlavit.cli.infer',
    'tools/convert_checkpoint.py': 'mmlavit.cli.convert',
    'tools/export_onnx.py': 'mmlavit.cli.onnx_export',
    'tools/get_flops.py': 'mmlavit.cli.flops',
    'tools/benchmark.py': 'mmlavit.cli.benchmark',
    'tools/analyze_attention.py': 'mmlavit.cli.attention_analysis',
    'tools/ablate.py': 'mmlavit.cli.ablation',
    'tools/adapt_config.py': 'mmlavit.cli.adapt_config',
}


def _managed_instances():
    """Every instance of mmengine's managed classes (loggers, message hubs, visualizers, scopes) by class."""
    classes, found = [ManagerMixin], {}
    while classes:
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        if '_instance_dict' in vars(cls):
            found[cls] = dict(cls._instance_dict)
    return found


@contextlib.contextmanager
def _own_runner_instances():
    """Forgets the loggers, message hubs, visualizers and scopes made inside (the log files closed after), as a
    fresh process would not have them: mmengine names them by the second a Runner starts."""
    before = _managed_instances()
    try:
        yield
    finally:
        for cls, instances in _managed_instances().items():
            for name in set(instances) - set(before.get(cls, {})):
                instance = cls._instance_dict.pop(name)
                if isinstance(instance, MMLogger):
                    for handler in instance.handlers[:]:
                        handler.close()
                        instance.removeHandler(handler)


def call_tool(script, *args, cwd=REPO) -> subprocess.CompletedProcess:
    """Runs tools/<script> in this process, as ``python tools/<script> ARGS`` runs it, and captures its output.

    The script's ``main(argv)`` runs inside ``exit_on_user_error`` with the
    tools' warning filters, from ``cwd``; an ``error: ...`` exit gives status
    1 and the message at the end of stderr, an uncaught exception status 1
    and its traceback, as the interpreter prints them; the warnings shown go
    to stderr.

    Returns:
        subprocess.CompletedProcess: With ``returncode``, ``stdout`` and ``stderr``.
    """
    main = importlib.import_module(TOOL_MODULES[str(script)]).main
    argv = [str(arg) for arg in args]
    stdout, stderr = io.StringIO(), io.StringIO()
    previous_cwd = os.getcwd()
    returncode = 0
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), \
            warnings.catch_warnings(record=True) as shown, _own_runner_instances():
        warnings.resetwarnings()
        warnings.simplefilter('default')
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter('ignore', category)
        warning_filters.hide_noise()
        # The current logger of a fresh process, printing to this call's output.
        MMLogger.get_instance(f'tool_call_{next(_calls)}')
        os.chdir(cwd)
        try:
            with exit_on_user_error():
                main(argv)
        except SystemExit as stop:
            if isinstance(stop.code, str):
                returncode = 1
                print(stop.code, file=stderr)
            else:
                returncode = stop.code or 0
        except Exception:  # noqa: BLE001 - reported as the interpreter reports it
            returncode = 1
            print(traceback.format_exc(), file=stderr)
        finally:
            os.chdir(previous_cwd)
    warning_text = ''.join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno) for w in shown)
    return subprocess.CompletedProcess(['python', str(script), *argv], returncode, stdout.getvalue(),
                                       warning_text + stderr.getvalue())
