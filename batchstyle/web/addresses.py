"""Where a server can be reached: its URL, and for one bound to every interface this machine's addresses.

The addresses come from the machine's interfaces where the system tells them (Linux: IPv4 through
``SIOCGIFADDR``, IPv6 from ``/proc/net/if_inet6``) and from its name (``getaddrinfo(gethostname())``,
which elsewhere is all there is). Loopback addresses are left out of that list (the loopback URL
comes first anyway), and so are link-local ones (a browser does not take their zone). Standard
library only; nothing is sent anywhere.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

WILDCARD_HOSTS = ("", "0.0.0.0", "::")
SIOCGIFADDR = 0x8915  # Linux: an interface's IPv4 address
IF_INET6 = "/proc/net/if_inet6"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def url_of(host: str, port: int) -> str:
    """``http://HOST:PORT/``; the loopback address for a wildcard host, brackets for IPv6."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def reachable_urls(host: str, port: int, dual_stack: bool = False) -> list[str]:
    """Every URL of a server bound to ``host``: its own (:func:`url_of`) and, for a wildcard host, one
    per address of this machine (IPv4 for ``0.0.0.0``; IPv6, and IPv4 too if ``dual_stack``, for ``::``)."""
    urls = [url_of(host, port)]
    if host not in WILDCARD_HOSTS:
        return urls
    versions = {6, 4} if host == "::" and dual_stack else {6} if host == "::" else {4}
    if host == "::" and dual_stack:
        urls.append(url_of("127.0.0.1", port))
    urls += [url_of(str(address), port) for address in machine_addresses() if address.version in versions]
    return urls


def machine_addresses() -> list[Address]:
    """This machine's own addresses, IPv4 first, without loopback and link-local ones."""
    found: list[Address] = []
    for address in [*_interfaces_v4(), *_interfaces_v6(), *_by_name()]:
        if address not in found and not (address.is_loopback or address.is_link_local or address.is_unspecified):
            found.append(address)
    return sorted(found, key=lambda a: a.version)


def _by_name() -> list[Address]:
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, type=socket.SOCK_STREAM)
    except OSError:
        return []
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


def _interfaces_v4() -> list[Address]:
    if fcntl is None or not sys.platform.startswith("linux") or not hasattr(socket, "if_nameindex"):
        return []
    found = []
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        return []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:  # only asked, never used to send
        for name in names:
            try:
                answer = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, struct.pack("256s", name[:15].encode()))
            except OSError:  # an interface without an IPv4 address
                continue
            found.append(ipaddress.IPv4Address(answer[20:24]))
    return found


def _interfaces_v6() -> list[Address]:
    try:
        with open(IF_INET6, encoding="ascii") as table:
            return [ipaddress.IPv6Address(int(line.split()[0], 16)) for line in table if line.strip()]
    except (OSError, ValueError):
        return []


__all__ = ["url_of", "reachable_urls", "machine_addresses"]
