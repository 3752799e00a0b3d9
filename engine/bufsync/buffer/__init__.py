"""The buffer database: streamed reads of 1C's tables, batched write-back, load markers."""
