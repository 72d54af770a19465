"""``cproxy passwd [-c CONF | -f FILE] USER``: create or update a user in the admin password file.

``-c CONF`` writes the file that directive file's AdminPasswordFile names (by default
``cproxy.passwd`` next to it): where ``cproxy -c CONF`` looks, and starts its admin when
the file appears. ``-f FILE`` names the file itself; with neither, ``cproxy.passwd`` in the
working directory (where cproxy on built-in defaults looks).

The password is read twice from the terminal (it must match), or once from standard
input when that is not a terminal (``echo pw | cproxy passwd -f FILE admin``). The file
is rewritten atomically with mode 0600; other users' lines and comments are kept.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import tempfile
from collections.abc import Sequence
from typing import TextIO

import bcrypt

from cproxy.admin.auth import valid_user_name
from cproxy.directives import load_config
from cproxy.directives.registry import DIRECTIVES
from cproxy.errors import ConfigError

# The AdminPasswordFile directive's default, declared once in the registry.
DEFAULT_PASSWORD_FILE = DIRECTIVES["AdminPasswordFile"].default
# bcrypt's cost: 2**12 rounds, about a quarter of a second; logins are rare and the
# admin caches verdicts, so the cost protects a stolen file at little everyday price.
BCRYPT_ROUNDS = 12
# bcrypt only looks at the first 72 bytes; refuse longer passwords rather than let a
# user believe the tail matters.
MAX_PASSWORD_BYTES = 72


class PasswdError(Exception):
    """A user-facing failure of the passwd command (printed, exit status 1)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cproxy passwd",
        description="Create or update a user of the cproxy admin forms.",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "-c",
        "--config",
        metavar="CONF",
        help="directive file: write the AdminPasswordFile it names (next to it by default)",
    )
    where.add_argument(
        "-f",
        "--file",
        help=f"password file (default: {DEFAULT_PASSWORD_FILE} in the working directory); "
        "created when missing",
    )
    parser.add_argument("user", help="user name (no ':' or spaces)")
    return parser


def read_new_password(stdin: TextIO) -> str:
    """Prompt twice on a terminal, else read one line from ``stdin``."""
    if stdin.isatty():
        first = getpass.getpass("New password: ")
        second = getpass.getpass("Repeat password: ")
        if first != second:
            raise PasswdError("the passwords do not match; nothing changed")
        password = first
    else:
        password = stdin.readline().rstrip("\r\n")
    if not password:
        raise PasswdError("empty password refused; nothing changed")
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        raise PasswdError(f"password longer than {MAX_PASSWORD_BYTES} bytes; nothing changed")
    return password


def set_password(path: str, user: str, password: str, rounds: int = BCRYPT_ROUNDS) -> bool:
    """Write ``user``'s new hash into ``path``; True when the user was new.

    Other lines are kept as they are. The new file replaces the old one atomically
    and is created with mode 0600 (it holds password hashes).
    """
    hashed = bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds)).decode("ascii")
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        lines = []
    created = True
    out: list[str] = []
    for line in lines:
        name, sep, _ = line.strip().partition(":")
        if sep and name == user and not line.lstrip().startswith("#"):
            if created:  # replace the first line of this user, drop duplicates
                out.append(f"{user}:{hashed}")
                created = False
            continue
        out.append(line)
    if created:
        out.append(f"{user}:{hashed}")
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".cproxy-passwd-", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join(out) + "\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return created


def main(argv: Sequence[str] | None = None, stdin: TextIO | None = None) -> int:
    """Entry point of ``cproxy passwd``; returns the exit status (0 ok, 1 failed, 2 usage)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on usage errors
        return exc.code if isinstance(exc.code, int) else 2
    if not valid_user_name(args.user):
        print(f"cproxy passwd: invalid user name {args.user!r}", file=sys.stderr)
        return 2
    if args.config:
        try:
            args.file = load_config(args.config).resolve_path("AdminPasswordFile")
        except ConfigError as exc:
            print(f"cproxy passwd: {exc}", file=sys.stderr)
            return 2
    elif not args.file:
        args.file = DEFAULT_PASSWORD_FILE
    try:
        password = read_new_password(stdin if stdin is not None else sys.stdin)
        created = set_password(args.file, args.user, password)
    except PasswdError as exc:
        print(f"cproxy passwd: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cproxy passwd: cannot write {args.file}: {exc}", file=sys.stderr)
        return 1
    verb = "added" if created else "updated"
    print(f"cproxy passwd: {verb} user {args.user} in {args.file}")
    return 0
