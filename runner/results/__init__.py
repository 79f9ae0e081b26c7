"""Run folders: shards, merge into result.nc with provenance, and load."""
