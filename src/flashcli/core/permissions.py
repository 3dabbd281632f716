"""Normal file permissions for what flash writes through temp files.

`tempfile.mkstemp`/`mkdtemp` create private (0600/0700) entries; a saved adapter, base or output
must get the permissions any other file the user creates would get (0666/0777 minus the umask),
so that a base installed for several users stays readable by them.
"""

from __future__ import annotations

import os
from pathlib import Path


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_public(path: str | Path) -> None:
    """Give `path` (and, for a folder, everything under it) the permissions the umask allows."""
    root = Path(path)
    mask = current_umask()
    entries = [root, *root.rglob("*")] if root.is_dir() else [root]
    for entry in entries:
        os.chmod(entry, (0o777 if entry.is_dir() else 0o666) & ~mask)
