"""A small object store with two real backends: a local folder and S3 (boto3; any S3-compatible endpoint).
The registry needs only whole-object reads/writes and two conditional writes: create-if-absent and
replace-if-unchanged, which make alias flips atomic and let exactly one of two concurrent promotes win.
Credentials come only from the standard AWS chain; nothing here logs or stores them."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

from mllmcl.errors import StorageError


class StoreError(StorageError):
    """An object store refused or lost an object; the message names the URI and key."""


class Store(Protocol):
    """What the registry needs of a backend: whole-object put/get/list/delete, and `write_if`, which returns False
    (never raises) when the object's tag is no longer `expected_tag` (None: create only)."""

    uri: str

    def put_bytes(self, key: str, data: bytes) -> None: ...
    def get_bytes(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str) -> list[str]: ...
    def delete(self, key: str) -> None: ...
    def read_with_tag(self, key: str) -> tuple[bytes | None, str | None]: ...
    def write_if(self, key: str, data: bytes, expected_tag: str | None) -> bool: ...


class LocalStore:
    """Objects are files under `root`; tags are content hashes; conditional writes hold a lock file."""

    def __init__(self, root: Path):
        self.uri = str(root)
        self.root = Path(root).resolve()  # keys are computed against a resolved root, whatever the CWD

    def _path(self, key: str) -> Path:
        p = (self.root / key).resolve()
        if not p.is_relative_to(self.root.resolve()):
            raise StoreError(f"key escapes the registry folder: {key}")
        return p

    def put_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise StoreError(f"{self.uri}/{key}: not found") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix) if prefix else self.root
        if not base.exists():
            return []
        return sorted(
            str(p.relative_to(self.root))
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-") and not p.name.endswith(".lock")
        )

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def read_with_tag(self, key: str) -> tuple[bytes | None, str | None]:
        path = self._path(key)
        if not path.is_file():
            return None, None
        data = path.read_bytes()
        return data, hashlib.sha256(data).hexdigest()

    def write_if(self, key: str, data: bytes, expected_tag: str | None) -> bool:
        """Replace `key` only if its tag is still `expected_tag` (None: only if absent). The lock is an OS file lock
        (flock): it dies with its holder, so a writer killed mid-write never blocks later promotions."""
        import fcntl

        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.with_name(path.name + ".lock"), os.O_CREAT | os.O_RDWR, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # another writer is mid-flip: it wins
            _, tag = self.read_with_tag(key)
            if tag != expected_tag:
                return False
            self.put_bytes(key, data)
            return True
        finally:
            os.close(fd)  # releases the flock; the empty lock file may stay, it holds no state


class S3Store:
    """Objects under s3://bucket/prefix on AWS or any S3-compatible endpoint; tags are ETags, and every botocore failure
    becomes a StoreError naming the key."""

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None, region: str | None = None):
        import boto3
        from botocore.config import Config

        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region or "us-east-1",
            config=Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=30),
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _error(self, e: Exception, key: str) -> StoreError:
        return StoreError(f"{self.uri}/{key}: {type(e).__name__}: {e}")

    def put_bytes(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except Exception as e:  # botocore raises many error types; all mean the write did not happen
            raise self._error(e, key) from None

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except Exception as e:
            raise self._error(e, key) from None

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._error(e, key) from None
        except Exception as e:
            raise self._error(e, key) from None

    def list(self, prefix: str) -> list[str]:
        out = []
        strip = len(self.prefix) + 1 if self.prefix else 0
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._key(prefix)
            ):
                out += [obj["Key"][strip:] for obj in page.get("Contents", [])]
        except Exception as e:
            raise self._error(e, prefix) from None
        return sorted(out)

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as e:
            raise self._error(e, key) from None

    def read_with_tag(self, key: str) -> tuple[bytes | None, str | None]:
        from botocore.exceptions import ClientError

        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return obj["Body"].read(), obj["ETag"]
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None, None
            raise self._error(e, key) from None
        except Exception as e:
            raise self._error(e, key) from None

    def write_if(self, key: str, data: bytes, expected_tag: str | None) -> bool:
        """S3 conditional writes: If-None-Match '*' to create, If-Match <etag> to replace."""
        from botocore.exceptions import ClientError

        cond = {"IfNoneMatch": "*"} if expected_tag is None else {"IfMatch": expected_tag}
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **cond)
            return True
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409", "NoSuchKey"):
                return False
            raise self._error(e, key) from None
        except Exception as e:
            raise self._error(e, key) from None


def open_store(
    uri: str, *, root: Path = Path("."), endpoint_url: str | None = None, region: str | None = None
) -> Store:
    """An S3Store for s3://bucket[/prefix], otherwise a LocalStore folder (a relative path is under `root`)."""
    if uri.startswith("s3://"):
        bucket, _, prefix = uri[5:].partition("/")
        if not bucket:
            raise StoreError(f"registry uri {uri!r} names no bucket")
        return S3Store(bucket, prefix, endpoint_url=endpoint_url, region=region)
    path = Path(uri)
    return LocalStore(path if path.is_absolute() else Path(root) / path)
