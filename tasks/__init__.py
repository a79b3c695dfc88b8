"""Units of work, pure and testable without Prefect: archives, dataset adapters, synthetic data."""
