"""Plans: retraining plans built on the catalog's evidence, evaluation plans as living documents."""
