"""A real S3 API for tests and benchmarks: moto's server on 127.0.0.1, reached through the standard
environment variables (``AWS_ENDPOINT_URL`` and dummy keys), so the product needs no test hooks."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request


class MotoServer:
    def __init__(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto's S3 server did not start") from None
                time.sleep(0.1)

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing-secret", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_EC2_METADATA_DISABLED": "true"}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="testing",
                            aws_secret_access_key="testing-secret", region_name="us-east-1")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def moto_environment(server: MotoServer):
    """Point this process (and the processes it starts) at ``server``; undo on exit."""
    from .store_servers import environment

    return environment(server.env)


@contextlib.contextmanager
def running_moto():
    """A moto server, with this process pointed at it for the block (e.g. a test module's fixture)."""
    server = MotoServer()
    try:
        with moto_environment(server):
            yield server
    finally:
        server.stop()


def bucket_with_a_job(client, name: str, photos: int, size: tuple[int, int], manifest_key: str) -> str:
    """Create bucket ``name`` holding ``jobs/photos/p0.png ...`` (``photos`` of ``size``),
    ``jobs/style.png`` and a manifest at ``manifest_key`` with one folder row over them."""
    import io

    from .photos import make_photo

    def png(image) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        return buffer.getvalue()

    client.create_bucket(Bucket=name)
    for i in range(photos):
        client.put_object(Bucket=name, Key=f"jobs/photos/p{i}.png", Body=png(make_photo(*size, i)))
    client.put_object(Bucket=name, Key="jobs/style.png", Body=png(make_photo(32, 32, 50)))
    client.put_object(Bucket=name, Key=manifest_key, Body=b"content,style\nphotos/,style.png\n")
    return name
