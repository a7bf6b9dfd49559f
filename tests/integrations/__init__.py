"""Tests of llmclient.integrations against the ecosystems' own suites (LangChain, MCP)."""
