"""Step 1: bring mail in from IMAP: the pollers, the parser worker, the sink that files batches."""
