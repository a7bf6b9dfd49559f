"""Vector indexes: `VectorIndex`'s API on the vector databases users run (Chroma, Qdrant, Pinecone)."""
