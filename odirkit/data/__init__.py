"""Data: sample tables, splits, preprocessing, the image cache and batches."""
