"""The ``cproxy`` command: run the proxy, check a directive file, manage admin passwords
and the HTTPS interception CA."""

from __future__ import annotations

import argparse
import os
import sys

from cproxy import __version__, build
from cproxy.control import CHOICES, run
from cproxy.directives import defaults, load_config
from cproxy.errors import ConfigError


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, given the terminal's width as ``shutil.get_terminal_size``
    finds it. Left to itself it imports ``shutil`` (with zlib, bz2 and lzma: over half a
    MiB of the proxy's memory; issue #21) as the parser is built, on every start."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=_terminal_columns() - 2)


def _terminal_columns() -> int:
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cproxy",
        formatter_class=_HelpFormatter,
        description="A caching forward HTTP proxy. See cproxy(8) and cproxy.conf(5).",
        epilog="Subcommands: 'cproxy passwd [-c FILE | -f PASSWDFILE] USER' manages the admin "
        "password file; 'cproxy ca init|show -d DIR' creates or shows the HTTPS interception CA.",
    )
    p.add_argument(
        "-c", "--config", metavar="FILE", help="directive file (default: built-in defaults)"
    )
    p.add_argument(
        "--check-config", action="store_true", help="validate the directive file and exit"
    )
    p.add_argument(
        "-k",
        choices=CHOICES,
        metavar="{reload,stop,reopen,check}",
        help="signal the cproxy running with this directive file, found by its PidFile: "
        "reload the file, stop, reopen the logs, or check the file and whether it runs",
    )
    p.add_argument("--version", action="version", version=f"cproxy {__version__} ({build()})")
    return p


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    if args_list[:1] == ["passwd"]:
        from cproxy.admin.passwd import main as passwd_main

        return passwd_main(args_list[1:])
    if args_list[:1] == ["ca"]:
        from cproxy.intercept.cacommand import main as ca_main

        return ca_main(args_list[1:])
    args = _parser().parse_args(args_list)
    try:
        config = load_config(args.config) if args.config else defaults()
        if config.shared_cache is not None:
            # Read now, before any worker is forked, so a missing file is one message.
            from cproxy.server.sharedcache import read_password

            read_password(config)
        if config.sslca_cert_file or config.sslca_key_file:
            # Checked now so a CA key open to others, or a certificate that is not a CA,
            # stops the start with one message naming the file (issue #19).
            from cproxy.intercept.ca import ca_from_config

            ca_from_config(config)
        if config.ssl_interception:
            # SSLInterception on without the CA files: one message, before any worker.
            from cproxy.server.interception import Interception

            Interception().configure(config)
    except ConfigError as exc:
        print(f"cproxy: {exc}", file=sys.stderr)
        return 2
    source = args.config or "built-in defaults"
    if args.k:
        return run(args.k, config, source)
    if args.check_config:
        print(f"cproxy: {source}: OK")
        return 0
    from cproxy.server.proxy import serve

    return serve(config, args.config)
