"""Fault injection for tests/test_faults.py and benchmarks/faults.py: private backends that can
be stopped, real `failcat` processes that can be killed, and a retrying bulk client."""
