"""The one place that imports ``mujoco.mjx``, quietly.

``mujoco.mjx`` tries its optional Warp backend on import and, when ``warp`` is not installed, ``print``s
"Failed to import warp: …" / "Failed to import mujoco_warp: …" on stdout. We capture stdout during the import,
drop exactly those lines (they are passed to this module's logger at DEBUG level; ``mujoco.mjx.warp.WARP_INSTALLED``
still says False, nothing pretends warp is there), and write anything else the import printed back to stdout. An
error raised by the import itself (for instance an ImportError of ``mujoco.mjx``) propagates unchanged.

Every module that imports ``mujoco.mjx`` (or its ``_src`` submodules) calls :func:`import_mjx` first: once the
package is in ``sys.modules`` later imports print nothing.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from types import ModuleType

_WARP_MESSAGES = ("Failed to import warp:", "Failed to import mujoco_warp:")
_log = logging.getLogger(__name__)


def import_mjx() -> ModuleType:
    """``import mujoco.mjx`` without its warp-backend messages on stdout; returns the module."""
    if "mujoco.mjx" in sys.modules:
        return sys.modules["mujoco.mjx"]
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            import mujoco.mjx as mjx
    finally:
        other = []
        for line in captured.getvalue().splitlines(keepends=True):
            if line.startswith(_WARP_MESSAGES):
                _log.debug("mujoco.mjx: %s", line.rstrip())
            else:
                other.append(line)
        if other:
            sys.stdout.write("".join(other))
    return mjx
