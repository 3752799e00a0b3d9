"""The emulated S3's state: buckets, objects with their ACL, metadata and checksums, in memory or in a folder.

With a data folder the index (buckets, object metadata) is `s3.json` and each body is a file named by its SHA-256
under `blobs/`, so a restart keeps what users uploaded, and the credentials they pasted.
"""

from __future__ import annotations

import json
import os
import secrets
import string
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from bufsync.sandbox.clock import StoppableClock

CANNED_ACLS = ("private", "public-read", "public-read-write", "authenticated-read", "bucket-owner-read",
               "bucket-owner-full-control", "aws-exec-read")


def _access_key() -> str:
    return "SANDBOX" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(13))


def _secret_key() -> str:
    return secrets.token_urlsafe(30)[:40]


@dataclass
class S3Config:
    """The knobs; AWS S3's behaviour unless said otherwise. The default credentials are one random access key
    ("SANDBOX…", 20 characters) and secret (40) per sandbox; with a data folder they are saved at the first
    start and read back on every later start, so what a user pasted into bufsync's settings stays valid."""
    credentials: dict[str, str] = field(default_factory=lambda: {_access_key(): _secret_key()})  # access -> secret
    region: str = "us-east-1"             # the region a signature's scope must name
    owner_id: str = field(default_factory=lambda: secrets.token_hex(32))
    owner_name: str = "sandbox"
    clock: float | None = None            # a stopped clock (epoch seconds) for the skew check; None: the wall clock
    max_skew: float = 15 * 60             # a signature dated further from the clock: RequestTimeTooSkewed
    max_object_size: int = 64 * 1024 * 1024  # a larger PutObject: EntityTooLarge (AWS: 5 GiB in one PUT)
    max_metadata: int = 2048              # user metadata (x-amz-meta-* names and values) over it: MetadataTooLarge


@dataclass
class Obj:
    size: int
    etag: str                 # MD5 hex, as S3 gives it for a single-part upload
    sha256: str               # names the blob in a data folder
    content_type: str
    last_modified: float
    acl: str
    metadata: dict[str, str]  # x-amz-meta-* names without the prefix, lower case
    checksums: dict[str, str]  # "crc32"/"sha256"/... -> base64, as sent with the PUT


@dataclass
class Bucket:
    created: float
    acl: str
    objects: dict[str, Obj] = field(default_factory=dict)


class Store(StoppableClock):
    def __init__(self, config: S3Config | None = None, folder: str | None = None) -> None:
        self.config = config or S3Config()
        self.folder = folder
        self.lock = threading.Lock()
        self.clock = self.config.clock
        self.buckets: dict[str, Bucket] = {}
        self.blobs: dict[str, bytes] = {}  # sha256 -> body (in memory when there is no folder)
        self.calls: dict[str, int] = {}    # operation -> requests received
        if folder:
            os.makedirs(os.path.join(folder, "blobs"), exist_ok=True)
            if os.path.exists(self._index()):
                self._load()
            else:
                self.save()  # the credentials are kept from the first start on

    # -- bodies and persistence --------------------------------------------------------------------
    def _index(self) -> str:
        assert self.folder is not None
        return os.path.join(self.folder, "s3.json")

    def _load(self) -> None:
        with open(self._index(), encoding="utf-8") as handle:
            saved = json.load(handle)
        self.config.credentials = saved["credentials"]
        self.config.owner_id = saved["owner_id"]
        self.buckets = {name: Bucket(b["created"], b["acl"], {k: Obj(**o) for k, o in b["objects"].items()})
                        for name, b in saved["buckets"].items()}

    def save(self) -> None:
        if not self.folder:
            return
        state: dict[str, Any] = {"credentials": self.config.credentials, "owner_id": self.config.owner_id,
                                 "buckets": {name: {"created": b.created, "acl": b.acl,
                                                    "objects": {k: asdict(o) for k, o in b.objects.items()}}
                                             for name, b in self.buckets.items()}}
        temporary = self._index() + ".tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(state, handle, ensure_ascii=False)
        os.replace(temporary, self._index())

    def put_body(self, sha256: str, body: bytes) -> None:
        if not self.folder:
            self.blobs[sha256] = body
            return
        path = os.path.join(self.folder, "blobs", sha256)
        if not os.path.exists(path):
            with open(path + ".tmp", "wb") as handle:
                handle.write(body)
            os.replace(path + ".tmp", path)

    def body(self, obj: Obj) -> bytes:
        if not self.folder:
            return self.blobs[obj.sha256]
        with open(os.path.join(self.folder, "blobs", obj.sha256), "rb") as handle:
            return handle.read()

    # -- what tests read -------------------------------------------------------------------------------
    def object(self, bucket: str, key: str) -> tuple[Obj, bytes] | None:
        with self.lock:
            found = self.buckets.get(bucket)
            obj = found.objects.get(key) if found else None
            return (obj, self.body(obj)) if obj else None

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"buckets": {name: {"acl": b.acl, "objects": {k: {"size": o.size, "acl": o.acl,
                                                                    "content_type": o.content_type}
                                                                for k, o in b.objects.items()}}
                                for name, b in self.buckets.items()},
                    "calls": dict(self.calls)}
