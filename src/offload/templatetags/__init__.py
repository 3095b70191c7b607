"""Offload's template filters: ``{% load offload_format %}`` then ``{{ seconds|duration }}``
(see ``offload_format``)."""
