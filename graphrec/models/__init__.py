"""Models: CTR models (:mod:`graphrec.models.ctr`), collaborative filtering
(:mod:`graphrec.models.cf`). Subpackages are imported explicitly, not from here."""
