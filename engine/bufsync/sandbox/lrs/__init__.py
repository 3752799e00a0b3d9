"""A sandbox xAPI 1.0.3 LRS as Learning Locker behaves (the Университет 2035 LRS is Learning Locker): statements
posted, resent, conflicting and read back, with LL's idempotency rules, its error bodies and headers, size and
rate limits and the transport faults of the other sandboxes. `start()` runs one.

Where Learning Locker (this emulator's model) and ralph-malph 5.1 (the real LRS the peer tests run, fs backend)
differ, as observed side by side on loopback:
- resend of known, identical statements: LL 200 with every id; ralph 204 with no body (one or a list);
- a batch with some ids known: LL 200 with every id in input order; ralph 200 with only the new ids (its code;
  with the fs backend that write fails, see below);
- what "identical" means: LL hashes id, actor, verb, object, context, result, attachments and timestamp *after*
  filling in default objectTypes; ralph compares the fields literally and stamps a missing `timestamp` before
  comparing. So a statement resent without a timestamp is 200 on LL and 409 on ralph, and writing
  `"objectType": "Activity"` out on a resend is 200 on LL and 409 on ralph. On both, the same instant written
  differently ("…00Z" vs "…00.000Z") is 409: a client must resend the exact timestamp it first sent;
- ralph's fs backend writes once per data folder: the first POST of new statements stores, every later one that
  has new statements answers 500 "Statements bulk indexation failed" (FSDataBackend's default operation is
  CREATE of one file); 204 resends and 409s still work. Peer tests need a fresh ralph folder per write;
- validation: LL refuses a statement that breaks xAPI (an attachment without `sha2`, a usageType that is not
  an IRI, an unknown top-level property) with 400 and warnings; ralph stores all three (200). Its own refusals
  are FastAPI 422 `{detail: [pydantic errors]}` (a bad UUID, a missing actor);
- error bodies: LL `{errorId, message}`; ralph `{detail}`; 401 from ralph carries `WWW-Authenticate: Basic`;
- `X-Experience-API-Version` request header: LL 400 without it; ralph does not ask for it;
- `X-Experience-API-Version` / `X-Experience-API-Consistent-Through` on answers: LL on every one; ralph on none;
- GET ?statementId=: LL the statement itself, 404 for an unknown id, 400 with `limit` beside it; ralph wraps it
  as `{statements: [..]}`, answers an unknown id 200 `{statements: []}`, and accepts `limit` beside it;
- paging: LL `more` = `<base>/statements?…&cursor=…`; ralph `/xAPI/statements?…&pit_id=None&search_after=<id>`;
  ralph leaves `more` out on the last page, LL gives "";
- routes: LL `/data/xAPI/…` and `GET /about`; ralph `/xAPI/…` and no `/about` (404);
- PUT ?statementId=: 204 on both, a repeat of the same statement 204 on both.
"""

from bufsync.sandbox.lrs.server import LrsServer, start
from bufsync.sandbox.lrs.store import Lrs, LrsConfig, Refusal

__all__ = ["Lrs", "LrsConfig", "LrsServer", "Refusal", "start"]
