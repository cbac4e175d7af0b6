"""Product search: a lexical (BM25) and a dense (MiniLM) index over the catalog, fused, with
an optional bounded personal re-rank. Plain modules: no HTTP, no Dagster."""
