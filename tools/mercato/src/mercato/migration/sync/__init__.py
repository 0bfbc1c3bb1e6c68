"""Data sync both ways between the legacy monolith and the catalog service (ADR 0029).

- ``records``: the product record both sides are read into, and the three-way merge that
  decides what each side must take, conflicts included (pure);
- ``store``: the sync's own state in the monolith's database (schema ``mercato_sync``):
  checkpoints, the id map with each product's last synced record, conflicts, rejects;
- ``legacy`` and ``catalog``: reading and writing each side;
- ``engine``: the reconcile step, the legacy outbox reader, the catalog event consumer and
  the backfill;
- ``process``: ``python -m mercato.migration.sync``, as the runtime supervises it.
"""
