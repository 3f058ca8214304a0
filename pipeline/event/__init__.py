"""The event domain: from a USGS event to one map per version."""
