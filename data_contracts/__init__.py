"""The shared language of shopml: schemas, contracts, adapters, settings, the warehouse."""
