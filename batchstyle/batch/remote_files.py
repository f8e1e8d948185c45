"""Files at URLs, for inputs and outputs alike: any fsspec URL (``s3://``, ``gs://``, ``az://``,
``http(s)://`` for inputs), a file's path there (:class:`RemotePath`), the one file system client
kept per protocol, content tags from listings, and errors that name the URL and say what to do,
never a credential. Folders on object storage that an output directory writes to are
:mod:`batch.outdir.folders` and :mod:`batch.outdir.object_stores`.

Local paths only pass through here (:func:`as_path`, :func:`file_stamp`): they keep using
:mod:`pathlib` and :mod:`os` directly. Credentials
come from each store's standard chain (environment, profile, instance role); nothing here takes,
prints or stores them.
"""

from __future__ import annotations

import errno
import hashlib
import posixpath
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
# The optional extra that brings each protocol's fsspec file system (pip install "batchstyle[s3]").
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure", "abfss": "azure",
          "adl": "azure", "http": "http", "https": "http"}
SINGLE_PUT_LIMIT = 5 * 2**30  # S3 takes one PUT up to 5 GiB: every image is all-or-nothing below that


def protocol(url: str) -> str:
    """The protocol of a URL (``s3``), in lower case."""
    return _URL.match(url).group(1).lower()


def is_url(target: Any) -> bool:
    """Whether ``target`` names a file through a protocol other than plain local paths (``file://`` is local)."""
    return isinstance(target, str) and bool(_URL.match(target)) and not target.lower().startswith("file://")


def as_path(target: str | Path) -> "Path | RemotePath":
    """A local :class:`Path` (also from ``file://``) or a :class:`RemotePath` for any other URL."""
    if isinstance(target, (Path, RemotePath)):
        return target
    if is_url(target):
        return RemotePath(target)
    if target.lower().startswith("file://"):
        return Path(urlsplit(target).path)
    return Path(target)


def redact(url: str) -> str:
    """The URL without user info, query or fragment: what may be shown, logged or recorded."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class StorageError(OSError):
    """A remote file or folder that cannot be used, in one line that names its URL and what to do."""

    def __init__(self, url: str, problem: str):
        super().__init__(errno.EIO, problem, redact(url))
        self.url, self.problem = redact(url), problem

    def __str__(self) -> str:
        return f"{self.url}: {self.problem}"


def _error_code(exc: BaseException) -> str:
    """The store's error code (``NoSuchBucket``, ``AccessDenied``...) or class name behind an exception."""
    seen = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if isinstance(response, dict) and response.get("Error", {}).get("Code"):  # S3 (botocore)
            return str(response["Error"]["Code"])
        if getattr(seen, "error_code", None):  # Azure (azure-core): a StorageErrorCode
            return str(getattr(seen.error_code, "value", seen.error_code))
        if type(seen).__name__ == "HttpError" and getattr(seen, "code", None):  # GCS (gcsfs)
            return str(seen.code)
        name = type(seen).__name__
        if name in ("NoCredentialsError", "PartialCredentialsError", "EndpointConnectionError",
                    "ConnectTimeoutError", "ClientConnectorError", "ConnectionError", "ServerTimeoutError"):
            return name
        seen = seen.__cause__ or seen.__context__
    return ""


_GCS_LISTING = re.compile(r"^b/[^/]+/o$")  # gcsfs's 404 for a listing: only a missing bucket has none


def _no_bucket(exc: BaseException) -> bool:
    return (_error_code(exc) in ("NoSuchBucket", "ContainerNotFound") or "bucket does not exist" in str(exc).lower()
            or (isinstance(exc, FileNotFoundError) and bool(_GCS_LISTING.match(str(exc)))))


NO_BUCKET = "the bucket does not exist; create it or correct the URL"
ACCESS_DENIED = ("AccessDenied", "403", "401", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch",  # S3
                 "AuthenticationFailed", "AuthorizationFailure", "AuthorizationPermissionMismatch",  # Azure
                 "InvalidAuthenticationInfo", "NoAuthenticationInformation", "AuthorizationSourceIPMismatch",
                 "InsufficientAccountPermissions")


def storage_error(exc: BaseException, url: str) -> StorageError:
    """One line for what went wrong with ``url``: no bucket, no permission, no network, no credentials."""
    if isinstance(exc, StorageError):
        return exc
    code, text = _error_code(exc), str(exc)
    if _no_bucket(exc):
        return StorageError(url, NO_BUCKET)
    if code in ACCESS_DENIED or isinstance(exc, PermissionError) or text.startswith("Forbidden:"):  # gcsfs: 403
        return StorageError(url, "access denied; give the credentials this machine uses (environment, profile or "
                                 "instance role) permission to read and write there")
    if code in ("NoCredentialsError", "PartialCredentialsError"):
        return StorageError(url, "no credentials found; set them in the environment, a profile or an instance role")
    if code in ("EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError", "ConnectionError",
                "ServerTimeoutError"):
        return StorageError(url, "cannot reach the storage service; check the network (and the endpoint, if one "
                                 "is set)")
    if isinstance(exc, FileNotFoundError) or code in ("NoSuchKey", "404"):
        return StorageError(url, "does not exist")
    if isinstance(exc, IsADirectoryError):
        return StorageError(url, "is a folder, not a file")
    first = text.splitlines()[0] if text else type(exc).__name__
    return StorageError(url, f"{first[:200]} ({type(exc).__name__})")


