"""The engine's own tables (prefix sync_): ledger, runs, and later locks and queues."""
