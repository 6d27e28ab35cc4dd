"""The `failcat` command's shared parts: one-line errors, case files, local and client mode."""
