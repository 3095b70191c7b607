-- greatest (a fragment): the larger of its arguments (SQLite's two-argument max).
max
