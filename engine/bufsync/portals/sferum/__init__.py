"""VK Сферум (issue 17): the VK API client (client.py), tested against the sandbox VK API (bufsync/sandbox/vk).

The portal registers itself here once its scenario run (chats and members from the contingent, online lessons)
and its queue handler exist; until then this folder registers nothing, so no setting, job kind or command
offers what is not built.
"""
