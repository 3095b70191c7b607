-- complete: record a batch of outcomes (see done) and count them (see record).
-- scope: rows by id under their lease token, which only the claimer (of one backend) holds.
WITH {done}, record AS ({record})
SELECT id FROM done
