"""The authorization server: clients, users, signing keys, scoped JWT access tokens."""
