"""The storage sink: rows, spill files, database backends and the batching sink."""
