-- data_version: a number that changes whenever another connection commits to the file
-- (the SQLite wake-up: store/wakeups.py).
-- scope: the connection.
PRAGMA data_version
