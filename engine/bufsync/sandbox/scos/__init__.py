"""A sandbox of the СЦОС partner API v2 (see docs/portals/scos.md): what the dispatchers and tests talk to."""
