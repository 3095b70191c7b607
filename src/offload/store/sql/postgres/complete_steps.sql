-- complete_steps: complete for a batch that finished workflow steps with success:
-- record the outcomes (done), count them (record) and release the steps waiting for
-- them (released), in one statement.
-- scope: rows by id under their lease token, which only the claimer (of one backend)
-- holds, and the steps that wait for them.
WITH {done}, record AS ({record}), {released}
SELECT done.id FROM done CROSS JOIN wake
