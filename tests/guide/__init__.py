"""``myapp`` of docs/testing.md: the guide's examples run against this package."""
