"""Embedding jobs: what `Client.embed` does around a driver's `embed` (cache, limits, batches, one record)."""
