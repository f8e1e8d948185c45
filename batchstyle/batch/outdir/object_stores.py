"""The folders of the object stores whose conditional writes batchstyle uses: S3, Azure Blob
Storage and Google Cloud Storage. Each writes an object whole in one request and answers its
content tag from the response, and makes :meth:`create` (only if there is no such object) and
:meth:`replace` (only if it is still the object with that tag) single atomic requests:

* S3: ``If-None-Match: *`` and ``If-Match: <ETag>`` (:class:`S3Folder`);
* Azure: ``If-None-Match: *`` and ``If-Match: <ETag>`` through the blob service client adlfs
  holds (:class:`AzureFolder`);
* GCS: ``ifGenerationMatch=0`` to create; to replace, the object's generation is read with its
  content tag and the upload is made with ``ifGenerationMatch=<that generation>``, so a change in
  between makes it fail (:class:`GCSFolder`).

Other fsspec stores use :class:`folders.RemoteFolder`: check, then write (best effort).
:func:`remote_folder` gives the folder of a URL, of the class its store calls for.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from ..remote_files import NO_BUCKET, SINGLE_PUT_LIMIT, StorageError, _error_code, content_tag, protocol
from .folders import StoredObject, RemoteFolder

CONFLICTS = ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "412", "409",  # S3, GCS
             "ConditionNotMet", "BlobAlreadyExists", "BlobNotFound")  # Azure


_BOUNDARY = "==batchstyle=="


def _etag_tag(etag: str, size: int) -> str:
    return f"etag:{etag.strip(chr(34))}:{size}"


class _Conditional(RemoteFolder):
    """A store with atomic create and replace: a conflict is None, any other problem one line."""

    conditional = True

    def _attempt(self, rel: str, call) -> str | None:
        try:
            return call()
        except FileExistsError:  # gcsfs: 412
            return None
        except Exception as exc:  # noqa: BLE001 - every store raises its own; one line each
            if _error_code(exc) in CONFLICTS:
                return None
            raise self._fail(exc, rel) from None


class S3Folder(_Conditional):
    """A prefix in an S3 bucket: single PUTs (all-or-nothing) and S3's conditional writes."""

    def _put(self, rel: str, data: bytes, **condition) -> str:
        bucket, key, _ = self.fs.split_path(self.key(rel))
        return _etag_tag(self.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, **condition)["ETag"],
                         len(data))

    def write(self, rel: str, data: bytes) -> str:
        if len(data) >= SINGLE_PUT_LIMIT:  # only above 5 GiB: a multipart upload (aborted at the next start)
            return super().write(rel, data)
        try:
            return self._put(rel, data)
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, rel) from None

    def create(self, rel: str, data: bytes) -> str | None:
        return self._attempt(rel, lambda: self._put(rel, data, IfNoneMatch="*"))

    def replace(self, rel: str, data: bytes, tag: str) -> str | None:
        etag = tag.split(":")[1] if tag.startswith("etag:") else tag
        return self._attempt(rel, lambda: self._put(rel, data, IfMatch=f'"{etag}"'))

    def abort_uploads(self) -> int:
        bucket, prefix, _ = self.fs.split_path(self.root + "/")
        try:
            uploads = self.fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=prefix).get("Uploads", [])
            for upload in uploads:
                self.fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc) from None
        return len(uploads)


