"""Every on-disk format and its schema version."""
