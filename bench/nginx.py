"""A production reverse proxy to hold the gateway's proxying against: nginx in front of users.

The bench runs nginx as Debian packages it (scripts/install-bench-tools), as an unprivileged
process of its own rather than the system's service: its configuration, pid file, logs and
buffers are in a temporary folder, so it needs no root and leaves nothing behind. It keeps its
connections to the users service alive and reuses them, as the gateway's pool does.
"""

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.processes import stop
from gateway_service.settings import GatewaySettings

# Debian installs nginx in /usr/sbin, which is not on an ordinary user's PATH.
SBIN_NGINX = Path("/usr/sbin/nginx")
# Idle connections to users each worker keeps: as many as the gateway's pool may hold.
KEEPALIVE = GatewaySettings.model_fields["max_connections"].default
# Requests a kept-alive connection serves before nginx closes it (its default is 1,000):
# uvicorn and the gateway's pool close none after a number of requests, and neither does this.
REQUESTS_PER_CONNECTION = 1_000_000


def nginx_path() -> str | None:
    """The nginx executable, if one is installed."""
    found = shutil.which("nginx")
    if found is None and os.access(SBIN_NGINX, os.X_OK):
        return str(SBIN_NGINX)
    return found


def version() -> str | None:
    """The installed nginx's version, as `nginx -v` says it."""
    executable = nginx_path()
    if executable is None:
        return None
    said = subprocess.run([executable, "-v"], capture_output=True, text=True, check=False)  # noqa: S603 - our own arguments
    return said.stderr.strip().removeprefix("nginx version: ")


def configuration(folder: Path, port: int, upstream: str, workers: int) -> str:
    """nginx.conf for a proxy on 127.0.0.1:`port` to `upstream` (host:port), keeping
    everything it writes in `folder`."""
    temporary = "\n".join(
        f"    {kind}_temp_path {folder / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""daemon off;
worker_processes {workers};
pid {folder / "nginx.pid"};
error_log {folder / "error.log"} warn;

events {{
    worker_connections 2048;
}}

http {{
    access_log off;
{temporary}
    keepalive_requests {REQUESTS_PER_CONNECTION};

    upstream users {{
        server {upstream};
        keepalive {KEEPALIVE};
        keepalive_requests {REQUESTS_PER_CONNECTION};
    }}

    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://users;
            # Keep-alive to the upstream needs HTTP/1.1 and no "Connection: close" passed on.
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


@contextmanager
def running(port: int, upstream: str, workers: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """nginx proxying 127.0.0.1:`port` to `upstream` (host:port) for the block, with `workers`
    worker processes; what it logged is copied to `log` when it has stopped."""
    executable = nginx_path()
    if executable is None:
        raise RuntimeError("nginx is not installed")
    with tempfile.TemporaryDirectory(prefix="bench-nginx-") as name:
        folder = Path(name)
        config = folder / "nginx.conf"
        config.write_text(configuration(folder, port, upstream, workers))
        # Started by root, nginx would keep a master process running as root: the bench's
        # proxy needs no privilege, so it runs as nobody, in a folder of nobody's.
        nobody = pwd.getpwnam("nobody") if os.geteuid() == 0 else None
        if nobody is not None:
            os.chown(folder, nobody.pw_uid, nobody.pw_gid)
        process = subprocess.Popen(  # noqa: S603 - our own arguments
            # -e: the log for errors before the configuration is read, elsewhere by default.
            [executable, "-p", str(folder), "-c", str(config), "-e", str(folder / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=nobody.pw_uid if nobody else None,
            group=nobody.pw_gid if nobody else None,
            extra_groups=[] if nobody else None,
        )
        try:
            yield process
        finally:
            stop(process)
            if (folder / "error.log").exists():
                shutil.copyfile(folder / "error.log", log)
