"""Quiet start-up for the ``keras-wreg`` command (no TensorFlow import here).

TensorFlow's C++ start-up lines (oneDNN, CUDA stubs, CPU features, ``cuInit``) are written to
the process's stderr *before* absl logging is initialised, so ``TF_CPP_MIN_LOG_LEVEL`` does not
hide them. When the package is imported by the ``keras-wreg`` command (not by a library user),
:func:`native_stderr_silenced` points file descriptor 2 at ``/dev/null`` while TensorFlow, tf-keras
and Larq load; Python exceptions still propagate and are printed once it is restored.
``--debug`` (or ``KERAS_WREG_DEBUG=1``) keeps everything.
"""

import contextlib
import logging
import os
import sys

_CLI_NAMES = ("keras-wreg", "keras-wreg.exe", "keras-wreg-script.py")


def debug_requested(argv=None):
    """``--debug`` on the command line or ``KERAS_WREG_DEBUG`` set to a true value."""
    argv = sys.argv[1:] if argv is None else argv
    return "--debug" in argv or os.environ.get("KERAS_WREG_DEBUG", "") not in ("", "0")


def launched_as_cli():
    """Whether this process is the ``keras-wreg`` command (console script or ``-m``)."""
    if os.path.basename(sys.argv[0] if sys.argv else "") in _CLI_NAMES:
        return True
    orig = list(getattr(sys, "orig_argv", []))
    return any(a == "-m" and b in ("keras_wreg.cli", "keras_wreg")
               for a, b in zip(orig, orig[1:]))


@contextlib.contextmanager
def native_stderr_silenced(enabled=True):
    """Redirect file descriptor 2 to /dev/null inside the block (if ``enabled``)."""
    if not enabled:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:  # no real stderr (e.g. embedded): nothing to silence
        yield
        return
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        try:
            sys.stderr.flush()
        except Exception:  # pragma: no cover
            pass
        os.dup2(saved, 2)
        os.close(saved)


class _DropLarqAutoGraphWarning(logging.Filter):
    """Drops TensorFlow's "AutoGraph could not transform <... larq ...>" warning (harmless:
    Larq's QuantizedVariable helpers run as-is)."""

    def filter(self, record):
        message = record.getMessage()
        return not (message.startswith("AutoGraph could not transform")
                    and ("larq" in message or "QuantizedVariable" in message))


def quiet_python_warnings():
    """Install the AutoGraph filter on TensorFlow's logger (idempotent)."""
    logger = logging.getLogger("tensorflow")
    if not any(isinstance(f, _DropLarqAutoGraphWarning) for f in logger.filters):
        logger.addFilter(_DropLarqAutoGraphWarning())


__all__ = ["debug_requested", "launched_as_cli", "native_stderr_silenced",
           "quiet_python_warnings"]
