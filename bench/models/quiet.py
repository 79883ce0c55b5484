"""A library call kept quiet: its logging, warnings and fd 2 silenced while it runs, for calls
whose failure the caller reports as one line (torch logs a traceback of its own first;
onnxruntime.quantization logs a warning per weight it leaves per-tensor)."""
from __future__ import annotations

import os


class quiet:
    """Python logging and warnings silenced, and fd 2 sent to /dev/null, for a library call whose
    failure is reported as one line by the caller (torch logs a traceback of its own first)."""

    def __enter__(self) -> None:
        import logging
        import warnings

        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")
        self._level = logging.root.manager.disable
        logging.disable(logging.CRITICAL)
        self._saved = os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)

    def __exit__(self, *exc: object) -> None:
        import logging

        os.dup2(self._saved, 2)
        os.close(self._saved)
        logging.disable(self._level)
        self._warnings.__exit__(None, None, None)
