-- complete: record a batch of outcomes (see done) and count them (see record).
WITH {done}, record AS ({record})
SELECT id FROM done
