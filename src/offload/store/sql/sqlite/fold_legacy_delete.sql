-- fold_legacy_delete: remove the rows fold_legacy just moved.
DELETE FROM offload_stat WHERE backend = %(backend)s
