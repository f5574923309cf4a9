"""Sessions: state that outlives a connection, and the per-connection pipeline with barge-in."""
