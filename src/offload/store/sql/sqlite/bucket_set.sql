-- bucket_set: a bucket's theoretical arrival time after turns were given.
UPDATE offload_bucket SET tat = %(tat)s WHERE backend = %(backend)s AND key = %(key)s
