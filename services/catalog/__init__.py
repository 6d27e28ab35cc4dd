"""The catalog: failure cases, their history, groups, models, taxonomy and the outbox."""
