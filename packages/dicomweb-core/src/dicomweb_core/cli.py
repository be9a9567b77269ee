"""The ``dicomweb`` command: ``serve`` (embedded all-in-one), ``stow-svc``, ``wado-svc``,
``reindex`` (rebuild the catalog from the stored objects), ``fsck`` (check that catalog and
store agree; ``--repair`` removes garbage), ``push`` (bulk STOW-RS client)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from .config import Settings, load_settings
from .errors import ConfigError, DicomwebError
from .observability.config import LOG_LEVEL_ENV, QUIET_ENV, load_observability
from .observability.logs import configure_logging
from .observability.serving import multiprocess_metrics_dir, port_in_use
from .ui.settings import VIEWER_DIR_ENV, VIEWER_URL_ENV

if TYPE_CHECKING:
    from starlette.applications import Starlette

log = logging.getLogger("dicomweb")

_ENV_PREFIX = "DICOMWEB_"
#: Hands the command and its options to the worker processes of ``--workers`` > 1 (each
#: re-creates the app from the environment it inherits): JSON, set only for them.
_WORKER_HANDOFF = _ENV_PREFIX + "CLI"
#: ``serve``/``stow-svc``/``wado-svc`` options that stand for an environment variable (an
#: option given wins over the variable).
_AUTH_OPTIONS = {
    "auth_mode": "AUTH_MODE",
    "auth_issuer": "AUTH_ISSUER",
    "auth_audience": "AUTH_AUDIENCE",
    "auth_jwks_url": "AUTH_JWKS_URL",
    "auth_permissions_from": "AUTH_PERMISSIONS_FROM",
    "forwarded_allow_ips": "FORWARDED_ALLOW_IPS",
}


def _default_port() -> int:
    """$PORT (Knative sets it), else 8080."""
    raw = os.environ.get("PORT", "") or "8080"
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"PORT={raw!r} is not a port number")
    return int(raw)


def _usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dicomweb", description="DICOMweb Ingestion Service (STOW-RS, QIDO-RS, WADO-RS)"
    )
    sub = p.add_subparsers(dest="command", required=True)
    default_port = _default_port()

    def common(sp: argparse.ArgumentParser, host: str, workers: int = 1, workers_help: str = "1") -> None:
        sp.add_argument("--host", default=host, help=f"listen address (default {host})")
        sp.add_argument("--port", type=int, default=default_port, help="listen port (default $PORT or 8080)")
        sp.add_argument(
            "--workers", type=int, default=workers, help=f"worker processes (default {workers_help})"
        )
        sp.add_argument(
            "--cors",
            action="append",
            default=[],
            metavar="ORIGIN",
            help="allow this CORS origin ('*' for any)",
        )
        sp.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
        sp.add_argument("--quiet", action="store_true", help="no access-log line per request")
        auth = sp.add_argument_group("access control (see the README, 'Access control')")
        auth.add_argument("--auth-mode", choices=["none", "oidc"], help="default $AUTH_MODE or none")
        auth.add_argument("--auth-issuer", metavar="URL", help="token issuer (iss); default $AUTH_ISSUER")
        auth.add_argument("--auth-audience", metavar="AUD", help="this service's aud; default $AUTH_AUDIENCE")
        auth.add_argument("--auth-jwks-url", metavar="URL", help="default $AUTH_JWKS_URL or discovered")
        auth.add_argument(
            "--auth-permissions-from",
            choices=["scope", "keycloak", "entra"],
            help="where permissions come from; default $AUTH_PERMISSIONS_FROM or scope",
        )
        auth.add_argument(
            "--insecure-no-auth",
            action="store_true",
            help="serve without access control on a non-loopback address, on purpose",
        )
        auth.add_argument(
            "--forwarded-allow-ips",
            metavar="IPS",
            help="proxies whose X-Forwarded-* headers are trusted (comma-separated IPs/networks, '*'); "
            "default $FORWARDED_ALLOW_IPS or 127.0.0.1,::1",
        )

    serve = sub.add_parser("serve", help="STOW + WADO + QIDO in one process on a local folder and SQLite")
    # The embedded server defaults to one worker process per core it may run on (the catalog and
    # the outbox are shared safely between processes). The services alone keep one: on
    # Kubernetes they scale by replicas, and a container sees the node's cores, not its quota.
    cores = _usable_cores()
    common(serve, "127.0.0.1", workers=cores, workers_help=f"one per core: {cores} here")
    serve.add_argument(
        "--data-dir", default="./dicomweb-data", help="objects and catalog (default ./dicomweb-data)"
    )
    serve.add_argument(
        "--catalog-url", default="", help="override the catalog (default SQLite in --data-dir)"
    )
    serve.add_argument(
        "--viewer", default="", metavar="DIR", help="serve this OHIF Viewer 3 bundle (dist/) at /viewer/"
    )
    serve.add_argument(
        "--viewer-url", default="", metavar="URL", help="the web UI's 'open in viewer' goes there instead"
    )
    for name in ("stow-svc", "wado-svc"):
        sp = sub.add_parser(name, help=f"the {name[:4].upper()} service alone (configured by environment)")
        common(sp, "0.0.0.0")
        sp.add_argument(
            "--data-dir", default=None, help="file store instead of S3 (default: BUCKET_* config)"
        )
        sp.add_argument("--catalog-url", default="", help="default $CATALOG_URL")
    viewer = sub.add_parser("viewer", help="the web UI's OHIF Viewer: 'install' fetches it (npm registry)")
    viewer.add_argument("action", choices=["install"])
    viewer.add_argument(
        "--data-dir", default="./dicomweb-data", help="where serve finds it (default ./dicomweb-data)"
    )
    viewer.add_argument(
        "--registry",
        default=os.environ.get("NPM_CONFIG_REGISTRY") or "https://registry.npmjs.org",
        help="npm registry (default $NPM_CONFIG_REGISTRY or registry.npmjs.org)",
    )
    viewer.add_argument("--version", dest="ohif_version", default=None, help="another @ohif/app version")
    viewer.add_argument("--integrity", default=None, help="its npm integrity (sha512-...), with --version")
    reindex = sub.add_parser("reindex", help="rebuild the catalog by scanning the stored objects' headers")
    reindex.add_argument("--data-dir", default=None, help="file store (default: BUCKET_* config, else none)")
    reindex.add_argument("--catalog-url", default="", help="default $CATALOG_URL (SQLite in --data-dir)")
    reindex.add_argument(
        "--prefix", default="studies/", help="only objects under this prefix (default studies/)"
    )
    reindex.add_argument("--concurrency", type=int, default=8, help="objects scanned at once (default 8)")
    reindex.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    fsck = sub.add_parser("fsck", help="check that the catalog and the object store agree")
    fsck.add_argument("--data-dir", default=None, help="file store (default: BUCKET_* config)")
    fsck.add_argument("--catalog-url", default="", help="default $CATALOG_URL (SQLite in --data-dir)")
    fsck.add_argument(
        "--repair", action="store_true", help="remove garbage (never anything a row references)"
    )
    fsck.add_argument(
        "--grace",
        type=float,
        default=None,
        help="leave things younger than this many seconds alone (default $SWEEP_GRACE_SECONDS or 900)",
    )
    fsck.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    from .push.command import add_parser as add_push_parser

    add_push_parser(sub)
    return p


def _run_reindex(args: argparse.Namespace) -> int:
    import asyncio

    from .reindex import reindex
    from .runtime import build_database_catalog, build_store

    settings = load_settings(_environment(args))
    catalog = build_database_catalog(settings)
    store = build_store(settings)

    async def run() -> int:
        await catalog.open()
        try:
            report = await reindex(
                store,
                catalog,
                prefix=args.prefix,
                max_header_size=settings.max_header_size,
                concurrency=max(1, args.concurrency),
            )
        finally:
            await catalog.close()
            await store.close()
        sys.stdout.write(f"reindexed {report.indexed} instances, skipped {len(report.skipped)} objects\n")
        return 0

    try:
        return asyncio.run(run())
    except DicomwebError as exc:
        sys.stderr.write(f"dicomweb reindex: {exc.reason}\n")
        return 1


def _run_fsck(args: argparse.Namespace) -> int:
    import asyncio

    from .fsck import fsck, write_report
    from .runtime import build_database_catalog, build_store

    settings = load_settings(_environment(args))
    catalog = build_database_catalog(settings)
    store = build_store(settings)
    grace = settings.sweep_grace_seconds if args.grace is None else max(0.0, args.grace)

    async def run() -> int:
        await catalog.open()
        try:
            report = await fsck(store, catalog, grace=grace, repair=args.repair)
        finally:
            await catalog.close()
            await store.close()
        write_report(report, sys.stdout, repair=args.repair)
        return 1 if report.problems else 0

    try:
        return asyncio.run(run())
    except DicomwebError as exc:
        sys.stderr.write(f"dicomweb fsck: {exc.reason}\n")
        return 1


def _options_as_variables(args: argparse.Namespace) -> dict[str, str]:
    """The variables the command-line options stand for."""
    variables: dict[str, str] = {}
    if args.data_dir:
        variables[_ENV_PREFIX + "DATA_DIR"] = str(Path(args.data_dir).resolve())
        if args.command != "serve":
            # A data dir on a service means the file store, whatever BUCKET_* says.
            variables.update(BUCKET_NAME="", BUCKET_CONFIG_PATH="")
    if args.catalog_url:
        variables["CATALOG_URL"] = args.catalog_url
    if getattr(args, "cors", None):
        variables["CORS_ORIGINS"] = ",".join(args.cors)
    for option, name in _AUTH_OPTIONS.items():
        value = getattr(args, option, None)
        if value is not None:
            variables[name] = value
    variables[LOG_LEVEL_ENV] = args.log_level
    if getattr(args, "quiet", False):
        variables[QUIET_ENV] = "1"
    if getattr(args, "viewer", ""):
        variables[VIEWER_DIR_ENV] = str(Path(args.viewer).resolve())
    elif args.command == "serve" and not args.viewer_url:
        from .ui.install import viewer_dir

        installed = viewer_dir(Path(args.data_dir).resolve())
        if (installed / "index.html").is_file():  # from ``dicomweb viewer install``
            variables[VIEWER_DIR_ENV] = str(installed)
    if getattr(args, "viewer_url", ""):
        variables[VIEWER_URL_ENV] = args.viewer_url
    return variables


def _environment(args: argparse.Namespace) -> dict[str, str]:
    """What the settings are parsed from: the process environment, the options on top."""
    return {**os.environ, **_options_as_variables(args)}


def _run_viewer_install(args: argparse.Namespace) -> int:
    from .ui.install import OHIF_INTEGRITY, OHIF_VERSION, InstallError, install_viewer

    if (args.ohif_version is None) != (args.integrity is None):
        sys.stderr.write("dicomweb viewer install: --version and --integrity go together\n")
        return 2
    data_dir = Path(args.data_dir).resolve()
    try:
        where = install_viewer(
            data_dir,
            registry=args.registry,
            version=args.ohif_version or OHIF_VERSION,
            integrity=args.integrity or OHIF_INTEGRITY,
        )
    except (InstallError, ConfigError) as exc:
        sys.stderr.write(f"dicomweb viewer install: {exc.reason}\n")
        return 1
    sys.stdout.write(f"OHIF Viewer in {where}; dicomweb serve --data-dir {data_dir} serves it at /viewer/\n")
    return 0


def create_app(command: str, settings: Settings) -> Starlette:
    """The app of ``command`` (serve, stow-svc, wado-svc) on parsed settings; raises
    :class:`ConfigError` on what cannot work."""
    from .runtime import build_runtime
    from .server import build_app, discover_services

    runtime = build_runtime(settings)
    installed = discover_services()
    wanted = {"serve": ["stow", "wado"], "stow-svc": ["stow"], "wado-svc": ["wado"]}[command]
    missing = [name for name in wanted if name not in installed]
    if missing:
        raise ConfigError(f"service package(s) not installed: {', '.join(missing)}")
    return build_app(runtime, {name: installed[name] for name in wanted}, combined=command == "serve")


def create_app_from_env() -> Starlette:
    """uvicorn factory for ``--workers`` > 1: each worker process re-creates the app from the
    environment it inherited and the options the command line handed over."""
    handoff = orjson.loads(os.environ.get(_WORKER_HANDOFF, "{}"))
    command = handoff.get("command", "serve")
    settings = load_settings({**os.environ, **handoff.get("variables", {})})
    configure_logging(settings.observability)  # each worker process logs like the parent
    app = create_app(command, settings)
    # The start-up sweep leaves alone what is younger than the *parent's* start: a sibling
    # worker (or one uvicorn restarts later) may have an upload in flight since then.
    started = handoff.get("started")
    if isinstance(started, int | float):
        app.state.runtime.started_at = float(started)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = _parser()
    except ConfigError as exc:
        sys.stderr.write(f"dicomweb: configuration error: {exc.reason}\n")
        return 2
    args = parser.parse_args(argv)
    if args.command == "push":
        logging.basicConfig(
            level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        from .push.command import run as run_push

        return run_push(args, argv)
    if args.command == "viewer":
        return _run_viewer_install(args)
    # Several workers share their metrics through files: the variable must be in the process
    # environment (the workers inherit it) before anything imports prometheus-client.
    metrics_dir = multiprocess_metrics_dir(getattr(args, "workers", 1))
    try:
        configure_logging(load_observability(_environment(args)))
        if args.command == "reindex":
            return _run_reindex(args)
        if args.command == "fsck":
            return _run_fsck(args)
        from .auth import check_bind

        # Parsed and checked once, here: bad configuration fails at start-up with one line,
        # not at the first request.
        settings = load_settings(_environment(args))
        check_bind(args.host, settings.auth, insecure_no_auth=args.insecure_no_auth)
        app = create_app(args.command, settings)
    except ConfigError as exc:
        sys.stderr.write(f"dicomweb: configuration error: {exc.reason}\n")
        return 2
    busy = port_in_use(args.host, args.port)
    if busy:
        sys.stderr.write(f"dicomweb: cannot listen on {args.host}:{args.port}: {busy}\n")
        return 2
    if args.workers > 1:
        handoff = {
            "command": args.command,
            "variables": _options_as_variables(args),
            "started": time.time(),
        }
        os.environ[_WORKER_HANDOFF] = orjson.dumps(handoff).decode()
    import uvicorn

    from .httpguard import ENV_PROTOCOL, guarded_protocol

    limits = app.state.runtime.settings.limits
    # One worker serves the app just built (building it twice would slow a cold start);
    # several re-create it in each worker process from the environment.
    uvicorn.run(
        app if args.workers <= 1 else "dicomweb_core.cli:create_app_from_env",
        factory=args.workers > 1,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http=guarded_protocol(limits) if args.workers <= 1 else ENV_PROTOCOL,  # header size and timeouts
        log_level=args.log_level,
        log_config=None,  # logging is configured above (text or LOG_FORMAT=json)
        access_log=False,  # ours is the access line (with bytes and duration)
        ws="none",  # no WebSocket routes; spares importing the websockets package at start-up
        timeout_keep_alive=int(limits.keep_alive_timeout + 0.999),
        # X-Forwarded-* are handled by the app, from FORWARDED_ALLOW_IPS only (dicomweb_core.auth.proxy):
        # uvicorn's own handling would rewrite the client address before the app can check the peer.
        proxy_headers=False,
    )
    if metrics_dir is not None:
        metrics_dir.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
