"""``cproxy ca init -d DIR [--force]`` and ``cproxy ca show -d DIR``: make and inspect the
interception CA (issue #19).

``init`` prints where the files are, the SHA-256 fingerprint, the two directives to add and
how to install the certificate in the common trust stores. ``show`` loads the CA with the
same checks cproxy makes at start (key mode, CA flags, key match, validity) and prints its
fingerprint and validity. Exit status 0, or 1 with one ``cproxy ca: FILE: problem`` line.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from .ca import CAError, CertificateAuthority, ca_files, create_ca, load_ca

_DATE = "%Y-%m-%d %H:%M UTC"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cproxy ca",
        description="Create or show the CA cproxy signs intercepted hosts' certificates with.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{init,show}")
    init = sub.add_parser(
        "init",
        help="create a CA (key mode 0600 in a 0700 directory) and print how to install it",
        description="Create a CA in DIR: ca-key.pem (the private key, mode 0600), "
        "ca-cert.pem and ca-cert.der (the certificate, for clients).",
    )
    init.add_argument("-d", "--dir", required=True, help="directory of the CA (made 0700)")
    init.add_argument(
        "--force",
        action="store_true",
        help="replace an existing CA (every client must then install the new certificate)",
    )
    show = sub.add_parser(
        "show",
        help="check the CA in DIR and print its fingerprint and validity",
        description="Load the CA in DIR with cproxy's start-up checks; print its details.",
    )
    show.add_argument("-d", "--dir", required=True, help="directory of the CA")
    return parser


def describe(ca: CertificateAuthority) -> list[str]:
    """The lines ``show`` prints (and ``init`` after creating)."""
    return [
        f"certificate:         {ca.cert_path}",
        f"key:                 {ca.key_path} (owner only; never give it to anyone)",
        f"subject:             {ca.subject}",
        f"SHA-256 fingerprint: {ca.fingerprint}",
        f"valid:               {ca.not_before:{_DATE}} to {ca.not_after:{_DATE}}",
    ]


def install_help(ca: CertificateAuthority) -> list[str]:
    """How to trust the certificate, for each common store; every client that should be
    intercepted needs it, and nothing else does."""
    pem = ca.cert_path
    der = os.fspath(ca_files(os.path.dirname(pem)).cert_der)
    return [
        "Directives to add to cproxy.conf:",
        f"    SSLCACertFile = {pem}",
        f"    SSLCAKeyFile = {ca.key_path}",
        "",
        "Install the certificate (not the key) in each client to be intercepted, and check",
        "the fingerprint the client shows against the one above:",
        "  Debian/Ubuntu system store (curl, apt, Python with the system store):",
        f"    sudo cp {pem} /usr/local/share/ca-certificates/cproxy.crt",
        "    sudo update-ca-certificates",
        "  Chromium and Firefox on Linux (the user's NSS database; Debian: libnss3-tools):",
        f"    certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n cproxy -i {pem}",
        "    (a Firefox profile has its own: -d sql:$HOME/.mozilla/firefox/PROFILE)",
        "  Windows (an administrator's command prompt):",
        f"    certutil -addstore Root {der}",
        "  macOS:",
        "    sudo security add-trusted-cert -d -r trustRoot \\",
        f"        -k /Library/Keychains/System.keychain {pem}",
    ]


def main(argv: Sequence[str], stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr) -> int:
    args = _parser().parse_args(argv)
    # Absolute, so the directives printed work from any directive file's directory.
    args.dir = os.path.abspath(args.dir)
    try:
        if args.command == "init":
            ca = create_ca(args.dir, force=args.force)
            print(f"cproxy ca: created a CA in {args.dir}", file=stdout)
            for line in describe(ca):
                print("  " + line, file=stdout)
            print(f"  for clients (DER):   {ca_files(args.dir).cert_der}", file=stdout)
            print("", file=stdout)
            for line in install_help(ca):
                print(line, file=stdout)
        else:
            files = ca_files(args.dir)
            ca = load_ca(files.cert, files.key)
            for line in describe(ca):
                print(line, file=stdout)
    except CAError as exc:
        print(f"cproxy ca: {exc}", file=stderr)
        return 1
    return 0
