"""Ingest: landed files → raw tables → contracts → clean tables, sequences and item stats."""
