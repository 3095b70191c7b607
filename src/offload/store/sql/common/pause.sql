-- pause: set a queue's paused flag (creating its row on first use).
INSERT INTO offload_queue (backend, queue_name, paused, changed_at)
VALUES (%(backend)s, %(queue)s, %(paused)s, %(now)s)
ON CONFLICT (backend, queue_name) DO UPDATE SET paused = excluded.paused, changed_at = excluded.changed_at
