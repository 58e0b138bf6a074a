"""How hebbref reports what it did: Python's ``logging``, under the logger ``"hebbref"``.

A library should not print. hebbref's modules send their messages (a run's final
summary, ...) to ``logging.getLogger(__name__)``, and the ``"hebbref"`` logger has only
a ``NullHandler`` (added when hebbref is imported): from Python nothing is shown until
the application configures logging, e.g. ``logging.basicConfig(level=logging.INFO)``.

The ``hebbref`` command is such an application: ``show_messages()`` prints INFO messages
as they are, one line each, on standard output and warnings and errors on standard
error, as the command printed them before. Progress bars are not messages: they are
drawn on the stream a caller passes (standard error by default) and are switched off
with ``quiet``.
"""
import logging
import sys

LOGGER_NAME = "hebbref"


def install_null_handler():
    """Give the ``"hebbref"`` logger a NullHandler (once), as libraries should."""
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(handler, logging.NullHandler) for handler in logger.handlers):
        logger.addHandler(logging.NullHandler())


class ConsoleHandler(logging.Handler):
    """The command line's handler: INFO and below on stdout, warnings and errors on stderr.

    It looks up ``sys.stdout`` and ``sys.stderr`` at each message, so that a caller that
    replaces them (a test, a notebook) gets the messages.
    """

    def emit(self, record):
        try:
            stream = sys.stdout if record.levelno < logging.WARNING else sys.stderr
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001 -- logging's own convention: never raise from emit
            self.handleError(record)


def show_messages(level=logging.INFO):
    """Print hebbref's messages on the console (for the command line); returns the handler.

    Calling it again replaces the handler it installed before, so messages are never
    printed twice.
    """
    logger = logging.getLogger(LOGGER_NAME)
    for handler in [h for h in logger.handlers if isinstance(h, ConsoleHandler)]:
        logger.removeHandler(handler)
    handler = ConsoleHandler(level)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler
