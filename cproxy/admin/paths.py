"""Where the admin's files live: its templates and static files, its password file.

The templates, CSS and JavaScript are kept in one ``web_admin/`` directory:

* in a repository checkout it sits next to the ``cproxy/`` package
  (``<checkout>/web_admin``);
* in an installed copy it is shipped as package data inside the package
  (``<site-packages>/cproxy/web_admin``, see ``setup.cfg``).

``templates_dir()`` tries the package-data location first (an installed copy must
never pick up some unrelated ``web_admin`` next to site-packages), then the checkout.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cproxy

log = logging.getLogger("cproxy.admin")

# The file whose presence proves a candidate directory really is ours.
_MARKER = "base.html"


def _candidates() -> list[Path]:
    package = Path(cproxy.__file__).resolve().parent
    return [package / "web_admin", package.parent / "web_admin"]


def templates_dir() -> Path:
    """Return the ``web_admin`` directory (Jinja2 templates; static files in ``static/``).

    Raises FileNotFoundError naming every place looked at when none holds the templates.
    """
    candidates = _candidates()
    for candidate in candidates:
        if (candidate / _MARKER).is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"cproxy admin templates not found (looked in {looked})")


def static_dir() -> Path:
    """Return the directory of the admin's CSS and JavaScript files."""
    return templates_dir() / "static"


def password_file_path(config: Any) -> Path:
    """The admin password file: AdminPasswordFile, relative to the directive file's dir."""
    return Path(config.resolve_path("AdminPasswordFile"))


def password_file_missing(config: Any) -> bool:
    """True, with a warning saying how to make one, when the admin password file does not
    exist: nobody could log in, so the admin does not start. Here, not beside the
    application, so that a proxy whose admin cannot start does not import it (Jinja2 and
    prometheus-client, about 10 MiB of a process; issue #21)."""
    passwords = password_file_path(config)
    if passwords.is_file():
        return False
    log.warning(
        "admin not started: no password file %s; create one with: "
        "cproxy passwd -f %s admin (the admin starts within a second of it appearing)",
        passwords,
        passwords,
    )
    return True
