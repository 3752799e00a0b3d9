"""A sandbox xAPI 1.0.3 LRS as Learning Locker behaves (the Университет 2035 LRS is Learning Locker): statements
posted, resent, conflicting and read back, with LL's idempotency rules, its error bodies and headers, size and
rate limits and the transport faults of the other sandboxes. `start()` runs one.

Where Learning Locker (this emulator's model) and ralph-malph 5.1 (the real LRS the peer tests run) differ, as
observed against ralph on loopback:
- a POST whose ids are all known and identical: LL 200 with every id; ralph 204 and no body;
- a batch with some ids known: LL 200 with every id in input order; ralph 200 with only the new ids;
- `X-Experience-API-Version` on answers: LL always (errors too); ralph never;
- `X-Experience-API-Consistent-Through`: LL on every answer; ralph on GET /statements only;
- error bodies: LL `{errorId, message}`; ralph FastAPI's `{detail}` (a list of pydantic errors for a 400 that
  fails its schema, 422 in some cases);
- a missing `X-Experience-API-Version` request header: LL 400; ralph accepts the request;
- the base path: LL `/data/xAPI`; ralph `/xAPI`;
- `limit` above the page size: both cap it (LL at its configured page size, ralph at 100).
"""

from bufsync.sandbox.lrs.server import LrsServer, start
from bufsync.sandbox.lrs.store import Lrs, LrsConfig, Refusal

__all__ = ["Lrs", "LrsConfig", "LrsServer", "Refusal", "start"]
