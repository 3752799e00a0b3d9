"""`bufsync sandbox`'s Университет 2035: an LRS (as Learning Locker answers) and an S3 store with a bucket, beside
the sandbox Moodle; the variables it prints answer stages 2 and 4 of `bufsync u2035 connect`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bufsync.portals import Emulator

BUCKET = "footprint"


@dataclass
class Pair:
    """The LRS and the S3 server as one emulator (shut down together)."""

    lrs: Any
    s3: Any

    def shutdown(self) -> None:
        self.lrs.shutdown()
        self.s3.shutdown()

    def server_close(self) -> None:
        self.lrs.server_close()
        self.s3.server_close()


def start_both(options: dict[str, Any], data: Path | None) -> Emulator:
    from bufsync.sandbox import lrs, s3
    from bufsync.sandbox.s3.store import Bucket
    lrs_server = lrs.start(port=int(options["lrs_port"]), data=str(data / "lrs.json") if data else None)
    try:
        s3_server = s3.start(port=int(options.get("s3_port") or 0), data=str(data / "s3") if data else None)
    except OSError:
        lrs_server.shutdown()
        lrs_server.server_close()
        raise
    store = s3_server.store
    with store.lock:
        if BUCKET not in store.buckets:
            store.buckets[BUCKET] = Bucket(store.now(), "private")
        store.save()
    key, secret = next(iter(lrs_server.lrs.config.credentials.items()))
    access, secret_key = next(iter(store.config.credentials.items()))
    variables = {"BUFSYNC_U2035_TEST_LRS_URL": lrs_server.endpoint, "BUFSYNC_U2035_TEST_KEY": key,
                 "BUFSYNC_U2035_TEST_SECRET": secret, "BUFSYNC_U2035_LRS_URL": lrs_server.endpoint,
                 "BUFSYNC_U2035_KEY": key, "BUFSYNC_U2035_SECRET": secret, "BUFSYNC_U2035_S3_ENDPOINT": s3_server.url,
                 "BUFSYNC_U2035_S3_BUCKET": BUCKET, "BUFSYNC_U2035_S3_ACCESS_KEY": access,
                 "BUFSYNC_U2035_S3_SECRET_KEY": secret_key}
    where = f"{data / 'lrs.json'} and {data / 's3'}" if data else "in memory"
    return Emulator(Pair(lrs_server, s3_server), "LRS and S3 of Университет 2035", variables, where)
