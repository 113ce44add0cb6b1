"""A database on several hosts: libpq's ``h1:p1,h2:p2`` and SQLAlchemy's query forms, as one.

libpq's URL form (``postgresql://u@h1:5440,h2:5441/db``) is not a URL that SQLAlchemy parses,
so it is rewritten into SQLAlchemy's query form (``postgresql://u@/db?host=h1:5440&host=h2:5441``).
Every list of hosts ends up in that canonical form, each host with its port (5432 when none is
given; with ``?host=h1,h2&port=p``, one port serves them all, as in libpq).
"""

from urllib.parse import quote

from sqlalchemy.engine import URL

DEFAULT_PORT = 5432
TARGET_ATTRS = "target_session_attrs"
TARGETS = frozenset({"any", "primary", "standby", "prefer-standby", "read-write", "read-only"})


def from_libpq(raw: str, variable: str) -> str:
    """Rewrite libpq's list of hosts in the URL's authority into SQLAlchemy's query form."""
    scheme, separator, rest = raw.partition("://")
    authority_end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, tail = rest[:authority_end], rest[authority_end:]
    user, at, hostlist = authority.rpartition("@")
    if not separator or "," not in hostlist:
        return raw
    path, _, query = tail.partition("?")
    if any(part.split("=", 1)[0] in ("host", "port") for part in query.split("&") if part):
        raise ValueError(f"{variable} gives hosts both before the path and as ?host= or ?port=")
    hosts = [_host_port(spec, variable) for spec in hostlist.split(",")]
    listed = "&".join(f"host={quote(host, safe='')}:{port}" for host, port in hosts)
    query = f"{listed}&{query}" if query else listed
    return f"{scheme}://{user}{at}{path or '/'}?{query}"


def canonical(url: URL, variable: str) -> URL:
    """Return ``url`` with several hosts as ``?host=h:p&host=h:p``; one host stays as it is."""
    hosts = listed(url, variable)
    if len(hosts) < 2:
        _check_target(url, variable)
        return url
    if url.host or url.port:
        raise ValueError(f"{variable} gives a host before the path and others as ?host=")
    _check_target(url, variable)
    return url.difference_update_query(["host", "port"]).update_query_dict(
        {"host": [f"{host}:{port}" for host, port in hosts]}
    )


def listed(url: URL, variable: str) -> list[tuple[str, int]]:
    """Return the URL's hosts and ports, in order; a socket folder or no host counts as one."""
    query_hosts = url.query.get("host")
    if query_hosts is None:
        return [(url.host or "", url.port or DEFAULT_PORT)]
    specs = [query_hosts] if isinstance(query_hosts, str) else list(query_hosts)
    if len(specs) == 1 and specs[0].startswith("/"):
        return [(specs[0], url.port or _single_port(url, variable) or DEFAULT_PORT)]
    names = [name for spec in specs for name in spec.split(",")]
    ports_given = url.query.get("port")
    if ports_given is None:
        return [_host_port(name, variable) for name in names]
    if any(":" in name for name in names):
        raise ValueError(f"{variable} gives ports both as host:port and as ?port=")
    ports = [_port(p, variable) for p in _flat(ports_given)]
    if len(ports) == 1:
        ports *= len(names)
    if len(ports) != len(names):
        raise ValueError(f"{variable} gives {len(names)} hosts but {len(ports)} ports")
    return list(zip(names, ports, strict=True))


def _single_port(url: URL, variable: str) -> int | None:
    port = url.query.get("port")
    return None if port is None else _port(_flat(port)[0], variable)


def _flat(value: str | tuple[str, ...]) -> list[str]:
    values = [value] if isinstance(value, str) else list(value)
    return [part for item in values for part in item.split(",")]


def _host_port(spec: str, variable: str) -> tuple[str, int]:
    if spec.startswith("["):  # an IPv6 address: SQLAlchemy's host lists cannot carry one
        raise ValueError(f"{variable}: an IPv6 address cannot be one of several hosts")
    host, colon, port = spec.partition(":")
    if not host:
        raise ValueError(f"{variable} has an empty host in its list")
    return host, _port(port, variable) if colon else DEFAULT_PORT


def _port(text: str, variable: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{variable} has a port that is not a number from 1 to 65535")
    return int(text)


def _check_target(url: URL, variable: str) -> None:
    target = url.query.get(TARGET_ATTRS)
    if target is not None and target not in TARGETS:
        choices = ", ".join(sorted(TARGETS))
        raise ValueError(f"{variable}: target_session_attrs must be one of {choices}")
