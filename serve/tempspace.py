"""The demo's temporary folder, bounded: uploads go after a short age, and the folder has a size cap.

Gradio writes every upload into the demo's own temporary folder (serve/app.py) and, by itself, keeps it
until the demo stops: ten 5 MB uploads left 49 MB behind, and nothing bounded the total. Here the files
present once the page is built (Gradio's copies of the examples and plots it shows) stay; any other file
older than `max_age_s` is removed, by `tidy`, which serve/app.py calls every few seconds and `DiskLimit`
before each upload. `DiskLimit` refuses an upload (507, one line) that could take the folder past `cap`.
"""
from __future__ import annotations

import contextlib
import os
import time

from serve.bodylimit import UPLOAD_PATH, answer


class TempSpace:
    def __init__(self, folder: str, cap: int, max_age_s: float):
        self.folder, self.cap, self.max_age_s = folder, cap, max_age_s
        self.keep: set[str] = set()

    def files(self) -> list[str]:
        return [os.path.join(d, f) for d, _, names in os.walk(self.folder) for f in names]

    def keep_current(self) -> None:
        """Keep the files there now (the page's own copies) whatever their age."""
        self.keep = set(self.files())

    def tidy(self) -> int:
        """Remove the files (and emptied folders) older than max_age_s, but those kept; the bytes left."""
        now, used = time.time(), 0
        for path in self.files():
            with contextlib.suppress(FileNotFoundError):  # a request, or another tidy, removed it first
                st = os.stat(path)
                if path not in self.keep and now - st.st_mtime > self.max_age_s:
                    os.remove(path)
                    with contextlib.suppress(OSError):  # Gradio's <hash>/ folder of one upload: gone once empty
                        os.rmdir(os.path.dirname(path))
                else:
                    used += st.st_size
        return used


class DiskLimit:
    """ASGI middleware: an upload that could take the temporary folder past its cap is answered 507 before one
    byte of it is read (its size: the declared Content-Length, else the upload limit)."""

    def __init__(self, app, space: TempSpace, upload_limit: int):
        self.app, self.space, self.upload_limit = app, space, upload_limit

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].rstrip("/").endswith(UPLOAD_PATH):
            declared = dict(scope["headers"]).get(b"content-length", b"")
            size = int(declared) if declared.isdigit() else self.upload_limit
            used = self.space.tidy()
            if used + size > self.space.cap:
                mb = 1 << 20
                return await answer(send, 507, f"The demo's upload space is full ({used / mb:.1f} MB of "
                                                f"{self.space.cap / mb:.0f} MB); try again in a minute".encode())
        return await self.app(scope, receive, send)
