-- greatest (a fragment): the larger of its arguments.
GREATEST
