"""Vectors: similarity scores and top-k search (`similarity`), indexes that keep them (`index`), and the same
index API on the vector databases users run (`chroma`, `qdrant`, `pinecone`, on a shared `base`).
"""
