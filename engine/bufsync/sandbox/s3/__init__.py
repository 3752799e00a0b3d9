"""A sandbox S3-compatible store, path-style: buckets and objects, canned ACLs with a real anonymous public-read,
Signature Version 4 checked with botocore's signer, Content-MD5 and x-amz-checksum-* checked, S3's XML errors and
the transport faults of the other sandboxes. `start()` runs one.

Where this sandbox (AWS S3's documented behaviour) and moto 5.2 (ThreadedMotoServer, the real peer the tests
run) differ, as observed side by side with boto3 on loopback:
- authentication: moto checks no signature by default: a wrong secret, an unknown access key and a signature
  scoped to another region all answer 200; here they are 403 SignatureDoesNotMatch, 403 InvalidAccessKeyId and
  400 AuthorizationHeaderMalformed. Anonymous requests: moto lets an anonymous ListBuckets and PutObject
  through (200); here only an anonymous GET/HEAD of a public-read object is allowed, the rest is 403;
- ACLs: both keep the canned ACL, answer GetObjectAcl with the AllUsers READ grant for public-read, serve an
  anonymous GET of a public-read object (200) and refuse one of a private object (403; moto with an empty
  body, here S3's XML AccessDenied). An anonymous HEAD of a missing key: moto 404, here 403 (S3 tells a
  stranger nothing). An unknown canned ACL: moto 500 (an AssertionError inside it), here 400 InvalidArgument;
- digests: moto stores a body whose Content-MD5 or x-amz-checksum-sha256 does not match (200); here 400
  BadDigest. Both echo the checksum boto3 sends by default (x-amz-checksum-crc32) on a GetObject with
  ChecksumMode=ENABLED;
- buckets: moto creates a bucket with an invalid name ("Bad_Name") and one with a LocationConstraint that does
  not match the endpoint's region (200); here 400 InvalidBucketName and IllegalLocationConstraintException.
  Re-creating one's own bucket is 200 on both (us-east-1's legacy answer; other regions give 409
  BucketAlreadyOwnedByYou here);
- alike: NoSuchBucket and NoSuchKey (404, XML), HeadObject/HeadBucket 404 without a body, DeleteObject of a
  missing key 204, DeleteBucket of a non-empty bucket 409 BucketNotEmpty, the ETag (MD5 hex, quoted).
Not emulated: presigned URLs (501 NotImplemented), signed aws-chunked uploads, multipart uploads, ListObjects,
Range, versioning, bucket policies; crc32c/crc64nvme checksums are kept but not checked.
"""

from bufsync.sandbox.s3.server import S3Error, S3Server, start
from bufsync.sandbox.s3.store import Obj, S3Config, Store

__all__ = ["Obj", "S3Config", "S3Error", "S3Server", "Store", "start"]
