"""Search backends: one Protocol (base.py), two implementations."""
