"""The GraphQL API and the process's composition root (app factory, CLI)."""
