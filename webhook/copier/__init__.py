"""copy-artifacts, by concern: errors (exit codes, classification), resolve (which artifacts),
retry, fetch (the transfer), staging (the destination's bookkeeping), command (the whole)."""
