"""Vectors: similarity scores and top-k search (`similarity`), and indexes that keep them (`index`)."""
