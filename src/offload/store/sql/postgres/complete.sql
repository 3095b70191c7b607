-- complete: record a batch of outcomes (see done).
WITH {done}
SELECT id FROM done
