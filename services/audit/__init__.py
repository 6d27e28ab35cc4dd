"""The audit trail: an append-only, hash-chained log of reads, writes and refusals.

The append rule (stage in the unit of work, chain at commit) lives in `shared/audit.py`; this
package holds the table, the queries, verification, checkpoints and export.
"""
