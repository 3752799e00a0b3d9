"""The outbox shared by every portal: enqueue once, claim without blocking, retry, dead letters."""
