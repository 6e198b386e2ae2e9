"""Lead scoring: the pure rule set and the ledger, stages and recomputes on the database."""
