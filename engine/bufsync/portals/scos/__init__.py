"""ГИС СЦОС (online.edu.ru) partner API v2; docs/portals/scos.md says what was chosen where sources disagree."""

from bufsync.portals import register
from bufsync.portals.scos.portal import ScosPortal

register(ScosPortal())
