"""A sandbox S3-compatible store, path-style: buckets and objects, canned ACLs with a real anonymous public-read,
Signature Version 4 checked with botocore's signer, Content-MD5 and x-amz-checksum-* checked, S3's XML errors and
the transport faults of the other sandboxes. `start()` runs one.
"""

from bufsync.sandbox.s3.server import S3Error, S3Server, start
from bufsync.sandbox.s3.store import Obj, S3Config, Store

__all__ = ["Obj", "S3Config", "S3Error", "S3Server", "Store", "start"]
