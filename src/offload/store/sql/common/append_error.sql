-- append_error (a fragment of rescue and cancel): the errors JSON list with %(error)s
-- (one JSON object) appended, done in SQL so the row need not be read first.
substr(errors, 1, length(errors) - 1) || CASE WHEN errors = '[]' THEN '' ELSE ',' END || %(error)s || ']'
