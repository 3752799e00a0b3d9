"""What every portal's settings hold: delivery limits the shared dispatcher applies to its queue."""

from __future__ import annotations

from pydantic import Field

from bufsync.validation import StrictModel


class PortalSettings(StrictModel):
    """The base of a portal's settings model (`portals.<name>` in bufsync.yaml)."""

    timeout: float = Field(30.0, gt=0, description="seconds for one HTTP call")
    max_attempts: int = Field(8, ge=1, description="attempts before a queue item is dead")
    lease_seconds: float = Field(120.0, gt=0, description="how long a dispatcher holds a claimed item")
    batch: int = Field(50, ge=1, le=1000, description="items one dispatcher claims at a time")
