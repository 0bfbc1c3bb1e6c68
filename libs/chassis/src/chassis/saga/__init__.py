"""Orchestrated sagas persisted in the orchestrator's database.

Define a saga as steps (command, replies, compensation, deadline), what happens when it ends
(``on_end``) and which of its data is secret (``secret_keys``); ``SagaEngine.start`` it in
a request's transaction; register ``engine.handlers()`` on an inbox consumer for the replies;
run its ``reconciler`` as a background task beside it; read ``history`` to see what happened.
"""

from chassis.saga.definition import EndHook, SagaDefinition, SagaEnd, Step, command_subjects
from chassis.saga.engine import SagaEngine
from chassis.saga.history import (
    SagaEvent,
    SagaHistory,
    count_running,
    count_running_now,
    history,
    record_event,
)
from chassis.saga.reconciler import reconciler
from chassis.saga.secrets import REDACTED
from chassis.saga.store import ConcurrentSagaUpdate, SagaInstance, Status
from chassis.saga.tables import create_saga_tables, saga_tables

__all__ = ["REDACTED", "ConcurrentSagaUpdate", "EndHook", "SagaDefinition", "SagaEnd",
           "SagaEngine", "SagaEvent", "SagaHistory", "SagaInstance", "Status", "Step",
           "command_subjects", "count_running", "count_running_now", "create_saga_tables",
           "history", "reconciler", "record_event", "saga_tables"]
