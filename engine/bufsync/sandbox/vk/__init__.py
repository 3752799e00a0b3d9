"""A sandbox of the VK API as VK Сферум uses it (see docs/portals/sferum.md): chats, members, messages,
calls, execute, the lookups (messages.getConversations, users.get, groups.getById), user, community and
service tokens, limits and errors; what the Сферум portal's client and its tests talk to. `start()` runs one."""

from bufsync.sandbox.vk.api import ErrorRule, Person, SandboxConfig, Token, VkApi
from bufsync.sandbox.vk.errors import ApiError
from bufsync.sandbox.vk.server import VkServer, start

__all__ = ["ApiError", "ErrorRule", "Person", "SandboxConfig", "Token", "VkApi", "VkServer", "start"]