def filesystem(url: str):
    """The fsspec file system and path for ``url``; a missing optional dependency is named with its extra.

    One file system (one client) per protocol serves inputs and outputs alike: batchstyle keeps
    the listings it needs itself, so the file system keeps none (an output prefix changes under
    the run).
    """
    scheme = protocol(url)
    fs = _CLIENTS.get(scheme)
    if fs is None or not any(fs is kept for kept in type(fs)._cache.values()):  # fsspec's cache was cleared
        fs = _CLIENTS[scheme] = _new_filesystem(scheme, url)
    return fs, fs._strip_protocol(url)


_CLIENTS: dict[str, Any] = {}  # protocol -> the file system fsspec keeps for it (thousands of URLs, one client)


def _new_filesystem(protocol: str, url: str):
    import fsspec

    try:
        cls = fsspec.get_filesystem_class(protocol)
    except ImportError:
        extra = EXTRAS.get(protocol)
        hint = f'pip install "batchstyle[{extra}]"' if extra else f"install the fsspec file system for {protocol}://"
        raise StorageError(url, f"{protocol}:// needs an optional dependency: {hint}") from None
    except ValueError:
        raise StorageError(url, f"unknown protocol {protocol}://; use a local path or an fsspec URL such as "
                                f"s3://bucket/folder") from None
    try:
        return cls(use_listings_cache=False)
    except Exception as exc:  # noqa: BLE001 - a store that cannot be set up: one line
        raise storage_error(exc, url) from None


class RemotePath:
    """A file (or folder) named by URL, with the little of :class:`pathlib.PurePath` the batch uses.

    ``tag`` is the store's identity of the file's content (ETag and size, from a listing): item ids
    use it instead of hashing the bytes. Two paths are equal when their URLs are; ``str()`` is the
    URL without credentials. Pickling carries the URL only, so workers need no file system.
    """

    __slots__ = ("url", "tag")

    def __init__(self, url: str, tag: str = ""):
        self.url, self.tag = url, tag

    def __reduce__(self):
        return RemotePath, (self.url, self.tag)

    def __str__(self) -> str:
        return redact(self.url)

    def __repr__(self) -> str:
        return f"RemotePath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    def __lt__(self, other: "RemotePath") -> bool:
        return self.url < other.url

    @property
    def _path(self) -> str:
        return urlsplit(self.url).path

    @property
    def name(self) -> str:
        return posixpath.basename(self._path.rstrip("/"))

    @property
    def suffix(self) -> str:
        return posixpath.splitext(self.name)[1]

    @property
    def stem(self) -> str:
        return posixpath.splitext(self.name)[0]

    @property
    def parent(self) -> "RemotePath":
        parts = urlsplit(self.url)
        return RemotePath(urlunsplit((parts.scheme, parts.netloc, posixpath.dirname(parts.path.rstrip("/")), "", "")))

    def __truediv__(self, name: str) -> "RemotePath":
        if is_url(name):
            return RemotePath(name)
        parts = urlsplit(self.url)
        joined = posixpath.normpath(posixpath.join(parts.path or "/", name))
        return RemotePath(urlunsplit((parts.scheme, parts.netloc, joined, "", "")))

    def read_bytes(self) -> bytes:
        fs, path = filesystem(self.url)
        try:
            return fs.cat_file(path)
        except Exception as exc:  # noqa: BLE001 - every store raises its own; one line each
            raise storage_error(exc, self.url) from None


def content_tag(info: dict) -> str:
    """The store's identity of an object's content, from its listing details ("" when there is none).

    An ETag (S3, Azure, HTTP) or MD5 (GCS) changes whenever the bytes do; where a store gives
    neither, the modification time and size stand in for them.
    """
    for key in ("md5Hash", "ETag", "etag", "content_md5", "Content-MD5"):
        value = info.get(key)
        if value:
            return f"{key.lower()}:{str(value).strip(chr(34))}:{info.get('size', '')}"
    for key in ("LastModified", "mtime", "last_modified", "updated", "Last-Modified", "created"):
        if info.get(key):
            return f"mtime:{info[key]}:{info.get('size', '')}"
    return ""


def fingerprint(tag: str) -> str:
    """A short, file-name-safe form of a content tag."""
    return hashlib.sha256(tag.encode()).hexdigest()[:16]


def file_stamp(path: Path | RemotePath) -> tuple | None:
    """What tells whether a file changed without reading it: its size and modification time; for a
    file at a URL, its store's content tag (or the URL itself when no listing gave one); None when it
    cannot be reached."""
    if isinstance(path, RemotePath):
        return (0, path.tag or path.url)
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


__all__ = ["RemotePath", "StorageError", "as_path", "content_tag", "fingerprint", "file_stamp", "filesystem", "is_url",
           "protocol", "redact", "storage_error", "EXTRAS"]
