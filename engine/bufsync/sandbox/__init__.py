"""Emulators users run to try bufsync and tests run against: Moodle now, the portals later."""
