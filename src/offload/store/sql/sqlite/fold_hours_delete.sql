-- fold_hours_delete: remove the minutes fold_hours just added to the rows per hour.
DELETE FROM offload_series
WHERE backend = %(backend)s AND minute > %(totals)s AND minute < %(before)s AND worker <> %(hours)s
