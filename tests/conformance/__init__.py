"""Conformance with artefacts nobody here wrote: the ecosystems' own schemas and conventions, vendored."""
