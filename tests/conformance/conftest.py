"""The conformance tests share the scripted OpenAI-style server of tests/integrations (imported as a package)."""
