"""The strangler-fig migration off the legacy monolith (issue 15, ADR 0028).

- ``capabilities``: the route families that move, each with its legacy and services paths;
- ``buckets``: the sticky per-customer bucket (0-99) the edge routes on;
- ``flags``: the switches (routing share, shadow share) in a flag file, read through an
  OpenFeature provider;
- ``routes``: the edge's legacy and ACL clusters and the per-capability routes;
- ``ids``, ``translate``, ``compare`` and ``acl``: the anti-corruption layer, which answers
  legacy paths from the services and runs the shadow comparison;
- ``guard``: whether a shift may go on, judged on the ACL's counters.
"""
