-- unpark: the set-aside tasks (key_waiting) of keys %(keys)s that now have room go back
-- into the claim's indexes, best first (offload_unpark, migration 0010); how many.
SELECT offload_unpark(%(backend)s, %(keys)s::text[])