class AzureFolder(_Conditional):
    """A prefix in an Azure Blob Storage container (``az://container/prefix``): each blob uploaded
    whole (large ones as blocks committed in one step) through adlfs's blob service client."""

    def _upload(self, rel: str, data: bytes, **condition) -> str:
        from fsspec.asyn import sync

        container, blob, _ = self.fs.split_path(self.key(rel))

        async def upload():
            async with self.fs.service_client.get_blob_client(container, blob) as client:
                return await client.upload_blob(data, length=len(data), **condition)

        return _etag_tag(sync(self.fs.loop, upload)["etag"], len(data))

    def listing(self, rel: str = "") -> dict[str, StoredObject]:
        """As :meth:`RemoteFolder.listing`; adlfs lists a missing container as empty, so an empty
        listing asks whether the container is there."""
        found = super().listing(rel)
        if not found:
            from fsspec.asyn import sync

            container = self.fs.split_path(self.root)[0]

            async def exists():
                return await self.fs.service_client.get_container_client(container).exists()

            try:
                there = sync(self.fs.loop, exists)
            except Exception as exc:  # noqa: BLE001
                raise self._fail(exc, rel) from None
            if not there:
                raise StorageError(self.url, NO_BUCKET)
        return found

    def write(self, rel: str, data: bytes) -> str:
        try:
            return self._upload(rel, data, overwrite=True)
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, rel) from None

    def create(self, rel: str, data: bytes) -> str | None:
        return self._attempt(rel, lambda: self._upload(rel, data, overwrite=False))  # If-None-Match: *

    def replace(self, rel: str, data: bytes, tag: str) -> str | None:
        from azure.core import MatchConditions

        etag = tag.split(":")[1] if tag.startswith("etag:") else tag
        return self._attempt(rel, lambda: self._upload(rel, data, overwrite=True, etag=f'"{etag}"',
                                                       match_condition=MatchConditions.IfNotModified))


class GCSFolder(_Conditional):
    """A prefix in a Google Cloud Storage bucket: each object uploaded whole, conditions on its
    generation."""

    def _upload(self, rel: str, data: bytes, generation: str) -> str:
        """One multipart upload (the JSON API's single request, as gcsfs makes it) on the condition
        ``ifGenerationMatch`` that gcsfs's pipe_file offers only as 0."""
        bucket, key, _ = self.fs.split_path(self.key(rel))
        body = (f"--{_BOUNDARY}\nContent-Type: application/json; charset=UTF-8\n\n{json.dumps({'name': key})}\n"
                f"--{_BOUNDARY}\nContent-Type: application/octet-stream\n\n").encode() + data + f"\n--{_BOUNDARY}--".encode()
        found = self.fs.call("POST", f"{self.fs._location}/upload/storage/v1/b/{quote(bucket, safe='')}/o",
                             uploadType="multipart", ifGenerationMatch=generation, data=body, json_out=True,
                             headers={"Content-Type": f'multipart/related; boundary="{_BOUNDARY}"'})
        return content_tag({**found, "size": len(data)})

    def write(self, rel: str, data: bytes) -> str:
        try:
            found = self.fs.pipe_file(self.key(rel), data)
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, rel) from None
        if isinstance(found, dict) and found.get("md5Hash"):  # a single-request upload answers the object
            return content_tag({**found, "size": len(data)})
        found = self.stat(rel)
        return found.tag if found else ""

    def create(self, rel: str, data: bytes) -> str | None:
        return self._attempt(rel, lambda: self._upload(rel, data, "0"))  # generation 0: only if there is none

    def replace(self, rel: str, data: bytes, tag: str) -> str | None:
        info = self._if_there(rel, lambda: self.fs.info(self.key(rel)))
        if info is None or content_tag(info) != tag or not info.get("generation"):
            return None
        return self._attempt(rel, lambda: self._upload(rel, data, str(info["generation"])))


_FOLDERS = {"s3": S3Folder, "s3a": S3Folder, "az": AzureFolder, "abfs": AzureFolder, "abfss": AzureFolder,
            "gs": GCSFolder, "gcs": GCSFolder}


def remote_folder(url: str) -> RemoteFolder:
    """The folder at ``url``, with the conditional writes of its store where batchstyle knows them
    (S3, Azure Blob, GCS); any other fsspec store checks, then writes."""
    return _FOLDERS.get(protocol(url), RemoteFolder)(url)


__all__ = ["S3Folder", "AzureFolder", "GCSFolder", "remote_folder"]
