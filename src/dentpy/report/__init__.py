"""Pictures and reports a person can look at."""
