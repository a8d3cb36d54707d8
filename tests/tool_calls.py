"""The tools as the tests run them: mmlavit.cli.tool_process.run_tool with a time limit, so that a hung tool
fails its test instead of stalling the suite."""
import functools

from mmlavit.cli.tool_process import run_tool as run_tool_without_limit

#: Seconds a tool may run in a test (the slowest take a few minutes on 2 cores).
TOOL_TIMEOUT = 900

run_tool = functools.partial(run_tool_without_limit, timeout=TOOL_TIMEOUT)
