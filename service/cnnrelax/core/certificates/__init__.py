"""Certificates of a filter (SPEC 4); :mod:`.kkt` holds the KKT measures of constrained problems."""
