"""Code every failcat service uses, and nothing domain-specific."""
