"""Object storage in an S3 bucket (AWS or any S3-compatible endpoint), through boto3 in worker threads.

Shared by every replica, so build logs written by the replica that ran a build are readable on all of them.
Credentials come from boto3's standard chain (environment, shared files, web identity, instance or pod role)
and never appear in a log line or an error message.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from wave.errors import Unavailable
from wave.storage.base import check_key

log = logging.getLogger("wave.storage.s3")

T = TypeVar("T")

_MISSING = {"404", "NoSuchKey", "NotFound"}
_DENIED = {
    "403",
    "AccessDenied",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AccountProblem",
}
_UNREACHABLE = (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)
_RACE = {"PreconditionFailed", "ConditionalRequestConflict"}
APPEND_ATTEMPTS = 8


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "")) or str(
        exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
    )


class S3Storage:
    """Keys live under ``<prefix>/`` in ``bucket``.

    ``append`` is a read-modify-write of the whole object with an S3 conditional write (``If-Match`` on the
    ETag read, or ``If-None-Match: *`` for a new object), retried when another writer got there first, so
    concurrent appends from several replicas are never lost. Each append costs a GET and a PUT of the whole
    object: append in chunks (a build log flushed every second or so), not per line. Endpoints that do not
    implement conditional writes fall back to last-writer-wins, which is still safe with one writer per key
    (a build's log is written only by the replica running that build).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_attempts: int = 3,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.region = region
        # Short timeouts and few retries: an unreachable endpoint is a fast 503, not a request that hangs.
        self._config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
            # S3-compatible servers (MinIO, Ceph, moto) want path-style URLs and no default CRC checksums.
            s3={"addressing_style": "path"} if endpoint_url else None,
            request_checksum_calculation="when_required" if endpoint_url else "when_supported",
        )
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._append_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._conditional_writes = True
        self._bucket_checked = False

    def __repr__(self) -> str:
        return f"S3Storage(bucket={self.bucket!r}, prefix={self.prefix!r}, endpoint={self._where()!r})"

    # --- plumbing ---------------------------------------------------------------------------------------

    def _s3(self) -> Any:
        """The one client, created on first use in a worker thread: creating it reads botocore's data files
        and the credential chain, which is blocking I/O that must stay off the event loop."""
        with self._client_lock:
            if self._client is None:
                session = boto3.session.Session()
                self._client = session.client(
                    "s3", endpoint_url=self.endpoint_url, region_name=self.region, config=self._config
                )
            return self._client

    def _name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _where(self) -> str:
        if not self.endpoint_url:
            return f"AWS S3 ({self.region})" if self.region else "AWS S3"
        url = urlsplit(self.endpoint_url)
        host = url.hostname or ""
        return f"{url.scheme}://{host}:{url.port}" if url.port else f"{url.scheme}://{host}"

    def _unavailable(self, action: str, exc: Exception, *, head_bucket: bool = False) -> Unavailable:
        """One readable message per failure; it names the bucket and endpoint, never credentials."""
        bucket = f"object storage bucket {self.bucket!r}"
        if isinstance(exc, ClientError):
            code = _code(exc)
            if code == "NoSuchBucket" or (head_bucket and code in _MISSING):
                self._bucket_checked = False
                message = f"{bucket} does not exist at {self._where()}"
            elif code in _DENIED:
                message = (
                    f"access to {bucket} was denied ({code}) while trying to {action}: check the "
                    "service's AWS credentials and the bucket policy"
                )
            else:
                message = f"{bucket} failed to {action}: {code or 'error'}"
        elif isinstance(exc, NoCredentialsError | PartialCredentialsError):
            message = (
                f"no usable AWS credentials for {bucket}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, a profile, or a workload/instance role"
            )
        elif isinstance(exc, _UNREACHABLE):
            message = f"{bucket} cannot be reached at {self._where()} ({type(exc).__name__})"
        else:
            message = f"{bucket} failed to {action} ({type(exc).__name__})"
        log.warning("%s", message)
        return Unavailable(message)

    async def _run(self, action: str, fn: Callable[[], T], *, head_bucket: bool = False) -> T:
        try:
            return await asyncio.to_thread(fn)
        except (ClientError, BotoCoreError) as exc:
            raise self._unavailable(action, exc, head_bucket=head_bucket) from None

    # --- ObjectStorage ------------------------------------------------------------------------------------

    async def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        name = self._name(key)

        def put() -> None:
            self._s3().put_object(Bucket=self.bucket, Key=name, Body=data, ContentType=content_type)

        await self._run(f"write {key!r}", put)

    async def get(self, key: str) -> bytes | None:
        name = self._name(key)

        def get() -> bytes | None:
            try:
                response = self._s3().get_object(Bucket=self.bucket, Key=name)
            except ClientError as exc:
                if _code(exc) == "NoSuchKey":
                    return None
                raise
            body: bytes = response["Body"].read()
            return body

        return await self._run(f"read {key!r}", get)

    async def append(self, key: str, data: bytes) -> None:
        name = self._name(key)
        lock = self._append_locks.get(name)
        if lock is None:
            lock = self._append_locks[name] = asyncio.Lock()
        async with lock:  # appends from this process queue here; other replicas are handled by If-Match
            if not await self._run(f"append to {key!r}", lambda: self._append(name, data)):
                raise Unavailable(
                    f"object storage bucket {self.bucket!r}: {key!r} kept changing while "
                    f"appending ({APPEND_ATTEMPTS} attempts)"
                )

    def _append(self, name: str, data: bytes) -> bool:
        s3 = self._s3()
        for _ in range(APPEND_ATTEMPTS):
            try:
                current = s3.get_object(Bucket=self.bucket, Key=name)
                body, etag = current["Body"].read(), current["ETag"]
                content_type = current.get("ContentType") or "application/octet-stream"
            except ClientError as exc:
                if _code(exc) != "NoSuchKey":
                    raise
                body, etag, content_type = b"", None, "application/octet-stream"
            condition: dict[str, str] = {}
            if self._conditional_writes:
                condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            try:
                s3.put_object(Bucket=self.bucket, Key=name, Body=body + data, ContentType=content_type, **condition)
                return True
            except ClientError as exc:
                code = _code(exc)
                if code == "NotImplemented" and condition:
                    log.warning("S3 endpoint %s has no conditional writes: appends are last-writer-wins", self._where())
                    self._conditional_writes = False
                elif code not in _RACE:
                    raise
        return False

    async def delete(self, key: str) -> None:
        name = self._name(key)
        await self._run(f"delete {key!r}", lambda: self._s3().delete_object(Bucket=self.bucket, Key=name))

    async def exists(self, key: str) -> bool:
        name = self._name(key)

        def head() -> bool:
            try:
                self._s3().head_object(Bucket=self.bucket, Key=name)
                return True
            except ClientError as exc:
                if _code(exc) not in _MISSING:
                    raise
                return False

        found = await self._run(f"look up {key!r}", head)
        if not found and not self._bucket_checked:
            # A HEAD answers a bare 404 for a missing bucket too: check the bucket (once, until a request
            # says it is gone) so a misconfigured bucket is an error, not an endless run of misses.
            await self.ping()
        return found

    async def size(self, key: str) -> int | None:
        """The size of the object under ``key``, or None when there is none (one HEAD)."""
        name = self._name(key)

        def head() -> int | None:
            try:
                return int(self._s3().head_object(Bucket=self.bucket, Key=name)["ContentLength"])
            except ClientError as exc:
                if _code(exc) not in _MISSING:
                    raise
                return None

        return await self._run(f"look up {key!r}", head)

    async def put_file(self, key: str, path: Path, content_type: str = "application/octet-stream") -> None:
        """Upload a local file (multipart when large), without reading it into memory."""
        name = self._name(key)

        def upload() -> None:
            self._s3().upload_file(str(path), self.bucket, name, ExtraArgs={"ContentType": content_type})

        try:
            await asyncio.to_thread(upload)
        except (ClientError, BotoCoreError, S3UploadFailedError) as exc:
            raise self._unavailable(f"write {key!r}", exc) from None

    async def signed_url(self, key: str, seconds: int) -> str:
        """A URL that lets its holder GET the object for ``seconds``, with no other credentials."""
        name = self._name(key)

        def sign() -> str:
            return str(self._s3().generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": name},
                                                         ExpiresIn=seconds))

        return await self._run(f"sign a URL for {key!r}", sign)

    async def ping(self) -> None:
        def head_bucket() -> None:
            self._s3().head_bucket(Bucket=self.bucket)

        await self._run("check the bucket", head_bucket, head_bucket=True)
        self._bucket_checked = True

    async def close(self) -> None:
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)
