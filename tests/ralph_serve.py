"""Runs ralph-malph's LRS (ralph.api:app under uvicorn) on 127.0.0.1:PORT, for tests/peers.py. Started with the
python of ralph's own virtualenv (its pins clash with bufsync's), never imported by the suite.

Usage: python ralph_serve.py PORT   (settings from the RALPH_* environment that tests/peers.py sets)

The one change to ralph: its file-system LRS backend (the only one that needs no database server) writes every
POST's statements to one file with the "create" operation, which refuses an existing file, so in ralph 5.1 the
second POST of a server's life answers 500 "Statements bulk indexation failed". The backend is told to append
instead, as a store that keeps statements must; everything an xAPI client sees (status codes, bodies, the
duplicate and conflict checks) is ralph's own code.
"""

from __future__ import annotations

import sys

import uvicorn
from ralph.backends.data.base import BaseOperationType
from ralph.backends.lrs.fs import FSLRSBackend


def main() -> None:
    FSLRSBackend.default_operation_type = BaseOperationType.APPEND
    # not `ralph runserver`: it turns on uvicorn's reload (a watcher process) and listens on 0.0.0.0
    uvicorn.run("ralph.api:app", host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
