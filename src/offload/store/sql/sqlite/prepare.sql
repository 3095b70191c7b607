-- prepare: what every Offload connection to an SQLite file needs, one statement per
-- line (SqliteStore.prepare runs them in turn): WAL, so readers never block the
-- writer; a busy timeout, so a writer waits for the lock instead of failing; NORMAL
-- synchronous, which WAL keeps crash-safe (a power loss may lose the last commits, a
-- process crash loses nothing).
-- scope: the connection.
PRAGMA journal_mode=WAL
PRAGMA busy_timeout=10000
PRAGMA synchronous=NORMAL
