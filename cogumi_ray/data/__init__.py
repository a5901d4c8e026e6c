"""Data: the Example schema, readers, curation filters, MinHash-LSH dedup, splits, the task suite."""
