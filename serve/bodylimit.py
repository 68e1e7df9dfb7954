"""An ASGI middleware that answers 413 to any request body above a limit, before the body is read.

Gradio reads a JSON body whole into memory (a 150 MB POST /gradio_api/queue/join grew the server by
360 MB, for good). Here a declared Content-Length above the limit is refused before one byte of the
body is read; a body without one (chunked) is counted as it streams and refused as soon as it passes
the limit. The upload route gets the upload limit (--max-file-size plus room for the multipart
framing); Gradio still applies its own per-file check inside it.
"""
from __future__ import annotations

UPLOAD_PATH = "/gradio_api/upload"
MULTIPART_ROOM = 64 * 1024  # headers and boundaries around one uploaded file


class BodyTooLarge(Exception):
    """Raised inside the app when a streamed body passes the limit; the middleware answers 413."""


class BodyLimit:
    def __init__(self, app, limit: int, upload_limit: int):
        self.app, self.limit, self.upload_limit = app, limit, upload_limit + MULTIPART_ROOM

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.upload_limit if scope["path"].rstrip("/").endswith(UPLOAD_PATH) else self.limit
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                return await answer(send, 400, b"Bad Content-Length")
            if int(declared) > limit:
                return await answer(send, 413, f"Request body above the {limit:,} byte limit".encode())

        seen, over, started = 0, False, False

        async def counted():
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    over = True
                    raise BodyTooLarge()
            return message

        async def guarded(message):
            nonlocal started
            if over:  # whatever the app makes of the interrupted body, the answer is ours
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except BodyTooLarge:
            pass
        except Exception:
            if not over:
                raise
        if over and not started:
            await answer(send, 413, f"Request body above the {limit:,} byte limit".encode())


async def answer(send, status: int, text: bytes):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(text)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": text})
