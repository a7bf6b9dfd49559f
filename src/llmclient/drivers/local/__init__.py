"""In-process drivers: transformers (`hf`) and llama.cpp (`llamacpp`), with what they share (`runtime`,
`templates`) and where a model runs (`device`)."""
