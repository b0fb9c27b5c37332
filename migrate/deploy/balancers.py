"""HAProxy and nginx front-ends for N instances of a stateless app: health checked, not sticky.

No cookie, no stick table, no ``balance source``, no ``ip_hash``: any instance serves any
request, which is the point of the migration. A refused connection (an instance stopping or
gone) is retried on another instance, so a drained or SIGTERMed instance costs no request.
Every value written here was checked by ``spec.check`` (no newline, space or ``;`` can reach a
directive).
"""

from __future__ import annotations

from migrate.deploy.spec import DeploySpec, parse_address
from migrate.errors import UsageError

SERVERS_HELP = ("no servers to balance: pass --servers HOST:PORT (repeatable) or set servers "
                "in [tool.migrate.deploy]")


def _servers(spec: DeploySpec) -> list[tuple[str, str]]:
    """(name, HOST:PORT) of each instance, named NAME-1, NAME-2, ..."""
    if not spec.servers:
        raise UsageError(SERVERS_HELP)
    return [(f"{spec.name}-{i}", server) for i, server in enumerate(spec.servers, 1)]


def haproxy(spec: DeploySpec) -> dict[str, str]:
    """``haproxy.cfg``: active health checks on the readiness path, an admin socket to drain."""
    host, port = parse_address(spec.listen, "listen", port_only=True)
    timeout = spec.request_timeout + 5
    servers = "\n".join(f"    server {name} {address}" for name, address in _servers(spec))
    first = f"{spec.name}/{spec.name}-1"
    text = f"""\
# Rendered by `migrate deploy haproxy` from [tool.migrate.deploy]. Check: haproxy -c -f FILE
#
# Drain an instance before stopping it (in-flight requests finish, new ones go elsewhere):
#   echo "disable server {first}" | socat stdio {spec.admin_socket}
#   (or "set server {first} state drain"), stop the instance, start the new one, then
#   echo "enable server {first}" | socat stdio {spec.admin_socket}
# An instance that stops without a drain is refused at once: the request is redispatched to
# another instance, and the health check takes it out within 6 s (3 checks, 2 s apart).
global
    maxconn 4096
    log stdout format raw local0
    stats socket {spec.admin_socket} mode 600 level admin
    stats timeout 30s

defaults
    mode http
    log global
    option httplog
    option forwardfor
    timeout connect 2s
    timeout client {timeout}s
    timeout server {timeout}s
    timeout http-request 10s
    timeout check 3s
    # Up to 3 more tries, each on another instance (never a 503 for a stopped one).
    retries 3
    option redispatch 1

frontend {spec.name}
    bind {host}:{port}
    default_backend {spec.name}

backend {spec.name}
    # Round robin, no stickiness: no cookie, no stick-table, no balance source.
    balance roundrobin
    # A connection refused, or closed with no answer (an instance stopping as the request
    # arrived), is tried again on another instance: any request on a refusal, but only a GET
    # or HEAD once sent (a POST may have been processed).
    retry-on conn-failure empty-response
    http-request disable-l7-retry unless METH_GET
    option httpchk GET {spec.readiness}
    http-check expect status 200
    default-server check inter 2s fall 3 rise 2
{servers}
"""
    return {"haproxy.cfg": text}


def nginx(spec: DeploySpec) -> dict[str, str]:
    """``NAME.conf`` (an http-context site for conf.d/) and ``nginx.conf`` (whole, includes it).

    Open-source nginx checks passively: an instance that refuses or times out ``max_fails``
    times is left out for ``fail_timeout``, and the request is retried on the next one (only
    when nothing was sent yet for a POST: ``non_idempotent`` is not set).
    """
    host, port = parse_address(spec.listen, "listen", port_only=True)
    listen = f"{host}:{port}" if host else str(port)
    servers = "\n".join(f"    server {address} max_fails=3 fail_timeout=10s;"
                        for _, address in _servers(spec))
    timeout = spec.request_timeout + 5
    site = f"""\
# Rendered by `migrate deploy nginx` from [tool.migrate.deploy]: an http {{}} block's part.
# Drop it into /etc/nginx/conf.d/ (or use nginx.conf beside it); check: nginx -t
#
# Round robin, no stickiness: no ip_hash, no hash, no sticky cookie. To drain an instance,
# mark it "down" here and reload (nginx -s reload): in-flight requests finish.
upstream {spec.name} {{
{servers}
    keepalive 32;
}}

server {{
    listen {listen};
    client_max_body_size {spec.max_body_mb}m;

    location / {{
        proxy_pass http://{spec.name};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_connect_timeout 2s;
        proxy_read_timeout {timeout}s;
        proxy_send_timeout {timeout}s;
        # A refused connection or a 502/503 from an instance going away: the next instance.
        proxy_next_upstream error timeout http_502 http_503;
        proxy_next_upstream_tries 3;
    }}

    # The balancer's own liveness, answered without an instance.
    location = /balancer-healthz {{
        access_log off;
        return 200 "ok\\n";
    }}
}}
"""
    main = f"""\
# Rendered by `migrate deploy nginx`: a whole nginx.conf around {spec.name}.conf.
# Run or check it with: nginx -t -c "$PWD/nginx.conf"
worker_processes auto;
error_log stderr;

events {{
    worker_connections 1024;
}}

http {{
    access_log /dev/stdout;
    include {spec.name}.conf;
}}
"""
    return {f"{spec.name}.conf": site, "nginx.conf": main}
