-- fold_delete: remove the rows fold just added to the totals.
DELETE FROM offload_stat WHERE backend = %(backend)s AND minute > %(totals)s AND minute < %(before)s
