"""What the current MMLogger logs inside a block, for tests that check log lines."""
import logging

from mmengine.logging import MMLogger


class LogCapture(logging.Handler):
    """``with LogCapture(level) as logs:`` collects ``logs.messages`` of records at ``level`` and above.

    Args:
        level (int): The lowest level kept. Default: logging.DEBUG.
    """

    def __init__(self, level=logging.DEBUG):
        super().__init__(level)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())

    def __enter__(self):
        MMLogger.get_current_instance().addHandler(self)
        return self

    def __exit__(self, *exc):
        MMLogger.get_current_instance().removeHandler(self)
