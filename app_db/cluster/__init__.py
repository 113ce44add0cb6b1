"""Which server answers: read-replica routing, lag and causal positions, multi-host connects
and fencing. ``app_db.engine`` asks it; nothing here knows users or customers."""
