"""The central web console (issue 15)."""
