"""Uploading one blob to a registry: one PUT, or PATCH chunks that survive failures and restarts.

A blob up to ``UPLOAD_PART`` bytes goes up in one ``PUT ?digest=``. A larger one goes in PATCH
chunks of that size (``Content-Range: a-b``), so a failure costs one chunk: the upload's status
(``GET`` → ``Range: 0-N``) says where the registry got to, and the upload goes on from there. The
distribution registry forgets an upload whose last chunk landed in part (the location we hold
names the old offset); then one new upload starts from the beginning. After every chunk the
location and offset are saved (``UploadState``, the store's catalog), so a push killed midway goes
on from the last chunk next time. A closing ``PUT ?digest=`` ends every upload.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from ollamalike.errors import RegistryError
from ollamalike.jsontypes import JSONObject
from ollamalike.registry.oci import RegistryClient
from ollamalike.registry.retry import Tries

log = logging.getLogger("ollamalike.registry")

UPLOAD_PART = 64 * 1024 * 1024

# ``body(start, end)`` streams bytes ``[start, end)`` of the blob.
Body = Callable[[int, int], AsyncIterator[bytes]]


class UploadState(Protocol):
    """Where a chunked upload's location and offset are kept between pushes."""

    def get(self, digest: str) -> JSONObject | None: ...

    def set(self, digest: str, state: JSONObject) -> None: ...

    def clear(self, digest: str) -> None: ...


class UploadLost(Exception):
    """The registry no longer knows an upload session: it must start over."""


def uploaded_bytes(header: str | None) -> int:
    """Bytes an upload holds, from its status's ``Range: 0-N`` header (N inclusive).

    The distribution registry also says ``0-0`` for an empty upload; that is taken as empty (at
    worst one byte is sent again and refused, and the next status says more).
    """
    if not header:
        return 0
    first, _, last = header.strip().removeprefix("bytes=").partition("-")
    if first != "0" or not last.isdigit():
        raise RegistryError(f"registry sent an unreadable upload range {header[:40]!r}")
    return int(last) + 1 if int(last) > 0 else 0


class BlobUpload:
    """Upload ``digest`` of ``size`` bytes through ``client``; ``saved`` keeps a chunked upload's place."""

    def __init__(
        self, client: RegistryClient, digest: str, size: int, body: Body, saved: UploadState | None = None
    ) -> None:
        self.client = client
        self.digest = digest
        self.size = size
        self.body = body
        self.saved = saved
        self.chunked = size > UPLOAD_PART

    async def run(self) -> None:
        url = await self._resume() if self.chunked else None
        for fresh in range(2):
            if url is not None:
                break
            url = await self._start()
            if url is None:
                return  # cross-repository mount, or the registry has it already
            if not self.chunked:
                break
            try:
                url = await self._chunks(url, 0)
            except UploadLost:
                if fresh:
                    raise RegistryError(
                        f"registry {self.client.name.host}: blob upload {self.digest[7:19]} failed twice"
                    ) from None
                log.info("upload of %s cannot be resumed; starting it again", self.digest[7:19])
                url = None
        assert url is not None
        await self._close(url)

    async def _start(self) -> str | None:
        """POST a new upload session; its location, or None when the registry needs no upload."""
        resp = await self.client.request("POST", f"{self.client.base}/blobs/uploads/", ok=(202, 201))
        location = resp.headers.get("Location")
        resp.release()
        if resp.status == 201:
            return None
        return self.client.trusted_location(self.client.base + "/", location)

    async def _status(self, url: str) -> tuple[str, int]:
        """The upload's latest location and how many bytes it holds."""
        resp = await self.client.request("GET", url, ok=(204,), follow=False)
        resp.release()
        return self.client.trusted_location(url, resp.headers.get("Location", url)), min(
            uploaded_bytes(resp.headers.get("Range")), self.size
        )

    async def _resume(self) -> str | None:
        """Go on with an upload an earlier push left; its location when done, None to start afresh."""
        state = self.saved.get(self.digest) if self.saved is not None else None
        location = state.get("location") if state is not None else None
        if state is None or state.get("size") != self.size or not isinstance(location, str):
            return None
        assert self.saved is not None
        try:
            url, offset = await self._status(self.client.trusted_location(self.client.base + "/", location))
        except RegistryError as e:
            log.info("the saved upload of %s cannot go on (%s); starting it again", self.digest[7:19], e.message)
            self.saved.clear(self.digest)
            return None
        log.info("resuming the upload of %s at byte %d", self.digest[7:19], offset)
        try:
            return await self._chunks(url, offset)
        except UploadLost:
            self.saved.clear(self.digest)
            return None

    async def _chunks(self, url: str, offset: int) -> str:
        """PATCH ``[offset, size)`` in order; returns the upload's latest location."""
        tries = Tries(self.client.retry)
        while offset < self.size:
            end = min(self.size, offset + UPLOAD_PART)
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{end - 1}",
                "Content-Length": str(end - offset),
            }
            try:
                resp = await self.client.request(
                    "PATCH", url, headers=headers, data=functools.partial(self.body, offset, end), ok=(202, 204),
                    follow=False, retry=False,
                )
                resp.release()
                url = self.client.trusted_location(url, resp.headers.get("Location", url))
                offset = end
                tries.reset()
                if self.saved is not None:
                    self.saved.set(self.digest, {"size": self.size, "location": url, "offset": offset})
                continue
            except RegistryError as e:
                if not tries.failed():
                    raise
                log.info("upload chunk at %d failed (%s); asking the registry where it got to", offset, e.message)
            await self.client.retry.pause(tries.failures)
            try:
                url, offset = await self._status(url)
            except RegistryError as e:
                raise UploadLost() from e
        return url

    async def _close(self, url: str) -> None:
        """The PUT ?digest= that ends the upload (carrying the whole blob when it was not chunked)."""
        data: Callable[[], AsyncIterator[bytes]] | None = None
        length = 0  # chunked: everything is up, the PUT only closes the upload
        if not self.chunked:
            length, data = self.size, functools.partial(self.body, 0, self.size)
        closing = url + ("&" if "?" in url else "?") + f"digest={self.digest}"
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length)}
        put = await self.client.request("PUT", closing, headers=headers, data=data, ok=(201, 204), follow=False)
        put.release()
        if self.saved is not None:
            self.saved.clear(self.digest)
