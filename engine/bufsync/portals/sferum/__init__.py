"""VK Сферум (docs/portals/sferum.md): chats of academic groups, departments and learning processes kept in step
with the contingent, and online lessons as VK calls, all through the VK API with the organiser's token."""

from bufsync.portals import register
from bufsync.portals.sferum.portal import SferumPortal

register(SferumPortal())
