"""libtiff's own warnings and errors, kept for the thread that decodes instead of printed to stderr.

Pillow decodes compressed TIFFs with libtiff, whose default handlers write straight to the process's
stderr ("LZWDecode: Not enough data at scanline 0 ..."), naming no file and mixed into rmpe's own
lines. :func:`install` points the handlers of the libtiff that Pillow loaded at one that formats the
message and keeps it per thread; the image decoder takes them and names the file. Where that cannot
be done (no libtiff in Pillow, no /proc to find it), libtiff keeps printing as before.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path

_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p)
_local = threading.local()
_lock = threading.Lock()
_state: dict[str, object] = {}  # "handler": the installed callback (kept alive), "ok": whether it is installed


def _loaded_libtiff() -> str | None:
    """Path of the libtiff this process has loaded (Pillow's own copy in its wheel), from /proc/self/maps."""
    try:
        for line in Path("/proc/self/maps").read_text().splitlines():
            path = line.split()[-1] if line.split() else ""
            if "/libtiff" in path and ".so" in path:
                return path
    except OSError:
        pass
    return None


def _keep(module: bytes | None, fmt: bytes | None, args: int | None) -> None:
    """libtiff's handler: format ``fmt`` with its va_list and keep "module: message" for this thread."""
    text = b""
    if fmt:
        buffer = ctypes.create_string_buffer(512)
        _state["vsnprintf"](buffer, len(buffer), fmt, args)  # type: ignore[operator]
        text = buffer.value
    message = text.decode("utf-8", "replace").strip()
    if module and b"." not in module:  # a function's name (LZWDecode) helps; Pillow's "tempfile.tif" does not
        message = f"{module.decode('utf-8', 'replace')}: {message}"
    messages = getattr(_local, "messages", None)
    if messages is None:
        messages = _local.messages = []
    if len(messages) < 20:
        messages.append(message)


def install() -> bool:
    """Route libtiff's messages to :func:`take` (once per process); False where libtiff cannot be reached."""
    with _lock:
        if "ok" in _state:
            return bool(_state["ok"])
        _state["ok"] = False
        from PIL import Image, features

        Image.init()
        if not features.check("libtiff"):
            return False
        from PIL import TiffImagePlugin  # noqa: F401  (loads the module that links libtiff)

        path = _loaded_libtiff()
        if path is None:
            return False
        try:
            libtiff, libc = ctypes.CDLL(path), ctypes.CDLL(None)
            vsnprintf = libc.vsnprintf
            vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]
            handler = _HANDLER(_keep)
            for name in ("TIFFSetWarningHandler", "TIFFSetErrorHandler"):
                setter = getattr(libtiff, name)
                setter.argtypes, setter.restype = [_HANDLER], ctypes.c_void_p
                setter(handler)
        except (OSError, AttributeError):
            return False
        _state.update(handler=handler, vsnprintf=vsnprintf, ok=True)
        return True


def take() -> list[str]:
    """The libtiff messages of this thread since the last call (and forget them)."""
    messages = getattr(_local, "messages", None) or []
    _local.messages = []
    return messages
