-- fold_delete: remove the rows per hour fold just added to the totals.
DELETE FROM offload_series
WHERE backend = %(backend)s AND minute > %(totals)s AND minute < %(hours_before)s
  AND worker = %(hours)s
